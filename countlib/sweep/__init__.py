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
evaluation's weights, ``tensorboard: true`` writes TensorBoard event files (neither is part of
a run's identity); ``betas: [0.9, 0.99]`` is one pair, a list of pairs sweeps them);
``table`` and ``family`` are tags kept
with each run for filtering and for the book; every other key is a model option, validated by
`RunConfig`. Runs with the same config hash are merged, their tables joined.

`run_sweep` trains what is missing: complete runs are skipped, so running a sweep again resumes
it. A failing run never stops the sweep; the report lists it with its run directory and
traceback.

The package's modules, each importing only those above it:

- `countlib.sweep.spec`: specs and their expansion (`expand`, `select`, `SweepRun`);
- `countlib.sweep.estimate`: GPU-hours, CPU-minutes and the dry-run listing (`gpu_hours`,
  `format_cpu_estimate`, `format_plan`);
- `countlib.sweep.work`: units of work and how each run went (`work_units`, `run_group`);
- `countlib.sweep.display`: the live display of a running sweep (`SweepDisplay`), torch-free;
- `countlib.sweep.pool` and `countlib.sweep.ray`: the executors that train units elsewhere;
- `countlib.sweep.run`: the sweep itself (`run_sweep`, `SweepReport`).

Every public name is importable from `countlib.sweep`.
"""

from countlib.sweep.estimate import (
    CPU_STEP_TIMES,
    EVAL_FORWARD_SHARE,
    STEP_OVERHEAD_S,
    MeasuredStep,
    StepTimes,
    format_cpu_estimate,
    format_plan,
    gpu_hours,
    load_cpu_step_times,
    load_step_times,
    measured_seconds,
    measured_step_seconds,
    padded_length,
    run_seconds,
    step_seconds,
)
from countlib.sweep.pool import gpu_assignment
from countlib.sweep.ray import RAY_INSTALL, ExecutorUnavailableError
from countlib.sweep.run import BROKEN_HINT, EXECUTORS, SweepReport, run_sweep
from countlib.sweep.spec import (
    EVAL_KEYS,
    META_KEYS,
    OPTIM_KEYS,
    PAIR_KEYS,
    RUN_KEYS,
    TAG_KEYS,
    SpecError,
    SweepRun,
    expand,
    load_spec,
    select,
    tag_table,
)
from countlib.sweep.work import (
    COMPLETED,
    DIVERGED,
    ELSEWHERE,
    FAILED,
    LOCKED,
    SKIPPED,
    RunOutcome,
    run_group,
    run_one,
    work_units,
)

__all__ = [
    "BROKEN_HINT",
    "COMPLETED",
    "CPU_STEP_TIMES",
    "DIVERGED",
    "ELSEWHERE",
    "EVAL_FORWARD_SHARE",
    "EVAL_KEYS",
    "EXECUTORS",
    "FAILED",
    "LOCKED",
    "META_KEYS",
    "OPTIM_KEYS",
    "PAIR_KEYS",
    "RAY_INSTALL",
    "RUN_KEYS",
    "SKIPPED",
    "STEP_OVERHEAD_S",
    "TAG_KEYS",
    "ExecutorUnavailableError",
    "MeasuredStep",
    "RunOutcome",
    "SpecError",
    "StepTimes",
    "SweepReport",
    "SweepRun",
    "expand",
    "format_cpu_estimate",
    "format_plan",
    "gpu_assignment",
    "gpu_hours",
    "load_cpu_step_times",
    "load_spec",
    "load_step_times",
    "measured_seconds",
    "measured_step_seconds",
    "padded_length",
    "run_group",
    "run_one",
    "run_seconds",
    "run_sweep",
    "select",
    "step_seconds",
    "tag_table",
    "work_units",
]
