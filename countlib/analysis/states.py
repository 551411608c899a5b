"""Run a batch through a model and keep what every layer computed.

Through forward hooks (the model's code is untouched, and since the hooks return nothing its
outputs are what they are without them) and, for recurrent families, through the step form the
model exposes. Components, each a list over layers, for B sequences of T tokens:

- ``residual`` (every family): L + 1 tensors [B, T, d], the stream entering the first layer and
  then after each layer; for a stacked RNN, which has no residual connection, the embedding and
  then each layer's hidden output;
- Transformer: ``scores`` and ``probs`` L x [B, H, T, T] (attention logits after scaling and
  bias, before masking; softmax over the allowed keys), ``query``, ``key``, ``value``
  L x [B, H, T, d/H] (q and k after RoPE), from the model's documented analysis entry point
  `Transformer.attention_maps` (its explicit attention path, a second forward pass);
- RNN, GRU: ``hidden`` L x [B, T, d]; LSTM also ``cell``;
- S4: ``state`` L x [B, T, d, N] (S4D: complex, [B, T, d, N/2]);
- Mamba: ``state`` L x [B, T, inner, N] (the scan state) and ``conv_state``
  L x [B, T, inner, d_conv - 1];
- RWKV: ``residual`` only: its WKV state lives inside one kernel call and the model has no step
  form to read it from;
- the `MixerLM` families (DeltaNet, Gated DeltaNet, Mamba-2, minGRU, minLSTM, sLSTM):
  ``state_0``, ``state_1``, ... L x [B, T, ...], the slots of the mixer's step state in its
  order (DeltaNet: the q, k, v conv buffers, then the memory; Mamba-2: conv, then SSM state;
  sLSTM: c, n, m, h).

State components hold the state *after* position t, the one the model hands on to t + 1.
Every tensor comes with `Capture.index`, one row per (sequence, position).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from countlib.batches import IGNORE, Batch
from countlib.models.deltanet import MixerLM
from countlib.models.mamba import MambaModel
from countlib.models.rnn import RecurrentModel
from countlib.models.rwkv import RWKVModel
from countlib.models.s4 import S4Model
from countlib.models.transformer import Transformer
from countlib.tasks import Task
from countlib.tasks.counting import as_number

#: Attention components with one row per (head, query, key), not per position.
PAIRWISE = ("scores", "probs")
#: Attention components with one vector per (head, position).
PER_HEAD = ("query", "key", "value")


class UnsupportedModelError(TypeError):
    """A model class that capture has no hook points for."""


@dataclass
class Capture:
    """What a batch made a model compute, with a tidy index of its positions.

    ``index`` has one row per (sequence, position), sequence-major (row ``b * T + t``):
    sequence, position, real_index, token, position_id, label (None where unsupervised), count
    (the label's number: the count the model must output there, under a modulus the count mod N
    in 1..N; NaN where the label is no number), supervised, extrapolation (at or beyond the
    training length), padding, split.
    """

    index: pd.DataFrame
    tensors: dict[str, list[Tensor]]
    logits: Tensor  # [B, T, V], the model's own forward

    @property
    def predictions(self) -> Tensor:
        return self.logits.argmax(-1)

    def layers(self, component: str) -> int:
        return len(self._component(component))

    @property
    def position_components(self) -> list[str]:
        """Components with a vector per position (what probes and PCA read)."""
        return [c for c in self.tensors if c not in PAIRWISE]

    def features(self, component: str, layer: int) -> Tensor:
        """[B * T, D] float vectors of one layer, aligned with ``index`` (heads concatenated,
        complex states as real and imaginary parts)."""
        if component in PAIRWISE:
            raise ValueError(f"{component!r} has a value per (query, key), not per position")
        x = self._component(component)[layer]
        if component in PER_HEAD:
            x = x.transpose(1, 2)  # [B, T, H, head_dim]
        if x.is_complex():
            x = torch.view_as_real(x)
        return x.reshape(x.shape[0] * x.shape[1], -1).float()

    def _component(self, component: str) -> list[Tensor]:
        if component not in self.tensors:
            raise KeyError(
                f"this capture has no {component!r}; it has {', '.join(self.tensors)}"
            ) from None
        return self.tensors[component]


# -- hook points of the residual stream ------------------------------------------------------


@dataclass(frozen=True)
class StreamPoint:
    """Where the stream between layers can be read: a module's input (first argument) or its
    output. ``pair``: the value is Mamba's (hidden, residual), whose sum is the stream."""

    module: nn.Module
    before: bool = False
    pair: bool = False

    def read(self, value: Any) -> Tensor:
        if self.pair:
            hidden, residual = value[0], value[1]
            return hidden if residual is None else hidden + residual
        return value

    def patched(self, value: Any, rows: Tensor, positions: Tensor, new: Tensor) -> Any:
        """``value`` with the stream at (rows, positions) set to ``new``; every other entry is
        left bit for bit as it was."""
        if not self.pair:
            value = value.clone()
            value[rows, positions] = new.to(value.dtype)
            return value
        hidden, residual = value[0].clone(), value[1]
        offset = 0 if residual is None else residual[rows, positions]
        hidden[rows, positions] = (new - offset).to(hidden.dtype)
        return (hidden, residual, *value[2:])

    def register(self, on_value: Callable[[Any], Any]) -> Any:
        """Hook ``on_value`` (value -> replacement or None) in; returns the handle."""
        if not self.before:
            return self.module.register_forward_hook(lambda _m, _a, out: on_value(out))

        def pre(_module: nn.Module, args: tuple) -> tuple | None:
            width = 2 if self.pair else 1
            value = (args[0], args[1]) if self.pair else args[0]
            new = on_value(value)
            if new is None:
                return None
            return (*(new if self.pair else (new,)), *args[width:])

        return self.module.register_forward_pre_hook(pre)


@contextmanager
def hooked(points: Sequence[StreamPoint], hooks: Sequence[Callable[[Any], Any]]) -> Iterator[None]:
    """Hooks in for the duration of the block, removed whatever happens inside it."""
    handles = [point.register(hook) for point, hook in zip(points, hooks, strict=True)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_and_each(layers: Sequence[nn.Module], pair: bool = False) -> list[StreamPoint]:
    return [
        StreamPoint(layers[0], before=True, pair=pair),
        *(StreamPoint(layer, pair=pair) for layer in layers),
    ]


# -- step forms ------------------------------------------------------------------------------


class Stepper(Protocol):
    """A model's recurrent form: one token at a time, with a state that can be read and set."""

    components: tuple[str, ...]
    layers: int

    def start(self, batch_size: int) -> Any: ...

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]: ...

    def read(self, state: Any, component: str, layer: int) -> Tensor: ...

    def write(
        self, state: Any, component: str, layer: int, rows: Tensor, values: Tensor
    ) -> Any: ...


class RecurrentSteps:
    """`RecurrentModel`'s PyTorch RNN driven one token at a time: state (h, c) or h, each
    [layers, B, d]."""

    def __init__(self, model: RecurrentModel) -> None:
        self.model = model
        self.lstm = model.config.cell == "lstm"
        self.components = ("hidden", "cell") if self.lstm else ("hidden",)
        self.layers = model.config.layers

    def start(self, batch_size: int) -> Any:
        zeros = self.model.head.weight.new_zeros(self.layers, batch_size, self.model.config.hidden)
        return (zeros, zeros.clone()) if self.lstm else zeros

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        out, state = self.model.rnn(self.model.embedding(tokens)[:, None], state)
        return self.model.head(out[:, 0]), state

    def read(self, state: Any, component: str, layer: int) -> Tensor:
        parts = state if self.lstm else (state,)
        return parts[self.components.index(component)][layer]

    def write(self, state: Any, component: str, layer: int, rows: Tensor, values: Tensor) -> Any:
        parts = list(state) if self.lstm else [state]
        which = self.components.index(component)
        parts[which] = parts[which].clone()
        parts[which][layer, rows] = values
        return tuple(parts) if self.lstm else parts[0]


class S4Steps:
    """`S4Model.step`: per-layer SSM states [B, H, n]."""

    components = ("state",)

    def __init__(self, model: S4Model) -> None:
        self.model = model
        self.layers = model.config.layers

    def start(self, batch_size: int) -> Any:
        return self.model.initial_state(batch_size)

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.model.step(tokens, state)

    def read(self, state: Any, component: str, layer: int) -> Tensor:
        return state.states[layer]

    def write(self, state: Any, component: str, layer: int, rows: Tensor, values: Tensor) -> Any:
        states = list(state.states)
        states[layer] = states[layer].clone()
        states[layer][rows] = values
        return type(state)(state.systems, states)


class SlotSteps:
    """A ``step``/``init_state`` form whose state is, per layer, a tuple of tensors (Mamba;
    the `MixerLM` families): one component per slot, named by ``names``."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.model = model
        self.components = tuple(names)
        self.layers = model.config.layers

    def start(self, batch_size: int) -> Any:
        return self.model.init_state(batch_size)

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.model.step(tokens, state)

    def read(self, state: Any, component: str, layer: int) -> Tensor:
        return state[layer][self.components.index(component)]

    def write(self, state: Any, component: str, layer: int, rows: Tensor, values: Tensor) -> Any:
        state = list(state)
        slots = list(state[layer])
        slot = self.components.index(component)
        slots[slot] = slots[slot].clone()
        slots[slot][rows] = values
        state[layer] = tuple(slots)
        return state


def _mixer_steps(model: MixerLM) -> SlotSteps:
    slots = len(model.init_state(1)[0])
    return SlotSteps(model, [f"state_{i}" for i in range(slots)])


@dataclass(frozen=True)
class Patch:
    """Values to set at (rows, positions) of one layer of one component."""

    component: str
    layer: int
    rows: Tensor  # long [n]
    positions: Tensor  # long [n]
    values: Tensor  # [n, ...]


def step_through(
    stepper: Stepper, input_ids: Tensor, patch: Patch | None = None, *, record: bool = True
) -> tuple[Tensor, dict[str, list[Tensor]]]:
    """Logits [B, T, V] and, with ``record``, every state component (L x [B, T, ...]) of the
    step form; with ``patch``, the state after each patched position is overwritten before the
    next step."""
    state = stepper.start(input_ids.shape[0])
    logits: list[Tensor] = []
    components = stepper.components if record else ()
    states: dict[str, list[list[Tensor]]] = {
        c: [[] for _ in range(stepper.layers)] for c in components
    }
    for t in range(input_ids.shape[1]):
        out, state = stepper.step(input_ids[:, t], state)
        if patch is not None:
            here = patch.positions == t
            if here.any():
                state = stepper.write(
                    state, patch.component, patch.layer, patch.rows[here], patch.values[here]
                )
        logits.append(out)
        for component, per_layer in states.items():
            for layer, steps in enumerate(per_layer):
                steps.append(stepper.read(state, component, layer))
    stacked = {c: [torch.stack(steps, 1) for steps in per_layer] for c, per_layer in states.items()}
    return torch.stack(logits, 1), stacked


# -- families ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FamilySpec:
    """How to look inside one model class."""

    stream: Callable[[Any], list[StreamPoint]]
    steps: Callable[[Any], Stepper] | None = None
    attention: bool = False
    #: The stream after each layer is this step component (stacked RNNs).
    stream_from: str | None = None


FAMILIES: dict[type[nn.Module], FamilySpec] = {
    Transformer: FamilySpec(lambda m: _first_and_each(m.blocks), attention=True),
    RecurrentModel: FamilySpec(
        lambda m: [StreamPoint(m.embedding)], RecurrentSteps, stream_from="hidden"
    ),
    S4Model: FamilySpec(lambda m: _first_and_each(m.layers), S4Steps),
    MambaModel: FamilySpec(
        lambda m: _first_and_each(m.backbone.layers, pair=True),
        lambda m: SlotSteps(m, ("conv_state", "state")),
    ),
    RWKVModel: FamilySpec(lambda m: _first_and_each(m.blocks)),
    MixerLM: FamilySpec(lambda m: _first_and_each(m.layers), _mixer_steps),
}


def family_spec(model: nn.Module) -> FamilySpec:
    """The spec of ``model``'s class or of the nearest base class that has one."""
    spec = next((FAMILIES[c] for c in type(model).__mro__ if c in FAMILIES), None)
    if spec is None:
        supported = ", ".join(cls.__name__ for cls in FAMILIES)
        raise UnsupportedModelError(
            f"countlib.analysis cannot look inside {type(model).__name__}; it supports "
            f"{supported} (add the model's hook points to countlib.analysis.states.FAMILIES)"
        )
    return spec


def has_attention(model: nn.Module) -> bool:
    return family_spec(model).attention


def forward(model: nn.Module, batch: Batch) -> Tensor:
    return model(
        batch.input_ids, position_ids=batch.position_ids, attention_mask=batch.attention_mask
    )


@torch.no_grad()
def capture(
    model: nn.Module,
    batch: Batch,
    task: Task,
    *,
    splits: Sequence[str] | None = None,
    attention: bool = True,
) -> Capture:
    """Every component of `model` on ``batch`` (a batch of ``task``'s collator; ``splits``
    names each sequence's split for the index). ``attention=False`` skips the attention pass
    of Transformers (a second forward and [B, H, T, T] tensors per layer)."""
    spec = family_spec(model)
    was_training = model.training
    model.eval()
    try:
        points = spec.stream(model)
        stream: list[Tensor] = []
        with hooked(points, [lambda v, p=p: stream.append(p.read(v)) for p in points]):
            logits = forward(model, batch)
        tensors = {"residual": stream}
        if spec.steps is not None:
            tensors |= step_through(spec.steps(model), batch.input_ids)[1]
        if spec.stream_from is not None:
            tensors["residual"] = stream + tensors[spec.stream_from]
        if attention and spec.attention:
            tensors |= _attention(model, batch)
    finally:
        model.train(was_training)
    return Capture(token_index(batch, task, splits), tensors, logits)


def _attention(model: Transformer, batch: Batch) -> dict[str, list[Tensor]]:
    maps = model.attention_maps(
        batch.input_ids, position_ids=batch.position_ids, attention_mask=batch.attention_mask
    )
    return {
        "scores": [m.scores for m in maps],
        "probs": [m.probs for m in maps],
        "query": [m.q for m in maps],
        "key": [m.k for m in maps],
        "value": [m.v for m in maps],
    }


def token_index(batch: Batch, task: Task, splits: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (sequence, position) of ``batch``; see `Capture`."""
    B, T = batch.input_ids.shape
    tokens = np.array(task.vocab.tokens, dtype=object)
    label_ids = batch.labels.reshape(-1).numpy()
    supervised = label_ids != IGNORE
    labels = np.where(supervised, tokens[np.where(supervised, label_ids, 0)], None)
    numbers = [None if label is None else as_number(label) for label in labels]
    counts = np.array([np.nan if n is None else n for n in numbers], dtype=float)
    real_index = batch.real_index.reshape(-1).numpy()
    return pd.DataFrame(
        {
            "sequence": np.repeat(np.arange(B), T),
            "position": np.tile(np.arange(T), B),
            "real_index": real_index,
            "token": tokens[batch.input_ids.reshape(-1).numpy()],
            "position_id": batch.position_ids.reshape(-1).double().numpy(),
            "label": labels,
            "count": counts,
            "supervised": supervised,
            "extrapolation": batch.extrapolation.reshape(-1).numpy(),
            "padding": real_index < 0,
            "split": np.repeat(np.asarray(splits if splits is not None else [""] * B), T),
        }
    )
