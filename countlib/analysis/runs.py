"""A run opened for analysis: its model at one checkpoint, its task, and batches of its splits
made exactly as evaluation makes them (same collator, same position-id draw)."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from countlib.batches import Batch, Collator
from countlib.config import RunConfig
from countlib.results import ANALYSED_CHECKPOINT, CHECKPOINT_RULES
from countlib.tasks import Example, Task
from countlib.train.records import RETRAIN_HINT, RunDir, RunRecordError, evaluation_step

#: The checkpoints an analysis can read, as the tables name them; "final" is ``last.pt``. A run
#: trained with ``eval.keep_weights`` also has ``step-<N>``, the weights of each evaluation.
CHECKPOINTS = CHECKPOINT_RULES
_RELOAD_NAMES = {"best_ood": "best_ood", "best_val": "best_val", "final": "last"}
#: The splits a batch mixes by default: in-distribution lengths and extrapolation lengths.
DEFAULT_SPLITS = ("val", "ood")


@dataclass
class RunBatch:
    """A collated batch and, per sequence, the split it was drawn from."""

    batch: Batch
    splits: list[str]


@dataclass
class AnalysisRun:
    """A trained model (in eval mode) with the task and collator it was evaluated with."""

    path: Path
    checkpoint: str
    config: RunConfig
    model: nn.Module
    task: Task
    collator: Collator
    summary: dict[str, Any]

    @property
    def family(self) -> str:
        return self.config.model

    @property
    def label(self) -> str:
        """A short readable name: task, family, PE and depth."""
        options = self.config.model_options
        parts = [self.config.task, self.family]
        if "pe" in options:
            parts.append(str(options["pe"]))
        if "layers" in options:
            parts.append(f"{options['layers']}L")
        return " ".join(parts)

    @property
    def point(self) -> dict[str, Any]:
        """The summary's record of this checkpoint: step, IND and OOD accuracy; for a kept
        evaluation (``step-<N>``), those of eval.csv at that step, in the task's metrics."""
        step = evaluation_step(self.checkpoint)
        if step is None:
            return self.summary.get(self.checkpoint) or {}
        # a run still training has no summary yet
        metrics = self.summary.get("metrics") or self.task.recorded_metrics
        return evaluation_point(RunDir(self.path), step, metrics)

    def batch(
        self, splits: tuple[str, ...] = DEFAULT_SPLITS, per_split: int = 64, seed: int | None = None
    ) -> RunBatch:
        """``per_split`` examples of each split, spread evenly over it (splits are ordered by
        length, so the batch spans every length), with the position ids of the first shift draw
        of evaluation (``eval/{seed}/0``)."""
        if per_split < 1:
            raise ValueError(f"per_split must be at least 1, got {per_split}")
        seed = self.config.eval.seed if seed is None else seed
        examples: list[Example] = []
        names: list[str] = []
        for split in splits:
            chosen = spread(self.task.split(split, seed=seed), per_split)
            examples += chosen
            names += [split] * len(chosen)
        batch = self.collator(examples, random.Random(f"eval/{seed}/0"))
        return RunBatch(batch, names)


def spread(items: list, n: int) -> list:
    """At most ``n`` items, evenly spaced over ``items``."""
    if len(items) <= n:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, n).round().astype(int)]


def evaluation_point(run: RunDir, step: int, metrics: dict[str, str]) -> dict[str, Any]:
    """Step, IND and OOD of the evaluation at ``step`` as eval.csv records them; ``metrics``
    names the IND and OOD metrics as summary.json does (``{"ind": "val/acc", ...}``)."""
    wanted = {tuple(name.split("/", 1)): key for key, name in metrics.items()}
    point: dict[str, Any] = {"step": step, "ind": None, "ood": None}
    with open(run.eval_log, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = wanted.get((row["split"], row["metric"]))
            if key is not None and int(row["step"]) == step:
                point[key] = float(row["value"]) if row["value"] else None
    return point


def load_run(run_dir: str | Path, checkpoint: str = ANALYSED_CHECKPOINT) -> AnalysisRun:
    """The run at ``run_dir`` with the weights of ``checkpoint`` (one of `CHECKPOINTS`, or
    ``step-<N>``, an evaluation the run kept with ``eval.keep_weights``)."""
    from countlib.train.reload import load_run_model
    from countlib.train.trainer import task_for

    if checkpoint not in CHECKPOINTS and evaluation_step(checkpoint) is None:
        raise ValueError(
            f"unknown checkpoint {checkpoint!r}; choose from {', '.join(CHECKPOINTS)} or step-N "
            "(an evaluation kept with eval.keep_weights)"
        )
    run = RunDir(run_dir)
    if not run.config.exists():
        raise FileNotFoundError(
            f"{run.path} is not a run directory (no config.json); give a directory that "
            "`countlib train` or a sweep wrote"
        )
    _verify(run, checkpoint)
    config, model = load_run_model(run.path, _RELOAD_NAMES.get(checkpoint, checkpoint))
    model.eval()
    task = task_for(config)
    collator = Collator(
        task, config.position_scheme, max_positions=config.model_options.get("max_positions")
    )
    summary = run.read_summary() if run.summary.exists() else {}
    return AnalysisRun(run.path, checkpoint, config, model, task, collator, summary)


def _verify(run: RunDir, checkpoint: str) -> None:
    """`RunDir.verify` of a run about to be analysed at ``checkpoint``, hashing the weights it
    loads; RunRecordError naming the damaged file and how to retrain the run."""
    step = evaluation_step(checkpoint)
    name = _RELOAD_NAMES.get(checkpoint, checkpoint)
    loaded = run.evaluation_weights(step) if step is not None else getattr(run, name)
    try:
        run.verify(weights=[loaded])
    except RunRecordError as err:
        raise RunRecordError(f"{err}; {RETRAIN_HINT}") from None


def kept_checkpoints(run_dir: str | Path) -> list[tuple[str, int]]:
    """(checkpoint, step) of every checkpoint the run keeps, by step: the named ones and each
    kept evaluation (``step-<N>``, with ``eval.keep_weights``). A checkpoint saved at the step
    of an earlier one is the same weights and left out; the named one is preferred."""
    run = RunDir(run_dir)
    summary = run.read_summary()
    seen: dict[int, str] = {}
    for name in CHECKPOINTS:
        point = summary.get(name) or {}
        if point.get("step") is not None:
            seen.setdefault(int(point["step"]), name)
    for step in run.kept_evaluations():
        seen.setdefault(step, f"step-{step}")
    return [(name, step) for step, name in sorted(seen.items())]
