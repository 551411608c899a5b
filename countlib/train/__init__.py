"""Training: one loop for every family, run records, checkpoints.

The trainer (and torch) load on first use, so that `countlib.train.records`, which reading runs
needs, imports without torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainResult", "Trainer", "train"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from countlib.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'countlib.train' has no attribute {name!r}")
