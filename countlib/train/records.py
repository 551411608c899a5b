"""The run directory: one per resolved config, every file written atomically.

Layout::

    <runs_dir>/<task>-<model>-<shape>-s<seed>-<hash>/
        config.json        resolved RunConfig
        environment.json   versions, device, kernel backends
        train.csv          step, loss, lr (every log interval)
        eval.csv           step, split, metric, value (tidy)
        per_position.csv   step, split, position, correct, total (position: real-token index)
        per_count.csv      step, split, count, correct, total (count: the label token)
        per_length.csv     step, split, length, correct, total (length: real tokens of the
                           sequence; every supervised position of it is tallied)
        summary.json       status, final and best metrics
        last.pt            full training state (exact resume)
        best_val.safetensors, best_ood.safetensors   model weights
        COMPLETE           written last; its presence means the run is final
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


#: The accuracy tallies written at every evaluation: kind -> the file's key column.
TALLIES = ("position", "count", "length")


class RunLockedError(RuntimeError):
    """The run is being trained by another process right now."""


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    environment = property(lambda self: self.path / "environment.json")
    train_log = property(lambda self: self.path / "train.csv")
    eval_log = property(lambda self: self.path / "eval.csv")
    per_position = property(lambda self: self.path / "per_position.csv")
    per_count = property(lambda self: self.path / "per_count.csv")
    per_length = property(lambda self: self.path / "per_length.csv")
    summary = property(lambda self: self.path / "summary.json")
    last = property(lambda self: self.path / "last.pt")
    best_val = property(lambda self: self.path / "best_val.safetensors")
    best_ood = property(lambda self: self.path / "best_ood.safetensors")
    complete_marker = property(lambda self: self.path / "COMPLETE")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive right to train this run; raises RunLockedError if another process has it.

        An OS file lock, so it disappears with its process: a killed run never stays locked.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunLockedError(f"{self.path} is being trained by another process") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def tally(self, kind: str) -> Path:
        """The CSV of one of `TALLIES`."""
        if kind not in TALLIES:
            raise ValueError(f"unknown tally {kind!r}; choose from {', '.join(TALLIES)}")
        return self.path / f"per_{kind}.csv"

    def is_complete(self) -> bool:
        return self.complete_marker.exists()

    def read_summary(self) -> dict[str, Any]:
        return json.loads(self.summary.read_text())

    def mark_complete(self, status: str) -> None:
        atomic_write_text(self.complete_marker, status + "\n")


def environment_record(device: str, precision: str, backends: dict[str, str]) -> dict[str, Any]:
    import accelerate
    import numpy
    import torch

    import countlib

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "numpy": numpy.__version__,
        "countlib": countlib.__version__,
        "git_commit": _git_commit(),
        "device": device,
        "device_name": torch.cuda.get_device_name() if device.startswith("cuda") else "cpu",
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "precision": precision,
        "backends": backends,
    }


def _cpu_model() -> str:
    """The processor's model name (Linux), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None
