"""The live sweep display (countlib.sweep.display): rendered from fake states and from fake run
directories, live on a terminal and one line per finished run elsewhere."""

import io
import subprocess
import sys

import countlib.sweep.display as display_module
from countlib.sweep.display import (
    SHOWN_RUNS,
    RunProgress,
    SweepDisplay,
    SweepState,
    format_duration,
    last_logged,
    render,
)


def state(**changes) -> SweepState:
    fields = {
        "total": 10,
        "done": 3,
        "failed": 1,
        "running": (RunProgress("mod10-lstm-s1", 250, 1000, 0.4321), RunProgress("b", 0, 50)),
        "steps_left": 6000,
        "steps_per_s": 20.0,
    }
    return SweepState(**(fields | changes))


def test_the_summary_counts_runs_and_gives_the_eta_from_measured_speed():
    summary = render(state())[0]
    # 6000 steps at 20 steps/s: 300 s
    assert summary == "3/10 done, 2 running, 1 failed, 4 queued; ETA 5 min (6,000 steps at 20.0/s)"


def test_each_running_run_shows_its_step_and_last_loss():
    lines = render(state())
    assert lines[1] == "  step  250/1000  loss 0.4321  mod10-lstm-s1"
    assert lines[2] == "  step  0/50  loss -  b"  # not logged yet


def test_no_eta_before_a_step_was_measured():
    assert render(state(steps_per_s=None))[0].endswith("ETA measuring (6,000 steps left)")
    assert state(steps_per_s=None).eta_s is None


def test_many_running_runs_are_summed_up_and_lines_fit_the_width():
    running = tuple(RunProgress(f"run-{i}", 1, 2) for i in range(SHOWN_RUNS + 3))
    lines = render(state(running=running, done=0, failed=0, total=20), width=40)
    assert len(lines) == 1 + SHOWN_RUNS + 1
    assert lines[-1] == "  ... and 3 more running"
    assert all(len(line) <= 40 for line in lines)


def test_durations_read_as_seconds_minutes_or_hours():
    assert format_duration(42) == "42 s"
    assert format_duration(600) == "10 min"
    assert format_duration(3 * 3600 + 5 * 60) == "3 h 05 min"


def write_run(runs_dir, name, rows, *, running=False, cut_short=False):
    """A fake run directory: its train.csv with (step, loss) rows, locked if ``running``."""
    path = runs_dir / name
    path.mkdir(parents=True)
    lines = ["step,loss,lr,elapsed_s"] + [f"{s},{loss},0.01,{s / 10}" for s, loss in rows]
    (path / "train.csv").write_text("\n".join(lines) + ("\n12" if cut_short else "\n"))
    if running:
        (path / ".lock").write_text("pid 1 on here\n")


def test_the_last_logged_step_skips_a_row_cut_short(tmp_path):
    write_run(tmp_path, "a", [(10, 2.5), (20, 1.25)], cut_short=True)
    assert last_logged(tmp_path / "a") == (20, 1.25)
    (tmp_path / "b").mkdir()
    assert last_logged(tmp_path / "b") is None


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_a_live_display_reads_the_run_directories(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # a terminal's lines
    planned = {"done-run": 100, "running-run": 100, "queued-run": 100}
    write_run(tmp_path, "running-run", [(10, 2.0)], running=True)  # resumed at step 10
    out, clock, logged = io.StringIO(), Clock(), []
    display = SweepDisplay(planned, tmp_path, logged.append, live=True, stream=out, clock=clock)
    display.start()
    assert display.state().steps_per_s is None  # nothing trained since the start

    clock.now += 10
    write_run(tmp_path, "done-run", [(100, 0.1)])
    display.finished("done-run", "[1/3] completed done-run")
    (tmp_path / "running-run" / "train.csv").write_text("step,loss,lr,elapsed_s\n60,0.5,0,1\n")
    display.refresh()

    now = display.state()
    assert (now.done, now.failed, len(now.running), now.queued) == (1, 0, 1, 1)
    assert now.running[0] == RunProgress("running-run", 60, 100, 0.5)
    # trained here: 100 steps of done-run and 50 of running-run in 10 s
    assert now.steps_per_s == 15.0
    assert now.steps_left == 40 + 100
    screen = out.getvalue()
    assert "1/3 done, 1 running, 0 failed, 1 queued" in screen
    assert "step  60/100  loss 0.5000  running-run" in screen
    assert logged == ["[1/3] completed done-run"]
    display.stop()
    assert out.getvalue().endswith("\x1b[J")  # the live block is erased at the end


def test_off_a_terminal_only_finished_runs_are_printed(tmp_path, monkeypatch):
    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)  # nor in a notebook
    write_run(tmp_path, "a", [(5, 1.0)], running=True)
    out, logged = io.StringIO(), []
    with SweepDisplay({"a": 10, "b": 10}, tmp_path, logged.append, stream=out) as display:
        assert not display.live  # a StringIO is no terminal
        display.refresh()
        display.finished("a", "[1/2] completed a")
        display.finished("b", "[2/2] failed    b", failed=True)
    assert out.getvalue() == ""
    assert logged == ["[1/2] completed a", "[2/2] failed    b"]
    assert (display.state().done, display.state().failed) == (1, 1)


def test_in_a_notebook_kernel_one_line_is_rewritten_in_place(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ipykernel", sys)  # any module: only its name is read
    write_run(tmp_path, "a", [(5, 1.0)], running=True)
    out, logged = io.StringIO(), []
    display = SweepDisplay({"a": 10, "b": 10}, tmp_path, logged.append, stream=out)
    assert display.live and display.single_line
    display.start()
    display.refresh()
    display.refresh()
    summary = "\r0/2 done, 1 running, 0 failed, 1 queued; ETA measuring (15 steps left)"
    assert out.getvalue() == summary + "\r" + summary  # no per-run lines, no ANSI codes
    display.finished("a", "[1/2] completed a")
    assert logged == ["[1/2] completed a"]


def test_the_display_imports_no_torch():
    # the module alone: its package countlib.sweep imports torch for the executors
    code = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("display", {display_module.__file__!r})
sys.modules["display"] = module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print("torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
