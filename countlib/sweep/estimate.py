"""What a sweep costs: estimated GPU-hours by a constant V100 model (`step_seconds`) or from
measured step times (`load_step_times`), and the dry-run listing (`format_plan`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from countlib.config import OptimConfig, RunConfig, read_json
from countlib.families import get_family
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
            "and each family's layer_step_s; --step-times FILE.json for measured step times)"
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
