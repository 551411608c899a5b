"""The notebook runs under papermill with tiny parameters, and the book builds around it."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_notebook_executes_and_book_builds(tmp_path):
    for name in ("notebooks", "book"):
        shutil.copytree(REPO / name, tmp_path / name, symlinks=True,
                        ignore=shutil.ignore_patterns("_build", "generated"))  # fmt: skip
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    runs = tmp_path / "runs"
    command = [
        sys.executable, "-m", "countlib", "book",
        "-p", "steps", "20", "-p", "eval_every", "10", "-p", "hidden", "8",
        "-p", "runs_dir", str(runs),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    executed = tmp_path / "book" / "generated" / "train_rnn.ipynb"
    assert executed.exists()
    assert list(runs.glob("shifted_start-lstm-*/COMPLETE"))
    headline = next((runs / "headlines").glob("*.json")).read_text()
    assert '"ood"' in headline

    html = tmp_path / "book" / "_build" / "html"
    page = (html / "generated" / "train_rnn.html").read_text()
    assert "Accuracy per position" in page
    assert "<img" in page, "the per-position plot is missing from the rendered notebook"
    assert (html / "intro.html").exists() and (html / "tasks.html").exists()
