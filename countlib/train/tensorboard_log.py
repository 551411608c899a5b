"""TensorBoard event files of a run (``eval.tensorboard``), beside its CSV records.

An output option like the progress bar: the scalars are the numbers train.csv and eval.csv
record, written as they happen, so ``tensorboard --logdir runs/`` shows runs while they train.
Turning it on changes neither the run's name (config hash) nor its numbers.

Tags: ``train/loss`` (mean of each log interval) and ``train/lr``; ``accuracy/ind`` and
``accuracy/ood``, the task's headline metrics (what the tables report); and every accuracy of
every split as ``<split>/<metric>`` (``val/acc``, ``ood/extrapolation_acc``, ...).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Where a missing TensorBoard comes from.
INSTALL_HINT = 'pip install "countlib[tensorboard]" (or pip install tensorboard)'


class TensorBoardUnavailableError(ImportError):
    """TensorBoard files were asked for where the tensorboard package is not installed."""


def require_tensorboard() -> None:
    """Refuse at once, naming the extra, when the tensorboard package is missing: before a run
    trains, not at its first record."""
    if importlib.util.find_spec("tensorboard") is None:
        raise TensorBoardUnavailableError(
            f"TensorBoard files (--tensorboard, spec key tensorboard: true) need the "
            f"tensorboard package: {INSTALL_HINT}"
        )


class RunBoard:
    """The event files of one run, under ``path`` (`RunDir.tensorboard`)."""

    def __init__(self, path: Path, *, resumed_at: int | None = None) -> None:
        """``resumed_at``: the step of the checkpoint a resumed run continues from. Events a
        killed segment wrote after it are then purged, as train.csv's rows are, so that no step
        shows twice; those of the checkpoint's step stay, recorded before it was saved."""
        require_tensorboard()
        from torch.utils.tensorboard import SummaryWriter

        purge_step = None if resumed_at is None else resumed_at + 1
        self.writer = SummaryWriter(str(path), purge_step=purge_step)

    def log_interval(self, step: int, loss: float, lr: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/lr", lr, step)
        # each interval on disk as it ends, as train.csv's row is: a killed run keeps it
        self.writer.flush()

    def evaluation(
        self,
        step: int,
        metrics: Mapping[str, Mapping[str, Any]],
        headline: Mapping[str, str],
    ) -> None:
        """``metrics``: split -> metric -> value, as eval.csv has them; ``headline``:
        "ind"/"ood" -> "split/metric" (`countlib.tasks.Task.recorded_metrics`)."""
        for split, values in metrics.items():
            for metric, value in values.items():
                # accuracies only: counts are ints, an accuracy with no position to score is
                # None, and legacy_unseen_len_acc is -1.0 there
                if isinstance(value, float) and value >= 0:
                    self.writer.add_scalar(f"{split}/{metric}", value, step)
        for name, recorded in headline.items():
            split, metric = recorded.split("/")
            value = metrics.get(split, {}).get(metric)
            if value is not None:
                self.writer.add_scalar(f"accuracy/{name}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
