"""A sweep's units of work: one run, or runs of one shape stacked into one model
(`work_units`), trained in this process (`run_one`, `run_group`), and how each run went
(`RunOutcome`). Every executor trains its units with these.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from countlib.config import RunConfig
from countlib.sweep.spec import SweepRun
from countlib.train import TrainResult, train
from countlib.train.checkpoint import CheckpointError
from countlib.train.placement import resolve_device, resolve_precision
from countlib.train.records import RunDir, RunLockedError
from countlib.train.stacked import check_stackable, train_stacked

# Outcome statuses of one run in a sweep. LOCKED never ends in a report: the sweep waits for
# the other process and reports ELSEWHERE if it made the run final, else trains the run itself.
COMPLETED, SKIPPED, DIVERGED = "completed", "skipped", "diverged"
FAILED, LOCKED, ELSEWHERE = "failed", "locked", "elsewhere"


@dataclass
class RunOutcome:
    name: str
    run_dir: Path
    #: completed, skipped (final before this sweep), diverged, failed or elsewhere (made final
    #: by another process while this sweep waited for it).
    status: str
    #: The status in the run's summary (complete or diverged), None if it has none.
    run_status: str | None = None
    #: The traceback of a failed run, or who held the lock of a locked one.
    error: str | None = None
    seconds: float = 0.0


def run_one(
    config: RunConfig,
    runs_dir: str | Path,
    device: str = "auto",
    progress: bool = False,
    threads: int | None = None,
) -> RunOutcome:
    """Train one run and say how it went; never raises for a failure of the run itself.

    ``threads``: the torch threads of the run (None: the thread policy's count).
    """
    name = config.run_name()
    run_dir = Path(runs_dir) / name
    started = time.perf_counter()
    try:
        result = train(config, runs_dir, device=device, progress=progress, threads=threads)
    except RunLockedError as err:
        return RunOutcome(name, run_dir, LOCKED, error=str(err))
    except (CheckpointError, OSError) as err:
        # a checkpoint that cannot resume, a full disk: the user's to act on, told in one line
        elapsed = time.perf_counter() - started
        return RunOutcome(name, run_dir, FAILED, error=str(err), seconds=elapsed)
    except Exception:
        elapsed = time.perf_counter() - started
        return RunOutcome(name, run_dir, FAILED, error=traceback.format_exc(), seconds=elapsed)
    return _outcome(result, time.perf_counter() - started)


def _outcome(result: TrainResult, seconds: float) -> RunOutcome:
    """How a trained (or skipped, already final) run went."""
    final = COMPLETED if result.status == "complete" else DIVERGED
    status = SKIPPED if result.skipped else final
    path = result.run_dir.path
    return RunOutcome(path.name, path, status, result.status, seconds=seconds)


def run_group(
    configs: Sequence[RunConfig],
    runs_dir: str | Path,
    device: str = "auto",
    progress: bool = False,
    threads: int | None = None,
) -> list[RunOutcome]:
    """Train runs of one shape stacked into one batched model (`countlib.train.stacked`), or
    one run alone, and say how each went; never raises for a failure of the runs themselves.

    If another process holds one of the runs, each is trained alone instead, so that the
    others still train here and the held one is waited for as usual. A failure fails every run
    of the group with its traceback; each resumes from its last checkpoint, alone or stacked.
    """
    if len(configs) == 1:
        return [run_one(configs[0], runs_dir, device, progress, threads)]
    started = time.perf_counter()
    try:
        results = train_stacked(
            configs, runs_dir, device=device, progress=progress, threads=threads
        )
    except RunLockedError:
        return [run_one(config, runs_dir, device, progress, threads) for config in configs]
    except Exception:
        error, elapsed = traceback.format_exc(), time.perf_counter() - started
        return [
            RunOutcome(c.run_name(), Path(runs_dir) / c.run_name(), FAILED, error=error,
                       seconds=elapsed)
            for c in configs
        ]  # fmt: skip
    elapsed = time.perf_counter() - started  # a stacked run's wall time is the group's
    return [_outcome(result, elapsed) for result in results]


def work_units(
    runs: Sequence[SweepRun], runs_dir: str | Path, device: str = "auto", stack: int = 1
) -> list[list[SweepRun]]:
    """The sweep's units of work, each trained by one worker (`run_group`): with ``stack`` K >
    1, runs of one shape that differ only in their seeds, K at most to a unit, in the order of
    their first run; every other run alone. Only fresh runs are stacked: a run with a
    checkpoint resumes alone (a stacked run's checkpoint resumes alone exactly), and so do the
    runs stacking cannot train (`countlib.train.stacked.check_stackable`; fp16 runs, one loss
    scale for K runs)."""
    if stack < 1:
        raise ValueError(f"runs to stack must be at least 1, got {stack}")
    units: list[list[SweepRun]] = []
    open_units: dict[str, list[SweepRun]] = {}
    for run in runs:
        shape = _stack_shape(run.config, Path(runs_dir), device) if stack > 1 else None
        unit = open_units.get(shape) if shape is not None else None
        if unit is None or len(unit) == stack:
            unit = []
            units.append(unit)
            if shape is not None:
                open_units[shape] = unit
        unit.append(run)
    return units


def _stack_shape(config: RunConfig, runs_dir: Path, device: str) -> str | None:
    """What runs stacked together must share (their resolved config but the seeds), or None
    if this run is not to be stacked (`work_units`)."""
    if RunDir(runs_dir / config.run_name()).last.exists():
        return None
    resolved = config.resolve()
    try:
        precision = resolve_precision(resolved.precision, resolve_device(device), resolved.model)
        check_stackable([config])
    except ValueError:  # not stackable, or a bad setting its trainer will report alone
        return None
    if precision == "fp16":
        return None
    return json.dumps(replace(resolved, seed=0, data_seed=0).to_dict(), sort_keys=True)


def _configs(unit: Sequence[SweepRun]) -> list[RunConfig]:
    return [run.config for run in unit]


def _failed(unit: Sequence[SweepRun], runs_dir: Path, error: str) -> list[RunOutcome]:
    return [RunOutcome(run.name, runs_dir / run.name, FAILED, error=error) for run in unit]
