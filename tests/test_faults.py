"""Faults a user meets, each recoverable or refused in one line (issue 27, items 2-4): a
checkpoint that cannot resume its run, a full disk or a refused write, inputs without bounds,
and records that differ between identical runs or hide from the group."""

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from countlib import data
from countlib.cli import main
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.sweep import expand, run_sweep
from countlib.sweep.spec import MAX_GRID_RUNS, SpecError, grid_size
from countlib.tasks import get_task
from countlib.train import checkpoint, train, trainer
from countlib.train.checkpoint import (
    load_state,
    save_state,
    save_weights,
    with_sorted_metadata,
)
from countlib.train.records import RunDir, atomic_write_text

COUNTLIB = [sys.executable, "-m", "countlib"]
#: A tiny run: two evaluations after step 0, its checkpoint about 80 KB.
TINY = ["--task", "shifted_start", "--model", "lstm", "--hidden", "8", "--steps", "4",
        "--eval-every", "2", "--batch-size", "4", "--device", "cpu", "--quiet"]  # fmt: skip
TINY_CONFIG = RunConfig(
    task="shifted_start",
    model="lstm",
    model_options={"hidden": 8},
    optim=OptimConfig(steps=4, batch_size=4),
    eval=EvalConfig(every=2),
)
#: The file size limit of a "full disk": below a checkpoint, above every other record.
FULL_DISK_BYTES = 40 * 1024


def one_line_error(capsys: pytest.CaptureFixture[str], *args: object) -> str:
    """The error of ``countlib ARGS``, which must fail with one line and exit 2."""
    code = main([str(arg) for arg in args])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


class Killed(BaseException):
    """A kill of the training process, as far as the run's files can tell."""


@pytest.fixture
def unfinished(tmp_path, monkeypatch) -> RunDir:
    """A run killed as it wrote its step-2 checkpoint: last.pt holds step 0, no COMPLETE."""
    writes = []

    def killed_at_second_checkpoint(*args, **kwargs):
        writes.append(args[0])
        if len(writes) == 2:
            raise Killed
        save_state(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(trainer, "save_state", killed_at_second_checkpoint)
        with pytest.raises(Killed):
            train(TINY_CONFIG, tmp_path / "runs", device="cpu", progress=False)
    run = RunDir(tmp_path / "runs" / TINY_CONFIG.run_name())
    assert not run.is_complete() and load_state(run.last)["step"] == 0
    return run


def truncate(path: Path, size: int = 1000) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)


# -- item 2: a checkpoint that cannot resume, a failed write ---------------------------------


@pytest.mark.parametrize("damage", ["truncated", "emptied", "garbled"])
def test_a_broken_checkpoint_is_one_line_naming_it_and_the_way_out(damage, unfinished, capsys):
    if damage == "truncated":
        truncate(unfinished.last)
    elif damage == "emptied":
        truncate(unfinished.last, 0)
    else:
        unfinished.last.write_bytes(b"\x00garbage" * 100)
    err = one_line_error(capsys, "train", *TINY, "--runs-dir", unfinished.path.parent)
    assert f"{unfinished.last} is truncated or corrupt" in err and "--retrain-broken" in err
    assert "Errno" not in err and "internal miniz error" not in err


def test_a_sweep_fails_a_broken_checkpoint_in_one_line_and_retrain_broken_restarts_it(
    unfinished, tmp_path, capsys
):
    truncate(unfinished.last)
    runs_dir = unfinished.path.parent
    report = run_sweep([TINY_CONFIG], runs_dir, device="cpu")
    (outcome,) = report.outcomes
    assert outcome.status == "failed" and "Traceback" not in outcome.error
    assert str(unfinished.last) in outcome.error and "--retrain-broken" in outcome.error

    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({"steps": 4, "eval_every": 2, "batch_size": 4, "grid": [
        {"task": "shifted_start", "model": "lstm", "hidden": 8, "seed": 1234}]}))  # fmt: skip
    sweep = ["sweep", "--spec", spec, "--runs-dir", runs_dir, "--device", "cpu"]
    assert main([str(arg) for arg in [*sweep, "--retrain-broken"]]) == 0
    out = capsys.readouterr().out
    assert f"moved aside to {unfinished.path.name}.broken-" in out and "1 completed" in out
    (aside,) = runs_dir.glob(f"{unfinished.path.name}.broken-*")
    assert (aside / "last.pt").stat().st_size == 1000  # set aside as it was, not deleted
    assert unfinished.read_final()["status"] == "complete"


def test_train_retrain_broken_restarts_a_run_whose_checkpoint_is_another_runs(
    unfinished, tmp_path, capsys
):
    save_state(unfinished.last, {"step": 0}, config_hash="0123456789ab")
    runs_dir = unfinished.path.parent
    err = one_line_error(capsys, "train", *TINY, "--runs-dir", runs_dir)
    assert "belongs to run 0123456789ab" in err and "--retrain-broken" in err

    assert main(["train", *TINY, "--runs-dir", str(runs_dir), "--retrain-broken"]) == 0
    assert "moved aside" in capsys.readouterr().out
    assert unfinished.read_final()["status"] == "complete"
    assert len(list(runs_dir.glob("*.broken-*"))) == 1


def test_retrain_broken_leaves_a_healthy_unfinished_run_to_resume(unfinished, capsys):
    assert (
        main(["train", *TINY, "--runs-dir", str(unfinished.path.parent), "--retrain-broken"]) == 0
    )
    assert "moved aside" not in capsys.readouterr().out
    assert not list(unfinished.path.parent.glob("*.broken-*"))
    assert unfinished.read_final()["status"] == "complete"


def limit_file_size() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FULL_DISK_BYTES, FULL_DISK_BYTES))


def test_a_full_disk_at_a_checkpoint_is_one_line_and_keeps_the_previous_one(unfinished):
    before = unfinished.last.read_bytes()
    command = [*COUNTLIB, "train", *TINY, "--runs-dir", str(unfinished.path.parent)]
    resumed = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit_file_size)
    assert resumed.returncode == 2, resumed.stderr
    assert resumed.stderr == f"error: {unfinished.last}: File too large\n"
    assert unfinished.last.read_bytes() == before  # the previous checkpoint, intact
    assert not list(unfinished.path.glob(".last.pt.*.tmp"))

    resumed = subprocess.run(command, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert unfinished.read_final()["steps"] == 4


def test_a_refused_write_names_the_record_not_its_temporary_file(tmp_path, monkeypatch):
    record = tmp_path / "summary.json"

    def refused(*args, dir, prefix, suffix):
        raise PermissionError(13, "Permission denied", f"{dir}/{prefix}x1y2{suffix}")

    monkeypatch.setattr("tempfile.mkstemp", refused)
    with pytest.raises(PermissionError) as refusal:
        atomic_write_text(record, "{}")
    assert refusal.value.filename == str(record)


# -- item 3: bounded inputs ------------------------------------------------------------------


def test_checking_dev_zero_ends_at_once_naming_the_line(capsys):
    started = time.perf_counter()
    assert main(["data", "check", "/dev/zero", "--task", "mod10"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: /dev/zero:1: longer than ") and err.count("\n") == 1
    assert time.perf_counter() - started < 5


def test_a_line_longer_than_any_example_names_its_line(tmp_path, capsys):
    task = get_task("mod10")
    longest = ["a"] * task.max_seq_len
    good = data.format_example((longest, task.labels(longest)))
    assert len(good) <= data.longest_line(task)  # the longest example the task holds passes
    path = tmp_path / "long.txt"
    path.write_text(good + "\n" + " " * data.longest_line(task) + "\n")
    assert main(["data", "check", str(path), "--task", "mod10"]) == 1
    assert f"{path}:2: longer than {data.longest_line(task):,}" in capsys.readouterr().err


def test_a_file_beyond_the_size_limit_is_refused_at_the_line_it_passes(tmp_path, monkeypatch):
    path = tmp_path / "many.txt"
    path.write_text('[["a"], ["1"]]\n' * 10)
    monkeypatch.setattr(data, "MAX_FILE_CHARS", 15 * 4)
    with pytest.raises(data.DataFileError, match=f"^{path}:5: the file exceeds 60 characters"):
        data.check_file(path, get_task("mod10"))


def huge_spec(tmp_path: Path) -> Path:
    """A grid of 10^6 runs: 1,000 seeds by 1,000 widths."""
    spec = tmp_path / "huge.yaml"
    grid = [{"task": "mod10", "model": "lstm", "hidden": list(range(1, 1001)),
             "seeds": list(range(1000))}]  # fmt: skip
    spec.write_text(yaml.safe_dump({"steps": 4, "grid": grid}))
    return spec


def test_a_huge_grid_is_refused_at_once_and_a_dry_run_counts_it(tmp_path, capsys):
    spec = huge_spec(tmp_path)
    started = time.perf_counter()
    err = one_line_error(capsys, "sweep", "--spec", spec, "--runs-dir", tmp_path / "runs")
    assert f"grid of 1,000,000 runs, more than the {MAX_GRID_RUNS:,}" in err
    assert "--allow-large-grid" in err
    err = one_line_error(capsys, "book", "--spec", spec, "--runs-dir", tmp_path / "runs",
                         "--out", tmp_path / "book")  # fmt: skip
    assert "grid of 1,000,000 runs" in err and "--allow-large-grid" in err
    assert not (tmp_path / "book").exists()

    assert main(["sweep", "--spec", str(spec), "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    assert "a grid of 1,000,000 runs" in capsys.readouterr().out
    assert time.perf_counter() - started < 10  # counted, never expanded
    assert not (tmp_path / "runs").exists()


def test_grid_size_counts_every_entry_and_the_limit_can_be_lifted():
    spec = {"steps": 4, "seeds": [1, 2], "grid": [
        {"task": "mod10", "model": "lstm", "hidden": [4, 8, 16]},
        {"task": "mod10", "model": "lstm", "hidden": 4, "betas": [0.9, 0.99]},
        {"task": "mod10", "model": "lstm", "hidden": [4]},
    ]}  # fmt: skip
    assert grid_size(spec) == 2 * 3 + 2 + 2  # one pair of betas is one value
    with pytest.raises(SpecError, match="grid of 10 runs, more than the 9"):
        expand(spec, max_runs=9)
    assert len(expand(spec, max_runs=None)) == 8  # the last entry's runs merge with the first's


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", *TINY, "--steps", "1000000000000"], "steps must be below 1,000,000,000"),
        (["train", *TINY, "--seed", "-1"], "--seed: must be at least 0, got -1"),
        (["train", *TINY, "--seed", str(2**32)], "--seed: must be below 4,294,967,296"),
        (["data", "export", "mod10", "--n", "-1", "--out", "x"], "--n: must be at least 1"),
        (["data", "export", "mod10", "--n", "0", "--split", "train", "--out", "x"], "--n: must"),
        (["data", "export", "mod10", "--seed", "-1", "--out", "x"], "--seed: must be at least 0"),
    ],
)
def test_counts_and_seeds_out_of_range_are_refused_before_work(args, message, tmp_path, capsys):
    if args[0] == "train":
        args = [*args, "--runs-dir", str(tmp_path)]
    try:
        code = main(args)
    except SystemExit as refusal:  # argparse's refusal of a flag's value
        code = refusal.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_config_refuses_seeds_and_steps_out_of_range():
    with pytest.raises(ValueError, match="data_seed must be below 4,294,967,296"):
        RunConfig(task="mod10", model="lstm", data_seed=2**32)
    with pytest.raises(ValueError, match="seed must be >= 0, got -3"):
        EvalConfig(seed=-3)
    with pytest.raises(ValueError, match="warmup_steps must be below 1,000,000,000"):
        OptimConfig(warmup_steps=10**9)


def test_export_to_a_directory_names_it_and_no_temporary_file(tmp_path, capsys):
    err = one_line_error(capsys, "data", "export", "mod10", "--out", tmp_path)
    assert f"error: {tmp_path} is a directory" in err and ".tmp" not in err
    assert list(tmp_path.iterdir()) == []


def test_export_to_standard_output_ends_quietly_when_the_reader_goes():
    command = [
        *COUNTLIB,
        "data",
        "export",
        "mod10",
        "--split",
        "train",
        "--n",
        "100000",
        "--out",
        "-",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = process.stdout.readline()
    process.stdout.close()
    err = process.stderr.read().decode()
    assert json.loads(first) and process.wait() == 141 and err == ""


# -- item 4: identical bytes, the user's file mode -------------------------------------------


def test_weights_files_of_equal_tensors_are_byte_identical(tmp_path):
    model = torch.nn.LSTM(4, 4)
    metadata = {"step": "2", "config_hash": "abc", "format_note": "x", "z": "1"}
    written = []
    for index in range(6):  # the hash map's order differed from one call to the next
        path = tmp_path / f"w{index}.safetensors"
        save_weights(path, model, metadata)
        written.append(path.read_bytes())
    assert all(blob == written[0] for blob in written)
    assert with_sorted_metadata(written[0]) == written[0]
    loaded = checkpoint.load_weights(tmp_path / "w0.safetensors", config_hash="abc")
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def test_identical_runs_write_identical_records(tmp_path):
    """Every record but those holding wall-clock time (train.csv, summary.json,
    environment.json and last.pt, which keeps the elapsed time to resume with)."""
    runs = [train(TINY_CONFIG, tmp_path / name, device="cpu", progress=False) for name in "ab"]
    first, second = (result.run_dir.path for result in runs)
    timed = {"train.csv", "summary.json", "environment.json", "last.pt", "checksums.json"}
    compared = sorted(p.name for p in first.iterdir() if p.is_file() and p.name not in timed)
    assert "best_val.safetensors" in compared and "eval.csv" in compared
    for name in compared:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_records_get_the_users_umask_not_0600(umask, tmp_path):
    previous = os.umask(umask)
    try:
        run = train(TINY_CONFIG, tmp_path / "runs", device="cpu", progress=False).run_dir
        data.write_file(tmp_path / "val.txt", [(["a"], ["1"])])
    finally:
        os.umask(previous)
    expected = 0o666 & ~umask
    files = [*run.trainer_records(), tmp_path / "val.txt"]
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in files if path.exists()}
    assert set(modes.values()) == {oct(expected)}, modes


def test_a_checkpoint_written_under_a_file_size_limit_fails_naming_it(tmp_path):
    """In a child process: RLIMIT_FSIZE is the process's own."""
    path = tmp_path / "last.pt"
    save_state(path, {"step": 1}, "abc")
    code = (
        "import torch, sys\n"
        "from countlib.train.checkpoint import save_state\n"
        f"save_state({str(path)!r}, {{'w': torch.zeros(20_000)}}, 'abc')\n"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           preexec_fn=limit_file_size)  # fmt: skip
    assert f"OSError: [Errno 27] File too large: '{path}'" in child.stderr
    assert load_state(path, "abc")["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
