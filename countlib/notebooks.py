"""The family notebooks, written from `countlib.families`: ``notebooks/train_family.ipynb``,
the one page of every family (its ``family`` parameter names the family), and a thin
``notebooks/<page>.ipynb`` per entry of `countlib.families.PAGES`, the same cells with that
page's own parameters (``papermill notebooks/train_mamba.ipynb out.ipynb -p layers 1``).

Every family page is the same notebook but for its title, introduction and default grid, so
the notebooks are generated, not copied: a page added to `PAGES` (or a page's defaults changed)
is one edit there and ``python -m countlib.notebooks``; a cell every page shows is one entry of
`FAMILY_CELLS`. A test checks that the notebooks in the repository are the ones this module
writes. What a page does lives in `countlib.report`.

    python -m countlib.notebooks            # rewrite the family notebooks
    python -m countlib.notebooks --check    # exit 1 naming the notebooks that are out of date
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from pathlib import Path
from typing import Any

from countlib.families import PAGES, FamilyPage, page_families

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
#: The notebook every family page of the book is executed from.
FAMILY_NOTEBOOK = "train_family"

#: The parameters every family page has, before its own grid (papermill overrides them).
_COMMON_HEAD = """\
# Parameters (papermill overrides these).
profile = None  # "smoke", "paper-lite" or "paper": this family's runs of that profile
# or a sweep spec (countlib.sweep), e.g. {{"grid": [{{"task": "mod10", "model": "{model}"}}]}}
grid = None
# Neither given: this small CPU grid.
task = "shifted_start"
"""
#: ... and after it.
_COMMON_TAIL = """\
steps = {steps}
seeds = [1234]
lr = {lr}
warmup_steps = {warmup_steps}
eval_every = 500
# Where and how the runs train
manifest = None  # a run manifest (countlib book writes one): show exactly its runs
train = True  # False: only show runs that already exist
runs_dir = None  # None: $COUNTLIB_RUNS_DIR, else the checkout's runs/, else ./runs
device = "cpu"
executor = "sequential"  # sequential, pool or ray (see countlib.sweep)
workers = None
rule = "best_ood"  # checkpoint rule of the tables: best_ood (the paper's), best_val or final"""
_IMPORTS = """\
import pandas as pd
from IPython.display import Markdown, display

from countlib import report

pd.set_option("display.max_rows", 500)  # the book shows whole tables"""
#: The family notebook's page: the page of its ``family`` parameter, whose introduction it shows
#: (the book gives it the page's title), and that page's grid with ``options`` over it.
_FAMILY_PAGE = """\
from countlib.families import family_pages, page_families, page_of

PAGE = page_of(family)
shown = family_pages()[PAGE]
display(Markdown(shown.intro))
FAMILIES = page_families(PAGE)
entry = shown.grid_entry(task, family) | (options or {})
steps = shown.steps if steps is None else steps
lr = shown.lr if lr is None else lr
warmup_steps = shown.warmup_steps if warmup_steps is None else warmup_steps"""
_FAMILY_PARAMETERS = """\
family = "lstm"  # a registered family, "hf" (countlib[hf]) or a model class, "package.module:Class"
options = None  # grid keys over the page's defaults, e.g. {"hidden": 32, "layers": 1}"""
_RUN = """\
page = report.family_runs(
    FAMILIES,
    runs_dir,
    manifest=manifest,
    profile=profile,
    grid=grid,
    default=report.own_grid(
        entry, steps=steps, eval_every=eval_every, seeds=seeds, lr=lr, warmup=warmup_steps
    ),
    train=train,
    device=device,
    executor=executor,
    workers=workers,
)
display(Markdown(page.scale_line("this page")))"""
_RESULTS = (
    "## IND / OOD\n\nBest of the seeds and median of the seeds, each run at the checkpoint "
    "`rule` picks: `best_ood` selects on the OOD split itself (the paper's protocol), "
    "`best_val` on validation. `success` means best OOD >= 95 %."
)
_CURVES = (
    "## Learning curves\n\nTraining loss (mean of each log interval, log scale) and IND (solid) "
    "and OOD (dashed) accuracy at each evaluation, against the step: a colour per task and "
    "configuration, a line per seed. `countlib curves RUN_DIR` draws one run's, also while it "
    "trains."
)
_CURVES_CODE = """\
from countlib.curves import plot_page_curves

report.show_figure(plot_page_curves(page.runs))"""
#: The family notebooks' old parameter names, each the name of its concept in sweep specs and
#: the CLI now: a papermill call or a ``countlib book -p`` that gives one still works, with a
#: FutureWarning naming the new one.
RENAMED_PARAMETERS = {"warmup": "warmup_steps", "models": "model", "pes": "pe"}
#: The cells every family page shows after its page is set (``PAGE``, ``FAMILIES``, ``entry``
#: and the parameters), in order: (cell type, source).
FAMILY_CELLS: list[tuple[str, str]] = [
    ("code", _RUN),
    ("markdown", _RESULTS),
    ("code", "report.show_runs(page, rule=rule, headline=f\"{PAGE}-{profile or 'grid'}\")"),
    ("markdown", _CURVES),
    ("code", _CURVES_CODE),
]


def notebook_names() -> list[str]:
    """The notebooks this module writes: the family notebook, then one per page of `PAGES`."""
    return [FAMILY_NOTEBOOK, *PAGES]


def family_notebook(name: str) -> dict[str, Any]:
    """The notebook ``name`` of `notebook_names` (nbformat 4, without outputs)."""
    if name == FAMILY_NOTEBOOK:
        title = "# A model family"
        parameters = _family_parameters()
        page_cell = _FAMILY_PAGE
    else:
        page = PAGES[name]
        families = page_families(name)
        title = f"# {page.title}\n\n{page.intro}"
        parameters = _parameters(page, families)
        page_cell = f"PAGE = {_python(name)}\nFAMILIES = {_python(families)}\nentry = {{\n"
        page_cell += _entry(page) + "\n}"
    old_names = [old for old, new in RENAMED_PARAMETERS.items()
                 if re.search(rf"^{new} = ", parameters, re.MULTILINE)]  # fmt: skip
    sources = [
        ("markdown", title),
        ("code", parameters + _old_parameters(old_names)),
        ("code", _renaming(old_names)),
        ("code", _IMPORTS),
        ("code", page_cell),
        *FAMILY_CELLS,
    ]
    cells = [_cell(kind, source, f"{name.replace('_', '-')}-{i}") for i, (kind, source) in
             enumerate(sources)]  # fmt: skip
    cells[1]["metadata"] = {"tags": ["parameters"]}
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def _old_parameters(old_names: list[str]) -> str:
    """The parameters cell's lines for the old names, so that papermill knows them."""
    renamed = ", ".join(f"{old} is {RENAMED_PARAMETERS[old]}" for old in old_names)
    lines = [f"# Old names, still read (deprecated): {renamed}"]
    return "\n" + "\n".join(lines + [f"{old} = None" for old in old_names])


def _renaming(old_names: list[str]) -> str:
    """The cell that takes the value an old name gave."""
    lines = ["from countlib.notebooks import renamed", ""]
    for old in old_names:
        new = RENAMED_PARAMETERS[old]
        lines.append(f"{new} = renamed({_python(old)}, {old}, {new})")
    return "\n".join(lines)


def renamed(old: str, old_value: Any, value: Any) -> Any:
    """A family notebook's parameter: ``old_value`` where the caller gave the old name ``old``
    (a FutureWarning names the new one), else ``value``."""
    if old_value is None:
        return value
    new = RENAMED_PARAMETERS[old]
    warnings.warn(
        f"notebook parameter {old!r} is now called {new!r} (-p {new} ...); {old!r} still "
        "works for now",
        FutureWarning,
        stacklevel=2,
    )
    return old_value


def _family_parameters() -> str:
    tail = {
        "steps": "None  # None: the page's",
        "lr": "None  # None: the page's, else the family default",
        "warmup_steps": "None  # None: the page's, else the family default",
    }
    head = _COMMON_HEAD.format(model="lstm").rstrip("\n")
    return "\n".join([_FAMILY_PARAMETERS, head, _COMMON_TAIL.format(**tail)])


def _parameters(page: FamilyPage, families: list[str]) -> str:
    models = page.parameters.get("model")
    example = page.model or (models.default[0] if models else families[0])
    lines = [_COMMON_HEAD.format(model=example).rstrip("\n")]
    for parameter, grid in page.parameters.items():
        comment = f"  # {grid.comment}" if grid.comment else ""
        lines.append(f"{parameter} = {_python(grid.default)}{comment}")
    default = "  # None: the family default"
    tail = {
        "steps": page.steps,
        "lr": _python(page.lr) + default,
        "warmup_steps": _python(page.warmup_steps) + default,
    }
    lines.append(_COMMON_TAIL.format(**tail))
    return "\n".join(lines)


def _entry(page: FamilyPage) -> str:
    """The default grid entry's lines, as code over the notebook's parameters."""
    keys = {"task": "task"}
    if page.model is not None:
        keys["model"] = _python(page.model)
    keys |= {parameter: parameter for parameter in page.parameters}
    return "\n".join(f'    "{key}": {value},' for key, value in keys.items())


def _python(value: Any) -> str:
    """``value`` as Python source in the notebooks' style (double-quoted strings)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_python(item) for item in value) + "]"
    return repr(value)


def _cell(kind: str, source: str, cell_id: str) -> dict[str, Any]:
    cell: dict[str, Any] = {
        "cell_type": kind,
        "id": cell_id,
        "metadata": {},
        "source": source.splitlines(keepends=True),
    }
    if kind == "code":
        cell |= {"execution_count": None, "outputs": []}
    return cell


def notebook_text(name: str) -> str:
    """The file ``notebooks/<name>.ipynb`` as this module writes it."""
    # sorted keys and one-space indents: as Jupyter writes a notebook
    return json.dumps(family_notebook(name), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def stale_notebooks(folder: Path = NOTEBOOKS) -> list[str]:
    """The notebooks of `notebook_names` missing in ``folder`` or differing from
    `notebook_text`."""
    return [
        name
        for name in notebook_names()
        if not (folder / f"{name}.ipynb").exists()
        or (folder / f"{name}.ipynb").read_text() != notebook_text(name)
    ]


def write_notebooks(folder: Path = NOTEBOOKS) -> list[Path]:
    written = []
    for name in notebook_names():
        path = folder / f"{name}.ipynb"
        path.write_text(notebook_text(name))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report stale notebooks")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_notebooks()
        for name in stale:
            print(f"notebooks/{name}.ipynb is out of date: python -m countlib.notebooks")
        return 1 if stale else 0
    for path in write_notebooks():
        print(f"wrote {path.relative_to(NOTEBOOKS.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
