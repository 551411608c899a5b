"""Rebuild a trained model from its run directory and evaluate it on splits or data files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from countlib import data
from countlib.batches import Collator
from countlib.config import RunConfig
from countlib.metrics import EvalResult
from countlib.models import build_model
from countlib.train.checkpoint import CheckpointError, load_model_weights, load_state
from countlib.train.evaluate import evaluate
from countlib.train.records import RunDir, atomic_write_csv
from countlib.train.trainer import resolve_device, task_for


@dataclass
class EvalReport:
    results: dict[str, EvalResult]
    table_path: Path


def load_run_model(run_dir: str | Path, checkpoint: str = "last") -> tuple[RunConfig, nn.Module]:
    run = RunDir(run_dir)
    if not run.config.exists():
        raise FileNotFoundError(f"{run.path} is not a run directory (no config.json)")
    config = RunConfig.load(run.config)
    model = build_model(config.model, len(task_for(config).vocab), **config.model_options)
    if checkpoint == "last":
        if not run.last.exists():
            raise FileNotFoundError(f"{run.last} does not exist")
        state = load_state(run.last, config.config_hash())
        try:
            model.load_state_dict(state["model"], strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{run.last} does not match this model: {err}") from None
    elif checkpoint in ("best_val", "best_ood"):
        load_model_weights(model, getattr(run, checkpoint))
    else:
        raise ValueError(f"unknown checkpoint {checkpoint!r}; choose last, best_val or best_ood")
    return config, model


def evaluate_run(
    run_dir: str | Path,
    *,
    checkpoint: str = "last",
    data: str | Path | None = None,
    splits: list[str] | None = None,
    device: str = "auto",
    shift_samples: int = 1,
) -> EvalReport:
    """Evaluate a checkpoint; writes ``eval_<checkpoint>_<name>.csv`` per-position tables."""
    config, model = load_run_model(run_dir, checkpoint)
    device = resolve_device(device)
    model.to(device)
    task = task_for(config)
    sets = _example_sets(task, config, data, splits)
    collator = Collator(
        task, config.position_scheme, max_positions=config.model_options.get("max_positions")
    )
    results = {
        name: evaluate(
            model,
            task,
            examples,
            collator,
            batch_size=config.eval.batch_size,
            shift_samples=shift_samples,
            seed=config.eval.seed,
            device=torch.device(device),
        )
        for name, examples in sets.items()
    }
    label = Path(data).stem if data else "splits"
    table = Path(run_dir) / f"eval_{checkpoint}_{label}.csv"
    rows = [
        [name, position, correct, total]
        for name, result in results.items()
        for position, (correct, total) in result.per_position.items()
    ]
    atomic_write_csv(table, ["split", "position", "correct", "total"], rows)
    return EvalReport(results, table)


def _example_sets(task, config: RunConfig, path, splits):
    if path is not None:
        return {Path(path).stem: data.read_checked(path, task)}
    names = splits or list(task.splits)
    return {name: task.split(name, seed=config.eval.seed) for name in names}
