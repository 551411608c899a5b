"""Run a profile, execute the notebooks with papermill, and build the jupyter-book.

`make_book` trains (or reuses) every run of a profile or sweep spec first, with any executor,
and writes their manifest (`countlib.manifest`: names and config hashes of exactly the runs the
command selected); then every page is a notebook executed by papermill into ``book/generated``
that reads only the manifest's runs, so what the book shows is exactly what this command ran,
whatever else the runs directory holds. The book never executes code itself. The chapters and
``book/_toc.yml`` follow from `countlib.paper.TABLES` (the paper's tables, then countlib's own).

A book is built in a *book root*: a folder with ``book/``, ``docs/``, ``notebooks/`` and
``_config.yml``, as the repository's root has them. In a checkout that is the checkout itself;
``--out DIR`` (or a run outside any checkout) copies the shipped sources (`countlib.paths`) into
DIR first, so the command works from any directory and after a wheel install.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from countlib.families import family_pages, page_families
from countlib.manifest import PlannedRun, RunManifest
from countlib.notebooks import FAMILY_NOTEBOOK
from countlib.paper import HYPOTHESIS_TABLES, PAPER_TABLES, TABLES
from countlib.paths import (
    MissingPieceError,
    check_book_pieces,
    checkout_root,
    runs_dir_or_default,
    shipped,
)

if TYPE_CHECKING:
    from countlib.sweep import SweepReport, SweepRun

#: Where `make_book` writes the manifest of the runs it trained (in the book root); every page
#: reads it.
MANIFEST = "book/generated/runs.json"
TOC = "book/_toc.yml"
#: The shipped sources a book root holds (`stage_book` copies them).
BOOK_SOURCES = ("book", "docs", "notebooks", "_config.yml")
#: What `stage_book` leaves out: build outputs and a checkout's executed pages.
NOT_SOURCES = shutil.ignore_patterns("_build", "generated", "__pycache__", ".ipynb_checkpoints")


@dataclass(frozen=True)
class Page:
    """One executed notebook of the book: its source, its file in the book, its parameters."""

    notebook: str
    target: str
    parameters: dict[str, Any] = field(default_factory=dict)
    title: str | None = None  # replaces the notebook's first heading


def book_pages(shared: Mapping[str, Any] | None = None) -> list[Page]:
    """Every generated page of the book in reading order (`write_toc` lists the same).

    ``shared``: parameters every page but the task catalogue gets (runs_dir, manifest).
    """
    shared = dict(shared or {})
    pages = [Page("findings", "findings", shared), Page("tasks", "tasks")]
    # every family page, the catalogue's then the registered families', from one notebook
    family = {**shared, "train": False}
    pages += [
        Page(FAMILY_NOTEBOOK, name, family | {"family": page_families(name)[0]}, page.title)
        for name, page in family_pages().items()
    ]
    pages += [
        Page("paper_table", table.page, {**shared, "table": table.key}, table.title)
        for table in TABLES
    ]
    pages += [Page("analysis", "analysis", shared)]
    pages += [Page("seed_variance", "seed_variance", shared)]
    pages += [Page("provenance", "provenance", shared)]
    return pages


def toc() -> dict[str, Any]:
    """The table of contents of ``book/_toc.yml``, from `book_pages`."""
    parts = [
        ("Findings", ["generated/findings"]),
        ("The question", ["generated/tasks", "tasks"]),
        ("Architecture families", [f"generated/{p}" for p in family_pages()]),
        ("The paper's tables", [f"generated/{table.page}" for table in PAPER_TABLES]),
        ("Beyond the paper", [f"generated/{table.page}" for table in HYPOTHESIS_TABLES]),
        ("Inside the models", ["generated/analysis"]),
        ("Across runs", ["generated/seed_variance", "generated/provenance"]),
        # the reference pages: book/<page>.md includes docs/<page>.md
        ("Reference", ["using", "sweeps", "models", "metrics", "records", "speed", "analysis"]),
    ]
    return {
        "format": "jb-book",
        "root": "intro",
        "parts": [
            {"caption": caption, "chapters": [{"file": f} for f in files]}
            for caption, files in parts
        ],
    }


def write_toc(path: str | Path = TOC) -> Path:
    header = (
        "# Written by countlib.book.write_toc from countlib.paper.TABLES and the book's\n"
        "# pages (countlib book rewrites it); tests/test_book.py checks that it is current.\n"
    )
    path = Path(path)
    path.write_text(header + yaml.safe_dump(toc(), sort_keys=False))
    return path


def manifest_for(
    runs: Sequence[SweepRun],
    *,
    scale: str,
    profile: str | None = None,
    grid: Mapping[str, Any] | None = None,
    selection: Mapping[str, Sequence[str]] | None = None,
) -> RunManifest:
    """The manifest of exactly ``runs``: what a book built from them may show."""
    planned = [_planned(run) for run in runs]
    source = {"profile": profile} if profile else {"spec": dict(grid or {})}
    chosen = {key: list(values) for key, values in (selection or {}).items() if values}
    return RunManifest(scale, source, planned, chosen)


def execute_notebook(
    page: Page | str,
    parameters: Mapping[str, Any] | None = None,
    *,
    notebooks_dir: str | Path | None = None,
    out_dir: str | Path = "book/generated",
) -> Path:
    """Execute one page (or a notebook by name) with papermill; returns the executed file.

    ``notebooks_dir``: default, the notebooks countlib ships (`countlib.paths.shipped`).
    """
    import nbformat
    import papermill

    if isinstance(page, str):
        page = Page(page, page)
    notebooks_dir = shipped("notebooks") if notebooks_dir is None else notebooks_dir
    source = Path(notebooks_dir) / f"{page.notebook}.ipynb"
    if not source.exists():
        available = sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {source}; available: {', '.join(available)}")
    notebook = nbformat.read(source, as_version=4)
    if page.title:
        _retitle(notebook, page.title)
    target = Path(out_dir) / f"{page.target}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    # a parameter for every page goes to the pages that take it: papermill warns, once per
    # page, of a parameter the notebook does not take
    takes = notebook_parameters(source)
    given = {name: value for name, value in (parameters or {}).items() if name in takes}
    executed = papermill.execute_notebook(
        notebook,
        str(target),
        parameters={**page.parameters, **given},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(Path.cwd()),
        **_kernel_options(),
    )
    # The book shows results first; the code stays one click away.
    for cell in executed.cells:
        if cell.cell_type == "code" and "hide-input" not in cell.metadata.get("tags", []):
            cell.metadata.setdefault("tags", []).append("hide-input")
    nbformat.write(executed, target)
    return target


def execute_pages(
    pages: Sequence[Page],
    parameters: Mapping[str, Any] | None = None,
    *,
    notebooks_dir: str | Path,
    out_dir: str | Path,
    workers: int | None = None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Execute ``pages`` (`execute_notebook`), ``workers`` at a time (default: one per core).

    Each page runs in its own kernel and reads only the runs' files, so the pages are
    independent; one at a time they were a sixth of the main job. A failed page stops the rest
    and raises its error, the first in page order when several fail.
    """
    workers = max(1, min(len(pages), workers or os.cpu_count() or 1))
    done = 0

    def finished(page: Page, seconds: float) -> None:
        nonlocal done
        done += 1
        log(f"[{done}/{len(pages)}] executed {page.target} ({seconds:.0f} s)")

    if workers == 1:
        targets = []
        for page in pages:
            target, seconds = _execute_timed(page, parameters, notebooks_dir, out_dir)
            finished(page, seconds)
            targets.append(target)
        return targets
    # spawn: the parent may hold torch's thread pools (a sequential sweep trains in-process)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {
            pool.submit(_execute_timed, page, parameters, notebooks_dir, out_dir): page
            for page in pages
        }
        try:
            for future in as_completed(futures):
                finished(futures[future], future.result()[1])
        except Exception:
            pool.shutdown(cancel_futures=True)
            _raise_first_in_order(list(futures))
            raise
        except BaseException:  # an interrupt: stop the pages not started yet
            pool.shutdown(cancel_futures=True)
            raise
    return [future.result()[0] for future in futures]


def _execute_timed(
    page: Page, parameters: Mapping[str, Any] | None, notebooks_dir: str | Path, out_dir: str | Path
) -> tuple[Path, float]:
    start = time.perf_counter()
    target = execute_notebook(page, parameters, notebooks_dir=notebooks_dir, out_dir=out_dir)
    return target, time.perf_counter() - start


def _raise_first_in_order(futures: Sequence[Future[Any]]) -> None:
    """Re-raise the error of the first failed page in page order (pages cancelled after the
    failure have none)."""
    for future in futures:
        if future.done() and not future.cancelled() and future.exception() is not None:
            raise future.exception()  # type: ignore[misc]


def notebook_parameters(notebook: str | Path) -> set[str]:
    """The parameters ``notebook`` takes: the names its parameters cell assigns."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def _kernel_options() -> dict[str, Any]:
    """How papermill starts and stops the pages' kernels, so that each page prints nothing.

    ipykernel 7 warns at every start of a kernel over plain TCP: the kernels talk to papermill
    encrypted instead, with CurveZMQ keys their manager provisions (where jupyter_client and
    pyzmq can). jupyter_client interrupts a kernel before asking it to shut down, and a kernel
    still finishing papermill's last request logs "KeyboardInterrupt caught in kernel": when
    papermill shuts a kernel down its cells are done (or failed), so there is nothing to
    interrupt.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager
    from traitlets.config import Config

    class PageKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

        interrupt_kernel = _async_interrupt_kernel

    config = Config()
    if "transport_encryption" in AsyncKernelManager.class_trait_names() and zmq.has("curve"):
        config.KernelManager.transport_encryption = "auto"
    return {"config": config, "kernel_manager_class": PageKernelManager}


def _retitle(notebook: Any, title: str) -> None:
    first = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    lines = first.source.splitlines()
    first.source = "\n".join([f"# {title}", *lines[1:]])


def build_book(book_dir: str | Path = "book", *, verbose: bool = False) -> Path:
    """Run ``jupyter-book build`` on ``book_dir``; returns the HTML folder.

    Sphinx's ~130 lines of progress are shown with ``verbose`` only; otherwise a failed build
    prints them (they say why) and a successful one prints its warnings alone.
    """
    # the jupyter-book of the Python running countlib, as the pages' kernels are: its script
    # need not be on PATH (an environment used without activating it)
    command = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
    command += ["build", str(book_dir)]
    if verbose:
        subprocess.run(command, check=True)
    else:
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode:
            print(done.stdout + done.stderr, file=sys.stderr)
            raise subprocess.CalledProcessError(done.returncode, command)
        for line in (done.stdout + done.stderr).splitlines():
            if "WARNING" in line or "ERROR" in line:
                print(plain_text(line), file=sys.stderr)
    return Path(book_dir) / "_build" / "html"


#: A terminal's colour and style codes, which Sphinx writes into its warnings even when they go
#: to a pipe (`build_book` prints them to a log).
_TERMINAL_CODES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def plain_text(line: str) -> str:
    """``line`` without a terminal's colour codes."""
    return _TERMINAL_CODES.sub("", line)


#: The packages of the ``book`` extra that `make_book` imports: to execute the pages, and to
#: build the book.
EXECUTE_TOOLS = ("papermill", "ipykernel")
BUILD_TOOLS = ("jupyter_book",)


def check_book_tools(*, build: bool = True) -> None:
    """Refuse a book whose tools are not installed, before anything trains."""
    needed = EXECUTE_TOOLS + (BUILD_TOOLS if build else ())
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingPieceError(
            f"the book needs {', '.join(missing)}, not installed: pip install 'countlib[book]'"
        )


def _check_parameters(
    parameters: Mapping[str, Any], pages: Sequence[Page], notebooks_dir: Path
) -> None:
    """Refuse a parameter for every page (``-p NAME VALUE``) that none of ``pages`` takes."""
    takes = set().union(*(notebook_parameters(notebooks_dir / f"{p.notebook}.ipynb")
                          for p in pages))  # fmt: skip
    unknown = sorted(set(parameters) - takes)
    if unknown:
        raise ValueError(
            f"no page takes the parameter {', '.join(unknown)}; the pages take "
            f"{', '.join(sorted(takes))}"
        )


def book_root(out: str | Path | None = None) -> Path:
    """Where the book is built: ``out``, else the checkout around the working directory."""
    if out is not None:
        return Path(out)
    root = checkout_root()
    if root is None:
        raise ValueError(
            "outside a countlib checkout, say where the book goes: countlib book --out DIR"
        )
    return root


def stage_book(root: Path, sources: Path) -> None:
    """Copy the shipped book sources into ``root``, unless ``root`` is where they live.

    Links are copied as the files they point to (a checkout's ``book/_config.yml`` is one).
    """
    if root.resolve() == sources.resolve():
        return
    root.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        source = sources / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=NOT_SOURCES, dirs_exist_ok=True)
        else:
            shutil.copy(source, root / name)


def _planned(run: SweepRun) -> PlannedRun:
    resolved = run.config.resolve()  # the task's canonical name, the family's default budget
    return PlannedRun(
        run.name,
        run.config.config_hash(),
        resolved.task,
        resolved.model,
        run.family,
        tuple(run.tables),
        resolved.optim.steps,
    )


def make_book(
    runs: Sequence[SweepRun],
    *,
    profile: str | None = None,
    grid: Mapping[str, Any] | None = None,
    scale: str,
    selection: Mapping[str, Sequence[str]] | None = None,
    runs_dir: str | Path | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    executor: str = "sequential",
    workers: int | None = None,
    parameters: Mapping[str, Any] | None = None,
    only: Sequence[str] = (),
    build: bool = True,
    verbose: bool = False,
    log: Callable[[str], None] = print,
) -> SweepReport:
    """Train what is missing of ``runs``, write their manifest, execute the pages, build the book.

    Failed runs do not stop the book: their cells say *missing* and the report lists them.
    ``selection`` records the command's restrictions (task, family, table) for the pages to
    state. ``only`` restricts the executed pages to these notebook or page names. ``out``: the
    book root (`book_root`). Every check of the sources and of ``out`` comes before training.
    """
    from countlib.sweep import run_sweep

    runs_dir = runs_dir_or_default(runs_dir)
    root = book_root(out)
    manifest_path = root / MANIFEST
    shared = {"runs_dir": str(runs_dir), "manifest": str(manifest_path)}
    pages = book_pages(shared)
    known = {p.notebook for p in pages} | {p.target for p in pages}
    unknown = sorted(set(only) - known)
    if unknown:
        choices = ", ".join(sorted(known))
        raise ValueError(f"no book page {', '.join(unknown)}; choose from {choices}")
    chosen = [p for p in pages if not only or p.notebook in only or p.target in only]
    check_book_tools(build=build)
    sources = check_book_pieces()
    _check_parameters(parameters or {}, chosen, sources / "notebooks")
    stage_book(root, sources)
    report = run_sweep(runs, runs_dir, executor=executor, device=device, workers=workers, log=log)
    log(report.format())
    manifest = manifest_for(runs, scale=scale, profile=profile, grid=grid, selection=selection)
    manifest.save(manifest_path)
    write_toc(root / TOC)
    execute_pages(
        chosen,
        parameters,
        notebooks_dir=root / "notebooks",
        out_dir=manifest_path.parent,
        workers=workers,
        log=log,
    )
    if build:
        html = build_book(root / "book", verbose=verbose)
        log(f"book: {html / 'index.html'}")
    return report
