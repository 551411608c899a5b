"""Execute the parameterised notebooks with papermill and build the jupyter-book.

The book never executes code itself: it renders the notebooks papermill wrote into
``book/generated``, so what the book shows is exactly what ran.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

NOTEBOOKS = (
    "train_rnn",
    "train_transformer",
    "train_s4",
    "train_mamba",
    "train_rwkv",
    "paper_tables",  # last: it tabulates the runs the others made
)


def execute_notebook(
    name: str,
    parameters: dict[str, Any] | None = None,
    *,
    notebooks_dir: str | Path = "notebooks",
    out_dir: str | Path = "book/generated",
) -> Path:
    import papermill

    source = Path(notebooks_dir) / f"{name}.ipynb"
    if not source.exists():
        available = sorted(p.stem for p in Path(notebooks_dir).glob("*.ipynb"))
        raise FileNotFoundError(f"no notebook {source}; available: {', '.join(available)}")
    target = Path(out_dir) / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(source),
        str(target),
        parameters=parameters or {},
        kernel_name="python3",
        progress_bar=False,
    )
    return target


def build_book(book_dir: str | Path = "book") -> Path:
    """Run ``jupyter-book build`` on ``book_dir``; returns the HTML folder."""
    executable = Path(sys.executable).with_name("jupyter-book")
    command = [
        str(executable) if executable.exists() else shutil.which("jupyter-book") or "jupyter-book"
    ]
    subprocess.run([*command, "build", str(book_dir)], check=True)
    return Path(book_dir) / "_build" / "html"
