"""Running a sweep (`run_sweep`): what is final already is skipped, the rest is trained by an
executor (in this process, `countlib.sweep.pool` or `countlib.sweep.ray`), runs another
process holds are waited for, and every run's outcome is reported (`SweepReport`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from countlib.config import RunConfig
from countlib.sweep.display import SweepDisplay
from countlib.sweep.pool import _run_pool
from countlib.sweep.ray import _run_ray
from countlib.sweep.spec import SweepRun
from countlib.sweep.work import (
    COMPLETED,
    DIVERGED,
    ELSEWHERE,
    FAILED,
    LOCKED,
    SKIPPED,
    RunOutcome,
    _configs,
    run_group,
    work_units,
)
from countlib.train.checkpoint import set_aside_broken
from countlib.train.records import RunDir, RunLockedError, RunRecordError

EXECUTORS = ("sequential", "pool", "ray")
#: What a failed run with a broken record can do about it.
BROKEN_HINT = (
    "the run's records are broken: `countlib sweep --retrain-broken` (run_sweep(..., "
    "retrain_broken=True)) moves its directory aside to <name>.broken-<time> and trains it afresh"
)


@dataclass
class SweepReport:
    outcomes: list[RunOutcome]

    def by_status(self, status: str) -> list[RunOutcome]:
        return [o for o in self.outcomes if o.status == status]

    completed = property(lambda self: self.by_status(COMPLETED))
    skipped = property(lambda self: self.by_status(SKIPPED))
    diverged = property(lambda self: self.by_status(DIVERGED))
    failed = property(lambda self: self.by_status(FAILED))
    elsewhere = property(lambda self: self.by_status(ELSEWHERE))

    @property
    def ok(self) -> bool:
        """Every run is now final (complete or diverged) and none failed."""
        return not self.failed

    def format(self) -> str:
        lines = [
            f"{len(self.outcomes)} runs: {len(self.completed)} completed, "
            f"{len(self.skipped)} skipped (already final), {len(self.diverged)} diverged, "
            f"{len(self.failed)} failed, {len(self.elsewhere)} done by another process"
        ]
        earlier = [o for o in self.skipped if o.run_status == DIVERGED]
        if earlier:
            lines.append(f"{len(earlier)} of the skipped runs had diverged earlier")
        for outcome in self.diverged + earlier:
            lines.append(f"diverged: {outcome.run_dir}")
        for outcome in self.failed:
            lines.append(f"failed: {outcome.run_dir}\n{outcome.error}")
        return "\n".join(lines)


def _already_final(
    run: SweepRun,
    runs_dir: Path,
    retrain_broken: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunOutcome | None:
    """The outcome of a run complete on disk, found without starting a worker for it.

    A complete run with a broken record is failed, naming the file; with ``retrain_broken``
    its directory is moved aside (`RunDir.set_aside`) and None says to train it afresh, as
    is an unfinished run whose checkpoint cannot resume it (`set_aside_broken`).
    """
    run_dir = RunDir(runs_dir / run.name)
    if not run_dir.is_complete():
        if retrain_broken:
            _set_aside_unresumable(run_dir, run.config.config_hash(), log)
        return None
    try:
        summary = run_dir.read_final(run.config.config_hash())
    except RunRecordError as err:
        if not retrain_broken:
            return RunOutcome(run.name, run_dir.path, FAILED, error=f"{err}\n{BROKEN_HINT}")
        with contextlib.suppress(RunLockedError):  # another sweep is setting it aside too
            aside = run_dir.set_aside()
            if aside is not None and log is not None:
                log(f"broken record, moved aside to {aside.name} to train afresh: {err}")
        return None  # to train: the trainer waits for, or reports, whoever holds it
    return RunOutcome(run.name, run_dir.path, SKIPPED, summary["status"])


def _set_aside_unresumable(
    run_dir: RunDir, config_hash: str, log: Callable[[str], None] | None
) -> None:
    with contextlib.suppress(RunLockedError):  # being trained: its checkpoint is being written
        aside = set_aside_broken(run_dir, config_hash)
        if aside is not None and log is not None:
            log(f"broken checkpoint, moved aside to {aside[0].name} to train afresh: {aside[1]}")


def run_sweep(
    runs: Iterable[SweepRun | RunConfig],
    runs_dir: str | Path = "runs",
    *,
    executor: str = "sequential",
    device: str = "auto",
    workers: int | None = None,
    address: str | None = None,
    live: bool | None = None,
    log: Callable[[str], None] | None = None,
    retrain_broken: bool = False,
    workers_per_gpu: int = 1,
    stack: int = 1,
) -> SweepReport:
    """Train every run of the sweep that is not final yet and report on all of them.

    ``executor``: ``sequential`` trains in this process; ``pool`` trains ``workers`` runs at a
    time in worker processes: one per visible GPU (``CUDA_VISIBLE_DEVICES`` set per process)
    or, on CPU, ``workers`` processes (default: one per core); with ``workers_per_gpu`` K,
    K workers share each GPU (worker i on GPU i // K; for families that stacking does not
    batch, whose small runs leave a GPU mostly idle); ``ray`` submits each run as a
    Ray task with one GPU, or one CPU, to the cluster at ``address`` (None: a local instance
    with ``workers`` CPUs). With Ray, countlib must be installed on every node and ``runs_dir``
    must be on a shared file system. ``stack`` K > 1 trains up to K fresh runs of one shape
    (seeds) as one batched model in one worker (`work_units`, `countlib.train.stacked`): it
    pays where a step's fixed cost is a large share, as on a GPU; on CPU it does not (see
    benchmarks/train_throughput.py). Every executor trains at the thread policy's count
    (`countlib.train.threads`): ``OMP_NUM_THREADS`` if set, else 1.

    ``log`` gets a line per finished run (and the sweep's notices). ``live`` adds the live
    display (`countlib.sweep.display`: runs done, running and failed, each running run's step
    and loss, the ETA) on standard output; None: only where that is a terminal.

    A run that another process is training (its lock is held) is waited for once the others
    are done: reported ``elsewhere`` if that process made it final, else trained here.

    A complete run with a broken record (a truncated, emptied or missing summary.json, a
    truncated config.json, another run's summary) is reported failed, naming the file, and the
    others go on; ``retrain_broken`` moves such a run's directory aside to
    ``<name>.broken-<time>`` (nothing is deleted) and trains it afresh.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers_per_gpu < 1:
        raise ValueError(f"workers per GPU must be at least 1, got {workers_per_gpu}")
    if workers_per_gpu != 1 and executor != "pool":
        raise ValueError(f"workers per GPU is an option of the pool executor, not {executor}")
    runs_dir = Path(runs_dir).resolve()
    unique = {r.name: r for r in (r if isinstance(r, SweepRun) else SweepRun(r) for r in runs)}
    ordered = list(unique.values())
    outcomes: dict[str, RunOutcome] = {}
    planned = {run.name: run.config.resolve().optim.steps for run in ordered}
    display = SweepDisplay(planned, runs_dir, log or _silent, live=live if log else False)

    def record(outcome: RunOutcome) -> None:
        outcomes[outcome.name] = outcome
        line = f"[{len(outcomes)}/{len(ordered)}] {outcome.status:<9} {outcome.name}"
        line += f" ({outcome.seconds:.0f} s)" if outcome.seconds else ""
        display.finished(outcome.name, line, failed=outcome.status == FAILED)

    todo = []
    for run in ordered:
        final = _already_final(run, runs_dir, retrain_broken, display.log)
        if final is None:
            todo.append(run)
        else:
            record(final)
    locked: list[SweepRun] = []

    def record_or_wait(outcome: RunOutcome) -> None:
        if outcome.status == LOCKED:
            locked.append(unique[outcome.name])
        else:
            record(outcome)

    with display if todo else contextlib.nullcontext():
        while todo:
            units = work_units(todo, runs_dir, device, stack)
            if executor == "sequential":
                for unit in units:
                    for outcome in run_group(_configs(unit), runs_dir, device):
                        record_or_wait(outcome)
            elif executor == "pool":
                _run_pool(units, runs_dir, device, workers, record_or_wait, workers_per_gpu)
            else:
                _run_ray(units, runs_dir, device, workers, address, record_or_wait)
            todo = _wait_for_other_processes(locked, runs_dir, record, display.log)
            locked.clear()
    return SweepReport([outcomes[run.name] for run in ordered])


def _silent(line: str) -> None:
    """The log of a sweep asked for no lines."""


def _wait_for_other_processes(
    locked: list[SweepRun],
    runs_dir: Path,
    record: Callable[[RunOutcome], None],
    log: Callable[[str], None],
) -> list[SweepRun]:
    """Wait until each locked run is released; record those its holder made final and return
    the others (the holder died or gave up) to be trained again."""
    again = []
    for run in locked:
        run_dir = RunDir(runs_dir / run.name)
        log(f"waiting for {run.name}: trained by {run_dir.lock_holder() or 'another process'}")
        run_dir.wait_until_unlocked()
        final = _already_final(run, runs_dir)
        if final is None:
            again.append(run)
        else:
            # a broken record stays failed, whoever wrote it
            record(replace(final, status=ELSEWHERE) if final.status == SKIPPED else final)
    return again
