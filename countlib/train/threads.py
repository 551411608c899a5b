"""The torch thread policy of training, one for every executor.

How many intra-op threads torch uses changes how it splits its reductions, so a CPU run's
numbers depend on the count: the same config trained at 1 and at 2 threads ends with other
metrics. One function, `cpu_threads`, decides the count wherever a run trains (the sequential
executor, a pool worker, a Ray task, ``countlib train``):

- ``OMP_NUM_THREADS`` when it is set, whatever the launcher;
- else one thread.

One thread by default, rather than a share of the cores, so that a config hash means one result
whichever executor, worker count or machine trained it: the small models of this project gain
little from a second thread, and several runs side by side (a pool) use the cores better than
one run on all of them. A user who wants more threads for a single run sets ``OMP_NUM_THREADS``
and gets numbers of that count.

The trainer records the count for every training segment (``environment.json``: ``segments``)
and refuses to resume a CPU run at another count than the segment before, unless told to
(`ThreadCountChangedError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

#: The variables the thread pools of a new process read when torch initialises (OpenMP, MKL).
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


class ThreadCountChangedError(ValueError):
    """A CPU run would resume at another torch thread count than it was trained at."""


def available_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def cpu_threads() -> int:
    """The torch threads of one run: ``OMP_NUM_THREADS`` if set, else 1."""
    requested = os.environ.get("OMP_NUM_THREADS", "").strip()
    if not requested:
        return 1
    if not requested.isdigit() or int(requested) < 1:
        raise ValueError(f"OMP_NUM_THREADS={requested!r}: expected a positive integer")
    return int(requested)


@contextmanager
def thread_environment(threads: int) -> Iterator[None]:
    """The `THREAD_VARIABLES` set to ``threads`` while a child process starts.

    A spawned child imports torch (through its parent's main module and its target's module)
    before any of its own code runs, so only its inherited environment can size its OpenMP and
    MKL pools; the parent's environment is restored afterwards.
    """
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
