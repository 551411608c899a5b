"""Issue 11, items 1, 3, 4, 5 and 11: the thread policy, exact resume for every family, pool
workers that die with their sweep, run locks that name their holder, and concurrent sweeps."""

import dataclasses
import json
import platform
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from countlib.cli import main
from countlib.config import EvalConfig
from countlib.models import MODELS
from countlib.sweep import expand, run_sweep
from countlib.train import Trainer, train
from countlib.train.records import RunDir, RunLockedError
from countlib.train.threads import ThreadCountChangedError, cpu_threads
from tests.test_sweep import TINY
from tests.test_trainer import FAMILY_OPTIONS, _checkpoint_step, assert_same_numbers, tiny

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")


def _segments(run_dir: Path) -> list[dict]:
    return json.loads(RunDir(run_dir).environment.read_text())["segments"]


def _wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def _holder_pid(run_dir: Path) -> int | None:
    holder = RunDir(run_dir).lock_holder()  # "pid <pid> on <host>"
    return int(holder.split()[1]) if holder else None


# -- item 1: one thread policy, recorded per segment -----------------------------------------


def test_the_policy_is_omp_num_threads_else_one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert cpu_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert cpu_threads() == 1  # whatever the launcher and the machine's cores
    for bad in ("0", "-2", "two"):
        monkeypatch.setenv("OMP_NUM_THREADS", bad)
        with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
            cpu_threads()


#: One run whose losses differ at 1 and 2 torch threads (attention's reductions split
#: differently), a second of another family; about a second each.
THREAD_SENSITIVE = {
    "name": "threads",
    "steps": 30,
    "eval_every": 30,
    "batch_size": 16,
    "eval_batch_size": 256,
    "seeds": [1],
    "grid": [
        {
            "task": "mod10",
            "model": "transformer",
            "pe": "rope",
            "layers": 1,
            "hidden": 32,
            "heads": 2,
            "lr": 0.001,
            "warmup_steps": 10,
        },
        {"task": "mod10", "model": "lstm", "hidden": 32},
    ],
}


def test_sequential_and_pool_train_the_same_numbers(tmp_path, monkeypatch):
    # before the policy the pool overrode OMP_NUM_THREADS=1 with cores // workers threads
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs = expand(THREAD_SENSITIVE)
    sequential = run_sweep(runs, tmp_path / "sequential", device="cpu")
    pool = run_sweep(runs, tmp_path / "pool", executor="pool", device="cpu", workers=1)
    assert sequential.ok and pool.ok
    for run in runs:
        assert_same_numbers(tmp_path / "pool" / run.name, tmp_path / "sequential" / run.name)
        assert [s["torch_threads"] for s in _segments(tmp_path / "pool" / run.name)] == [1]


class _Interrupted(Exception):
    pass


class _StopsAtStep7(Trainer):
    """Dies between the checkpoints at steps 6 and 12, as a killed run would."""

    def train_step(self):
        if self.step == 7:
            raise _Interrupted
        return super().train_step()


def test_a_resume_at_another_thread_count_is_refused_unless_allowed(tmp_path):
    config = tiny("vanilla")
    with pytest.raises(_Interrupted):
        _StopsAtStep7(config, tmp_path, device="cpu", progress=False, threads=1).run_training()
    with pytest.raises(ThreadCountChangedError, match="OMP_NUM_THREADS=1") as refused:
        train(config, tmp_path, device="cpu", progress=False, threads=2)
    assert "trained at 1 torch threads until step 6; resuming at 2" in str(refused.value)
    with pytest.warns(RuntimeWarning, match="resuming anyway"):
        result = train(
            config, tmp_path, device="cpu", progress=False, threads=2, allow_thread_change=True
        )
    assert result.status == "complete"
    segments = _segments(result.run_dir.path)
    assert [(s["started_at_step"], s["torch_threads"]) for s in segments] == [(0, 1), (6, 2)]
    assert {s["device"] for s in segments} == {"cpu"} and all(s["torch"] for s in segments)


def test_the_cli_refuses_a_thread_change_in_one_line(tmp_path, capsys):
    config = dataclasses.replace(tiny("vanilla"), eval=EvalConfig(every=6))  # as the CLI's
    with pytest.raises(_Interrupted):
        _StopsAtStep7(config, tmp_path, device="cpu", progress=False, threads=2).run_training()
    argv = ["train", "--task", "vanilla", "--model", "lstm", "--hidden", "16", "--steps", "12"]
    argv += ["--eval-every", "6", "--batch-size", "8", "--lr", "0.01", "--device", "cpu"]
    argv += ["--runs-dir", str(tmp_path), "--quiet"]
    assert main(argv) == 2  # OMP_NUM_THREADS=1 (conftest): 1 thread now
    assert "Resume exactly with OMP_NUM_THREADS=2" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning):
        assert main([*argv, "--allow-thread-change"]) == 0


# -- done when: exact resume after SIGKILL in every family -----------------------------------

#: A training process that SIGKILLs itself at step argv[3], after the checkpoint before it.
KILLED_AT_STEP = """
import json, os, signal, sys
from countlib.config import RunConfig
from countlib.train import Trainer

class Killed(Trainer):
    def train_step(self):
        if self.step == int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)
        return super().train_step()

config = RunConfig.from_dict(json.loads(sys.argv[1]))
Killed(config, sys.argv[2], device="cpu", progress=False).run_training()
"""

STEPS, EVERY = 12, 6


def _family_config(family: str):
    """``tiny`` with the family's smallest tested options; the Transformer with RoPE, whose
    random position shifts the resume must restore too."""
    if family == "transformer":
        options = FAMILY_OPTIONS["transformer/rope"][1]
    else:
        options = next((o for m, o in FAMILY_OPTIONS.values() if m == family), {"hidden": 16})
    config = tiny("vanilla", steps=STEPS, every=EVERY)
    return dataclasses.replace(config, model=family, model_options=options)


@pytest.fixture(scope="module")
def killed_runs(tmp_path_factory):
    """Every family's run, SIGKILLed at a random step after its first mid-training checkpoint;
    the processes run at once (each at the thread policy's count, as an executor's would)."""
    root = tmp_path_factory.mktemp("killed")
    kill_steps = {family: random.randint(EVERY + 1, STEPS - 1) for family in MODELS}
    procs = {}
    for family, step in kill_steps.items():
        with (root / f"{family}.err").open("w") as stderr:
            procs[family] = subprocess.Popen(
                [sys.executable, "-c", KILLED_AT_STEP]
                + [json.dumps(_family_config(family).to_dict()), str(root / family), str(step)],
                stderr=stderr,
            )
    for proc in procs.values():
        proc.wait()
    return {family: (root, kill_steps[family], proc) for family, proc in procs.items()}


@pytest.mark.parametrize("family", sorted(MODELS))
def test_every_family_resumes_exactly_after_sigkill(family, killed_runs, tmp_path):
    root, kill_step, proc = killed_runs[family]
    assert proc.returncode == -signal.SIGKILL, (root / f"{family}.err").read_text()
    runs_dir = root / family
    (run,) = runs_dir.iterdir()
    assert not RunDir(run).is_complete() and _checkpoint_step(run / "last.pt") == EVERY
    config = _family_config(family)
    reference = train(config, tmp_path, device="cpu", progress=False)
    resumed = train(config, runs_dir, device="cpu", progress=False)
    assert resumed.status == reference.status == "complete", f"killed at step {kill_step}"
    assert_same_numbers(run, reference.run_dir.path)
    assert [s["started_at_step"] for s in _segments(run)] == [0, EVERY]


# -- item 3: pool workers do not oversubscribe the cores -------------------------------------


def test_pool_workers_train_at_the_policy_count(tmp_path, monkeypatch):
    # unset, the policy falls back to one thread per run
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    expected = 1
    runs = expand(TINY)[:2]
    report = run_sweep(runs, tmp_path, executor="pool", device="cpu", workers=2)
    assert report.ok
    for outcome in report.outcomes:
        (segment,) = _segments(outcome.run_dir)
        assert segment["torch_threads"] == segment["interop_threads"] == expected


# -- item 4: workers die with their sweep; dead lock holders do not block --------------------


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (a container's PID 1 may never reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def _spec_file(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


#: One LSTM run of a few seconds on one thread, checkpointed every 400 steps.
LONG = {
    "name": "long",
    "steps": 1600,
    "eval_every": 400,
    "batch_size": 8,
    "seeds": [1],
    "grid": [{"task": "vanilla", "model": "lstm", "hidden": 16}],
}


@linux_only
def test_a_killed_sweep_takes_its_pool_worker_with_it(tmp_path):
    runs_dir = tmp_path / "runs"
    sweep = subprocess.Popen(
        [sys.executable, "-m", "countlib", "sweep", "--spec", str(_spec_file(tmp_path, LONG))]
        + ["--executor", "pool", "--workers", "1", "--device", "cpu", "--runs-dir", str(runs_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    (run,) = expand(LONG)
    run_dir = runs_dir / run.name
    _wait_for(lambda: _checkpoint_step(run_dir / "last.pt") >= 400, "the first checkpoint")
    worker = _holder_pid(run_dir)
    assert worker not in (None, sweep.pid)
    sweep.kill()
    sweep.wait()
    _wait_for(lambda: _gone(worker), f"pool worker {worker} to die", timeout=5)
    assert not RunDir(run_dir).is_complete(), "the run finished before its sweep was killed"

    report = run_sweep([run], runs_dir, device="cpu")
    assert [o.status for o in report.outcomes] == ["completed"]  # not "locked"
    assert len(_segments(run_dir)) == 2  # resumed, not trained afresh


@linux_only
def test_the_watchdog_ends_a_worker_whose_parent_died():
    """The fallback where prctl is missing: the worker polls its parent pid."""
    parent = subprocess.Popen(
        [sys.executable, "-c", WATCHED_CHILD], stdout=subprocess.PIPE, text=True
    )
    child = int(parent.stdout.readline())
    assert parent.stdout.readline().strip() == "watching"
    parent.kill()
    parent.wait()
    _wait_for(lambda: _gone(child), f"watched process {child} to exit", timeout=5)


#: A parent that starts a child watching it with `_watch_parent` (no parent-death signal).
WATCHED_CHILD = """
import os, subprocess, sys, time
watch = (
    "import sys; from countlib.sweep.pool import _watch_parent; print('watching', flush=True); "
    "_watch_parent(int(sys.argv[1]), 0.05)"
)
child = subprocess.Popen([sys.executable, "-c", watch, str(os.getpid())])
print(child.pid, flush=True)
time.sleep(60)
"""

#: Holds the lock of the run directory argv[1] until killed.
HOLD_LOCK = """
import sys, time
from countlib.train.records import RunDir
with RunDir(sys.argv[1]).lock():
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_lock_names_its_holder_and_a_dead_holder_does_not_block(tmp_path):
    config = tiny("vanilla")
    run_dir = Trainer(config, tmp_path, device="cpu", progress=False).run.path
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    name = f"pid {holder.pid} on {platform.node()}"
    with pytest.raises(RunLockedError, match=re.escape(f"trained by another process ({name})")):
        train(config, tmp_path, device="cpu", progress=False)
    holder.kill()
    holder.wait()
    assert RunDir(run_dir).lock_holder() == name  # a stale name of a dead process ...
    assert train(config, tmp_path, device="cpu", progress=False).status == "complete"  # ... ignored
    assert RunDir(run_dir).lock_holder() is None  # released cleanly: names nobody


# -- item 5: --workers below 1 ---------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, -1])
def test_workers_below_one_are_rejected(workers, tmp_path, capsys):
    with pytest.raises(ValueError, match=f"workers must be at least 1, got {workers}"):
        run_sweep(expand(TINY)[:1], tmp_path, executor="pool", device="cpu", workers=workers)
    spec = str(_spec_file(tmp_path, TINY))
    for command in (["sweep", "--spec", spec], ["book", "--spec", spec, "--no-build"]):
        with pytest.raises(SystemExit) as exit_:
            main([*command, "--runs-dir", str(tmp_path), "--workers", str(workers)])
        assert exit_.value.code == 2
        assert f"--workers: must be at least 1, got {workers}" in capsys.readouterr().err
    assert not any(tmp_path.glob("*/"))  # nothing trained


# -- item 11: concurrent sweeps on one runs directory -----------------------------------------

#: A run of a few seconds (the first, which both sweeps start on) and two short ones.
SHARED = {
    "name": "shared",
    "steps": 12,
    "eval_every": 12,
    "batch_size": 8,
    "seeds": [1],
    "grid": [
        {"task": "vanilla", "model": "lstm", "hidden": 16, "steps": 1600, "eval_every": 800},
        {"task": "vanilla", "model": ["rnn", "gru"], "hidden": 8},
    ],
}


def test_two_concurrent_sweeps_both_succeed(tmp_path):
    runs = expand(SHARED)
    first = subprocess.Popen(
        [sys.executable, "-m", "countlib", "sweep", "--spec", str(_spec_file(tmp_path, SHARED))]
        + ["--device", "cpu", "--runs-dir", str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    long_run = tmp_path / "runs" / runs[0].name
    _wait_for(lambda: _holder_pid(long_run) == first.pid, "the first sweep to lock its run")
    lines: list[str] = []
    second = run_sweep(runs, tmp_path / "runs", device="cpu", log=lines.append)
    out, _ = first.communicate(timeout=120)
    assert first.returncode == 0, out
    assert second.ok, second.format()
    assert second.outcomes[0].status == "elsewhere"
    assert f"waiting for {runs[0].name}: trained by pid {first.pid}" in "\n".join(lines)
    assert "1 done by another process" in second.format()
    assert all(RunDir(tmp_path / "runs" / run.name).is_complete() for run in runs)
