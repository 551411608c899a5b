"""`countlib book --spec tiny.yaml --out DIR` from a temporary directory, after `pip install` of a
built wheel: the runs train, the pages execute in kernels that import the installed countlib,
jupyter-book builds the book, and the command's output says each thing once (no warning that
every kernel or every run prints again)."""

import collections
import json
import subprocess
from pathlib import Path

import pytest

from tests.test_anywhere import install_wheel

#: Three runs of a few steps: two families of one page and a Transformer of another.
TINY = {
    "name": "tiny wheel book",
    "steps": 4,
    "eval_every": 2,
    "seeds": [1],
    "warmup_steps": 0,
    "grid": [
        {"task": "mod10", "model": ["lstm", "s4"], "layers": 1, "hidden": 8},
        {"task": "mod10", "model": "transformer", "layers": 1, "hidden": 8, "heads": 2,
         "pe": "nope"},
    ],
}  # fmt: skip
#: Two pages, so that a line each kernel prints would show twice; pages whose links all point
#: to pages that exist without being executed, so that Sphinx has nothing to warn about.
PAGES = ("train_rnn", "train_transformer")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    python = install_wheel(tmp_path_factory.mktemp("wheel"))
    work = tmp_path_factory.mktemp("elsewhere")  # no checkout around it
    (work / "tiny.yaml").write_text(json.dumps(TINY))
    command = [python, "-m", "countlib", "book", "--spec", "tiny.yaml", "--out", "out",
               "--runs-dir", "runs", "--executor", "pool", "--workers", "2"]  # fmt: skip
    for page in PAGES:
        command += ["--notebook", page]
    done = subprocess.run(command, capture_output=True, text=True, cwd=work, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return work, done


def test_an_installed_countlib_builds_a_book_outside_a_checkout(built):
    work, done = built
    assert "3 runs: 3 completed" in done.stdout
    html = work / "out" / "book" / "_build" / "html"
    assert f"book: {Path('out', 'book', '_build', 'html', 'index.html')}" in done.stdout
    for page in PAGES:
        text = (html / "generated" / f"{page}.html").read_text()
        assert "1 finished run(s) of the 1 planned for it (of 3 in this book)" in text, page
        assert "Learning curves" in text, page
    assert "<td>lstm</td>" in (html / "generated" / "train_rnn.html").read_text()


def test_the_book_says_each_thing_once(built):
    _, done = built
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    repeated = {line: n for line, n in collections.Counter(lines).items() if n > 1}
    assert repeated == {}
    assert not [line for line in lines if "WARNING" in line or "ERROR" in line]


def test_a_missing_book_tool_is_named_before_anything_trains(monkeypatch, tmp_path):
    import importlib.util

    from countlib.book import check_book_tools, make_book

    find_spec = importlib.util.find_spec

    def without_jupyter_book(name, *args):
        return None if name == "jupyter_book" else find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_jupyter_book)
    with pytest.raises(FileNotFoundError, match=r"needs jupyter_book, .*countlib\[book\]"):
        make_book([], scale="x", runs_dir=tmp_path / "runs", out=tmp_path / "out")
    assert list(tmp_path.iterdir()) == []
    check_book_tools(build=False)  # executing the pages alone does not need it


def test_a_parameter_for_every_page_goes_to_the_pages_that_take_it(tmp_path, capfd):
    import nbformat

    from countlib.book import Page, execute_notebook

    cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("print(x)")]  # fmt: skip
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    nbformat.write(notebook, tmp_path / "mini.ipynb")
    out = execute_notebook(Page("mini", "mini"), {"x": 2, "warmup_steps": 5},
                           notebooks_dir=tmp_path, out_dir=tmp_path / "out")  # fmt: skip
    executed = nbformat.read(out, as_version=4)
    assert executed.cells[-1].outputs[0]["text"] == "2\n"
    assert "warmup_steps" not in "".join(cell.source for cell in executed.cells)
    assert "unknown parameter" not in capfd.readouterr().err


def test_a_parameter_no_page_takes_is_refused_before_anything_trains(tmp_path):
    from countlib.book import make_book

    with pytest.raises(ValueError, match="parameter warmpu_steps; the pages take .*warmup_steps"):
        make_book([], scale="x", runs_dir=tmp_path / "runs", out=tmp_path / "out",
                  parameters={"warmpu_steps": 5, "rule": "best_val"})  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def _mini_notebook(path, source):
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}  # fmt: skip
    nbformat.write(notebook, path)


def test_pages_execute_side_by_side_and_a_failed_page_raises_its_own_error(tmp_path):
    import nbformat
    import papermill

    from countlib.book import Page, execute_pages

    for name in ("a", "b", "c"):
        _mini_notebook(tmp_path / f"{name}.ipynb", f"print('{name}', 2 * 3)")
    logged = []
    pages = [Page(name, f"page_{name}") for name in ("a", "b", "c")]
    outs = execute_pages(pages, notebooks_dir=tmp_path, out_dir=tmp_path / "out", workers=2,
                         log=logged.append)  # fmt: skip
    assert [out.name for out in outs] == ["page_a.ipynb", "page_b.ipynb", "page_c.ipynb"]
    for name, out in zip("abc", outs, strict=True):
        assert nbformat.read(out, as_version=4).cells[0].outputs[0]["text"] == f"{name} 6\n"
    assert sorted(line.split()[2] for line in logged) == ["page_a", "page_b", "page_c"]
    assert {line.split()[0] for line in logged} == {"[1/3]", "[2/3]", "[3/3]"}

    _mini_notebook(tmp_path / "bad.ipynb", "raise ValueError('page bad broke')")
    with pytest.raises(papermill.PapermillExecutionError, match="page bad broke"):
        execute_pages([Page("a", "page_a"), Page("bad", "page_bad")], notebooks_dir=tmp_path,
                      out_dir=tmp_path / "out", workers=2, log=logged.append)  # fmt: skip


def test_the_book_builds_warnings_reach_the_log_without_terminal_codes(monkeypatch, capsys):
    import subprocess

    from countlib import book

    sphinx = "\x1b[01mbuilding\x1b[39;49;00m\n\x1b[91m/p/x.md:3: WARNING: bad ref\x1b[39;49;00m\n"
    done = subprocess.CompletedProcess([], 0, stdout=sphinx, stderr="")
    monkeypatch.setattr(book.subprocess, "run", lambda *args, **kwargs: done)
    book.build_book("book")
    assert capsys.readouterr().err == "/p/x.md:3: WARNING: bad ref\n"
