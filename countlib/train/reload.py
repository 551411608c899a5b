"""Rebuild a trained model from its run directory and evaluate it on splits or data files."""

from __future__ import annotations

import re
from collections.abc import Iterator
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
from countlib.train.placement import Placement, resolve_precision, training_device
from countlib.train.records import (
    RunDir,
    RunRecordError,
    atomic_write_csv,
    evaluation_step,
    precision_name,
)
from countlib.train.trainer import task_for


@dataclass
class EvalReport:
    results: dict[str, EvalResult]
    table_path: Path


def load_run_model(
    run_dir: str | Path, checkpoint: str = "last", *, device: str | torch.device = "cpu"
) -> tuple[RunConfig, nn.Module]:
    """The run's config and its model at ``checkpoint``: final (``last``, its file's name, too),
    best_val, best_ood, or ``step-<N>``, the weights kept at the evaluation of step N
    (``eval.keep_weights``); on the CPU, with the kernels that suit ``device``."""
    run = RunDir(run_dir)
    if not run.config.exists():
        raise FileNotFoundError(f"{run.path} is not a run directory (no config.json)")
    config = RunConfig.from_dict(run.read_config())
    config_hash = _checked_hash(run, config)
    vocab_size = len(task_for(config).vocab)
    model = build_model(config.model, vocab_size, device=device, **config.model_options)
    if checkpoint in ("final", "last"):
        if not run.last.exists():
            raise FileNotFoundError(f"{run.last} does not exist")
        state = load_state(run.last, config_hash)
        try:
            model.load_state_dict(state["model"], strict=True)
        except RuntimeError as err:
            raise CheckpointError(f"{run.last} does not match this model: {err}") from None
    elif checkpoint in ("best_val", "best_ood"):
        load_model_weights(model, getattr(run, checkpoint), config_hash)
    elif (step := evaluation_step(checkpoint)) is not None:
        load_model_weights(model, _kept_evaluation(run, step), config_hash)
    else:
        raise ValueError(
            f"unknown checkpoint {checkpoint!r}; choose final, best_val, best_ood or step-N "
            "(an evaluation kept with eval.keep_weights)"
        )
    return config, model


def _kept_evaluation(run: RunDir, step: int) -> Path:
    """The weights kept at the evaluation of ``step``; else FileNotFoundError naming the steps
    the run kept."""
    path = run.evaluation_weights(step)
    if not path.exists():
        kept = run.kept_evaluations()
        where = (
            f"kept steps: {', '.join(map(str, kept))}"
            if kept
            else "it kept none (train it with eval.keep_weights, countlib train --keep-weights)"
        )
        raise FileNotFoundError(f"{run.path} kept no evaluation's weights at step {step}; {where}")
    return path


def _checked_hash(run: RunDir, config: RunConfig) -> str:
    """The hash of ``config``, once every hash the run recorded agrees with it: after an edit
    of config.json the model and task rebuilt from it are not what the checkpoints learned."""
    actual = config.config_hash()
    for source, recorded in _recorded_hashes(run):
        if recorded != actual:
            raise RunRecordError(
                f"{run.config} hashes to {actual}, but {source} records {recorded}: the config "
                "was edited or belongs to another run, so its checkpoints cannot be evaluated "
                "under it"
            )
    return actual


def _recorded_hashes(run: RunDir) -> Iterator[tuple[str, str]]:
    """(where, hash) of the run's own records of its config hash: the directory name's suffix
    (unless the directory was renamed), environment.json and summary.json where present."""
    suffix = run.path.name.rsplit("-", 1)[-1]
    if re.fullmatch(r"[0-9a-f]{12}", suffix):
        yield f"the directory name {run.path.name}", suffix
    if run.environment.exists():
        yield str(run.environment), run.read_environment()["config_hash"]
    if run.summary.exists():
        yield str(run.summary), run.read_summary()["config_hash"]


def evaluate_run(
    run_dir: str | Path,
    *,
    checkpoint: str = "last",
    data: str | Path | None = None,
    splits: list[str] | None = None,
    device: str = "auto",
    shift_samples: int = 1,
    precision: str = "recorded",
) -> EvalReport:
    """Evaluate a checkpoint; writes ``eval_<checkpoint>_<name>.csv`` per-position tables.

    ``precision``: the autocast to score under; "recorded", the default, is the one the run
    trained (and so evaluated) at, so that the numbers are those it recorded."""
    where = training_device(device)
    config, model = load_run_model(run_dir, checkpoint, device=where)
    placement = Placement(where, _scoring_precision(RunDir(run_dir), config, precision, where))
    model.to(placement.device)
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
            device=placement.device,
            autocast=placement.autocast,
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


def _scoring_precision(run: RunDir, config: RunConfig, precision: str, device: torch.device) -> str:
    """The precision to score ``run`` at on ``device`` (`evaluate_run`)."""
    if precision != "recorded":
        return resolve_precision(precision, device, config.model)
    # the last training segment's; a run that never started: what it would train at here
    recorded = run.read_environment() if run.environment.exists() else {}
    if not recorded.get("precision"):
        return resolve_precision(config.precision, device, config.model)
    trained = precision_name(recorded["precision"])
    if trained == "fp16" and device.type != "cuda":
        raise ValueError(
            f"{run.path} trained in fp16 on {recorded['device']}, and fp16 autocast needs a "
            "CUDA device: evaluate it with --device cuda for its recorded numbers, or pass "
            "--precision fp32 (or bf16) for numbers of another precision"
        )
    return trained


def _example_sets(task, config: RunConfig, path, splits):
    if path is not None:
        return {Path(path).stem: data.read_checked(path, task)}
    names = splits or list(task.splits)
    return {name: task.split(name, seed=config.eval.seed) for name in names}
