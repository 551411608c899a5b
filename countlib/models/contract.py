"""What countlib asks of a model family, written down once: `ModelConfig` for its config
dataclass and `CountingModel` for its module, with the optional hooks the trainer, the records
and the checks use where a model has them. `check_contract` checks a class against it when a
family registers (`countlib.models.register`), so that a missing piece is named then, not at the
first batch.

Imports no torch at module level: the annotations only name its types.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import torch
    from torch import nn


class ModelConfig(Protocol):
    """A family's config: a dataclass whose first field is ``vocab_size`` (countlib fills it
    from the task) and whose other fields are the family's options (a spec's or ``--set``'s
    model keys). Optional, where the family reads positions:

    - a ``max_positions`` field: countlib fills it with the task's position range unless set;
    - ``default_position_scheme``: the position scheme its runs get by default;
    - ``check_positions(scheme, *, floats, needed)``: a ValueError for position ids it cannot
      take (float values, or a range below ``needed``), said before training;
    - ``LATER_OPTIONS``: options added after runs were recorded, at their neutral values (left
      out of the run's hash there, so that no run is renamed).
    """

    vocab_size: int


@runtime_checkable
class CountingModel(Protocol):
    """A model of a family: an ``nn.Module`` built as ``Model(config)`` (or ``Model(config,
    device=...)`` where the family says `Family.built_for_device`), that keeps its config.

    ``forward`` takes token ids ``[batch, time]`` and returns logits ``[batch, time, vocab]``,
    causally (the logits at t read tokens up to t only). ``position_ids`` ``[batch, time]`` are
    integer ids (float values for the scalar schemes), 0 on padding, from the run's position
    scheme (``none``: 0, 1, 2, ... from the first token). ``attention_mask`` ``[batch, time]`` is
    a bool, False at keys nobody may attend to: padding after the sequence and ``<pad>`` helper
    tokens within it (such a token is still a query, whose label is never scored). A family that
    ignores positions and masks (the recurrent ones) takes and ignores both.

    ``token_embedding()`` returns the token lookup table (``nn.Embedding``, one row per
    vocabulary id): tasks with frozen tokens zero and freeze its rows, stacking reads it.

    Optional hooks, used where present:

    - ``state_size() -> int``: floats of recurrent state per sequence (recorded in the summary);
    - ``backend_choices() -> dict[str, BackendChoice]``: the kernels each part runs (recorded;
      `countlib.models.backends.BackendChoice`);
    - ``param_groups(optim: OptimConfig) -> list[dict]``: optimizer groups (per-parameter lr
      or decay);
    - ``init_state(batch)`` and ``step(token_ids, state) -> (logits, state)``: the recurrent
      form, which the analysis and the step-versus-forward checks use.

    A model class used by import path also sets ``config_class`` (its `ModelConfig` dataclass)
    and may set ``family_defaults``, any `countlib.families.DEFAULT_KEYS` (lr, steps,
    tiny_options, stackable, ...).
    """

    config: Any

    def __call__(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor: ...

    def token_embedding(self) -> nn.Embedding: ...


class ContractError(ValueError):
    """A class that does not meet the model contract; the message names the class and what it
    lacks."""


#: The keyword arguments countlib passes to every forward.
FORWARD_KEYWORDS = ("position_ids", "attention_mask")


def check_contract(name: str, config_cls: type, model_cls: type) -> None:
    """ContractError unless ``config_cls`` is a dataclass with a ``vocab_size`` field and
    ``model_cls`` an ``nn.Module`` whose forward takes ``input_ids``, ``position_ids`` and
    ``attention_mask`` and which has ``token_embedding()``."""
    from torch import nn  # only registration needs it: the classes import torch anyway

    where = f"model {name!r}"
    problems = []
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        problems.append(f"its config {config_cls!r} is not a dataclass")
    elif "vocab_size" not in {f.name for f in dataclasses.fields(config_cls)}:
        problems.append(f"its config {config_cls.__qualname__} has no vocab_size field")
    if not (isinstance(model_cls, type) and issubclass(model_cls, nn.Module)):
        problems.append(f"its model {model_cls!r} is not a torch.nn.Module subclass")
    else:
        problems += _model_problems(model_cls)
    if problems:
        raise ContractError(
            f"{where} does not meet countlib's model contract: " + "; ".join(problems)
        )


def _model_problems(model_cls: type) -> list[str]:
    problems = []
    parameters = inspect.signature(model_cls.forward).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    missing = [key for key in FORWARD_KEYWORDS if key not in parameters and not takes_any]
    if missing:
        problems.append(
            f"{model_cls.__qualname__}.forward takes no {' or '.join(missing)} keyword "
            "(forward(input_ids, *, position_ids=None, attention_mask=None) -> logits)"
        )
    if not callable(getattr(model_cls, "token_embedding", None)):
        problems.append(f"{model_cls.__qualname__} has no token_embedding() method")
    return problems
