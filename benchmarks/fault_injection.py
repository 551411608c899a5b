"""Kill, truncate and fill: the faults a run meets, injected into tiny runs in a temporary
directory, each followed by the command that recovers from it.

A fault is *recovered* when the command that meets it either recovers exactly (a resume) or
fails in one line naming the file, and the recovery command it points to (``--retrain-broken``,
a rerun) then makes the run final. It is *silent* when a damaged record is read as a result
(a sweep skips the run as finished, `load_runs` returns its numbers) or a command ends in a
traceback. One line per fault, then the totals; exit 1 if any fault was not recovered.

    OMP_NUM_THREADS=1 python benchmarks/fault_injection.py [--keep DIR]

Run it on your own file system (``--keep DIR`` puts the runs there and keeps them). About two
minutes on one CPU core. The file size limit stands in for a full disk: RLIMIT_FSIZE in a child
process, as ``ulimit -f 40`` would set it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from countlib.cli import main
from countlib.results import load_runs
from countlib.train.checkpoint import load_state
from countlib.train.records import RunDir

COUNTLIB = [sys.executable, "-m", "countlib"]
#: The run that is killed: long enough to be killed between checkpoints.
LONG = {"task": "shifted_start", "model": "lstm", "hidden": 8, "seed": 1, "steps": 3000,
        "eval_every": 500, "batch_size": 4}  # fmt: skip
#: The run that completes, whose result files are then damaged.
SHORT = {**LONG, "steps": 4, "eval_every": 2}
#: "Full disk": a file size limit below a checkpoint (about 80 KB), above every other record.
FULL_DISK_BYTES = 40 * 1024


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def traceback(self) -> bool:
        return "Traceback" in self.out + self.err

    @property
    def one_line_error(self) -> bool:
        return self.code == 2 and self.err.startswith("error: ") and self.err.count("\n") == 1


def countlib(*args: object) -> Outcome:
    """``countlib ARGS`` in this process; an exception escaping it is a traceback."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(arg) for arg in args])
        except SystemExit as exit_:
            code = int(exit_.code or 0)
        except Exception as exc:  # what the user would see as a traceback
            return Outcome(1, out.getvalue(), f"Traceback: {exc!r}")
    return Outcome(code, out.getvalue(), err.getvalue())


def countlib_child(*args: object, limit: int | None = None) -> Outcome:
    """``countlib ARGS`` in a child process, under a file size limit if given."""

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = subprocess.run([*COUNTLIB, *map(str, args)], capture_output=True, text=True,
                          preexec_fn=limited if limit else None)  # fmt: skip
    return Outcome(done.returncode, done.stdout, done.stderr)


def train_args(run: dict[str, object], runs_dir: Path) -> list[object]:
    return ["train", "--task", run["task"], "--model", run["model"], "--hidden", run["hidden"],
            "--seed", run["seed"], "--steps", run["steps"], "--eval-every", run["eval_every"],
            "--batch-size", run["batch_size"], "--device", "cpu", "--quiet",
            "--runs-dir", runs_dir]  # fmt: skip


def sweep_args(run: dict[str, object], runs_dir: Path) -> list[object]:
    spec = runs_dir.parent / f"{runs_dir.name}.yaml"
    spec.write_text(yaml.safe_dump({"grid": [run]}))
    return ["sweep", "--spec", spec, "--runs-dir", runs_dir, "--device", "cpu"]


def the_run(runs_dir: Path) -> RunDir:
    (path,) = (p for p in runs_dir.iterdir() if p.is_dir() and ".broken-" not in p.name)
    return RunDir(path)


def killed_run(runs_dir: Path) -> RunDir:
    """`LONG` trained in a child process and SIGKILLed once it has checkpointed and logged."""
    child = subprocess.Popen([*COUNTLIB, *map(str, train_args(LONG, runs_dir))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        logged = [p / "train.csv" for p in runs_dir.glob("*")]
        if any(p.exists() and len(p.read_text().splitlines()) > 3 for p in logged):
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    run = the_run(runs_dir)
    if run.is_complete() or not run.last.exists():
        raise SystemExit(f"the run was not killed between checkpoints: {run.path}")
    return run


def final(run: RunDir) -> bool:
    try:
        run.read_final()
    except Exception:  # broken records: not final
        return False
    return True


def read_as_result(runs_dir: Path, run: RunDir) -> bool:
    """Whether `load_runs` (what tables and the book read) returns the run's numbers."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = load_runs(runs_dir)
    if "run" not in table or run.path.name not in set(table["run"]):
        return False
    row = table[table["run"] == run.path.name].iloc[0]
    return "damage" not in table or not isinstance(row.get("damage"), str)


# -- the faults: each returns (recovered, silent, what happened) ------------------------------

Report = tuple[bool, bool, str]


def kill_mid_training(runs_dir: Path, killed: RunDir) -> Report:
    resumed = countlib(*train_args(LONG, runs_dir))
    ok = resumed.code == 0 and final(killed)
    return ok, resumed.traceback, f"resumed by the same command (exit {resumed.code})"


def truncated_checkpoint(runs_dir: Path, killed: RunDir) -> Report:
    with open(killed.last, "r+b") as handle:
        handle.truncate(1000)
    met = countlib(*train_args(LONG, runs_dir))
    named = met.one_line_error and str(killed.last) in met.err and "--retrain-broken" in met.err
    swept = countlib(*sweep_args(LONG, runs_dir))
    in_sweep = swept.code == 1 and str(killed.last) in swept.out and not swept.traceback
    retrained = countlib(*train_args(LONG, runs_dir), "--retrain-broken")
    ok = named and in_sweep and retrained.code == 0 and final(the_run(runs_dir))
    silent = met.traceback or swept.traceback or retrained.traceback
    return ok, silent, f"one line naming last.pt ({named}), then --retrain-broken"


def full_disk_at_checkpoint(runs_dir: Path, killed: RunDir) -> Report:
    before = killed.last.read_bytes()
    met = countlib_child(*train_args(LONG, runs_dir), limit=FULL_DISK_BYTES)
    named = met.one_line_error and f"{killed.last}: File too large" in met.err
    intact = killed.last.read_bytes() == before and load_state(killed.last) is not None
    resumed = countlib(*train_args(LONG, runs_dir))
    ok = named and intact and resumed.code == 0 and final(killed)
    silent = met.traceback or resumed.traceback
    return ok, silent, f"one line naming last.pt ({named}), old checkpoint intact ({intact})"


def damaged_result(damage: Callable[[Path], None], file: str) -> Callable[..., Report]:
    """A fault of a complete run's result ``file``: found by the sweep (failed, naming the
    file) and by the readers (not read as a result), retrained with --retrain-broken."""

    def fault(runs_dir: Path, run: RunDir) -> Report:
        damage(run.path / file)
        swept = countlib(*sweep_args(SHORT, runs_dir))
        found = swept.code == 1 and str(run.path / file) in swept.out
        read = read_as_result(runs_dir, run)
        retrained = countlib(*sweep_args(SHORT, runs_dir), "--retrain-broken")
        ok = found and not read and retrained.code == 0 and final(the_run(runs_dir))
        silent = read or not found or swept.traceback or retrained.traceback
        how = "found by the sweep" if found else "NOT found: the sweep skipped it as final"
        return ok, silent, f"{how}; read as a result: {read}; then --retrain-broken"

    return fault


def truncate_to(size: int) -> Callable[[Path], None]:
    def cut(path: Path) -> None:
        with open(path, "r+b") as handle:
            handle.truncate(size)

    return cut


def cut_at_a_line(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))


def garble(path: Path) -> None:
    text = path.read_text()
    middle = len(text) // 2
    path.write_text(text[:middle] + '"garbled,\x00,,"\n' + text[middle:])


#: Faults of an unfinished run killed mid-training.
KILLED_FAULTS = {
    "kill -9 mid-training": kill_mid_training,
    "truncated last.pt of an unfinished run": truncated_checkpoint,
    "full disk writing last.pt": full_disk_at_checkpoint,
}
#: Faults of a complete run's result files (issue 27, item 1).
RESULT_FAULTS = {
    "truncated per_position.csv": damaged_result(truncate_to(200), "per_position.csv"),
    "eval.csv cut at a line boundary": damaged_result(cut_at_a_line, "eval.csv"),
    "garbled eval.csv": damaged_result(garble, "eval.csv"),
    "truncated best_val.safetensors": damaged_result(truncate_to(100), "best_val.safetensors"),
}


def inject(root: Path) -> list[tuple[str, bool, bool, str]]:
    results = []
    killed = killed_run(root / "killed")
    for index, (name, fault) in enumerate(KILLED_FAULTS.items()):
        runs_dir = root / f"fault{index}"
        shutil.copytree(killed.path.parent, runs_dir)
        results.append((name, *fault(runs_dir, the_run(runs_dir))))
    assert countlib(*sweep_args(SHORT, root / "complete")).code == 0
    for index, (name, fault) in enumerate(RESULT_FAULTS.items(), start=len(results)):
        runs_dir = root / f"fault{index}"
        shutil.copytree(root / "complete", runs_dir)
        results.append((name, *fault(runs_dir, the_run(runs_dir))))
    return results


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", metavar="DIR", help="inject into DIR and keep the runs")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with contextlib.ExitStack() as stack:
        if args.keep:
            root = Path(args.keep)
            root.mkdir(parents=True, exist_ok=False)
        else:
            root = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        results = inject(root)
    for name, recovered, silent, what in results:
        verdict = "SILENT" if silent else "recovered" if recovered else "NOT recovered"
        print(f"{verdict:<13} {name}: {what}")
    recovered = sum(ok for _, ok, _, _ in results)
    silent = sum(quiet for _, _, quiet, _ in results)
    print(f"{len(results)} faults, {recovered} recovered, {silent} silent")
    return 0 if recovered == len(results) and not silent else 1


if __name__ == "__main__":
    sys.exit(main_())
