"""countlib run from anywhere: one default runs directory for every entry point, and the book's
sources shipped with the package, found after a wheel install from a directory outside any
checkout, with every missing piece reported before anything trains."""

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from countlib import paths
from countlib.book import BOOK_SOURCES, book_pages, make_book
from countlib.paths import BOOK_PIECES, default_runs_dir

REPO = Path(__file__).resolve().parents[1]
#: What a wheel is built from: the package and every file pyproject.toml ships.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "_config.yml", "countlib", "notebooks", "book",
                 "docs", "experiments/chosen_settings.yaml",
                 "benchmarks/cpu_step_times.json")  # fmt: skip
ONE_RUN = {"grid": [{"task": "mod10", "model": "lstm", "layers": 1, "hidden": 4, "steps": 2}]}


# -- one default runs directory ----------------------------------------------------------------


def test_the_default_runs_dir_is_the_checkouts_from_any_folder_inside_it(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.RUNS_DIR_VARIABLE, raising=False)
    monkeypatch.chdir(REPO / "notebooks")  # JupyterLab's working directory for a notebook
    assert default_runs_dir() == REPO / "runs"
    monkeypatch.chdir(tmp_path)
    assert default_runs_dir() == Path("runs")
    monkeypatch.setenv(paths.RUNS_DIR_VARIABLE, str(tmp_path / "elsewhere"))
    assert default_runs_dir() == tmp_path / "elsewhere"


def test_every_notebook_and_command_takes_the_default(monkeypatch, tmp_path):
    """The notebooks' ``runs_dir`` parameter is None (the default), and the CLI's
    ``--runs-dir`` defaults to it."""
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        source = "".join(next(c["source"] for c in cells if c["cell_type"] == "code"))
        if "runs_dir" in source:
            assert "runs_dir = None" in source, notebook.name
    from countlib.cli import build_parser

    monkeypatch.setenv(paths.RUNS_DIR_VARIABLE, str(tmp_path))
    for command in (["sweep", "--profile", "smoke"], ["book"], ["train", "--task", "x",
                    "--model", "y"]):  # fmt: skip
        assert build_parser().parse_args(command).runs_dir == str(tmp_path)


# -- the book outside a checkout -----------------------------------------------------------------


def test_outside_a_checkout_the_book_asks_for_out_before_training(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--out DIR"):
        make_book([], scale="x", runs_dir=tmp_path / "runs", build=False)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_piece_is_reported_before_anything_trains(monkeypatch, tmp_path):
    partial = tmp_path / "install"
    shutil.copytree(REPO / "notebooks", partial / "notebooks")  # and nothing else
    monkeypatch.setattr(paths, "shipped_root", lambda: partial)
    with pytest.raises(FileNotFoundError, match="book/_ext, .*docs, _config.yml missing"):
        make_book([], scale="x", runs_dir=tmp_path / "runs", out=tmp_path / "out", build=False)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()


def test_out_gets_a_copy_of_the_sources_without_build_outputs(tmp_path):
    from countlib.book import stage_book

    stage_book(tmp_path / "out", REPO)
    for name in BOOK_SOURCES:
        assert (tmp_path / "out" / name).exists(), name
    assert not (tmp_path / "out" / "book" / "_config.yml").is_symlink()
    assert not (tmp_path / "out" / "book" / "generated").exists()
    assert not list((tmp_path / "out").rglob("__pycache__"))


# -- after a wheel install -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return install_wheel(tmp_path_factory.mktemp("wheel"))


def install_wheel(root: Path) -> Path:
    """The Python of a virtual environment in ``root`` with countlib installed from a wheel (no
    editable link), whose other packages are this environment's (a .pth line: torch is not
    installed again)."""
    source = root / "source"
    for name in WHEEL_SOURCES:
        if (REPO / name).is_dir():
            outputs = shutil.ignore_patterns("_build", "generated", "__pycache__")
            shutil.copytree(REPO / name, source / name, symlinks=True, ignore=outputs)
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, source / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    wheels = root / "wheels"
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", wheels, source],
                   check=True, cwd=root)  # fmt: skip
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    Path(site, "countlib_test_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    wheel = next(wheels.glob("countlib-*.whl"))
    subprocess.run([*pip, "--python", python, "install", "--no-deps", wheel], check=True)
    return python


def run_installed(python: Path, code: str, cwd: Path) -> str:
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_wheel_ships_every_piece_of_the_book(installed, tmp_path):
    code = (
        "import json, countlib, countlib.paths as p, countlib.selections as s\n"
        "root = p.check_book_pieces()\n"
        "print(json.dumps({'package': countlib.__file__, 'root': str(root),\n"
        "                  'settings': s.CHOSEN_SETTINGS.is_file()}))"
    )
    found = json.loads(run_installed(installed, code, tmp_path))
    root = Path(found["root"])
    assert REPO not in Path(found["package"]).parents  # the wheel's copy, not this checkout
    assert root.parts[-2:] == ("share", "countlib") and found["settings"]
    for piece in BOOK_PIECES:
        assert (root / piece).exists(), piece
    for page in book_pages():
        assert (root / "notebooks" / f"{page.notebook}.ipynb").is_file(), page.notebook
    assert (root / "book" / "_config.yml").read_text() == (REPO / "_config.yml").read_text()
    for reference in (REPO / "docs").glob("*.md"):
        assert (root / "docs" / reference.name).read_text() == reference.read_text()


def test_an_installed_countlib_reports_a_missing_piece_before_training(installed, tmp_path):
    code = "import countlib.paths as p; print(p.check_book_pieces())"
    root = Path(run_installed(installed, code, tmp_path).strip())
    shutil.rmtree(root / "book" / "_ext")
    spec = tmp_path / "one.yaml"
    spec.write_text(json.dumps(ONE_RUN))
    command = [installed, "-m", "countlib", "book", "--spec", spec, "--out", "out",
               "--runs-dir", "runs", "--executor", "sequential"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: the book's book/_ext missing from")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "out").exists()
