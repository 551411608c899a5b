"""The command line as a user meets it: one name per concept (old names still work and say the
new one), spec keys that are not options name the valid ones, `countlib models` and
`--version`, and quiet ends: a closed pipe, Ctrl-C in a sweep, the book build's output."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from countlib import book
from countlib.cli import main
from countlib.config import OptimConfig, RunConfig
from countlib.families import MODELS
from countlib.sweep import SpecError, expand

COUNTLIB = [sys.executable, "-m", "countlib"]


def test_models_lists_every_family_with_its_options_and_defaults(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name, family in MODELS.items():
        assert f"{name}: lr {family.lr}, warmup_steps {family.warmup_steps}" in out
    assert "options: layers=1, hidden=128" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("countlib ")


def test_a_spec_key_that_is_no_option_names_the_valid_keys():
    entry = {"task": "mod10", "model": "lstm", "warmup": 10}
    with pytest.raises(SpecError) as error:
        expand({"grid": [entry]})
    message = str(error.value)
    assert "unknown key 'warmup' (did you mean 'warmup_steps'?)" in message
    assert "eval_every" in message and "model 'lstm': layers, hidden" in message


def test_a_warmup_longer_than_the_run_is_an_error():
    with pytest.raises(ValueError, match="warmup_steps 50 is longer than the run \\(20 steps\\)"):
        RunConfig("mod10", "lstm", optim=OptimConfig(steps=20, warmup_steps=50))
    RunConfig("mod10", "lstm", optim=OptimConfig(steps=20, warmup_steps=20))  # fine
    # the family's default is not the run's own: a short Transformer run keeps the paper's 3,000
    options = {"hidden": 16, "heads": 2, "layers": 1}
    short = RunConfig("mod10", "transformer", model_options=options, optim=OptimConfig(steps=20))
    assert short.resolve().optim.warmup_steps == 3000


def test_old_names_still_work_and_say_the_new_one(capsys):
    from countlib.cli import build_parser

    args = build_parser().parse_args(["train", "--task", "mod10", "--model", "lstm",
                                      "--warmup", "5"])  # fmt: skip
    assert args.warmup_steps == 5
    assert "--warmup is now called --warmup-steps" in capsys.readouterr().err
    args = build_parser().parse_args(["eval", "RUN", "--checkpoint", "last"])
    assert args.checkpoint == "final"
    assert "last is now called final" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["eval", "RUN", "--checkpoint", "newest"])
    assert "expected one of best_ood, best_val, final" in capsys.readouterr().err


def test_a_closed_pipe_ends_quietly():
    """``countlib tasks | head``: the reader goes before countlib writes."""
    process = subprocess.Popen([*COUNTLIB, "tasks"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)  # fmt: skip
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait() == 141 and err == ""


def test_ctrl_c_ends_a_sweep_with_one_line(tmp_path):
    runs = tmp_path / "runs"
    spec = tmp_path / "spec.yaml"
    grid = [{"task": "mod10", "model": "lstm", "layers": 1, "hidden": 4, "seeds": [1, 2, 3]}]
    spec.write_text(json.dumps({"steps": 3, "eval_every": 3, "grid": grid}))
    command = [*COUNTLIB, "sweep", "--spec", spec, "--runs-dir", runs]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/COMPLETE")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the sweep finished before the interrupt arrived")
    assert process.returncode == 130, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert line.startswith("interrupted: ") and " of 3 runs finished" in line
    assert "the same command trains the rest" in line


def test_the_book_build_is_quiet_unless_verbose(tmp_path, monkeypatch, capfd):
    """Sphinx's progress lines only with --verbose; its warnings always. The build runs
    jupyter-book with the Python running countlib: a fake one stands in for it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"
    fake.write_text("#!/bin/sh\nfor i in $(seq 130); do echo \"reading sources... $i\"; done\n"
                    "echo 'page.md:3: WARNING: a warning'\n")  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    book.build_book(tmp_path / "book")
    out, err = capfd.readouterr()
    assert "reading sources" not in out + err and "WARNING: a warning" in err
    book.build_book(tmp_path / "book", verbose=True)
    out, err = capfd.readouterr()
    assert out.count("reading sources") == 130


def test_a_failed_book_build_shows_its_output(tmp_path, monkeypatch, capfd):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "python"  # the build's jupyter-book runs with it
    fake.write_text("#!/bin/sh\necho 'Extension error: why it failed'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(Path(bin_dir) / "python"))
    with pytest.raises(subprocess.CalledProcessError):
        book.build_book(tmp_path / "book")
    assert "why it failed" in capfd.readouterr().err
