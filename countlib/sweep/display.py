"""The live sweep display, the same for every executor (`SweepDisplay`).

The parent process reads the run directories, not the workers: each running run holds its lock
(`RunDir.lock_holder`) and its trainer writes ``train.csv`` (step, loss, ...), so the display
works alike for runs trained in this process, in pool workers, on a Ray cluster or by another
sweep. On a terminal it keeps a few lines up to date below the finished-run lines: runs done,
running, failed and queued, the sweep's measured steps/s and ETA, and each running run's step
and last loss. In a notebook (a Jupyter kernel) it keeps the first of them, the counts and ETA,
as one line rewritten in place. Anywhere else (a log file, CI, pytest's capture) it prints only
the line of each finished run, as sweeps always did.

Imports no torch: the parent reads text files only.
"""

from __future__ import annotations

import csv
import shutil
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from countlib.train.records import RunDir

#: Seconds between two refreshes of the live display.
REFRESH_S = 1.0
#: Running runs shown one per line; the others are counted in one line.
SHOWN_RUNS = 8
#: Bytes read from the end of a ``train.csv``: its last rows, however long the run.
TAIL_BYTES = 4096
#: ANSI: cursor to the start of the line N lines up, then clear to the end of the screen.
_UP = "\x1b[{}F"
_CLEAR = "\x1b[J"


@dataclass(frozen=True)
class RunProgress:
    """A running run as its records show it: its last logged step and loss (None before its
    first log interval) against its planned steps."""

    name: str
    step: int
    steps: int
    loss: float | None = None


@dataclass(frozen=True)
class SweepState:
    """What the display shows: run counts, each running run, and the sweep's measured speed
    (``steps_per_s``, None until a step was measured) against the steps left."""

    total: int
    done: int
    failed: int
    running: tuple[RunProgress, ...]
    steps_left: int
    steps_per_s: float | None

    @property
    def queued(self) -> int:
        return self.total - self.done - self.failed - len(self.running)

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the measured speed: steps left over measured steps/s."""
        if not self.steps_per_s:
            return None
        return self.steps_left / self.steps_per_s


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min``: as precise as an ETA deserves."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def render(state: SweepState, width: int = 100) -> list[str]:
    """The display's lines: a summary line, then one line per running run (the first
    `SHOWN_RUNS`), each cut to ``width`` characters."""
    left = f"{state.steps_left:,} steps"
    if state.steps_per_s is None:
        eta = f"ETA measuring ({left} left)"
    else:
        eta = f"ETA {format_duration(state.eta_s or 0.0)} ({left} at {state.steps_per_s:,.1f}/s)"
    lines = [
        f"{state.done}/{state.total} done, {len(state.running)} running, {state.failed} failed, "
        f"{state.queued} queued; {eta}"
    ]
    for run in state.running[:SHOWN_RUNS]:
        loss = "loss -" if run.loss is None else f"loss {run.loss:.4f}"
        lines.append(f"  step {run.step:>{len(str(run.steps))}}/{run.steps}  {loss}  {run.name}")
    hidden = len(state.running) - SHOWN_RUNS
    if hidden > 0:
        lines.append(f"  ... and {hidden} more running")
    return [line[:width] for line in lines]


def last_logged(run_dir: Path) -> tuple[int, float] | None:
    """The last (step, loss) of a run's ``train.csv``, None before its first row.

    Reads the header and the file's last `TAIL_BYTES` only; a row cut short (a file being
    written) is passed over for the one before it.
    """
    path = RunDir(run_dir).train_log
    try:
        with open(path, "rb") as handle:
            header = next(csv.reader([handle.readline().decode()]), [])
            handle.seek(0, 2)
            handle.seek(max(handle.tell() - TAIL_BYTES, 0))
            tail = handle.read().decode(errors="replace").splitlines()
    except OSError:  # not written yet, or set aside meanwhile
        return None
    if "step" not in header or "loss" not in header:
        return None
    step_at, loss_at = header.index("step"), header.index("loss")
    for row in csv.reader(reversed(tail)):
        try:
            return int(row[step_at]), float(row[loss_at])
        except (IndexError, ValueError):  # the header, or a row cut short
            continue
    return None


class SweepDisplay:
    """Shows a sweep of the runs in ``planned`` (run name -> planned steps) under
    ``runs_dir``.

    `finished` and `log` print a line through ``log`` in every mode. ``live`` adds the
    updating lines on ``stream``, redrawn every `REFRESH_S` seconds by a thread while the
    display is entered; by default where ``stream`` is a terminal, and in a Jupyter kernel as
    one line rewritten in place (``single_line``). ``clock`` is injectable for tests.
    """

    def __init__(
        self,
        planned: Mapping[str, int],
        runs_dir: Path,
        log: Callable[[str], None],
        *,
        live: bool | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.planned = dict(planned)
        self.runs_dir = Path(runs_dir)
        self._log = log
        self.stream = stream or sys.stdout
        terminal = _is_terminal(self.stream)
        notebook = not terminal and "ipykernel" in sys.modules
        self.live = (terminal or notebook) if live is None else live
        self.single_line = self.live and notebook
        self.clock = clock
        self.finished_runs: dict[str, bool] = {}  # name -> failed
        self._baseline: dict[str, int] = {}  # steps each run had when training started here
        self._started: float | None = None
        self._drawn = 0  # lines of the live block now on the screen
        self._lock = threading.RLock()
        self._stop = threading.Event()

    def finished(self, name: str, line: str, *, failed: bool = False) -> None:
        """Count a run as finished (failed or not) and print its line."""
        with self._lock:
            self.finished_runs[name] = failed
            self.log(line)

    def log(self, line: str) -> None:
        """Print a line above the live block (or just print it when not live)."""
        with self._lock:
            self._erase()
            self._log(line)
            if self._started is not None:
                self._draw(self.state())

    def state(self) -> SweepState:
        """The sweep now, from the runs' directories."""
        running, steps_left, progress = [], 0, 0
        for name, steps in self.planned.items():
            if name in self.finished_runs:
                progress += steps - self._baseline.get(name, steps)
                continue
            step, loss = self._logged(name)
            steps_left += max(steps - step, 0)
            progress += step - self._baseline.get(name, step)
            if RunDir(self.runs_dir / name).lock_holder() is not None:
                running.append(RunProgress(name, step, steps, loss))
        elapsed = self.clock() - self._started if self._started is not None else 0.0
        speed = progress / elapsed if progress > 0 and elapsed > 0 else None
        failed = sum(self.finished_runs.values())
        done = len(self.finished_runs) - failed
        return SweepState(len(self.planned), done, failed, tuple(running), steps_left, speed)

    def _logged(self, name: str) -> tuple[int, float | None]:
        logged = last_logged(self.runs_dir / name)
        return (0, None) if logged is None else logged

    def refresh(self) -> None:
        """Redraw the live block now (nothing when not live)."""
        if not self.live:
            return
        with self._lock:
            state = self.state()
            self._erase()
            self._draw(state)

    def start(self) -> None:
        """Training starts: the measured speed counts the steps trained from now on."""
        with self._lock:
            self._baseline = {
                name: self._logged(name)[0]
                for name in self.planned
                if name not in self.finished_runs
            }
            self._started = self.clock()

    def stop(self) -> None:
        with self._lock:
            self._erase()
            self._started = None

    def __enter__(self) -> SweepDisplay:
        self.start()
        if self.live:
            self._stop.clear()
            threading.Thread(target=self._refresh_until_stopped, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.stop()

    def _refresh_until_stopped(self) -> None:
        while not self._stop.wait(REFRESH_S):
            self.refresh()

    def _draw(self, state: SweepState) -> None:
        if not self.live:
            return
        lines = render(state, shutil.get_terminal_size().columns - 1)
        if self.single_line:  # a notebook replaces a line's text after a carriage return
            lines = lines[:1]
            self.stream.write("\r" + lines[0])
        else:
            self.stream.write("\n".join(lines) + "\n")
        self.stream.flush()
        self._drawn = len(lines)

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write("\r" if self.single_line else _UP.format(self._drawn) + _CLEAR)
            self.stream.flush()
            self._drawn = 0


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False
