"""Sweep specs: a grid of runs expanded to run configs (`expand`), and runs chosen from it
(`select`). The spec format is `countlib.sweep`'s.
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.config import EvalConfig, OptimConfig, RunConfig, read_yaml
from countlib.families import get_family
from countlib.paper import get_table
from countlib.tasks import get_task

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
    "tensorboard": "tensorboard",
    "plateau_evals": "plateau_evals",
    "plateau_tolerance": "plateau_tolerance",
}


#: The most runs a spec's grid may expand to unless asked for (``countlib sweep
#: --allow-large-grid``, ``expand(spec, max_runs=None)``): a list too many, or one too long,
#: would otherwise take minutes and gigabytes to expand before anything is said.
MAX_GRID_RUNS = 100_000


class SpecError(ValueError):
    """A sweep spec that cannot be expanded; the message names the grid entry."""


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


def grid_size(spec: Mapping[str, Any]) -> int:
    """How many runs ``spec`` expands to before duplicates merge: the sum over its grid
    entries of the product of their list lengths, counted without expanding anything."""
    return sum(
        math.prod(len(_choices(key, value)) for key, value in entry.items())
        for _, entry in _entries(spec)
    )


def expand(spec: Mapping[str, Any], max_runs: int | None = MAX_GRID_RUNS) -> list[SweepRun]:
    """Every run of ``spec``, duplicates merged, ordered seed by seed.

    Seed-major order means that a sweep cut short has covered the whole grid once before it
    starts on the next seed. A grid of more than ``max_runs`` runs (`grid_size`; None: no
    limit) is refused before any is expanded.
    """
    size = grid_size(spec)
    if max_runs is not None and size > max_runs:
        raise SpecError(
            f"spec {spec.get('name', '?')!r} has a grid of {size:,} runs, more than the "
            f"{max_runs:,} countlib expands unless asked (--allow-large-grid of countlib sweep "
            "and countlib book)"
        )
    merged: dict[str, SweepRun] = {}
    for index, entry in _entries(spec):
        for run in _expand_entry(index, entry):
            if run.name in merged:
                known = merged[run.name]
                known.tables += tuple(t for t in run.tables if t not in known.tables)
                # outside the hash: one entry that keeps weights or TensorBoard files is enough
                known.config.eval.keep_weights |= run.config.eval.keep_weights
                known.config.eval.tensorboard |= run.config.eval.tensorboard
            else:
                merged[run.name] = run
    seed_order: dict[int, int] = {}
    for run in merged.values():
        seed_order.setdefault(run.config.seed, len(seed_order))
    return sorted(merged.values(), key=lambda run: seed_order[run.config.seed])


def _entries(spec: Mapping[str, Any]) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each grid entry by index, with the spec's defaults under it."""
    grid = spec.get("grid")
    if not isinstance(grid, list) or not grid:
        raise SpecError(f"spec {spec.get('name', '?')!r} needs a non-empty 'grid' list")
    defaults = _normalise({k: v for k, v in spec.items() if k not in META_KEYS})
    for index, entry in enumerate(grid):
        if not isinstance(entry, Mapping):
            raise SpecError(f"grid entry {index}: expected a mapping, got {entry!r}")
        yield index, {**defaults, **_normalise(entry)}


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


def _check_keys(flat: Mapping[str, Any]) -> None:
    """Refuse a key that is neither a spec key nor an option of the entry's model family,
    naming the valid ones (and the closest, for a typo or an old name)."""
    spec_keys = [*RUN_KEYS, *OPTIM_KEYS, *EVAL_KEYS]
    family = get_family(flat["model"])
    options = [f.name for f in dataclasses.fields(family.config) if f.name != "vocab_size"]
    unknown = [key for key in flat if key not in spec_keys and key not in options]
    if not unknown:
        return
    named = []
    for key in unknown:
        close = difflib.get_close_matches(key, spec_keys + options, n=1)
        named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ValueError(
        f"unknown key {', '.join(named)}; valid: {', '.join(spec_keys)}, and the options of "
        f"model {flat['model']!r}: {', '.join(options)}"
    )


def _run_config(flat: Mapping[str, Any]) -> RunConfig:
    _check_keys(flat)
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
