"""`jupyter-book build book` on a fresh clone, before `countlib book` has executed anything:
every generated/ page of the toc is a stand-in saying how to produce it (book/_ext/
generated_placeholders.py), and an executed notebook replaces its stand-in."""

import html
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")


# The book extras are imported where used: `pytest -m gpu` collects this module on a GPU
# machine that has none of them.


def generated_pages() -> list[str]:
    from sphinx_external_toc.parsing import parse_toc_yaml

    site_map = parse_toc_yaml(REPO / "book" / "_toc.yml")
    return [name.removeprefix("generated/") for name in site_map if name.startswith("generated/")]


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """The book of a fresh clone: generated/ and _build/ are git-ignored."""
    # docs/ for the include in tasks.md, notebooks/ for the stand-ins' titles
    for name in ("book", "docs", "notebooks"):
        shutil.copytree(REPO / name, tmp_path / name, symlinks=True,
                        ignore=shutil.ignore_patterns("_build", "generated"))  # fmt: skip
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    return tmp_path / "book"


def build(book: Path) -> str:
    """Run `jupyter-book build`, check that it succeeded without a warning, return its log."""
    done = subprocess.run([str(JUPYTER_BOOK), "build", str(book)],
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    # Sphinx counts every warning, error and critical message in its closing line
    flagged = [line for line in log.splitlines() if re.search("WARNING|ERROR|CRITICAL", line)]
    assert "build succeeded." in log and flagged == [], "\n".join(flagged) or log[-3000:]
    return log


def page_text(book: Path, page: str) -> str:
    source = (book / "_build" / "html" / "generated" / f"{page}.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", source))


def write_notebook(path: Path) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook()
    # what papermill leaves: without a language, myst-nb warns that it has no lexer
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python"}
    output = nbformat.v4.new_output("stream", text="42\n")
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# The tasks, by example\n\nRendered from the notebook."),
        nbformat.v4.new_code_cell("print(42)", execution_count=1, outputs=[output]),
    ]
    nbformat.write(notebook, path)


def test_a_fresh_clone_builds_every_page_as_a_stand_in_without_warnings(book):
    log = build(book)
    assert "nonexisting document" not in log
    pages = generated_pages()
    assert {"tasks", "train_rnn", "table_A1", "provenance"} <= set(pages)
    for page in pages:
        text = page_text(book, page)
        assert "This page has not been produced yet." in text
        assert f"countlib book --profile smoke --notebook {page}" in text
        assert "or countlib book --profile smoke to produce every page" in text
    assert "Table A1#" in page_text(book, "table_A1")  # its heading, with its anchor
    assert "Recurrent baselines" in page_text(book, "train_rnn")  # its notebook's heading


def test_an_executed_notebook_replaces_its_stand_in(book):
    build(book)
    notebook = book / "generated" / "tasks.ipynb"
    write_notebook(notebook)
    # older than the last build, as `cp -p` or an unpacked archive leaves it
    os.utime(notebook, (0, 0))
    log = build(book)
    assert "multiple files found" not in log
    assert not (book / "generated" / "tasks.md").exists()
    text = page_text(book, "tasks")
    assert "Rendered from the notebook." in text and "not been produced" not in text
    assert "not been produced" in page_text(book, "train_rnn")


def test_a_page_written_by_hand_is_neither_overwritten_nor_deleted(book):
    by_hand = book / "generated" / "table_A8.md"
    by_hand.parent.mkdir()
    by_hand.write_text("# Table A8\n\nWritten by hand.\n")
    build(book)
    assert by_hand.read_text() == "# Table A8\n\nWritten by hand.\n"
    assert "Written by hand." in page_text(book, "table_A8")
