"""Many runs at once: K runs of one shape (typically K seeds) trained in one process as one
batched model, each with its own initialisation, data stream, optimizer state and run record.

How it stays identical in kind to K separate runs:

- **Models.** Each run's model is built by its own `Trainer` (its seed, its frozen rows), and
  `stack_models` copies the first one, replacing each parametrised leaf (``nn.Linear``,
  ``nn.LayerNorm``, ``nn.Embedding``, ``nn.LSTM``/``GRU``/``RNN``) by a stacked one that holds the
  K runs' parameters along a new leading dimension, under the leaf's own names. The copy takes
  K*B rows, member-major, and runs the model's own forward unchanged: for the families of
  `STACKABLE` everything outside those leaves (positions, masks, RoPE, ALiBi and T5 biases, SDPA
  attention) acts row by row, so attention needs no vmap, only K folded into its batch.
  Linear layers are batched matmuls; a recurrent layer runs the native kernel (oneDNN on CPU,
  cuDNN on GPU) once per run on that run's slice of the stacked weights: measured on CPU at
  width 128, a recurrence written out with batched weights (per-step bmm and gate maths,
  custom backward) took 1.6-2x the time of 5 native calls, which already run near the core's
  peak.
- **Optimizer.** One AdamW over the stacked parameters is K AdamWs elementwise (same
  hyperparameters, same step count), once gradients are clipped per run (`clip_per_run`).
- **Data.** Each run draws its batch from its own sampler and rng, exactly as alone; the K
  batches are padded to the longest of them, which changes no supervised position (padding is
  masked out as a key and comes after every real token).
- **Records.** At every evaluation each run's slice (weights, AdamW moments, schedule) is copied
  back into its own `Trainer`, which evaluates, checkpoints and writes its records with the
  trainer's own code: the same files and fields, and a ``last.pt`` that resumes separately or
  stacked alike. Each training segment records ``stacked_runs``; a run's wall time is the
  group's.

A run that diverges is finished as alone (its summary says why) and stays in the batch,
untrained (its loss no longer enters the backward), until the others finish.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from countlib.batches import IGNORE, Batch
from countlib.config import RunConfig
from countlib.families import MODELS, get_family
from countlib.train.trainer import (
    LoopHooks,
    Trainer,
    TrainResult,
    _torch_threads,
    build_optimizer,
    train_runs,
)

#: Families whose forward, outside their parametrised leaves, acts on each batch row alone: those
#: whose catalogue entry says they stack (`countlib.families.Family.stackable`), as catalogued
#: at import; `check_stackable` also reads families registered later.
STACKABLE = tuple(name for name, family in MODELS.items() if family.stackable)


# -- stacked leaves ------------------------------------------------------------------------------


class _StackedLeaf(nn.Module):
    """The parameters of K copies of one leaf module, stacked along a new first dimension and
    registered under the leaf's own names, so that the stacked model's names are the model's."""

    def __init__(self, leaves: Sequence[nn.Module]) -> None:
        super().__init__()
        self.runs = len(leaves)
        # _parameters, not named_parameters: an absent bias is registered as None there
        for name, param in leaves[0]._parameters.items():
            if param is not None:
                stacked = torch.stack([leaf.get_parameter(name).detach() for leaf in leaves])
                param = nn.Parameter(stacked, param.requires_grad)
            self.register_parameter(name, param)

    def _by_run(self, x: torch.Tensor) -> torch.Tensor:
        """[K*B, ..., C] member-major rows as [K, B*..., C]."""
        return x.reshape(self.runs, -1, x.shape[-1])


class StackedLinear(_StackedLeaf):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.transpose(1, 2)
        if weight.device.type == "cpu":
            # CPU bmm takes a transposed right operand ~1.6x slower than a contiguous copy of
            # it (measured at width 64); cuBLAS takes the transpose as a flag
            weight = weight.contiguous()
        if self.bias is None:
            y = torch.bmm(self._by_run(x), weight)
        else:
            y = torch.baddbmm(self.bias.unsqueeze(1), self._by_run(x), weight)
        return y.view(*x.shape[:-1], y.shape[-1])


class StackedLayerNorm(_StackedLeaf):
    def __init__(self, leaves: Sequence[nn.LayerNorm]) -> None:
        super().__init__(leaves)
        self.shape = leaves[0].normalized_shape
        self.eps = leaves[0].eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.layer_norm(self._by_run(x), self.shape, eps=self.eps)
        y = torch.addcmul(self.bias.unsqueeze(1), normed, self.weight.unsqueeze(1))
        return y.view(x.shape)


class StackedEmbedding(_StackedLeaf):
    """One lookup into the K tables laid end to end: run k's ids are offset by k * rows."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.weight.shape[1]
        offsets = torch.arange(self.runs, device=ids.device).unsqueeze(1) * rows
        flat = ids.reshape(self.runs, -1) + offsets
        return F.embedding(flat, self.weight.flatten(0, 1)).view(*ids.shape, -1)


class StackedRecurrent(_StackedLeaf):
    """A recurrent stack run once per run, by the native kernel, on that run's weights."""

    def __init__(self, leaves: Sequence[nn.RNNBase]) -> None:
        super().__init__(leaves)
        # in a tuple, so that the template's own parameters are not registered here
        self._template = (copy.deepcopy(leaves[0]),)
        self.names = list(leaves[0]._flat_weights_names)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        (template,) = self._template
        per_run = [self.get_parameter(name).unbind(0) for name in self.names]
        outputs = [
            torch.func.functional_call(
                template, dict(zip(self.names, weights, strict=True)), (rows,)
            )[0]
            for rows, *weights in zip(x.chunk(self.runs), *per_run, strict=True)
        ]
        return torch.cat(outputs), None  # the final states: no family reads them


def _stacked_leaf(leaves: Sequence[nn.Module]) -> nn.Module | None:
    """The stacked form of one leaf module of K models; None for a module that is no leaf."""
    first = leaves[0]
    if isinstance(first, nn.Linear):
        return StackedLinear(leaves)
    if isinstance(first, nn.LayerNorm):
        if first.weight is None or first.bias is None or len(first.normalized_shape) > 1:
            raise ValueError("stacking needs LayerNorms over the last dimension, with an affine")
        return StackedLayerNorm(leaves)
    if isinstance(first, nn.Embedding):
        if first.padding_idx is not None or first.max_norm is not None:
            raise ValueError("stacking needs plain embeddings (no padding_idx or max_norm)")
        return StackedEmbedding(leaves)
    if isinstance(first, nn.RNNBase):
        if first.dropout and first.num_layers > 1:
            # dropout draws from the global torch generator, which K runs cannot each own
            raise ValueError("stacking needs recurrent layers without dropout")
        return StackedRecurrent(leaves)
    return None


def stack_models(models: Sequence[nn.Module]) -> nn.Module:
    """One module that computes all of ``models`` (same class and config) at once: a copy of
    the first whose leaves hold the K models' parameters stacked (module docstring). It takes
    K*B rows, run k's batch at rows k*B to (k+1)*B - 1, and returns the model's outputs so."""
    stacked = copy.deepcopy(models[0])
    names = [name for name, _ in models[0].named_modules() if name]
    for name in names:
        leaf = _stacked_leaf([model.get_submodule(name) for model in models])
        if leaf is not None:
            parent, _, attr = name.rpartition(".")
            setattr(stacked.get_submodule(parent), attr, leaf)
    leafless = [
        name
        for name, module in stacked.named_modules()
        if not isinstance(module, _StackedLeaf) and list(module.parameters(recurse=False))
    ]
    if leafless:
        raise ValueError(f"cannot stack the parameters of {', '.join(leafless)}")
    # the runs' optimizer states and weights are copied by position: the orders must agree
    if [n for n, _ in stacked.named_parameters()] != [n for n, _ in models[0].named_parameters()]:
        raise ValueError("the stacked model's parameters are not in the model's order")
    for name, buffer in models[0].named_buffers():
        if any(not torch.equal(buffer, model.get_buffer(name)) for model in models[1:]):
            raise ValueError(f"the models' buffer {name} differs: they are not of one shape")
    return stacked


def clip_per_run(params: Sequence[torch.Tensor], max_norm: float) -> None:
    """`torch.nn.utils.clip_grad_norm_` applied to each run's slice of the stacked gradients
    on its own: one run's large gradient must not shrink another's step."""
    grads = [p.grad for p in params if p.grad is not None]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads], dim=1).norm(dim=1)
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)  # torch's epsilon and clamp
    for grad in grads:
        grad.mul_(scale.view(-1, *(1,) * (grad.dim() - 1)))


def _is_moment(key: str, value: Any, shape: torch.Size) -> bool:
    """An AdamW state entry that holds one value per parameter element (not its step count)."""
    return key != "step" and torch.is_tensor(value) and value.shape == shape


def _copy(value: Any) -> Any:
    """A tensor cloned (AdamW increments its step count in place), anything else as it is."""
    return value.clone() if torch.is_tensor(value) else value


def run_optimizer_state(
    stacked: dict[str, Any], params: Sequence[torch.Tensor], run: int
) -> dict[str, Any]:
    """Run ``run``'s AdamW state dict, as its own optimizer would hold it, from the stacked
    optimizer's (``params``: the stacked parameters, in the optimizer's order)."""
    state = {
        index: {
            key: value[run].clone() if _is_moment(key, value, params[index].shape) else _copy(value)
            for key, value in entries.items()
        }
        for index, entries in stacked["state"].items()
    }
    return {"state": state, "param_groups": stacked["param_groups"]}


def stack_optimizer_states(
    runs: Sequence[dict[str, Any]], params: Sequence[torch.Tensor]
) -> dict[str, Any]:
    """The stacked optimizer's state dict from the runs' own (the inverse of
    `run_optimizer_state`; the runs share their step count and hyperparameters)."""
    first = runs[0]
    state = {
        index: {
            key: (
                torch.stack([run["state"][index][key] for run in runs])
                if _is_moment(key, value, params[index].shape[1:])
                else _copy(value)
            )
            for key, value in entries.items()
        }
        for index, entries in first["state"].items()
    }
    return {"state": state, "param_groups": first["param_groups"]}


def check_stackable(configs: Sequence[RunConfig]) -> None:
    """ValueError unless ``configs`` are distinct runs of one shape that `StackedTrainer` can
    train together: a family of `STACKABLE`, resolved configs that differ only in their seeds,
    and no L2Wrap (its extra gradient is written for one run's logits)."""
    resolved = [config.resolve() for config in configs]
    first = resolved[0]
    if not get_family(first.model).stackable:  # a family registered since import too
        stackable = [name for name, family in MODELS.items() if family.stackable]
        raise ValueError(
            f"model {first.model!r} cannot be stacked; stackable: {', '.join(stackable)}"
        )
    if first.optim.l2wrap:
        raise ValueError("runs with L2Wrap (optim.l2wrap > 0) cannot be stacked")
    for config in resolved[1:]:
        if dataclasses.replace(config, seed=first.seed, data_seed=first.data_seed) != first:
            raise ValueError(
                f"runs {first.run_name()} and {config.run_name()} differ in more than their "
                "seeds: only runs of one shape can be stacked"
            )
    names = [config.run_name() for config in configs]
    if len(set(names)) < len(names):
        raise ValueError("the same run is listed twice")


def _stacked_field(batches: Sequence[Batch], name: str, pad: float) -> torch.Tensor:
    """One field of K batches as [K, B, T], each padded at the end to the longest T."""
    tensors = [getattr(batch, name) for batch in batches]
    longest = max(t.shape[1] for t in tensors)
    out = tensors[0].new_full((len(tensors), tensors[0].shape[0], longest), pad)
    for row, tensor in zip(out, tensors, strict=True):
        row[:, : tensor.shape[1]] = tensor
    return out


def _pinned(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    return tensor.pin_memory() if pin else tensor


class StackedTrainer:
    """Trains K runs of one shape (`check_stackable`) as one batched model to their final
    statuses. Each run keeps a `Trainer` of its own for everything but the training step: set-up,
    resume, evaluation, checkpoints, divergence and records (module docstring).

    A run already final is skipped, as `Trainer` skips it; the others must resume from the same
    step (they do when they were stacked before, or all fresh).
    """

    def __init__(
        self,
        configs: Sequence[RunConfig],
        runs_dir: str | Path = "runs",
        *,
        device: str = "auto",
        progress: bool = True,
        log_every: int = 50,
        threads: int | None = None,
        allow_thread_change: bool = False,
        batches_ahead: int | None = None,
    ) -> None:
        if not configs:
            raise ValueError("no runs to stack")
        check_stackable(configs)
        self.members = [
            Trainer(
                config,
                runs_dir,
                device=device,
                progress=False,
                log_every=log_every,
                threads=threads,
                allow_thread_change=allow_thread_change,
                batches_ahead=batches_ahead,
            )
            for config in configs
        ]
        if self.members[0].placement.scaler is not None:
            raise ValueError(
                "fp16 runs cannot be stacked: loss scaling skips steps for all runs at once; "
                "use precision bf16 or fp32, or train them side by side (pool executor)"
            )
        self.progress = progress
        self.log_every = log_every

    def run_training(self) -> list[TrainResult]:
        """Train (or resume, or skip if final) every run; their results in the given order."""
        results: dict[int, TrainResult] = {}
        with ExitStack() as held:
            held.enter_context(_torch_threads(self.members[0].threads))
            held.enter_context(self.members[0].placement.current())
            todo = []
            for index, member in enumerate(self.members):
                final = member.final_result()
                if final is None:
                    held.enter_context(member.run.lock())
                    final = member.final_result()  # another process finished it meanwhile
                if final is None:
                    todo.append(index)
                else:
                    results[index] = final
            if todo:
                trained = self._train([self.members[index] for index in todo])
                results.update(zip(todo, trained, strict=True))
        return [results[index] for index in range(len(self.members))]

    # -- set-up ------------------------------------------------------------------------------

    def _train(self, members: list[Trainer]) -> list[TrainResult]:
        for member in members:
            member.stacked_runs = len(members)
            member.start()
        steps = {member.run.path.name: member.step for member in members}
        if len(set(steps.values())) > 1:
            raise ValueError(
                f"the runs resume from different steps ({steps}): train them separately"
            )
        self.build(members)
        try:
            return self._loop(members)
        finally:
            for member in members:
                member.close_batches()
                member.close_board()

    def build(self, members: list[Trainer]) -> None:
        first = members[0]
        self.device = first.placement.device
        models = [member.model for member in members]
        self.model = stack_models(models)
        self.params = list(self.model.parameters())
        self.optimizer, self.scheduler = build_optimizer(
            self.params, first.config.optim, fused=first.fused_adamw()
        )
        saved = [member.optimizer.state_dict() for member in members]
        if saved[0]["state"]:  # resumed: continue from the runs' own optimizer states
            self.optimizer.load_state_dict(stack_optimizer_states(saved, self.params))
            self.scheduler.load_state_dict(first.scheduler.state_dict())
        self.zero_frozen_rows = self._freeze_rows(first, models[0])
        #: The runs still training: a diverged run's loss leaves the backward.
        self.active = torch.ones(len(members), dtype=torch.bool, device=self.device)

    def _freeze_rows(self, member: Trainer, model: nn.Module) -> Any:
        """What `countlib.models.freeze_token_rows` does for one model, for the stacked token
        table: its frozen rows (zero in every run already) get no gradient and stay zero."""
        ids = member.task.vocab.ids(member.task.frozen_tokens)
        if not ids:
            return lambda: None
        table = model.token_embedding().weight
        name = next(name for name, p in model.named_parameters() if p is table)
        weight = self.model.get_parameter(name)
        rows = torch.tensor(sorted(set(ids)), dtype=torch.long, device=weight.device)
        weight.register_hook(lambda grad: grad.index_fill(1, rows, 0.0))

        @torch.no_grad()
        def zero_rows() -> None:
            weight.index_fill_(1, rows, 0.0)

        return zero_rows

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self, members: list[Trainer]) -> list[TrainResult]:
        self.model.train()
        return train_runs(
            members,
            lambda: self.train_step(members),
            progress=self.progress,
            log_every=self.log_every,
            hooks=_CopyBack(self, members),
        )

    def train_step(self, members: list[Trainer]) -> torch.Tensor:
        """One optimizer step of every run, each on a batch of its own stream; the runs'
        losses [K], left on the device."""
        first = members[0]
        batches = [member.next_batch() for member in members]
        fields = {
            "input_ids": first.task.vocab.pad_id,
            "labels": IGNORE,
            "attention_mask": False,
            "position_ids": 0,
        }
        cuda = self.device.type == "cuda"
        ids, labels, mask, positions = (
            # pinned, the copy to the GPU is asynchronous; from pageable memory it is not
            _pinned(_stacked_field(batches, name, pad), cuda).to(self.device, non_blocking=True)
            for name, pad in fields.items()
        )
        with first.placement.autocast():
            logits = self.model(
                ids.flatten(0, 1),
                position_ids=positions.flatten(0, 1),
                attention_mask=mask.flatten(0, 1),
            )
        logits = logits.float()
        nll = F.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="none"
        )
        # each run's mean over its supervised positions, as its own cross_entropy takes it
        losses = nll.view(len(members), -1).sum(1) / (labels != IGNORE).flatten(1).sum(1)
        # where, not a boolean index: indexing by a mask waits for the GPU to count it
        torch.where(self.active, losses, 0.0).sum().backward()
        if first.config.optim.grad_clip:
            clip_per_run(self.params, first.config.optim.grad_clip)
        self.optimizer.step()
        self.zero_frozen_rows()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return losses.detach()

    def copy_back(self, run: int, member: Trainer, state: dict[str, Any]) -> None:
        """Give ``member`` its slice of the stacked weights, AdamW state and schedule, so that
        its evaluation, checkpoint and records are those of the run trained alone."""
        model = member.model
        with torch.no_grad():
            for param, stacked in zip(model.parameters(), self.params, strict=True):
                param.copy_(stacked[run])
        member.optimizer.load_state_dict(run_optimizer_state(state, self.params, run))
        member.scheduler.load_state_dict(self.scheduler.state_dict())


class _CopyBack(LoopHooks):
    """Before a run's records are written, give its `Trainer` its slice of the stacked state:
    the schedule before a log interval (its lr), the weights and AdamW state before an
    evaluation (`StackedTrainer.copy_back`); a diverged run leaves the backward."""

    def __init__(self, stacked: StackedTrainer, members: list[Trainer]) -> None:
        self.stacked = stacked
        self.members = members
        self._state: tuple[int, dict[str, Any]] | None = None

    def before_log(self, run: int) -> None:
        self.members[run].scheduler.load_state_dict(self.stacked.scheduler.state_dict())

    def before_evaluation(self, run: int) -> None:
        step = self.members[run].step
        if self._state is None or self._state[0] != step:  # one copy per evaluation
            self._state = (step, self.stacked.optimizer.state_dict())
        self.stacked.copy_back(run, self.members[run], self._state[1])

    def stopped(self, run: int) -> None:
        self.stacked.active[run] = False


def train_stacked(
    configs: Sequence[RunConfig], runs_dir: str | Path = "runs", **kwargs: Any
) -> list[TrainResult]:
    """Train (or resume, or skip if final) the runs of ``configs``, one shape, as one batched
    model; their results in order. ``kwargs``: those of `StackedTrainer`."""
    return StackedTrainer(configs, runs_dir, **kwargs).run_training()
