"""Sweeps: a declarative grid of runs, expanded to run configs and trained by an executor.

A spec is a mapping (a Python dict or a YAML file)::

    name: paper
    steps: 312500
    eval_every: 30000
    seeds: [1234, 12, 123, 42, 319]
    grid:
      - {table: "2", task: [mod10, selective], model: transformer,
         pe: [nope, rope], layers: [1, 2, 4], hidden: 1024, heads: 8}

Top-level keys other than ``name``, ``description`` and ``grid`` are defaults of every grid
entry. In an entry, every list value expands as a cartesian product. Keys that are fields of
`RunConfig`, `OptimConfig` or `EvalConfig` go there (``seeds`` is ``seed``, ``eval_every`` is
the evaluation interval, ``eval_batch_size`` its batch, ``keep_weights: true`` keeps each
evaluation's weights; ``betas: [0.9, 0.99]`` is one pair, a list of pairs sweeps them);
``table`` and ``family`` are tags kept
with each run for filtering and for the book; every other key is a model option, validated by
`RunConfig`. Runs with the same config hash are merged, their tables joined.

`run_sweep` trains what is missing: complete runs are skipped, so running a sweep again resumes
it. A failing run never stops the sweep; the report lists it with its run directory and
traceback.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from countlib.config import EvalConfig, OptimConfig, RunConfig, read_json, read_yaml
from countlib.paper import get_table
from countlib.tasks import get_task
from countlib.train import TrainResult, train
from countlib.train.placement import resolve_device, resolve_precision
from countlib.train.records import RunDir, RunLockedError, RunRecordError
from countlib.train.stacked import check_stackable, train_stacked
from countlib.train.threads import available_cores, cpu_threads, thread_environment

META_KEYS = ("name", "description", "grid")
TAG_KEYS = ("table", "family")
RUN_KEYS = ("task", "model", "seed", "data_seed", "aux_share", "position_scheme", "precision")
OPTIM_KEYS = (
    "steps",
    "batch_size",
    "lr",
    "weight_decay",
    "warmup_steps",
    "betas",
    "grad_clip",
    "l2wrap",
)
#: Spec key -> EvalConfig field.
EVAL_KEYS = {
    "eval_every": "every",
    "eval_batch_size": "batch_size",
    "shift_samples": "shift_samples",
    "keep_weights": "keep_weights",
}

EXECUTORS = ("sequential", "pool", "ray")
RAY_INSTALL = "pip install ray (or: pip install 'ray[default]' for the dashboard)"

# Outcome statuses of one run in a sweep. LOCKED never ends in a report: the sweep waits for
# the other process and reports ELSEWHERE if it made the run final, else trains the run itself.
COMPLETED, SKIPPED, DIVERGED = "completed", "skipped", "diverged"
FAILED, LOCKED, ELSEWHERE = "failed", "locked", "elsewhere"
#: What a failed run with a broken record can do about it.
BROKEN_HINT = (
    "the run's records are broken: `countlib sweep --retrain-broken` (run_sweep(..., "
    "retrain_broken=True)) moves its directory aside to <name>.broken-<time> and trains it afresh"
)


class SpecError(ValueError):
    """A sweep spec that cannot be expanded; the message names the grid entry."""


class ExecutorUnavailableError(ImportError):
    """The requested executor's optional dependency is missing; the message says how to add it."""


# -- grids ------------------------------------------------------------------------------------


@dataclass
class SweepRun:
    """One expanded run with the tags of every grid entry that produced it."""

    config: RunConfig
    tables: tuple[str, ...] = ()
    family: str = ""
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.family = self.family or self.config.model
        # the name embeds the config hash, which resolves the config: compute it once
        self.name = self.config.run_name()


def load_spec(path: str | Path) -> dict[str, Any]:
    spec = read_yaml(path)  # a syntax error names the file and line
    if not isinstance(spec, dict):
        raise SpecError(f"{path}: a sweep spec must be a mapping with a 'grid' list")
    return spec


def expand(spec: Mapping[str, Any]) -> list[SweepRun]:
    """Every run of ``spec``, duplicates merged, ordered seed by seed.

    Seed-major order means that a sweep cut short has covered the whole grid once before it
    starts on the next seed.
    """
    grid = spec.get("grid")
    if not isinstance(grid, list) or not grid:
        raise SpecError(f"spec {spec.get('name', '?')!r} needs a non-empty 'grid' list")
    defaults = _normalise({k: v for k, v in spec.items() if k not in META_KEYS})
    merged: dict[str, SweepRun] = {}
    for index, entry in enumerate(grid):
        if not isinstance(entry, Mapping):
            raise SpecError(f"grid entry {index}: expected a mapping, got {entry!r}")
        for run in _expand_entry(index, {**defaults, **_normalise(entry)}):
            if run.name in merged:
                known = merged[run.name]
                known.tables += tuple(t for t in run.tables if t not in known.tables)
                # outside the hash: one entry that keeps each evaluation's weights is enough
                known.config.eval.keep_weights |= run.config.eval.keep_weights
            else:
                merged[run.name] = run
    seed_order: dict[int, int] = {}
    for run in merged.values():
        seed_order.setdefault(run.config.seed, len(seed_order))
    return sorted(merged.values(), key=lambda run: seed_order[run.config.seed])


def _normalise(entry: Mapping[str, Any]) -> dict[str, Any]:
    return {("seed" if key == "seeds" else key): value for key, value in entry.items()}


def _expand_entry(index: int, entry: dict[str, Any]) -> list[SweepRun]:
    tags = {key: entry.pop(key) for key in TAG_KEYS if key in entry}
    where = f"grid entry {index}" + (f" (table {tags['table']})" if "table" in tags else "")
    for key, value in tags.items():
        if not isinstance(value, str | int):
            raise SpecError(f"{where}: tag {key!r} must be a single value, got {value!r}")
    missing = [key for key in ("task", "model") if key not in entry]
    if missing:
        raise SpecError(f"{where}: missing {' and '.join(missing)}")
    keys = list(entry)
    choices = [_choices(key, value) for key, value in entry.items()]
    runs = []
    for values in itertools.product(*choices):
        flat = dict(zip(keys, values, strict=True))
        try:
            config = _run_config(flat)
            table = (str(tags["table"]),) if "table" in tags else ()
            runs.append(SweepRun(config, table, str(tags.get("family", ""))))
        except (TypeError, ValueError, KeyError) as err:
            varying = {k: v for k, v, c in zip(keys, values, choices, strict=True) if len(c) > 1}
            detail = f", run {varying}" if varying else ""
            raise SpecError(f"{where}{detail}: {err}") from err
    return runs


#: Keys whose single value is itself a list: ``betas: [0.9, 0.99]`` is one pair; a list of pairs
#: (``[[0.9, 0.99], [0.9, 0.999]]``) sweeps.
PAIR_KEYS = ("betas",)


def _choices(key: str, value: Any) -> list[Any]:
    """The values a grid key takes: a list expands, anything else is one value."""
    if not isinstance(value, list | tuple):
        return [value]
    one_pair = key in PAIR_KEYS and not any(isinstance(v, list | tuple) for v in value)
    return [value] if one_pair else list(value)


def _run_config(flat: Mapping[str, Any]) -> RunConfig:
    run: dict[str, Any] = {}
    optim: dict[str, Any] = {}
    evaluation: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, value in flat.items():
        if key in RUN_KEYS:
            run[key] = value
        elif key in OPTIM_KEYS:
            optim[key] = value
        elif key in EVAL_KEYS:
            evaluation[EVAL_KEYS[key]] = value
        else:
            options[key] = value
    return RunConfig(
        **run, model_options=options, optim=OptimConfig(**optim), eval=EvalConfig(**evaluation)
    )


def select(
    runs: Iterable[SweepRun],
    *,
    tasks: Sequence[str] = (),
    families: Sequence[str] = (),
    tables: Sequence[str] = (),
) -> list[SweepRun]:
    """The runs matching every given filter (any value within a filter).

    Tasks match by any of their names; tables A2 and A3 select the runs of Tables 2 and A1,
    which they report under another rule. A value that matches no run is an error, so that a
    typo never silently selects nothing.
    """
    runs = list(runs)
    wanted_tasks = {get_task(t).name for t in tasks}
    wanted_tables = {_runs_of(t) for t in map(str, tables)}
    _check_known("task", wanted_tasks, {r.config.task for r in runs}, lambda t: get_task(t).name)
    _check_known("family", set(families), {r.family for r in runs})
    _check_known("table", wanted_tables, {t.upper() for r in runs for t in r.tables})
    return [
        run
        for run in runs
        if (not tasks or get_task(run.config.task).name in wanted_tasks)
        and (not families or run.family in families)
        and (not tables or wanted_tables & {t.upper() for t in run.tables})
    ]


def _runs_of(table: str) -> str:
    """The table whose runs ``table`` reports (A2 reports Table 2's); unknown names stay as they
    are, so that a spec's own table tags select too."""
    try:
        return get_table(table).runs_of
    except ValueError:
        return table.upper()


def _check_known(
    kind: str, wanted: set[str], present: set[str], canonical: Callable[[str], str] = str
) -> None:
    known = {canonical(value) for value in present}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(f"no run has {kind} {', '.join(unknown)}; present: {sorted(known)}")


def tag_table(runs: Iterable[SweepRun]) -> pd.DataFrame:
    """One row per (run, table) tag; join with `countlib.results.load_runs` on ``run``."""
    rows = [
        {"run": run.name, "table": table, "family": run.family}
        for run in runs
        for table in run.tables or ("",)
    ]
    return pd.DataFrame(rows, columns=["run", "table", "family"])


# -- estimates ---------------------------------------------------------------------------------

#: Seconds per optimizer step outside the layers (data, optimizer, evaluation share). Fitted to
#: seed-spec 1.9: a d = 1024 Transformer of 312,500 steps on a V100 took about 1.5-3 h with
#: 1 layer, 2.4-3.7 h with 2 and 4.3 h with 4 layers, i.e. about 18 ms + 7.9 ms per layer.
STEP_OVERHEAD_S = 0.018
#: Seconds per step and layer. The Transformer's is measured (above) at d = 1024 and scales with
#: (hidden / 1024)^2; the recurrent ones were never timed by the authors and are assumptions for
#: hidden 128 (cuDNN RNN/LSTM, S4's FFT convolution, the Mamba and RWKV kernels).
LAYER_STEP_S = {
    "transformer": 0.0079,
    "rnn": 0.002,
    "lstm": 0.002,
    "gru": 0.002,
    "s4": 0.004,
    "s4d": 0.004,
    "mamba": 0.004,
    "rwkv6": 0.006,
    "rwkv5": 0.006,
}
DEFAULT_LAYER_STEP_S = 0.006


def step_seconds(config: RunConfig) -> float:
    """Estimated V100 seconds per optimizer step, evaluation included (see LAYER_STEP_S)."""
    options = config.resolve().model_options
    per_layer = LAYER_STEP_S.get(config.model, DEFAULT_LAYER_STEP_S)
    if config.model == "transformer":
        per_layer *= (options["hidden"] / 1024) ** 2
    return STEP_OVERHEAD_S + per_layer * options.get("layers", 1)


def run_seconds(config: RunConfig) -> float:
    """Estimated V100 seconds of a whole run; a budget left unset is the family's default."""
    return step_seconds(config) * config.resolve().optim.steps


def gpu_hours(runs: Iterable[SweepRun]) -> float:
    return sum(run_seconds(run.config) for run in runs) / 3600


#: Evaluation runs forward passes only: about a third of a training step's compute per sequence
#: (one forward, against a forward and a backward twice its cost). A rough rule for measured
#: steps, which leave evaluation out (`measured_step_seconds`).
EVAL_FORWARD_SHARE = 1 / 3


@dataclass(frozen=True)
class MeasuredStep:
    """A fast-path row of benchmarks/train_throughput.py: seconds per training step (without
    evaluation) at ``layers``, ``hidden`` and ``batch``, of which ``fixed_s`` does not grow
    with the layers (`load_step_times`)."""

    config: str
    layers: int
    hidden: int | None
    batch: int
    seconds: float
    fixed_s: float

    @property
    def layer_s(self) -> float:
        return (self.seconds - self.fixed_s) / self.layers


@dataclass(frozen=True)
class StepTimes:
    """Measured step times by family (`load_step_times`); ``errors``: configs the benchmark
    could not measure."""

    source: Path
    device: str
    families: dict[str, list[MeasuredStep]]
    errors: tuple[str, ...] = ()


def load_step_times(path: str | Path) -> StepTimes:
    """The JSON of benchmarks/train_throughput.py as measured steps by family.

    Each ``throughput`` row names its config (``family:key=value,...``; batch 32 unless it sets
    ``batch``) and the fast path's samples/s: a step takes batch / samples/s. The step is split
    into a fixed part and a per-layer part in the constant model's proportion at the row's
    config (STEP_OVERHEAD_S against the layers' share of `step_seconds`). A missing file,
    invalid JSON, no ``throughput`` list or a malformed row is an error naming the file.
    """
    data = read_json(path)  # a missing file is an OSError naming it, bad JSON names the line
    rows = data.get("throughput") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError(
            f'{path}: no "throughput" list; expected the JSON of benchmarks/train_throughput.py'
        )
    families: dict[str, list[MeasuredStep]] = {}
    errors = []
    for index, row in enumerate(rows):
        if isinstance(row, dict) and "error" in row:
            errors.append(str(row.get("config", f"row {index}")))
            continue
        try:
            family, step = _measured_step(row)
        except Exception as err:  # any malformed row: name it rather than fail obscurely
            raise ValueError(f"{path}: throughput row {index}: {err}") from None
        families.setdefault(family, []).append(step)
    device = data.get("device_name") or data.get("device") or "an unknown device"
    if device == "cpu":
        device = f"CPU ({data.get('cpu', 'unknown model')})"
    return StepTimes(Path(path), str(device), families, tuple(errors))


def _measured_step(row: Any) -> tuple[str, MeasuredStep]:
    import yaml

    if not isinstance(row, dict) or not isinstance(row.get("config"), str):
        raise ValueError('expected an object with a "config" string')
    spec, samples = row["config"], row.get("fast_samples_s")
    if isinstance(samples, bool) or not isinstance(samples, int | float) or not samples > 0:
        raise ValueError(f"{spec!r}: fast_samples_s must be a positive number, got {samples!r}")
    family, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{spec!r}: {item!r} is not key=value")
        options[key] = yaml.safe_load(value)
    # run settings, as the benchmark reads them; every other key is a model option
    task, batch = options.pop("task", "shifted_start"), options.pop("batch", 32)
    precision = options.pop("precision", "auto")
    config = RunConfig(
        task=task,
        model=family,
        model_options=options,
        optim=OptimConfig(batch_size=batch),
        precision=precision,
    )
    resolved = config.resolve().model_options
    seconds = batch / samples
    fixed = seconds * STEP_OVERHEAD_S / step_seconds(config)
    return family, MeasuredStep(
        spec, resolved.get("layers", 1), resolved.get("hidden"), batch, seconds, fixed
    )


def _log_distance(value: float | None, measured: float | None) -> float:
    return abs(math.log(value / measured)) if value and measured else 0.0


def measured_step_seconds(config: RunConfig, times: StepTimes) -> float | None:
    """Seconds per optimizer step of ``config`` on the measured device, evaluation included;
    None where ``times`` has no row of its family.

    The family's row with the same hidden, layers and batch, else the nearest one (width
    first, then depth, then batch) scaled by a rough rule: the fixed part as measured, the
    per-layer part linear in the layers and in the batch and proportional to
    hidden^2 / measured hidden^2. Evaluation is added per step as `step_seconds` includes it:
    every split at step 0, every ``eval.every`` steps and at the end, each sequence at
    EVAL_FORWARD_SHARE of a training sequence's share of the step.
    """
    measured = times.families.get(config.model)
    if not measured:
        return None
    resolved = config.resolve()
    options, batch = resolved.model_options, resolved.optim.batch_size
    layers, hidden = options.get("layers", 1), options.get("hidden")
    step = min(
        measured,
        key=lambda row: (
            _log_distance(hidden, row.hidden),
            abs(layers - row.layers),
            _log_distance(batch, row.batch),
        ),
    )
    width = (hidden / step.hidden) ** 2 if hidden and step.hidden else 1.0
    train = step.fixed_s + step.layer_s * layers * width * batch / step.batch
    return train + _eval_seconds(resolved, train)


def _eval_seconds(resolved: RunConfig, train_step_s: float) -> float:
    """Evaluation seconds per optimizer step of a resolved config (`measured_step_seconds`)."""
    steps, every = resolved.optim.steps, resolved.eval.every
    evaluations = steps // every + 1 + (steps % every > 0)
    splits = get_task(resolved.task).splits.values()
    sequences = sum(split.lines for split in splits) * resolved.eval.shift_samples
    per_sequence = EVAL_FORWARD_SHARE * train_step_s / resolved.optim.batch_size
    return per_sequence * sequences * evaluations / steps


def format_plan(
    runs: Sequence[SweepRun], runs_dir: str | Path, step_times: StepTimes | None = None
) -> str:
    """The dry-run listing: one line per run with its state in ``runs_dir``, then the totals.

    State: ``done`` (final), ``part`` (has a checkpoint to resume from) or ``todo``. The hours
    are the constant V100 model's (`step_seconds`) unless ``step_times`` gives measured ones
    (`measured_step_seconds`); a family it lacks falls back to the constant model, reported
    apart.
    """
    lines = [f"state {'table':<6} {'task':<27} {'model':<11} {'options':<32} seed       steps"]
    left = []
    for run in runs:
        run_dir = RunDir(Path(runs_dir) / run.name)
        state = "done" if run_dir.is_complete() else "part" if run_dir.last.exists() else "todo"
        if state != "done":
            left.append(run)
        config = run.config
        options = " ".join(f"{k}={v}" for k, v in config.model_options.items())
        steps = config.resolve().optim.steps  # None in the spec: the family's budget
        lines.append(
            f"{state}  {','.join(run.tables) or '-':<6} {config.task:<27} {config.model:<11} "
            f"{options:<32} seed={config.seed:<5} steps={steps:<7} {run.name}"
        )
    head = f"{len(runs)} runs, {len(runs) - len(left)} final, {len(left)} to train; estimated"
    if step_times is None:
        lines.append(
            f"{head} {gpu_hours(runs):,.1f} V100 GPU-hours in all, at most {gpu_hours(left):,.1f} "
            "left, by the constant V100 model, not a measurement (countlib.sweep.STEP_OVERHEAD_S "
            "and LAYER_STEP_S; --step-times FILE.json for measured step times)"
        )
        return "\n".join(lines)
    per_step = {run.name: measured_step_seconds(run.config, step_times) for run in runs}
    measured = [run for run in runs if per_step[run.name] is not None]
    fallback = [run for run in runs if per_step[run.name] is None]

    def hours(subset: Iterable[SweepRun]) -> float:
        return (
            sum((per_step[r.name] or 0.0) * r.config.resolve().optim.steps for r in subset) / 3600
        )

    to_train = {run.name for run in left}
    measured_left = [run for run in measured if run.name in to_train]
    fallback_left = [run for run in fallback if run.name in to_train]
    device = step_times.device
    unit = "hours" if device.startswith("CPU") else "GPU-hours"
    lines.append(
        f"{head} {hours(measured):,.1f} {unit} on {device} in all, at most "
        f"{hours(measured_left):,.1f} left, from measured step times: "
        f"{len(measured_left)} of the {len(left)} runs to train measured, "
        f"{len(fallback_left)} by the constant model"
    )
    if fallback:
        families = ", ".join(sorted({run.config.model for run in fallback}))
        lines.append(
            f"fallback: no measured row of {families} in the file, so the constant V100 model: "
            f"{gpu_hours(fallback):,.1f} V100 GPU-hours in all, at most "
            f"{gpu_hours(fallback_left):,.1f} left, not included above"
        )
    unmeasured = f"; rows the benchmark could not measure: {', '.join(step_times.errors)}"
    lines.append(
        f"step times: the fast path on {device}, from {step_times.source}"
        + (unmeasured if step_times.errors else "")
    )
    return "\n".join(lines)


# -- running ----------------------------------------------------------------------------------


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


def _already_final(
    run: SweepRun,
    runs_dir: Path,
    retrain_broken: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunOutcome | None:
    """The outcome of a run complete on disk, found without starting a worker for it.

    A complete run with a broken record is failed, naming the file; with ``retrain_broken``
    its directory is moved aside (`RunDir.set_aside`) and None says to train it afresh.
    """
    run_dir = RunDir(runs_dir / run.name)
    if not run_dir.is_complete():
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


def run_sweep(
    runs: Iterable[SweepRun | RunConfig],
    runs_dir: str | Path = "runs",
    *,
    executor: str = "sequential",
    device: str = "auto",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = False,
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

    def record(outcome: RunOutcome) -> None:
        outcomes[outcome.name] = outcome
        if log is not None:
            line = f"[{len(outcomes)}/{len(ordered)}] {outcome.status:<9} {outcome.name}"
            log(line + (f" ({outcome.seconds:.0f} s)" if outcome.seconds else ""))

    todo = []
    for run in ordered:
        final = _already_final(run, runs_dir, retrain_broken, log)
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

    while todo:
        units = work_units(todo, runs_dir, device, stack)
        if executor == "sequential":
            for unit in units:
                for outcome in run_group(_configs(unit), runs_dir, device, progress):
                    record_or_wait(outcome)
        elif executor == "pool":
            _run_pool(units, runs_dir, device, workers, progress, record_or_wait, workers_per_gpu)
        else:
            _run_ray(units, runs_dir, device, workers, address, record_or_wait)
        todo = _wait_for_other_processes(locked, runs_dir, record, log)
        locked.clear()
    return SweepReport([outcomes[run.name] for run in ordered])


def _configs(unit: Sequence[SweepRun]) -> list[RunConfig]:
    return [run.config for run in unit]


def _failed(unit: Sequence[SweepRun], runs_dir: Path, error: str) -> list[RunOutcome]:
    return [RunOutcome(run.name, runs_dir / run.name, FAILED, error=error) for run in unit]


def _wait_for_other_processes(
    locked: list[SweepRun],
    runs_dir: Path,
    record: Callable[[RunOutcome], None],
    log: Callable[[str], None] | None,
) -> list[SweepRun]:
    """Wait until each locked run is released; record those its holder made final and return
    the others (the holder died or gave up) to be trained again."""
    again = []
    for run in locked:
        run_dir = RunDir(runs_dir / run.name)
        if log is not None:
            log(f"waiting for {run.name}: trained by {run_dir.lock_holder() or 'another process'}")
        run_dir.wait_until_unlocked()
        final = _already_final(run, runs_dir)
        if final is None:
            again.append(run)
        else:
            # a broken record stays failed, whoever wrote it
            record(replace(final, status=ELSEWHERE) if final.status == SKIPPED else final)
    return again


# -- the pool executor: worker processes, replaced when a run kills one ---------------------


@dataclass(frozen=True)
class _Slot:
    """Where a pool process trains: its device, visible GPU and torch threads."""

    device: str
    visible_gpu: str | None
    threads: int


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def gpu_assignment(gpus: int, per_gpu: int = 1, workers: int | None = None) -> list[int]:
    """The GPU index of each pool worker: worker i on GPU i // per_gpu, so ``per_gpu`` workers
    share each of the ``gpus`` GPUs (default count: gpus * per_gpu; more wrap around)."""
    if per_gpu < 1:
        raise ValueError(f"workers per GPU must be at least 1, got {per_gpu}")
    if gpus < 1:
        raise ValueError("no visible GPU to place the pool's workers on (CUDA_VISIBLE_DEVICES)")
    return [(index // per_gpu) % gpus for index in range(workers or gpus * per_gpu)]


def _pool_slots(device: str, workers: int | None, per_gpu: int = 1) -> list[_Slot]:
    """One slot per worker (default: one per core, or ``per_gpu`` per visible GPU, see
    `gpu_assignment`); each trains at the thread policy's count (`cpu_threads`), so that the
    workers share the cores instead of oversubscribing them. ``per_gpu`` is ignored on CPU."""
    if per_gpu < 1:
        raise ValueError(f"workers per GPU must be at least 1, got {per_gpu}")
    device = resolve_device(device)
    threads = cpu_threads()
    if device == "cpu":
        return [_Slot("cpu", None, threads)] * (workers or available_cores())
    gpus = _visible_gpus()
    if ":" in device:  # one named GPU: every worker shares it
        gpus = [gpus[int(device.split(":")[1])]]
    return [
        _Slot("cuda", gpus[index], threads) for index in gpu_assignment(len(gpus), per_gpu, workers)
    ]


def _pool_worker(
    connection: Connection, slot: _Slot, runs_dir: Path, progress: bool, parent: int
) -> None:
    _die_with_parent(parent)
    # spawned, so CUDA is not initialised yet and still honours the variable
    if slot.visible_gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_gpu
    # OpenMP and MKL took the count from the environment (`thread_environment`); torch's own
    # pools are sized here, before any work has started them
    torch.set_num_threads(slot.threads)
    torch.set_num_interop_threads(slot.threads)
    while (configs := connection.recv()) is not None:
        connection.send(run_group(configs, runs_dir, slot.device, progress, slot.threads))
    connection.close()


#: prctl option: the signal the kernel sends this process when its parent exits (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """End this worker when the sweep process that started it dies, even by SIGKILL: an
    orphan would go on training a run nobody waits for, holding its lock.

    Linux delivers SIGKILL on the parent's exit (prctl); elsewhere a watchdog thread polls the
    parent pid.
    """
    if not _parent_death_signal(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)


def _parent_death_signal(signum: int) -> bool:
    """Ask the kernel for ``signum`` when the parent exits; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    # an orphan is re-parented, so its parent pid changes
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


class _Worker:
    """A pool process that trains one unit of work (`work_units`) after another on its slot.

    Importing torch and countlib costs seconds, more than a tiny run trains; a worker pays it
    once. A run that kills its worker (out of memory, a segfault in a kernel) takes only its
    unit down: the pool reports it failed and starts a fresh worker on the slot.
    """

    def __init__(self, context: Any, slot: _Slot, runs_dir: Path, progress: bool) -> None:
        self.slot = slot
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_pool_worker, args=(child, slot, runs_dir, progress, os.getpid()), daemon=True
        )
        with thread_environment(slot.threads):
            self.process.start()
        child.close()  # only the worker holds it now, so its death reads as EOF here

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # the worker may be gone already
            self.connection.send(None)
        self.process.join()
        self.connection.close()

    def kill(self) -> None:
        self.process.terminate()
        self.process.join()
        self.connection.close()


def _run_pool(
    units: list[list[SweepRun]],
    runs_dir: Path,
    device: str,
    workers: int | None,
    progress: bool,
    record: Callable[[RunOutcome], None],
    per_gpu: int = 1,
) -> None:
    # Spawn, not fork: CUDA cannot be used after a fork.
    context = multiprocessing.get_context("spawn")
    slots = _pool_slots(device, workers, per_gpu)[: len(units)]
    idle = [_Worker(context, slot, runs_dir, progress) for slot in slots]
    pending = deque(units)
    busy: dict[Connection, tuple[list[SweepRun], _Worker]] = {}
    try:
        while pending or busy:
            while pending and idle:
                worker, unit = idle.pop(), pending.popleft()
                worker.connection.send(_configs(unit))
                busy[worker.connection] = (unit, worker)
            for connection in wait(list(busy)):
                unit, worker = busy.pop(connection)
                try:
                    outcomes = connection.recv()
                except EOFError:
                    worker.kill()
                    outcomes = _failed(
                        unit,
                        runs_dir,
                        f"worker process exited with code {worker.process.exitcode} "
                        "before reporting (killed, out of memory or crashed)",
                    )
                    worker = _Worker(context, worker.slot, runs_dir, progress)
                idle.append(worker)
                for outcome in outcomes:
                    record(outcome)
    finally:
        # interrupted: stop the runs in flight; each resumes from its last checkpoint
        for _, worker in busy.values():
            worker.kill()
        for worker in idle:
            worker.stop()


# -- the Ray executor -------------------------------------------------------------------------


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as err:
        raise ExecutorUnavailableError(
            f"the ray executor needs the optional dependency ray: {RAY_INSTALL}"
        ) from err
    return ray


def _ray_task(configs: list[RunConfig], runs_dir: Path, device: str) -> list[RunOutcome]:
    # Ray sets CUDA_VISIBLE_DEVICES to the task's GPU
    return run_group(configs, runs_dir, device)


def _run_ray(
    units: list[list[SweepRun]],
    runs_dir: Path,
    device: str,
    workers: int | None,
    address: str | None,
    record: Callable[[RunOutcome], None],
) -> None:
    ray = _import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        starts_local = address is None and not os.environ.get("RAY_ADDRESS")
        # a new local instance takes its size from us; an existing cluster refuses such options
        local = {"include_dashboard": False, "num_cpus": workers} if starts_local else {}
        ray.init(address=address, **local)
    try:
        # the cluster, not this driver, decides whether "auto" means GPUs
        use_gpu = device.startswith("cuda") or (
            device == "auto" and ray.cluster_resources().get("GPU", 0) > 0
        )
        resources = {"num_cpus": 1, "num_gpus": 1 if use_gpu else 0}
        task = ray.remote(**resources)(_ray_task)
        run_device = "cuda" if use_gpu else "cpu"
        submitted = {task.remote(_configs(unit), runs_dir, run_device): unit for unit in units}
        waiting = list(submitted)
        try:
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                unit = submitted[done[0]]
                try:
                    outcomes = ray.get(done[0])
                except Exception as err:  # the worker died: Ray's error holds the traceback
                    outcomes = _failed(unit, runs_dir, str(err))
                for outcome in outcomes:
                    record(outcome)
        except BaseException:
            # interrupted: a cluster would otherwise go on training runs nobody waits for
            for ref in waiting:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started_here:
            ray.shutdown()
