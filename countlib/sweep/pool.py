"""The pool executor: worker processes on this machine, one per GPU or core, each training one
unit of work after another; a worker that a run kills is replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch

from countlib.families import register_again, registrations
from countlib.sweep.spec import SweepRun
from countlib.sweep.work import RunOutcome, _configs, _failed, run_group
from countlib.train.placement import resolve_device
from countlib.train.threads import available_cores, cpu_threads, thread_environment


@dataclass(frozen=True)
class _Slot:
    """Where a pool process trains: its device, visible GPU and torch threads."""

    device: str
    visible_gpu: str | None
    threads: int


def _visible_gpus() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [gpu.strip() for gpu in visible.split(",") if gpu.strip()]
    return [str(index) for index in range(torch.cuda.device_count())]


def gpu_assignment(gpus: int, per_gpu: int = 1, workers: int | None = None) -> list[int]:
    """The GPU index of each pool worker: worker i on GPU i // per_gpu, so ``per_gpu`` workers
    share each of the ``gpus`` GPUs (default count: gpus * per_gpu; more wrap around)."""
    if per_gpu < 1:
        raise ValueError(f"workers per GPU must be at least 1, got {per_gpu}")
    if gpus < 1:
        raise ValueError("no visible GPU to place the pool's workers on (CUDA_VISIBLE_DEVICES)")
    return [(index // per_gpu) % gpus for index in range(workers or gpus * per_gpu)]


def _pool_slots(device: str, workers: int | None, per_gpu: int = 1) -> list[_Slot]:
    """One slot per worker (default: one per core, or ``per_gpu`` per visible GPU, see
    `gpu_assignment`); each trains at the thread policy's count (`cpu_threads`), so that the
    workers share the cores instead of oversubscribing them. ``per_gpu`` is ignored on CPU."""
    if per_gpu < 1:
        raise ValueError(f"workers per GPU must be at least 1, got {per_gpu}")
    device = resolve_device(device)
    threads = cpu_threads()
    if device == "cpu":
        return [_Slot("cpu", None, threads)] * (workers or available_cores())
    gpus = _visible_gpus()
    if ":" in device:  # one named GPU: every worker shares it
        gpus = [gpus[int(device.split(":")[1])]]
    return [
        _Slot("cuda", gpus[index], threads) for index in gpu_assignment(len(gpus), per_gpu, workers)
    ]


def _pool_worker(
    connection: Connection, slot: _Slot, runs_dir: Path, parent: int, families: dict[str, Any]
) -> None:
    _die_with_parent(parent)
    register_again(families)  # the families the sweep's process registered (`register`)
    # Ctrl-C reaches every process of the terminal's group: the sweep process stops the
    # workers and says what finished; a worker's own traceback would only bury that line
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # spawned, so CUDA is not initialised yet and still honours the variable
    if slot.visible_gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot.visible_gpu
    # OpenMP and MKL took the count from the environment (`thread_environment`); torch's own
    # pools are sized here, before any work has started them
    torch.set_num_threads(slot.threads)
    torch.set_num_interop_threads(slot.threads)
    while (configs := connection.recv()) is not None:
        try:
            connection.send(run_group(configs, runs_dir, slot.device, threads=slot.threads))
        except Exception as err:  # runs this worker cannot even name: a family it lacks
            connection.send(str(err))
    connection.close()


#: prctl option: the signal the kernel sends this process when its parent exits (Linux).
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """End this worker when the sweep process that started it dies, even by SIGKILL: an
    orphan would go on training a run nobody waits for, holding its lock.

    Linux delivers SIGKILL on the parent's exit (prctl); elsewhere a watchdog thread polls the
    parent pid.
    """
    if not _parent_death_signal(signal.SIGKILL):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)


def _parent_death_signal(signum: int) -> bool:
    """Ask the kernel for ``signum`` when the parent exits; False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(parent: int, interval: float = 0.5) -> None:
    # an orphan is re-parented, so its parent pid changes
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


class _Worker:
    """A pool process that trains one unit of work (`work_units`) after another on its slot.

    Importing torch and countlib costs seconds, more than a tiny run trains; a worker pays it
    once. A run that kills its worker (out of memory, a segfault in a kernel) takes only its
    unit down: the pool reports it failed and starts a fresh worker on the slot.
    """

    def __init__(self, context: Any, slot: _Slot, runs_dir: Path) -> None:
        self.slot = slot
        self.connection, child = context.Pipe()
        self.process = context.Process(
            target=_pool_worker,
            args=(child, slot, runs_dir, os.getpid(), registrations()),
            daemon=True,
        )
        with thread_environment(slot.threads):
            self.process.start()
        child.close()  # only the worker holds it now, so its death reads as EOF here

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # the worker may be gone already
            self.connection.send(None)
        self.process.join()
        self.connection.close()

    def kill(self) -> None:
        self.process.terminate()
        self.process.join()
        self.connection.close()


def _run_pool(
    units: list[list[SweepRun]],
    runs_dir: Path,
    device: str,
    workers: int | None,
    record: Callable[[RunOutcome], None],
    per_gpu: int = 1,
) -> None:
    # Spawn, not fork: CUDA cannot be used after a fork.
    context = multiprocessing.get_context("spawn")
    slots = _pool_slots(device, workers, per_gpu)[: len(units)]
    idle = [_Worker(context, slot, runs_dir) for slot in slots]
    pending = deque(units)
    busy: dict[Connection, tuple[list[SweepRun], _Worker]] = {}
    try:
        while pending or busy:
            while pending and idle:
                worker, unit = idle.pop(), pending.popleft()
                worker.connection.send(_configs(unit))
                busy[worker.connection] = (unit, worker)
            for connection in wait(list(busy)):
                unit, worker = busy.pop(connection)
                try:
                    outcomes = connection.recv()
                    if isinstance(outcomes, str):  # the worker's reason for failing them all
                        outcomes = _failed(unit, runs_dir, outcomes)
                except EOFError:
                    worker.kill()
                    outcomes = _failed(
                        unit,
                        runs_dir,
                        f"worker process exited with code {worker.process.exitcode} "
                        "before reporting (killed, out of memory or crashed)",
                    )
                    worker = _Worker(context, worker.slot, runs_dir)
                idle.append(worker)
                for outcome in outcomes:
                    record(outcome)
    finally:
        # interrupted: stop the runs in flight; each resumes from its last checkpoint
        for _, worker in busy.values():
            worker.kill()
        for worker in idle:
            worker.stop()
