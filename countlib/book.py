"""Run a profile, execute the notebooks with papermill, and build the jupyter-book.

`make_book` trains (or reuses) every run of a profile or sweep spec first, with any executor;
then every page is a notebook executed by papermill into ``book/generated`` that only reads
those runs, so what the book shows is exactly what ran. The book never executes code itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from countlib.sweep import SweepReport, SweepRun, run_sweep

FAMILY_NOTEBOOKS = ("train_rnn", "train_transformer", "train_s4", "train_mamba", "train_rwkv")
#: One chapter per paper table, in the order of the book.
TABLE_CHAPTERS = ("2", "A2", "A1", "A3", "A4", "A5", "A6", "A7", "A8")


@dataclass(frozen=True)
class Page:
    """One executed notebook of the book: its source, its file in the book, its parameters."""

    notebook: str
    target: str
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str | None = None  # replaces the notebook's first heading


def book_pages(
    *,
    profile: str | None = None,
    grid: Mapping[str, Any] | None = None,
    scale: str,
    shared: Mapping[str, Any] | None = None,
) -> list[Page]:
    """Every generated page of the book in reading order (``book/_toc.yml`` lists the same)."""
    from countlib.tables import get_table

    shared = dict(shared or {})
    source = {"profile": profile, "grid": dict(grid) if grid else None}
    results = {**shared, "scale": scale}
    pages = [Page("tasks", "tasks")]
    pages += [Page(name, name, {**source, **shared, "train": False}) for name in FAMILY_NOTEBOOKS]
    pages += [
        Page("paper_table", f"table_{key}", {**results, "table": key}, get_table(key).title)
        for key in TABLE_CHAPTERS
    ]
    pages += [
        Page("seed_variance", "seed_variance", results),
        Page("provenance", "provenance", {**results, **source}),
    ]
    return pages


def execute_notebook(
    page: Page | str,
    parameters: Mapping[str, Any] | None = None,
    *,
    notebooks_dir: str | Path = "notebooks",
    out_dir: str | Path = "book/generated",
) -> Path:
    """Execute one page (or a notebook by name) with papermill; returns the executed file."""
    import nbformat
    import papermill

    if isinstance(page, str):
        page = Page(page, page)
    source = Path(notebooks_dir) / f"{page.notebook}.ipynb"
    if not source.exists():
        available = sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {source}; available: {', '.join(available)}")
    notebook = nbformat.read(source, as_version=4)
    if page.title:
        _retitle(notebook, page.title)
    target = Path(out_dir) / f"{page.target}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    executed = papermill.execute_notebook(
        notebook,
        str(target),
        parameters={**page.parameters, **(parameters or {})},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(Path.cwd()),
    )
    # The book shows results first; the code stays one click away.
    for cell in executed.cells:
        if cell.cell_type == "code" and "hide-input" not in cell.metadata.get("tags", []):
            cell.metadata.setdefault("tags", []).append("hide-input")
    nbformat.write(executed, target)
    return target


def _retitle(notebook: Any, title: str) -> None:
    first = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    lines = first.source.splitlines()
    first.source = "\n".join([f"# {title}", *lines[1:]])


def build_book(book_dir: str | Path = "book") -> Path:
    """Run ``jupyter-book build`` on ``book_dir``; returns the HTML folder."""
    executable = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(executable) if executable.exists() else shutil.which("jupyter-book") or "jupyter-book"
    ]
    subprocess.run([*command, "build", str(book_dir)], check=True)
    return Path(book_dir) / "_build" / "html"


def make_book(
    runs: Sequence[SweepRun],
    *,
    profile: str | None = None,
    grid: Mapping[str, Any] | None = None,
    scale: str,
    runs_dir: str | Path = "runs",
    device: str = "auto",
    executor: str = "sequential",
    workers: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    only: Sequence[str] = (),
    build: bool = True,
    log: Callable[[str], None] = print,
) -> SweepReport:
    """Train what is missing of ``runs``, execute the pages, build the book.

    Failed runs do not stop the book: their cells say *missing* and the report lists them.
    ``only`` restricts the executed pages to these notebook or page names.
    """
    shared = {"runs_dir": str(runs_dir), "device": device}
    pages = book_pages(profile=profile, grid=grid, scale=scale, shared=shared)
    known = {p.notebook for p in pages} | {p.target for p in pages}
    unknown = sorted(set(only) - known)
    if unknown:
        choices = ", ".join(sorted(known))
        raise ValueError(f"no book page {', '.join(unknown)}; choose from {choices}")
    report = run_sweep(runs, runs_dir, executor=executor, device=device, workers=workers, log=log)
    log(report.format())
    for page in pages:
        if only and page.notebook not in only and page.target not in only:
            continue
        log(f"executing {page.target} ...")
        execute_notebook(page, parameters)
    if build:
        log(f"book: {build_book() / 'index.html'}")
    return report
