"""Building models of the registered families (`countlib.families` catalogues them), and
`register`, which adds a family of one's own.

Every model takes ``(input_ids, *, position_ids=None, attention_mask=None)`` and returns logits
``[batch, time, vocab]``; recurrent families ignore positions and masks. ``token_embedding()``
returns its token lookup table, whose ``weight`` has one row per vocabulary id. The whole
contract, optional hooks included: `countlib.models.contract`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from countlib.families import MODELS, Family, UnknownModelError, get_family, register
from countlib.models.backends import BackendChoice
from countlib.models.contract import ContractError, CountingModel, ModelConfig

__all__ = [
    "MODELS",
    "ContractError",
    "CountingModel",
    "Family",
    "ModelConfig",
    "UnknownModelError",
    "backend_choices",
    "backend_names",
    "backend_notes",
    "build_model",
    "freeze_token_rows",
    "get_family",
    "model_config",
    "parameter_count",
    "register",
]


def model_config(
    name: str, vocab_size: int, options: dict[str, Any], *, max_positions: int | None = None
) -> Any:
    """The family's config dataclass with ``options`` applied; unknown options are errors.

    ``max_positions`` (the task's position range) fills the option of that name where the family
    has one and the caller did not set it.
    """
    family = get_family(name)
    fields = {f.name for f in dataclasses.fields(family.config)} - {"vocab_size"}
    if max_positions is not None and "max_positions" in fields:
        options = {"max_positions": max_positions, **options}
    unknown = sorted(set(options) - fields)
    if unknown:
        valid = ", ".join(sorted(fields))
        raise ValueError(f"model {name!r} has no option(s) {', '.join(unknown)}; valid: {valid}")
    return family.config(vocab_size=vocab_size, **options)


def build_model(
    name: str, vocab_size: int, *, device: str | torch.device = "cpu", **options: Any
) -> nn.Module:
    """A new model of family ``name``, on the CPU, with the kernels that suit ``device``."""
    family = get_family(name)
    config = model_config(name, vocab_size, options)
    if family.built_for_device:
        return family.model(config, device=device)
    return family.model(config)


def backend_choices(model: nn.Module) -> dict[str, BackendChoice]:
    """The kernels ``model`` runs where its parameters are (`BackendChoice`), by part."""
    return model.backend_choices() if hasattr(model, "backend_choices") else {}


def backend_names(model: nn.Module) -> dict[str, str]:
    """The kernel names of `backend_choices`: what a run's records say it ran."""
    return {part: choice.name for part, choice in backend_choices(model).items()}


def backend_notes(model: nn.Module) -> dict[str, str]:
    """Why "auto" passed over a GPU kernel, by part, where it did."""
    return {part: choice.why for part, choice in backend_choices(model).items() if choice.why}


def freeze_token_rows(model: nn.Module, token_ids: Sequence[int]) -> Callable[[], None]:
    """Hold the token-embedding rows of ``token_ids`` at zero while ``model`` trains.

    The rows start at zero (seed-spec 7, bug 14: the original left its frozen ``<null>`` row
    uninitialised). Their gradient is masked, so that gradient clipping and the optimizer's
    moments never see them, as for the original's non-trainable row. The returned function
    re-zeroes them; called after every optimizer step, it keeps them at zero whatever the update
    rule does with a zero gradient (decoupled weight decay, momentum).
    """
    if not token_ids:
        return lambda: None
    weight = model.token_embedding().weight
    if weight.shape[0] != model.config.vocab_size:
        raise ValueError(
            f"the token embedding has {weight.shape[0]} rows for {model.config.vocab_size} "
            "tokens; freezing needs one row per token"
        )
    rows = torch.tensor(sorted(set(token_ids)), dtype=torch.long)
    # the row ids on each device the weight has been on, copied there once: a copy from the
    # host at every step would wait for the GPU twice a step
    rows_on = {rows.device: rows}

    def rows_for(tensor: torch.Tensor) -> torch.Tensor:
        if tensor.device not in rows_on:
            rows_on[tensor.device] = rows.to(tensor.device)
        return rows_on[tensor.device]

    @torch.no_grad()
    def zero_rows() -> None:
        weight.index_fill_(0, rows_for(weight), 0.0)

    zero_rows()
    weight.register_hook(lambda grad: grad.index_fill(0, rows_for(grad), 0.0))
    return zero_rows


def parameter_count(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
