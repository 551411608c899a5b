"""The notebook runs under papermill with tiny parameters, and the book builds around it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser import book_pages, broken_links, browse, chromium

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("COUNTLIB_ARTIFACTS", REPO / "artifacts"))


def test_notebook_executes_and_book_builds(tmp_path):
    for name in ("notebooks", "book"):
        shutil.copytree(REPO / name, tmp_path / name, symlinks=True,
                        ignore=shutil.ignore_patterns("_build", "generated"))  # fmt: skip
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    runs = tmp_path / "runs"
    command = [
        sys.executable, "-m", "countlib", "book",
        "-p", "steps", "20", "-p", "eval_every", "10", "-p", "hidden", "32",
        "-p", "runs_dir", str(runs),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    executed = tmp_path / "book" / "generated" / "train_rnn.ipynb"
    assert executed.exists()
    assert list(runs.glob("shifted_start-lstm-*/COMPLETE"))
    headline = next((runs / "headlines").glob("*.json")).read_text()
    assert '"best_ood"' in headline and '"median_ood"' in headline

    html = tmp_path / "book" / "_build" / "html"
    page = (html / "generated" / "train_rnn.html").read_text()
    assert "Accuracy per position" in page
    assert "<img" in page, "the per-position plot is missing from the rendered notebook"
    assert (html / "intro.html").exists() and (html / "tasks.html").exists()
    tables_page = html / "generated" / "paper_tables.html"
    text = tables_page.read_text()
    assert "Table 2: Transformers, best of seeds" in text and "Table A8" in text
    assert "cl-missing" in text, "tables without runs must say so"
    assert "Scale: smoke" in text

    assert broken_links(html) == []
    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium); browser checks skipped")
    pages = book_pages(html)
    shot = ARTIFACTS / "paper_tables.png"
    assert browse(pages, screenshot=(tables_page, shot)) == {}
    assert shot.stat().st_size > 10_000
