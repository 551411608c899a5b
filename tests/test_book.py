"""The book: built from a tiny spec by `countlib book`, checked as files and as web pages; and a
family notebook run on its own by papermill, training its own grid."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from countlib.book import book_pages, make_book, toc
from countlib.claims import CLAIMS, OWN_CLAIMS
from countlib.paper import HYPOTHESIS_TABLES, TABLES
from countlib.results import load_runs
from tests.browser import book_pages as html_pages
from tests.browser import broken_links, browse, chromium

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = Path(os.environ.get("COUNTLIB_ARTIFACTS", REPO / "artifacts"))
TINY_SPEC = REPO / "tests" / "data" / "tiny_book.yaml"


def toc_files(toc: dict) -> list[str]:
    return [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]


def test_the_toc_lists_exactly_the_pages_the_book_executes():
    committed = yaml.safe_load((REPO / "book" / "_toc.yml").read_text())
    stale = "book/_toc.yml is stale: countlib book (or countlib.book.write_toc()) rewrites it"
    assert committed == toc(), stale
    generated = [f for f in toc_files(committed) if f.startswith("generated/")]
    assert generated == [f"generated/{page.target}" for page in book_pages()]
    tables = [p.target for p in book_pages() if p.notebook == "paper_table"]
    assert tables == [table.page for table in TABLES]
    beyond = next(part for part in committed["parts"] if part["caption"] == "Beyond the paper")
    assert [c["file"] for c in beyond["chapters"]] == [
        f"generated/{table.page}" for table in HYPOTHESIS_TABLES
    ]
    for page in book_pages():
        assert (REPO / "notebooks" / f"{page.notebook}.ipynb").exists()


def test_an_unknown_page_is_refused_before_anything_trains(tmp_path):
    with pytest.raises(ValueError, match="no book page table_A9; choose from .*table_A8"):
        make_book([], scale="x", runs_dir=tmp_path / "runs", only=["table_A9"], build=False)
    assert not (tmp_path / "runs").exists()


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    """`countlib book --spec tests/data/tiny_book.yaml` in a copy of the repository's book."""
    root = tmp_path_factory.mktemp("book")
    for name in ("notebooks", "book", "docs"):
        shutil.copytree(REPO / name, root / name, symlinks=True,
                        ignore=shutil.ignore_patterns("_build", "generated"))  # fmt: skip
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    command = [sys.executable, "-m", "countlib", "book", "--spec", str(TINY_SPEC),
               "--runs-dir", "runs", "--workers", "2"]  # fmt: skip
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return root


def page(root: Path, name: str) -> str:
    return (root / "book" / "_build" / "html" / "generated" / f"{name}.html").read_text()


def test_the_book_trains_the_spec_and_renders_every_page(tiny_book):
    runs = load_runs(tiny_book / "runs")
    assert len(runs) == 10 and set(runs["status"]) == {"complete"}
    for generated in book_pages():
        assert (tiny_book / "book" / "generated" / f"{generated.target}.ipynb").exists()
        assert "Scale: " in page(tiny_book, generated.target) or generated.target == "tasks"
    rnn = page(tiny_book, "train_rnn")
    assert "Scale: spec tiny_book.yaml" in rnn and "shows 1 finished run(s) of the 1" in rnn
    assert "OOD accuracy by position" in rnn and "<img" in rnn
    assert "have no results" not in rnn
    findings = page(tiny_book, "findings")
    assert f"{len(CLAIMS)} claims:" in findings and 'id="claim-19"' in findings
    assert "Trained on: " in findings and ", 10 runs." in findings  # one machine, every run
    assert 'id="claim-24-S4"' in findings and "Decidable with <code>--profile smoke" in findings
    # the claims judged inside the models sit on the same page, counted with the others
    assert 'id="claim-16"' in findings and 'id="claim-17"' in findings
    # (the book typesets an apostrophe as ’)
    assert re.search(f"decides 0 of the paper.s {len(CLAIMS) + 2} claims", findings)  # 20 steps
    # countlib's own claims follow, apart, with a verdict per family
    own = findings[findings.index('class="countlib-verdicts"') :]  # their per-family matrix
    assert 'id="claim-C2-Mamba"' in own and 'id="claim-19"' not in own
    assert re.search(f"decides 0 of countlib.s {len(OWN_CLAIMS)} own claims", own)
    # the causal A6 probe has two seeds: the page shows their spread
    assert 'class="countlib-summary"' in page(tiny_book, "seed_variance")


def test_every_task_is_shown_by_example(tiny_book):
    text = page(tiny_book, "tasks")
    tasks = ["vanilla_succession", "helper_token", "helper_token_shifted_start", "shifted_start",
             "mod10", "selective", "selective_mod4", "first_token_heterogeneous"]  # fmt: skip
    for task in tasks:
        assert f'id="{task.replace("_", "-")}"' in text  # its section
    for task in tasks[3:]:  # single tasks; a mixture's captions name its components
        assert f"{task}: a training example" in text
    assert "vanilla: a training example" in text
    assert "succession (auxiliary): a training example" in text
    assert text.count('class="countlib-example"') >= 11


def cells(html: str, table_id: str) -> list[str]:
    table = re.search(rf'<table class="countlib-table" id="{table_id}">.*?</table>', html, re.S)
    assert table, f"table {table_id} is missing"
    return re.findall(r"<td[^>]*>(.*?)</td>", table.group(0), re.S)


def test_each_table_chapter_shows_its_runs_and_says_which_it_did_not_train(tiny_book):
    table2 = cells(page(tiny_book, "table_2"), "table_2")
    assert len(table2) == 21 * 5
    filled = [c for c in table2 if "not trained here" not in c]
    assert len(filled) == 2  # Shifted Start, 1 layer: NoPE and RoPE
    assert all('href="provenance.html#shifted_start-transformer-L1-H16-' in c for c in filled)
    # 20 steps: structural checks, beside the paper's value and never compared with it
    assert all("structural check, 20 steps: not a result" in c for c in filled)
    assert all("<code>countlib book --profile" in c and "range" not in c for c in filled)
    a6 = cells(page(tiny_book, "table_A6"), "table_A6")
    assert ["not trained here" in c for c in a6] == [True, True, False, False]  # d = 32 never ran
    assert "<img" in page(tiny_book, "table_A6")  # per-position curves of its configurations
    a8 = page(tiny_book, "table_A8")
    assert "not trained here" in a8 and "<img" not in a8
    h1 = page(tiny_book, "table_H1")
    assert "The question." in h1 and "negative-eigenvalue" in h1
    shifted = cells(h1, "table_H1")[2 * 13 * 3 : 2 * 13 * 3 + 13]  # Shifted Start, 1L
    assert ["not trained here" in c for c in shifted] == [True] * 4 + [False, False] + [True] * 7
    assert "paper 100.0 / 100.0" in shifted[0]  # the LSTM's printed value, Table A1
    assert 'class="countlib-verdicts"' in h1 and 'id="claim-C3-Mamba"' in h1
    assert "Its verdicts read the best of seeds" in page(tiny_book, "table_H2")
    for table in TABLES:
        text = page(tiny_book, table.page)
        assert "Scale: spec tiny_book.yaml" in text
        says_which = "finished run(s) of the" in text or "has no runs for Table" in text
        assert says_which, table.key


def test_provenance_anchors_every_run_and_names_the_spec(tiny_book):
    text = page(tiny_book, "provenance")
    for run in load_runs(tiny_book / "runs")["run"]:
        assert f'id="{run}"' in text
    assert "bidirectional" in text and "Spec settings" in text
    assert f"{os.cpu_count()} cores" in text and "torch 2.13.0" in text  # hardware, software


def test_the_book_has_no_broken_links_and_loads_cleanly_in_a_browser(tiny_book):
    html = tiny_book / "book" / "_build" / "html"
    assert broken_links(html) == []
    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium); browser checks skipped")
    shot = ARTIFACTS / "table_2.png"
    assert browse(html_pages(html), screenshot=(html / "generated" / "table_2.html", shot)) == {}
    assert shot.stat().st_size > 10_000


def test_a_family_notebook_trains_its_own_grid_without_a_profile(tmp_path):
    import papermill  # here: `pytest -m gpu` collects this module where papermill is not

    out = tmp_path / "train_transformer.ipynb"
    parameters = {"pes": ["nope"], "layers": 1, "hidden": 16, "heads": 2, "steps": 12,
                  "eval_every": 6, "warmup": 6, "runs_dir": str(tmp_path / "runs")}  # fmt: skip
    papermill.execute_notebook(str(REPO / "notebooks" / "train_transformer.ipynb"), str(out),
                               parameters=parameters, kernel_name="python3",
                               progress_bar=False)  # fmt: skip
    runs = load_runs(tmp_path / "runs")
    assert list(runs["status"]) == ["complete"] and list(runs["steps"]) == [12]
    assert "this notebook's grid" in out.read_text()
    headline = next((tmp_path / "runs" / "headlines").glob("train_transformer-grid.json"))
    assert '"best_ood"' in headline.read_text()
