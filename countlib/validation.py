"""Type checks shared by every config dataclass (run, optimiser, evaluation, model families).

Configs come from YAML, JSON and ``--set KEY=VALUE``, where ``true`` and ``2.0`` are easy to
write by mistake. Python would take ``True`` for 1 and torch would fail deep inside a model on
``2.0``, so each field must hold a value of its annotated type: a bool is not an int, a float is
not an int, and a float field holds a finite number (an int is accepted there, as YAML writes
``0`` for ``0.0``; values are not converted, so that config hashes stay as they were).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any


def check_field_types(config: Any) -> None:
    """ValueError naming the first field of dataclass ``config`` whose value has the wrong type."""
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise ValueError(f"{f.name} must be {_describe(hints[f.name])}, got {value!r}")


def check_at_least(config: Any, low: float, *names: str) -> None:
    """ValueError for the first of ``names`` (type-checked fields of ``config``) below ``low``;
    None, a family default still to come, passes."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")


#: Bounds of the counts and seeds a config may ask for, so that a typo (an extra three zeros,
#: a minus sign) is refused before anything trains: a run of 10^9 steps would take years on
#: a CPU, and seeds are unsigned 32-bit integers, what numpy and most generators take.
MAX_STEPS = 10**9
SEED_LIMIT = 2**32


def check_below(config: Any, high: int, *names: str) -> None:
    """ValueError for the first of ``names`` (type-checked fields of ``config``) at or above
    ``high``; None, a default still to come, passes."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value >= high:
            raise ValueError(f"{name} must be below {high:,}, got {value!r}")


def is_number(value: Any) -> bool:
    """A finite int or float, never a bool."""
    return _matches(value, float)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    # Resolved once per class: the annotations are strings under ``from __future__ import``.
    return typing.get_type_hints(cls)


def _matches(value: Any, hint: Any) -> bool:
    if _is_union(hint):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and _finite(value)
    origin = typing.get_origin(hint) or hint
    # Any, and containers, whose items their own config checks (betas, model options)
    return not isinstance(origin, type) or isinstance(value, origin)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range: as good as infinite
        return False


def _is_union(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union


def _describe(hint: Any) -> str:
    if _is_union(hint):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    names = {
        type(None): "null",
        bool: "true or false",
        int: "an integer",
        float: "a finite number",
        str: "a string",
    }
    if hint in names:
        return names[hint]
    origin = typing.get_origin(hint) or hint
    return f"of type {getattr(origin, '__name__', origin)}"
