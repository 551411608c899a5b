"""DeltaNet and Gated DeltaNet language models in plain PyTorch.

DeltaNet (Yang et al., NeurIPS 2024, arXiv 2406.06484; the delta rule as a fast-weight update is
Schlag et al. 2021's) is linear attention whose per-head state S [d_v, d_k] is corrected towards
each new value instead of only added to:

    S_t = S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T,    o_t = S_t q_t,

with L2-normalised queries and keys and beta_t = sigmoid(w_beta . x_t). Gated DeltaNet (Yang et
al., ICLR 2025, arXiv 2412.06464) also multiplies S_{t-1} by a data-dependent decay alpha_t in
(0, 1), parametrised as Mamba-2's: alpha_t = exp(-exp(A_log) * softplus(w_alpha . x_t + dt_bias)).

With |k| = 1 the transition I - beta k k^T has eigenvalue 1 - beta along k and 1 elsewhere, so
beta in [0, 1] keeps every eigenvalue in [0, 1]. ``negative_eigenvalues`` takes beta = 2 sigmoid
in [0, 2] instead (Grazzi et al., ICLR 2025, arXiv 2411.12537), which puts that eigenvalue in
[-1, 1]: the paper shows linear RNNs need negative eigenvalues to track parity or count modulo m.

Forms: the model's forward runs the chunkwise WY/UT-transform form (Yang et al. 2024, section 3;
gated: Yang et al. 2025, section 3.3), ``step`` the recurrence token by token; tests hold them
equal. Backends (``backend``): ``"countlib"`` (these forms), ``"fla"`` (flash-linear-attention's
Triton chunk kernels, CUDA only), ``"auto"`` (fla on CUDA where it imports, else countlib).

The language model around the mixers (`MixerLM`: embedding, pre-RMSNorm residual blocks of mixer
and SwiGLU MLP, final RMSNorm, head tied to the embedding) is shared with the Mamba-2, minGRU /
minLSTM and sLSTM families.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from countlib.models.backends import (
    FLA_INSTALL,
    BackendChoice,
    BackendUnavailableError,
    resolve_fla_backend,
)
from countlib.models.mamba import RMSNorm
from countlib.validation import check_field_types

BACKENDS = ("auto", "countlib", "fla")
#: Gated DeltaNet's decay rates exp(A_log) start uniform in this range, as Mamba-2's A (mamba_ssm
#: ``Mamba2(A_init_range=(1, 16))``).
A_INIT_RANGE = (1.0, 16.0)
#: Mamba-2's timestep initialisation (mamba_ssm ``Mamba2`` defaults), also Gated DeltaNet's.
DT_MIN, DT_MAX, DT_INIT_FLOOR = 0.001, 0.1, 1e-4


@dataclass
class DeltaNetConfig:
    vocab_size: int
    layers: int = 2
    hidden: int = 128
    heads: int = 4  # d_k = d_v = hidden / heads
    conv_size: int = 4  # short causal conv on q, k, v (both papers use 4); 0 = none
    d_ffn: int | None = None  # None = SwiGLU width ~ 8/3 hidden (see ffn_width); 0 = no MLP
    gated: bool = False
    negative_eigenvalues: bool = False
    chunk_size: int = 16
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown delta-rule backend {self.backend!r}; choose from {BACKENDS}")
        check_sizes(self, "vocab_size", "layers", "hidden", "heads", "chunk_size")
        if self.conv_size < 0:
            raise ValueError(f"conv_size must be >= 0 (0 = no conv), got {self.conv_size}")
        if self.d_ffn is not None and self.d_ffn < 0:
            raise ValueError(f"d_ffn must be >= 0 (0 = no MLP), got {self.d_ffn}")
        if self.hidden % self.heads:
            raise ValueError(f"heads {self.heads} must divide hidden {self.hidden}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass
class GatedDeltaNetConfig(DeltaNetConfig):
    gated: bool = True


def check_sizes(config: Any, *names: str) -> None:
    """ValueError naming the fields of ``config`` among ``names`` that are below 1."""
    bad = [name for name in names if getattr(config, name) < 1]
    if bad:
        raise ValueError(f"{', '.join(bad)} must be >= 1")


def ffn_width(hidden: int, d_ffn: int | None) -> int:
    """The MLP width: ``d_ffn``, else 8/3 hidden rounded up to a multiple of 8.

    8/3 gives a SwiGLU MLP the parameters of a 4x GELU MLP (Shazeer 2020, "GLU Variants Improve
    Transformer"); fla's DeltaNet models use the same ratio.
    """
    if d_ffn is not None:
        return d_ffn
    return 8 * math.ceil(8 * hidden / 3 / 8)


# -- shared pieces of the new recurrent families ------------------------------------------------


def segment_products(a: Tensor) -> Tensor:
    """P[..., r, s] = a[..., s+1] * ... * a[..., r] for s <= r (1 on the diagonal), 0 above it.

    The transition products of a chunk, from a cumulative product over a masked copy of ``a``
    (last dim), never as a ratio of running products: such a ratio divides by products that
    underflow, and a transition may be 0 or negative (``negative_eigenvalues``), where log-space
    sums do not apply.
    """
    size = a.shape[-1]
    below = torch.ones(size, size, dtype=torch.bool, device=a.device).tril(-1)
    factors = torch.where(below, a.unsqueeze(-1), 1.0)  # [..., r, s]: a[r] where r > s
    return factors.cumprod(-2).masked_fill(below.T, 0.0)


def to_chunks(x: Tensor, chunk: int, fill: float = 0.0) -> Tensor:
    """[B, H, T, ...] -> [B, H, chunks, chunk, ...], padded at the end of time with ``fill``.

    Padding only follows the real tokens, so it changes none of their outputs.
    """
    steps = x.shape[2]
    pad = -steps % chunk
    if pad:
        x = torch.cat([x, x.new_full((*x.shape[:2], pad, *x.shape[3:]), fill)], dim=2)
    return x.reshape(*x.shape[:2], -1, chunk, *x.shape[3:])


def full_precision(fn: Callable[..., Tensor], *tensors: Tensor | None, **options: Any) -> Tensor:
    """``fn(*tensors)`` in fp32 at least (None passes as None), autocast off, cast back to the
    first tensor's dtype.

    Recurrences accumulate over many tokens, which bf16 rounds away (the fla and mamba_ssm
    kernels also accumulate their states in fp32).
    """
    dtype = torch.promote_types(tensors[0].dtype, torch.float32)
    with torch.autocast(tensors[0].device.type, enabled=False):
        out = fn(*(None if t is None else t.to(dtype) for t in tensors), **options)
    return out.to(tensors[0].dtype)


class ShortConv(nn.Conv1d):
    """Depthwise causal convolution over time, [B, T, C] -> [B, T, C], with its one-token step.

    The short convolution of H3, Mamba, Mamba-2 and DeltaNet: each output mixes a channel's last
    ``kernel_size`` inputs. Its recurrent state is the previous ``kernel_size - 1`` inputs.
    """

    def __init__(self, channels: int, size: int, bias: bool) -> None:
        super().__init__(channels, channels, size, groups=channels, padding=size - 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2))[..., : x.shape[1]].transpose(1, 2)

    def step(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, C], state [B, C, size - 1] -> (output [B, C], next state)."""
        window = torch.cat([state, x.unsqueeze(-1)], dim=-1)
        y = (window * self.weight.squeeze(1)).sum(-1)
        if self.bias is not None:
            y = y + self.bias
        return y, window[..., 1:]

    def init_state(self, batch: int) -> Tensor:
        return self.weight.new_zeros(batch, self.in_channels, self.kernel_size[0] - 1)


class GatedMLP(nn.Module):
    """SwiGLU MLP: down(silu(gate(x)) * up(x)) (Shazeer 2020)."""

    def __init__(self, hidden: int, width: int) -> None:
        super().__init__()
        self.gate = nn.Linear(hidden, width, bias=False)
        self.up = nn.Linear(hidden, width, bias=False)
        self.down = nn.Linear(width, hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Mixer(Protocol):
    """What `MixerLM` needs of a sequence mixer (every state tensor has the batch first)."""

    def __call__(self, x: Tensor) -> Tensor: ...  # [B, T, hidden] -> [B, T, hidden]

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]: ...

    def init_state(self, batch: int) -> tuple[Tensor, ...]: ...

    def state_floats(self) -> int: ...  # floats carried per sequence


class Block(nn.Module):
    """x + mixer(RMSNorm(x)), then x + MLP(RMSNorm(x)) where the block has an MLP."""

    def __init__(self, hidden: int, mixer: nn.Module, d_ffn: int) -> None:
        super().__init__()
        self.norm = RMSNorm(hidden)
        self.mixer = mixer
        self.mlp_norm = RMSNorm(hidden) if d_ffn else None
        self.mlp = GatedMLP(hidden, d_ffn) if d_ffn else None

    def forward(self, x: Tensor) -> Tensor:
        return self._mlp(x + self.mixer(self.norm(x)))

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        y, state = self.mixer.step(self.norm(x), state)
        return self._mlp(x + y), state

    def _mlp(self, x: Tensor) -> Tensor:
        return x if self.mlp is None else x + self.mlp(self.mlp_norm(x))


class MixerLM(nn.Module):
    """Embedding, `Block` per mixer (each a `Mixer`), final RMSNorm, head tied to the embedding.

    The layout of Mamba-2's and fla's language models. Both forms are here: ``forward`` over a
    whole sequence (each mixer's parallel or chunked form) and ``step`` over one token.
    """

    def __init__(self, config: Any, mixers: Sequence[nn.Module], d_ffn: int) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden)
        self.layers = nn.ModuleList(Block(config.hidden, mixer, d_ffn) for mixer in mixers)
        self.norm_f = RMSNorm(config.hidden)
        self.head = nn.Linear(config.hidden, config.vocab_size, bias=False)
        self.head.weight = self.embedding.weight
        # N(0, 0.02) as mamba_ssm's and fla's initialisers; linear maps keep PyTorch's default.
        nn.init.normal_(self.embedding.weight, std=0.02)

    def forward(
        self,
        input_ids: Tensor,
        *,
        position_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        x = self.embedding(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(self.norm_f(x))

    def init_state(self, batch_size: int) -> list[tuple[Tensor, ...]]:
        """The zero state of every layer, for ``step``."""
        return [layer.mixer.init_state(batch_size) for layer in self.layers]

    def step(
        self, input_ids: Tensor, state: list[tuple[Tensor, ...]]
    ) -> tuple[Tensor, list[tuple[Tensor, ...]]]:
        """Recurrent form: logits [B, vocab] for tokens [B], and the state after them."""
        x, new_state = self.embedding(input_ids), []
        for layer, layer_state in zip(self.layers, state, strict=True):
            x, layer_state = layer.step(x, layer_state)
            new_state.append(layer_state)
        return self.head(self.norm_f(x)), new_state

    def token_embedding(self) -> nn.Embedding:
        """The token lookup table, one row per vocabulary id (the trainer freezes rows of it).

        The output head is tied to it, so a frozen zero row also fixes that token's logit at 0.
        """
        return self.embedding

    def state_size(self) -> int:
        """Floats carried from one token to the next, over layers (the tensors of ``step``)."""
        return sum(layer.mixer.state_floats() for layer in self.layers)


# -- the delta rule -----------------------------------------------------------------------------
# q, k [B, H, T, K] (L2-normalised), v [B, H, T, V], beta [B, H, T], log_alpha [B, H, T] or None
# (DeltaNet). The state X = S^T is [B, H, K, V], so that o_t = X_t^T q_t.


def delta_rule_step(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_alpha: Tensor | None, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One token ([B, H, K] / [B, H, V] / [B, H]): X <- a X + beta k (v - k^T a X)^T, o = X^T q.

    The delta rule's "delta": v minus what the decayed state already recalls for k.
    """
    if log_alpha is not None:
        state = state * log_alpha.exp()[..., None, None]
    recalled = torch.einsum("bhk,bhkv->bhv", k, state)
    state = state + (beta[..., None] * k).unsqueeze(-1) * (v - recalled).unsqueeze(-2)
    return torch.einsum("bhk,bhkv->bhv", q, state), state


def delta_rule_recurrent(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_alpha: Tensor | None
) -> Tensor:
    """The delta rule token by token from a zero state (the reference form): [B, H, T, V]."""
    state = q.new_zeros(*k.shape[:2], k.shape[-1], v.shape[-1])
    outputs = []
    for t in range(q.shape[2]):
        gate = None if log_alpha is None else log_alpha[:, :, t]
        o, state = delta_rule_step(q[:, :, t], k[:, :, t], v[:, :, t], beta[:, :, t], gate, state)
        outputs.append(o)
    return torch.stack(outputs, dim=2)


def delta_rule_chunked(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_alpha: Tensor | None, chunk_size: int
) -> Tensor:
    """The (gated) delta rule in chunks: a WY representation inside each chunk, the state between.

    Inside a chunk that starts from state X_0, with G[r, i] = alpha_{i+1} ... alpha_r and
    g_r = alpha_1 ... alpha_r (all 1 for DeltaNet), the state after token r is

        X_r = g_r X_0 + sum_{i <= r} G[r, i] k_i (u_i - w_i^T X_0),

    where w and u solve the unit lower-triangular system (I + L) [w, u] = [beta g k, beta v],
    L[r, i] = beta_r G[r, i] k_r . k_i for i < r (the UT transform; Yang et al. 2024, eq. 8-11,
    with the decays of Yang et al. 2025, section 3.3). Every chunk's w and u come from one
    batched triangular solve; only the state passes from chunk to chunk.
    """
    steps = q.shape[2]
    chunk = min(chunk_size, steps)
    q, k, v = (to_chunks(x, chunk) for x in (q, k, v))  # [B, H, N, C, *]
    beta = to_chunks(beta, chunk)  # padding with beta = 0, k = 0 leaves the state alone
    if log_alpha is None:
        decay = torch.ones(chunk, chunk, dtype=q.dtype, device=q.device).tril()
        start_decay = torch.ones_like(beta)
    else:
        alpha = to_chunks(log_alpha, chunk).exp()  # padded with alpha = 1
        decay, start_decay = segment_products(alpha), alpha.cumprod(-1)

    lower = (beta.unsqueeze(-1) * decay * (k @ k.transpose(-1, -2))).tril(-1)
    system = lower + torch.eye(chunk, dtype=q.dtype, device=q.device)
    rhs = torch.cat([(beta * start_decay).unsqueeze(-1) * k, beta.unsqueeze(-1) * v], dim=-1)
    solved = torch.linalg.solve_triangular(system, rhs, upper=False, unitriangular=True)
    w, u = solved.split([k.shape[-1], v.shape[-1]], dim=-1)

    scores = (q @ k.transpose(-1, -2)) * decay  # [B, H, N, C, C], causal within the chunk
    to_end = k * decay[..., -1, :].unsqueeze(-1)  # keys decayed to the chunk's end
    state = q.new_zeros(*q.shape[:2], k.shape[-1], v.shape[-1])
    outputs = []
    for n in range(q.shape[2]):
        new_v = u[:, :, n] - w[:, :, n] @ state
        carried = start_decay[:, :, n].unsqueeze(-1) * (q[:, :, n] @ state)
        outputs.append(carried + scores[:, :, n] @ new_v)
        state = start_decay[:, :, n, -1, None, None] * state
        state = state + to_end[:, :, n].transpose(-1, -2) @ new_v
    return torch.stack(outputs, dim=2).flatten(2, 3)[:, :, :steps]


@functools.cache
def _import_fla() -> tuple[Any, Any, str]:
    """flash-linear-attention's chunked delta-rule kernels, or Nones and why (tried once)."""
    try:
        from fla.ops.delta_rule import chunk_delta_rule
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    except ImportError as error:
        return None, None, str(error)
    return chunk_delta_rule, chunk_gated_delta_rule, ""


def resolve_backend(config: DeltaNetConfig, device: torch.device) -> BackendChoice:
    """Gated DeltaNet's kernel takes a gate: see `fla_gated_backward_fault`."""
    return resolve_fla_backend(
        "delta-rule", config.backend, device, lambda: _import_fla()[2], gated=config.gated
    )


def _fla_delta_rule(
    q: Tensor, k: Tensor, v: Tensor, beta: Tensor, log_alpha: Tensor | None
) -> Tensor:
    """fla's chunk kernels on [B, T, H, *] inputs (they refuse fp32: fp32 inputs go as bf16)."""
    plain, gated, error = _import_fla()
    if plain is None:
        raise BackendUnavailableError(
            f"delta-rule backend 'fla' cannot load ({error}); install it with: {FLA_INSTALL}"
        )
    dtype = q.dtype if q.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    q, k, v, beta = (x.to(dtype) for x in (q, k, v, beta))
    # scale 1: the queries are L2-normalised here, as in the countlib forms.
    if log_alpha is None:
        o, _ = plain(q, k, v, beta, scale=1.0)
    else:
        o, _ = gated(q, k, v, log_alpha.float(), beta, scale=1.0)
    return o


# -- the mixer ----------------------------------------------------------------------------------


def inverse_softplus(x: Tensor) -> Tensor:
    return x + torch.log(-torch.expm1(-x))


def init_dt_bias(size: int) -> Tensor:
    """Bias b with softplus(b) log-uniform in [DT_MIN, DT_MAX] (Mamba's and Mamba-2's dt init)."""
    log_dt = torch.empty(size).uniform_(math.log(DT_MIN), math.log(DT_MAX))
    return inverse_softplus(log_dt.exp().clamp(min=DT_INIT_FLOOR))


class DeltaNetMixer(nn.Module):
    """q, k, v projections (short conv, SiLU), L2-normalised q and k, the delta rule, per-head
    RMSNorm (Gated DeltaNet: times a SiLU output gate), output projection."""

    def __init__(self, config: DeltaNetConfig) -> None:
        super().__init__()
        self.config = config
        hidden, heads = config.hidden, config.heads
        self.q_proj, self.k_proj, self.v_proj = (
            nn.Linear(hidden, hidden, bias=False) for _ in range(3)
        )
        self.b_proj = nn.Linear(hidden, heads, bias=False)
        # One conv each for q, k and v, or none.
        convs = 3 if config.conv_size else 0
        self.convs = nn.ModuleList(
            ShortConv(hidden, config.conv_size, bias=False) for _ in range(convs)
        )
        if config.gated:
            self.a_proj = nn.Linear(hidden, heads, bias=False)
            low, high = A_INIT_RANGE
            self.A_log = nn.Parameter(torch.empty(heads).uniform_(low, high).log())
            self.dt_bias = nn.Parameter(init_dt_bias(heads))
            self.g_proj = nn.Linear(hidden, hidden, bias=False)
        self.o_norm = RMSNorm(config.head_dim)
        self.o_proj = nn.Linear(hidden, hidden, bias=False)

    def gates(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """beta [..., H] in [0, 1] (in [0, 2] with negative eigenvalues) and log alpha or None."""
        beta = torch.sigmoid(self.b_proj(x))
        if self.config.negative_eigenvalues:
            beta = 2 * beta
        if not self.config.gated:
            return beta, None
        return beta, -self.A_log.exp() * F.softplus(self.a_proj(x) + self.dt_bias)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.config.heads, self.config.head_dim))

    def _qkv(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """SiLU features, split into heads; L2-normalised q and k (DeltaNet's best feature map)."""
        q, k, v = (self._heads(F.silu(x)) for x in (q, k, v))
        return F.normalize(q, dim=-1, eps=1e-6), F.normalize(k, dim=-1, eps=1e-6), v

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        o = self.o_norm(o)
        if self.config.gated:
            o = o * F.silu(self._heads(self.g_proj(x)))
        return self.o_proj(o.flatten(-2))

    def forward(self, x: Tensor) -> Tensor:
        q, k, v = (proj(x) for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.convs:
            q, k, v = (conv(t) for conv, t in zip(self.convs, (q, k, v), strict=True))
        q, k, v = self._qkv(q, k, v)  # [B, T, H, *]
        beta, log_alpha = self.gates(x)
        if resolve_backend(self.config, x.device).name == "fla-chunk":
            o = _fla_delta_rule(q, k, v, beta, log_alpha).to(x.dtype)
        else:
            inputs = (q, k, v, beta, log_alpha)
            heads_first = [None if t is None else t.transpose(1, 2) for t in inputs]
            chunk_size = self.config.chunk_size
            o = full_precision(delta_rule_chunked, *heads_first, chunk_size=chunk_size)
            o = o.transpose(1, 2)
        return self._output(o, x)

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        *conv_states, memory = state
        q, k, v = (proj(x) for proj in (self.q_proj, self.k_proj, self.v_proj))
        if self.convs:
            inputs = zip(self.convs, (q, k, v), conv_states, strict=True)
            stepped = [conv.step(t, s) for conv, t, s in inputs]
            (q, k, v), conv_states = zip(*stepped, strict=True)
        q, k, v = self._qkv(q, k, v)
        beta, log_alpha = self.gates(x)
        o, memory = delta_rule_step(q, k, v, beta, log_alpha, memory)
        return self._output(o, x), (*conv_states, memory)

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        c = self.config
        memory = self.o_proj.weight.new_zeros(batch, c.heads, c.head_dim, c.head_dim)
        return (*(conv.init_state(batch) for conv in self.convs), memory)

    def state_floats(self) -> int:
        """The heads' K x V states plus the last conv_size - 1 inputs of q, k and v."""
        c = self.config
        return c.heads * c.head_dim**2 + 3 * c.hidden * max(c.conv_size - 1, 0)


class DeltaNetModel(MixerLM):
    """DeltaNet (``gated`` False) or Gated DeltaNet language model."""

    def __init__(self, config: DeltaNetConfig) -> None:
        mixers = [DeltaNetMixer(config) for _ in range(config.layers)]
        super().__init__(config, mixers, ffn_width(config.hidden, config.d_ffn))

    def backend_choices(self) -> dict[str, BackendChoice]:
        return {"delta_rule": resolve_backend(self.config, self.head.weight.device)}
