"""Where countlib finds the files it ships and where its runs go, from any working directory.

countlib ships the book's sources (``notebooks/``, ``book/``, ``docs/``, ``_config.yml``) and the
profiles' chosen settings with the package. A checkout keeps them at its root, where their owners
edit them; a wheel installs copies of the same files under ``<prefix>/share/countlib``
(``[tool.setuptools.data-files]`` in pyproject.toml), so there is one source of truth and no
symlink. `shipped` finds a piece in either place.

`default_runs_dir` is the one runs directory every entry point (the CLI, sweeps, the book, the
notebooks in JupyterLab, whose working directory is ``notebooks/``) uses unless told otherwise.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

#: Overrides the default runs directory of every entry point.
RUNS_DIR_VARIABLE = "COUNTLIB_RUNS_DIR"

#: What the book needs from the shipped files, relative to their root.
BOOK_PIECES = ("notebooks", "book/_ext", "book/_static", "book/intro.md", "docs", "_config.yml")

#: Where a wheel installs the shipped files, relative to its data prefix.
SHARE = ("share", "countlib")

#: A folder holding these is a countlib checkout, or a book folder `countlib book --out` wrote.
CHECKOUT_MARKERS = ("notebooks", "book/_config.yml")


class MissingPieceError(FileNotFoundError):
    """A file countlib ships is not where it should be (a broken or partial install)."""


def checkout_root(start: str | Path | None = None) -> Path | None:
    """The countlib checkout holding ``start`` (default: the working directory), or None.

    It is the nearest folder, ``start`` or above, with every `CHECKOUT_MARKERS` entry, so
    ``notebooks/`` of a checkout (JupyterLab's working directory) belongs to it.
    """
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if all((folder / marker).exists() for marker in CHECKOUT_MARKERS):
            return folder
    return None


def default_runs_dir() -> Path:
    """``$COUNTLIB_RUNS_DIR`` if set, else the ``runs/`` of the checkout around the working
    directory, else ``./runs``."""
    if os.environ.get(RUNS_DIR_VARIABLE):
        return Path(os.environ[RUNS_DIR_VARIABLE])
    root = checkout_root()
    return root / "runs" if root else Path("runs")


def runs_dir_or_default(runs_dir: str | Path | None) -> Path:
    """``runs_dir``, or `default_runs_dir` for None (a notebook's or a caller's default)."""
    return default_runs_dir() if runs_dir is None else Path(runs_dir)


def shipped_root() -> Path:
    """The folder holding the shipped files: the checkout this package was imported from (an
    editable install or ``python -m`` there), else the wheel's installed copies, else (neither
    there) the package's parent, where `shipped` and `check_book_pieces` say what is missing."""
    source = Path(__file__).resolve().parents[1]
    if (source / "pyproject.toml").is_file() and (source / "notebooks").is_dir():
        return source
    return _installed_share() or source


def shipped(relative: str) -> Path:
    """The shipped file or folder ``relative`` (e.g. ``notebooks``); a clear error if missing."""
    root = shipped_root()
    path = root / relative
    if not path.exists():
        raise MissingPieceError(f"countlib's {relative} is missing from {root}: reinstall countlib")
    return path


def check_book_pieces() -> Path:
    """The shipped root, once every piece the book needs is there (before anything trains)."""
    root = shipped_root()
    missing = [piece for piece in BOOK_PIECES if not (root / piece).exists()]
    if missing:
        raise MissingPieceError(
            f"the book's {', '.join(missing)} missing from {root}: reinstall countlib"
        )
    return root


def _installed_share() -> Path | None:
    """``<prefix>/share/countlib`` of the installed distribution, found from its file list (so
    that a ``--user`` or virtual-environment install is found alike)."""
    try:
        files = metadata.distribution("countlib").files or []
    except metadata.PackageNotFoundError:
        return None
    marker = (*SHARE, "_config.yml")
    for file in files:
        if tuple(file.parts[-len(marker) :]) == marker:
            return Path(file.locate()).resolve().parent
    return None
