"""Results to take away (`countlib results`): one row per configuration with the numbers of the
book's table cells (`configurations`), and every recorded evaluation as a tidy table
(`evaluations`), written as CSV, JSON or Markdown (`write`).

A configuration is the runs that differ only in their seed: the same task, family, model
options, position scheme, learning rate and planned steps. Its numbers are those of a table cell
holding exactly its runs (`countlib.tables.cell`, over `countlib.results.aggregate`), so that
they equal the book's wherever a cell selects the same runs. Imports no torch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TextIO

import pandas as pd

from countlib.paper import PaperTable
from countlib.results import CHECKPOINT_RULES, load_eval_history, load_runs
from countlib.tables import cell
from countlib.train.records import RunDir

#: What runs of one configuration share: they differ only in their seed.
CONFIGURATION = ("task", "model", "options", "position_scheme", "lr", "steps_planned")
#: The numbers of a configuration, accuracies in percent (0-100) as the book shows them.
NUMBERS = (
    "checkpoint",
    "seeds",
    "best_ind_pct",
    "best_ood_pct",
    "median_ind_pct",
    "median_ood_pct",
    "fitted_seeds",
    "fit_ind_pct",
    "structural_check",
    "diverged",
    "incomplete",
    "damaged",
    "best_run",
    "runs",
)
#: The tidy evaluation export: one row per recorded value, as eval.csv records it (accuracies
#: as fractions 0-1, counts of tokens and sequences as counts).
EVALUATION_COLUMNS = ("run", "task", "model", "options", "step", "split", "metric", "value")
#: Markdown headers of the configuration columns.
MARKDOWN_HEADERS = {
    "model": "family",
    "position_scheme": "positions",
    "steps_planned": "steps",
    "best_ind_pct": "best IND %",
    "best_ood_pct": "best OOD %",
    "median_ind_pct": "median IND %",
    "median_ood_pct": "median OOD %",
    "fitted_seeds": "fitted seeds",
    "fit_ind_pct": "fit IND %",
    "structural_check": "structural check",
    "best_run": "best run",
}

#: A table cell of every configuration, one per statistic of the seeds.
_CELL_OF = {
    statistic: PaperTable("results", "countlib results", [], [], statistic=statistic)
    for statistic in ("best", "median")
}


def load_selected(root: str | Path, names: Collection[str] | None = None) -> pd.DataFrame:
    """`load_runs` of ``root`` with each run's model options as one ``options`` string; only
    the runs named in ``names`` if given (a sweep's runs)."""
    runs = load_runs(root)
    if not len(runs):
        return pd.DataFrame(columns=["run", *CONFIGURATION])
    if names is not None:
        runs = runs[runs["run"].isin(set(names))]
    return runs.assign(options=[_options(Path(path)) for path in runs["path"]])


def _options(run_dir: Path) -> str:
    """A run's model options as ``key=value`` words in the order of its config."""
    options = RunDir(run_dir).read_config()["model_options"]
    return " ".join(f"{key}={value}" for key, value in options.items())


def configurations(runs: pd.DataFrame, rule: str = "best_ood") -> pd.DataFrame:
    """One row per configuration of ``runs`` (`load_selected`): its `CONFIGURATION` and its
    `NUMBERS` at the checkpoint ``rule``.

    ``best``: the seed with the highest OOD, its IND beside it; ``median``: of the seeds;
    ``fitted_seeds``: those whose best validation IND reached the fit bar
    (`countlib.formatting.FIT_IND`), ``fit_ind_pct`` the highest of them; ``structural_check``:
    every run was planned too short to decide anything (`countlib.tables.structural_check`).
    Runs still training count in ``incomplete`` and nowhere else; a configuration with a
    damaged run (`countlib.results.DAMAGED`) counts them in ``damaged`` and has no numbers.
    """
    if rule not in CHECKPOINT_RULES:
        choices = ", ".join(CHECKPOINT_RULES)
        raise ValueError(f"unknown checkpoint rule {rule!r}; choose from {choices}")
    rows = [
        dict(zip(CONFIGURATION, key, strict=True)) | _numbers(group, rule)
        for key, group in runs.groupby(list(CONFIGURATION), dropna=False, sort=True)
    ]
    return pd.DataFrame(rows, columns=[*CONFIGURATION, *NUMBERS])


def _numbers(runs: pd.DataFrame, rule: str) -> dict[str, object]:
    best = cell(runs, _CELL_OF["best"], {}, {}, rule)
    if best["missing"]:
        return {"checkpoint": rule, "seeds": 0, "incomplete": best["incomplete"],
                "damaged": len(best.get("damaged", ())), "runs": list(runs["run"])}  # fmt: skip
    median = cell(runs, _CELL_OF["median"], {}, {}, rule)
    return {
        "checkpoint": rule,
        "seeds": best["seeds"],
        "best_ind_pct": 100 * best["ind"],
        "best_ood_pct": 100 * best["ood"],
        "median_ind_pct": 100 * median["ind"],
        "median_ood_pct": 100 * median["ood"],
        "fitted_seeds": best["seeds"] - best["unfit"],
        "fit_ind_pct": 100 * best["fit_ind"],
        "structural_check": best["structural"],
        "diverged": int((runs["status"] == "diverged").sum()),
        "incomplete": best["incomplete"],
        "damaged": 0,
        "best_run": best["best_run"],
        "runs": best["runs"],
    }


def evaluations(runs: pd.DataFrame, root: str | Path) -> pd.DataFrame:
    """Every evaluation of ``runs`` (`load_selected` of ``root``) as `EVALUATION_COLUMNS`."""
    history = load_eval_history(root)
    if not len(history) or not len(runs):
        return pd.DataFrame(columns=list(EVALUATION_COLUMNS))
    described = runs[["run", "task", "model", "options"]]
    return history.merge(described, on="run")[list(EVALUATION_COLUMNS)]


def write(table: pd.DataFrame, fmt: str, stream: TextIO) -> None:
    """``table`` in the format ``fmt`` (`FORMATS`) on ``stream``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    FORMATS[fmt](table, stream)


def _csv(table: pd.DataFrame, stream: TextIO) -> None:
    lists = {col: table[col].map(_words) for col in table if table[col].map(_is_list).any()}
    table.assign(**lists).to_csv(stream, index=False, lineterminator="\n")


def _json(table: pd.DataFrame, stream: TextIO) -> None:
    records = [{key: _plain(value) for key, value in row.items()} for row in _records(table)]
    json.dump(records, stream, indent=1)
    stream.write("\n")


def _markdown(table: pd.DataFrame, stream: TextIO) -> None:
    columns = list(table.columns)
    lines = [
        "| " + " | ".join(MARKDOWN_HEADERS.get(col, col) for col in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in _records(table):
        cells = (_markdown_cell(col, row[col]) for col in columns)
        lines.append("| " + " | ".join(cells) + " |")
    stream.write("\n".join(lines) + "\n")


def _markdown_cell(column: str, value: object) -> str:
    if _is_list(value):
        return _words(value)
    if column.endswith("_pct"):  # one decimal, as `countlib.formatting.percent` on every page
        return "n/a" if _is_missing(value) else f"{value:.1f}"
    return "" if _is_missing(value) else str(value)


def _records(table: pd.DataFrame) -> list[dict[str, object]]:
    return table.to_dict(orient="records")


def _plain(value: object) -> object:
    """A JSON value: NaN and None as null, numpy scalars as Python numbers."""
    if _is_list(value):
        return list(value)
    if _is_missing(value):
        return None
    return value.item() if hasattr(value, "item") else value


def _is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _words(value: object) -> object:
    """A list of run names as one space-separated cell (names hold no spaces)."""
    return " ".join(map(str, value)) if _is_list(value) else value


#: Output formats by name.
FORMATS: dict[str, Callable[[pd.DataFrame, TextIO], None]] = {
    "csv": _csv,
    "json": _json,
    "markdown": _markdown,
}
