"""The run directory: one per resolved config, every file written atomically.

Layout::

    <runs_dir>/<task>-<model>-<shape>-s<seed>-<hash>/
        config.json        resolved RunConfig
        environment.json   versions, device, kernel backends
        train.csv          step, loss, lr, elapsed_s (every log interval, appended as it
                           ends: a kill between evaluations keeps the losses so far)
        eval.csv           step, split, metric, value (tidy)
        per_position.csv   step, split, position, correct, total (position: real-token index)
        per_count.csv      step, split, count, correct, total (count: the label token)
        per_length.csv     step, split, length, correct, total (length: real tokens of the
                           sequence; every supervised position of it is tallied)
        summary.json       status, final and best metrics
        last.pt            full training state (exact resume)
        best_val.safetensors, best_ood.safetensors   model weights
        evaluations/step-<step>.safetensors   model weights at every evaluation (only with
                           eval.keep_weights), read as checkpoint ``step-<step>``
        tensorboard/       TensorBoard event files (only with eval.tensorboard)
        checksums.json     size and sha256 of every result file above (not tensorboard/),
                           written as the run completes, just before COMPLETE
        COMPLETE           written last; its presence means the run is final
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import io
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, Any

#: The checkpoint name of the weights kept at one evaluation (`RunDir.evaluation_weights`).
EVALUATION_CHECKPOINT = re.compile(r"step-(\d+)")


def evaluation_step(checkpoint: str) -> int | None:
    """The step of a checkpoint named ``step-<step>`` (a kept evaluation), else None."""
    match = EVALUATION_CHECKPOINT.fullmatch(checkpoint)
    return int(match.group(1)) if match else None


def temp_file_beside(path: Path) -> tuple[int, str]:
    """A new temporary file in ``path``'s directory for an atomic write of ``path``.

    Its name (``.<name>.<random>.tmp``) is what `RunDir.remove_stale_temp_files` looks for: a
    writer killed between creating it and renaming it leaves it behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")


def new_file_mode() -> int:
    """The mode of a file this process creates: 0o666 less its umask. mkstemp's 0600 would hide
    records from the group on a shared file system (a Ray cluster's runs directory)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    mask = os.umask(0)  # elsewhere the only way to read it is to set it, and set it back
    os.umask(mask)
    return 0o666 & ~mask


@contextmanager
def atomic_file(path: Path, mode: str = "w") -> Iterator[IO[Any]]:
    """A handle ("w": UTF-8 text, "wb": bytes) whose contents replace ``path`` at once when
    the block ends: a reader sees the old file or the new one, never a part of either, and the
    new file has the user's usual mode (`new_file_mode`).

    A failed write (a full disk, a file size limit, a read-only directory) raises OSError
    naming ``path``, never the temporary file, and leaves the old file as it was.
    """
    tmp = None
    try:
        fd, tmp = temp_file_beside(path)
        os.fchmod(fd, new_file_mode())
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as handle:
            yield handle
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_file(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def atomic_write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def append_csv_row(path: Path, row: Sequence[Any]) -> None:
    """Add one row to the CSV ``path``, on disk when this returns. Not atomic, so only for
    a file that a resume rewrites whole (`atomic_write_csv`) before appending again: that
    replaces whatever a kill left, a half-written last line included."""
    with open(path, "a", encoding="utf-8", newline="") as handle:
        csv.writer(handle, lineterminator="\n").writerow(row)


#: The columns of train.csv, one row per log interval.
TRAIN_LOG_COLUMNS = ("step", "loss", "lr", "elapsed_s")

#: The accuracy tallies written at every evaluation (`RunDir.tally`): each kind names its file
#: (``per_<kind>.csv``) and that file's key column.
TALLIES = ("position", "count", "length")


class RunLockedError(RuntimeError):
    """The run is being trained by another process right now."""


class RunRecordError(ValueError):
    """A run record that cannot be read or does not belong to its run; the message names the
    file and says what is wrong with it."""


#: The keys a reader of each record relies on (dotted: nested); one missing makes it broken.
CONFIG_KEYS = (
    "task",
    "model",
    "seed",
    "position_scheme",
    "model_options",
    "optim.lr",
    "optim.steps",
)
SUMMARY_KEYS = ("status", "config_hash", "steps", "wall_time_s", "parameters", "state_size")
ENVIRONMENT_KEYS = ("config_hash",)
#: The statuses a final run records in summary.json and COMPLETE.
FINAL_STATUSES = ("complete", "diverged")
#: A run directory moved aside by ``countlib sweep --retrain-broken``: ``<name>.broken-<time>``.
SET_ASIDE_MARK = ".broken-"
#: What a reader that finds a broken record of a run tells the user to do about it.
RETRAIN_HINT = (
    "retrain it with `countlib sweep --retrain-broken` and the --profile or --spec that trained it"
)
#: Result files that are model weights or training state: `RunDir.verify` checks only their
#: sizes where a reader reads numbers alone, and hashes them for a reader that loads them.
WEIGHT_SUFFIXES = (".safetensors", ".pt")


def file_digest(path: Path) -> dict[str, Any]:
    """The size and sha256 of ``path`` as `RunDir.checksums` records them."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def read_record(path: Path, keys: Sequence[str]) -> dict[str, Any]:
    """A JSON record that holds an object with every one of ``keys``; else RunRecordError."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunRecordError(f"{path} is missing") from None
    except OSError as err:
        raise RunRecordError(f"{path} cannot be read: {err}") from None
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError: truncated or garbled
        raise RunRecordError(f"{path} is not valid JSON (truncated or corrupt): {err}") from None
    if not isinstance(data, dict):
        raise RunRecordError(f"{path} does not hold a JSON object")
    missing = [key for key in keys if not _has_key(data, key)]
    if missing:
        raise RunRecordError(f"{path} lacks {', '.join(missing)}")
    return data


def _has_key(data: dict[str, Any], dotted: str) -> bool:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def _damage(path: Path, expected: Any, hashed: bool) -> str | None:
    """How ``path`` differs from what checksums.json recorded for it (`file_digest`), None if
    it does not; its sha256 is compared only if ``hashed``."""
    if not isinstance(expected, dict):
        return "checksums.json holds no size and sha256 for it"
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return "missing, though checksums.json lists it"
    if size != expected.get("bytes"):
        return f"{size:,} bytes, not the {expected.get('bytes')} recorded when the run completed"
    if hashed and file_digest(path)["sha256"] != expected.get("sha256"):
        return "its sha256 is not the one recorded when the run completed (edited since)"
    return None


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    environment = property(lambda self: self.path / "environment.json")
    train_log = property(lambda self: self.path / "train.csv")
    eval_log = property(lambda self: self.path / "eval.csv")
    per_position = property(lambda self: self.path / "per_position.csv")
    summary = property(lambda self: self.path / "summary.json")
    last = property(lambda self: self.path / "last.pt")
    best_val = property(lambda self: self.path / "best_val.safetensors")
    best_ood = property(lambda self: self.path / "best_ood.safetensors")
    complete_marker = property(lambda self: self.path / "COMPLETE")
    #: Size and sha256 of every result file (`result_files`), written just before COMPLETE.
    checksums = property(lambda self: self.path / "checksums.json")
    #: TensorBoard's event files, for runs with ``eval.tensorboard``.
    tensorboard = property(lambda self: self.path / "tensorboard")
    #: The weights of every evaluation, for runs with ``eval.keep_weights``.
    evaluations = property(lambda self: self.path / "evaluations")
    #: Locked by the process training the run, and naming it ("pid <pid> on <host>").
    lock_file = property(lambda self: self.path / ".lock")

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive right to train this run; raises RunLockedError, naming the holder, if
        another process has it.

        An OS file lock, so it disappears with its process: a killed run never stays locked, and
        the name a dead holder left in the lock file does not count.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        # "a+", not "w": opening must not erase the holder's name before we hold the lock
        with open(self.lock_file, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self.lock_holder()
                named = f" ({holder})" if holder else ""
                raise RunLockedError(
                    f"{self.path} is being trained by another process{named}"
                ) from None
            handle.truncate(0)
            handle.write(f"pid {os.getpid()} on {platform.node()}\n")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)  # released: name no holder
                fcntl.flock(handle, fcntl.LOCK_UN)

    def lock_holder(self) -> str | None:
        """The name in the lock file ("pid <pid> on <host>"), None if it names nobody.

        Only meaningful while the lock is held: a holder that released it cleared the name, but
        one killed left it behind (probing the lock instead could make a trainer starting at
        that moment fail to take it).
        """
        try:
            return self.lock_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def wait_until_unlocked(self) -> None:
        """Block until no process holds the lock; at once if none does."""
        with contextlib.suppress(FileNotFoundError), open(self.lock_file) as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)

    def tally(self, kind: str) -> Path:
        """The CSV of one of `TALLIES`."""
        if kind not in TALLIES:
            raise ValueError(f"unknown tally {kind!r}; choose from {', '.join(TALLIES)}")
        return self.path / f"per_{kind}.csv"

    def evaluation_weights(self, step: int) -> Path:
        """The weights kept at the evaluation of ``step`` (``eval.keep_weights``)."""
        return self.evaluations / f"step-{step}.safetensors"

    def kept_evaluations(self) -> list[int]:
        """The steps whose evaluation's weights the run kept, in order."""
        found = self.evaluations.glob("step-*.safetensors")
        steps = (evaluation_step(path.name.removesuffix(".safetensors")) for path in found)
        return sorted(step for step in steps if step is not None)

    def is_complete(self) -> bool:
        """COMPLETE is present: the run is final. Its records may still be broken (a truncated
        or hand-edited file); `read_final` checks them before anything trusts the run."""
        return self.complete_marker.exists()

    def read_config(self) -> dict[str, Any]:
        return read_record(self.config, CONFIG_KEYS)

    def read_environment(self) -> dict[str, Any]:
        return read_record(self.environment, ENVIRONMENT_KEYS)

    def read_summary(self) -> dict[str, Any]:
        summary = read_record(self.summary, SUMMARY_KEYS)
        if summary["status"] not in FINAL_STATUSES:
            raise RunRecordError(f"{self.summary} has unknown status {summary['status']!r}")
        return summary

    def read_final(self, config_hash: str | None = None) -> dict[str, Any]:
        """The summary of a complete run whose config and summary can be read and, given
        ``config_hash``, are that run's, and whose result files are as it recorded them
        (`verify`, weights included); else RunRecordError naming the broken file."""
        self.read_config()
        summary = self.read_summary()
        if config_hash is not None and summary["config_hash"] != config_hash:
            raise RunRecordError(
                f"{self.summary} records run {summary['config_hash']}, not this run ({config_hash})"
            )
        self.verify()
        return summary

    def mark_complete(self, status: str) -> None:
        """Make the run final: its checksums first, then COMPLETE, so that a kill between the
        two leaves a run that is not final (it resumes and writes both again), never one final
        without checksums."""
        self.write_checksums()
        atomic_write_text(self.complete_marker, status + "\n")

    def result_files(self) -> list[Path]:
        """The files a finished run's checksums cover, those present: every record the trainer
        writes but COMPLETE, and the weights of each kept evaluation. Not tensorboard/, which
        no countlib reader reads."""
        records = [path for path in self.trainer_records() if path != self.complete_marker]
        records.remove(self.checksums)
        kept = [self.evaluation_weights(step) for step in self.kept_evaluations()]
        return [path for path in records + kept if path.exists()]

    def write_checksums(self) -> None:
        """Record the size and sha256 of every result file (`result_files`) in checksums.json;
        nothing else (no time), so identical records give identical checksums."""
        files = {path.relative_to(self.path).as_posix(): file_digest(path)
                 for path in self.result_files()}  # fmt: skip
        atomic_write_json(self.checksums, {"algorithm": "sha256", "files": files})

    def verify(self, *, weights: Iterable[Path] | None = None) -> None:
        """Check a complete run's result files against its checksums.json: each is present,
        with its recorded size and sha256; else RunRecordError naming the first that is not.

        ``weights``: the weights and training state (`WEIGHT_SUFFIXES`) to hash, those a reader
        loads (None: all); of the others only the sizes are checked, so that a reader of numbers
        alone (``weights=()``) hashes a few small files. A run that is not complete claims
        nothing yet, and one that completed before countlib wrote checksums has none: both pass
        (`countlib runs stamp` gives the latter checksums).
        """
        if not self.is_complete() or not self.checksums.exists():
            return
        recorded = read_record(self.checksums, ("files",))["files"]
        if not isinstance(recorded, dict):
            raise RunRecordError(f"{self.checksums} does not map files to checksums")
        loaded = None if weights is None else set(map(Path, weights))  # this RunDir's paths
        for name, expected in recorded.items():
            path = self.path / name
            hashed = loaded is None or path.suffix not in WEIGHT_SUFFIXES or path in loaded
            problem = _damage(path, expected, hashed)
            if problem:
                raise RunRecordError(f"{path} is a damaged record: {problem}")

    def set_aside(self, still_broken: Callable[[], bool] | None = None) -> Path | None:
        """Rename the broken run's directory to ``<name>.broken-<time>`` and return the new
        path: a broken run trains afresh in its place and nothing of the old one is deleted.

        Under the run's lock (RunLockedError if another process has it), so that no trainer is
        writing into it; None, renaming nothing, if by then ``still_broken()`` is false
        (default: the run is no longer complete; another process set it aside first).
        """
        target = self.path.with_name(
            f"{self.path.name}{SET_ASIDE_MARK}{datetime.now():%Y%m%dT%H%M%S.%f}"
        )
        with self.lock():
            if not (still_broken or self.is_complete)():
                return None
            self.path.rename(target)
        return target

    def trainer_records(self) -> list[Path]:
        """The files only the trainer writes, and only while it holds the run's lock."""
        tallies = [self.tally(kind) for kind in TALLIES]
        return [
            self.config,
            self.environment,
            self.train_log,
            self.eval_log,
            *tallies,
            self.summary,
            self.last,
            self.best_val,
            self.best_ood,
            self.checksums,
            self.complete_marker,
        ]

    def remove_stale_temp_files(self) -> None:
        """Delete what atomic writes of `trainer_records` left behind when a kill came between
        creating the temporary file and renaming it. Call it only while holding the lock: then
        no live writer owns one. Other files' temporaries (the table of a ``countlib eval``
        running right now) are left alone."""
        for record in self.trainer_records():
            for stale in self.path.glob(f".{record.name}.*.tmp"):
                stale.unlink(missing_ok=True)
        # each evaluation's weights (``eval.keep_weights``), in their own folder
        for stale in self.evaluations.glob(".step-*.safetensors.*.tmp"):
            stale.unlink(missing_ok=True)


#: What accelerate called fp32, in the records of runs trained before countlib dropped it.
_LEGACY_PRECISIONS = {"no": "fp32"}


def precision_name(recorded: str) -> str:
    """A recorded precision in countlib's names: "fp32", "bf16" or "fp16"."""
    return _LEGACY_PRECISIONS.get(recorded, recorded)


def environment_record(device: str, precision: str, backends: dict[str, str]) -> dict[str, Any]:
    """Versions and machine of a training segment; ``device`` as the model's parameters say
    ("cuda:1", not what was asked for), ``precision`` "fp32", "bf16" or "fp16"."""
    import numpy
    import torch

    import countlib

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "countlib": countlib.__version__,
        "git_commit": _git_commit(),
        "device": device,
        "device_name": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        # what "cuda:N" counts from: a pool worker sees its one GPU as cuda:0
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "precision": precision,
        "backends": backends,
        **_math_libraries(device),
    }


#: Per BLAS that torch's build summary names (``BLAS_INFO``), the line giving its version.
_BLAS_VERSION_LINES = {
    "mkl": r"Math Kernel Library Version ([\w.]+)",
    "open": r"OpenBLAS ([\w.]+)",
}


def _math_libraries(device: str) -> dict[str, str | None]:
    """What decides the arithmetic of a run beside the processor: torch's CPU kernel level, the
    BLAS and oneDNN torch was built with, numpy's BLAS and, on a GPU, the CUDA and driver
    versions. Two machines that differ here may round differently, so a verdict records them.
    Each piece that cannot be read is None: the record of a run never fails on it."""
    import torch

    built = _guarded(torch.__config__.show) or ""
    blas = _built_with(r"BLAS_INFO=(\w+)", built)
    version = _BLAS_VERSION_LINES.get(blas or "")
    cuda = device.startswith("cuda")
    driver = getattr(torch.cuda, "driver_version", None)  # not in every torch
    return {
        "cpu_capability": _guarded(torch.backends.cpu.get_cpu_capability),
        "torch_blas": blas,
        "torch_blas_version": _built_with(version, built) if version else None,
        "onednn": _built_with(r"(?:MKL-DNN|oneDNN) v?(\d[\w.]*)", built),
        **_numpy_blas(),
        "cuda": torch.version.cuda if cuda else None,
        "cuda_driver": _guarded(driver) if cuda and driver is not None else None,
    }


def _guarded(read: Callable[[], object]) -> str | None:
    """``read()``, or None where it fails: a missing piece of the environment is recorded as
    unknown rather than costing the run."""
    try:
        value = read()
    except Exception:  # any failure of an optional probe means "unknown"
        return None
    return None if value is None else str(value)


def _built_with(pattern: str, built: str) -> str | None:
    match = re.search(pattern, built)
    return match.group(1) if match else None


def _numpy_blas() -> dict[str, str | None]:
    """numpy's BLAS, by name and version, from ``numpy.show_config(mode="dicts")`` (numpy
    1.26 on; an older numpy only prints its configuration: None)."""
    import numpy

    try:
        blas = numpy.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return {"numpy_blas": blas.get("name"), "numpy_blas_version": blas.get("version")}
    except Exception:  # another shape of configuration (or numpy 1's): "unknown"
        return {"numpy_blas": None, "numpy_blas_version": None}


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
