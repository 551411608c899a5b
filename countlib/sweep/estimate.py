"""What a sweep costs: estimated GPU-hours by a constant V100 model (`step_seconds`) or from
measured step times (`load_step_times`), CPU-minutes from the CPU step times shipped with countlib
(`CPU_STEP_TIMES`), and the dry-run listing (`format_plan`).
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countlib.config import OptimConfig, RunConfig, read_json
from countlib.families import get_family
from countlib.paths import shipped
from countlib.sweep.spec import SweepRun
from countlib.tasks import get_task
from countlib.train.records import RunDir

#: Seconds per optimizer step outside the layers (data, optimizer, evaluation share). Fitted to
#: seed-spec 1.9: a d = 1024 Transformer of 312,500 steps on a V100 took about 1.5-3 h with
#: 1 layer, 2.4-3.7 h with 2 and 4.3 h with 4 layers, i.e. about 18 ms + 7.9 ms per layer.
STEP_OVERHEAD_S = 0.018


def step_seconds(config: RunConfig) -> float:
    """Estimated V100 seconds per optimizer step, evaluation included: `STEP_OVERHEAD_S` plus
    the family's `Family.layer_step_s` per layer (`countlib.families`)."""
    options = config.resolve().model_options
    per_layer = get_family(config.model).layer_step_s
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
    #: The task the row was measured on: a step scales with its batches' padded length.
    task: str = "shifted_start"

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
    #: The measured machine's cores (its ``cpu_count``), None where the file does not say.
    cores: int | None = None


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
    return StepTimes(Path(path), str(device), families, tuple(errors), data.get("cpu_count"))


#: CPU seconds per step of every family at width 32 and 1 layer on one core of a 2-core machine,
#: shipped with countlib (benchmarks/cpu_step_times.py measured them; `load_cpu_step_times`).
CPU_STEP_TIMES = "benchmarks/cpu_step_times.json"


def load_cpu_step_times() -> StepTimes:
    """The CPU step times shipped with countlib (`CPU_STEP_TIMES`)."""
    return load_step_times(shipped(CPU_STEP_TIMES))


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
        spec, resolved.get("layers", 1), resolved.get("hidden"), batch, seconds, fixed, task
    )


def _log_distance(value: float | None, measured: float | None) -> float:
    return abs(math.log(value / measured)) if value and measured else 0.0


def measured_step_seconds(config: RunConfig, times: StepTimes) -> float | None:
    """Seconds per optimizer step of ``config`` on the measured device, evaluation included;
    None where ``times`` has no row of its family.

    The family's row with the same hidden, layers and batch, else the nearest one (width
    first, then depth, then batch) scaled by a rough rule: the fixed part as measured, the
    per-layer part linear in the layers and in the batch and proportional to
    hidden^2 / measured hidden^2; and the whole step linear in the batches' padded length
    (`padded_length`, against the measured task's), as nearly all of a small model's step is
    work per token (the optimizer's update is not, and is small). Evaluation is added per
    step as `step_seconds` includes it: every split at step 0, every ``eval.every`` steps and
    at the end, each sequence at EVAL_FORWARD_SHARE of a training sequence's share of the
    step.
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
    length = padded_length(resolved.task, batch) / padded_length(step.task, step.batch)
    train = (step.fixed_s + step.layer_s * layers * width * batch / step.batch) * length
    return train + _eval_seconds(resolved, train)


@functools.cache
def padded_length(task: str, batch: int, batches: int = 20) -> float:
    """Mean tokens per sequence of ``task``'s training batches of ``batch``, each padded to its
    longest sequence as the fast path pads them: a step's work grows with it (Helper Token's
    batches, half of whose draws count with helpers up to 100, are twice as long as Shifted
    Start's). A fixed draw of ``batches``."""
    sampler, rng = get_task(task), random.Random(0)
    longest = [
        max(len(inputs) for inputs, _ in sampler.sample_batch(rng, batch)) for _ in range(batches)
    ]
    return sum(longest) / batches


def _eval_seconds(resolved: RunConfig, train_step_s: float) -> float:
    """Evaluation seconds per optimizer step of a resolved config (`measured_step_seconds`)."""
    steps, every = resolved.optim.steps, resolved.eval.every
    evaluations = steps // every + 1 + (steps % every > 0)
    splits = get_task(resolved.task).splits.values()
    sequences = sum(split.lines for split in splits) * resolved.eval.shift_samples
    per_sequence = EVAL_FORWARD_SHARE * train_step_s / resolved.optim.batch_size
    return per_sequence * sequences * evaluations / steps


def measured_seconds(runs: Iterable[SweepRun], times: StepTimes) -> tuple[float, list[SweepRun]]:
    """Seconds to train ``runs`` one after another at the step times ``times``
    (`measured_step_seconds` x planned steps), and the runs of families ``times`` has no row of,
    which the seconds leave out."""
    seconds, unmeasured = 0.0, []
    for run in runs:
        per_step = measured_step_seconds(run.config, times)
        if per_step is None:
            unmeasured.append(run)
        else:
            seconds += per_step * run.config.resolve().optim.steps
    return seconds, unmeasured


def _minutes(seconds: float) -> str:
    minutes = seconds / 60
    return f"{minutes:,.1f}" if minutes < 10 else f"{minutes:,.0f}"


def format_cpu_estimate(
    runs: Sequence[SweepRun], left: Sequence[SweepRun], times: StepTimes
) -> str:
    """The CPU line of the dry run: CPU-minutes of all ``runs`` and of those ``left`` to train
    at the measured CPU step times, and the wall minutes of those left with one run per core of
    the measured machine (as the pool executor trains); families without a measured row are
    counted apart."""
    total, unmeasured = measured_seconds(runs, times)
    to_train, unmeasured_left = measured_seconds(left, times)
    cores = times.cores or 1
    line = (
        f"CPU: about {_minutes(total)} CPU-minutes in all, {_minutes(to_train)} left: about "
        f"{_minutes(to_train / cores)} minutes on a {cores}-core machine like the one measured "
        f"({times.device}, one run per core as the pool trains; "
        f"countlib.sweep.CPU_STEP_TIMES, {times.source.name} by benchmarks/cpu_step_times.py)"
    )
    if unmeasured:
        families = ", ".join(sorted({run.config.model for run in unmeasured}))
        line += (
            f"; {len(unmeasured)} runs ({len(unmeasured_left)} left) of {families} not measured "
            "on CPU, not included"
        )
    return line


def format_plan(
    runs: Sequence[SweepRun],
    runs_dir: str | Path,
    step_times: StepTimes | None = None,
    cpu_times: StepTimes | None = None,
) -> str:
    """The dry-run listing: one line per run with its state in ``runs_dir``, then the totals.

    State: ``done`` (final), ``part`` (has a checkpoint to resume from) or ``todo``. The hours
    are the constant V100 model's (`step_seconds`) unless ``step_times`` gives measured ones
    (`measured_step_seconds`); a family it lacks falls back to the constant model, reported
    apart. A last line estimates CPU time from ``cpu_times`` (default: the shipped
    `CPU_STEP_TIMES`, `format_cpu_estimate`).
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
            "and each family's layer_step_s; --step-times FILE.json for measured step times)"
        )
    else:
        lines += _measured_lines(runs, left, head, step_times)
    lines.append(format_cpu_estimate(runs, left, cpu_times or load_cpu_step_times()))
    return "\n".join(lines)


def _measured_lines(
    runs: Sequence[SweepRun], left: Sequence[SweepRun], head: str, step_times: StepTimes
) -> list[str]:
    """The totals of `format_plan` from measured ``step_times``."""
    seconds, fallback = measured_seconds(runs, step_times)
    seconds_left, fallback_left = measured_seconds(left, step_times)
    device = step_times.device
    unit = "hours" if device.startswith("CPU") else "GPU-hours"
    lines = [
        f"{head} {seconds / 3600:,.1f} {unit} on {device} in all, at most "
        f"{seconds_left / 3600:,.1f} left, from measured step times: "
        f"{len(left) - len(fallback_left)} of the {len(left)} runs to train measured, "
        f"{len(fallback_left)} by the constant model"
    ]
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
    return lines
