"""A run's training batches, in order, from its seeded data rng: drawn when the step asks for
them, or drawn ahead on a background thread so that a GPU step does not wait for Python
sampling and collation.

Either way the batches are the same ones in the same order, and `TrainingBatches.rng_state`
is the data rng's state after the last batch handed out (not after the ones drawn ahead),
which is what a checkpoint stores: a run resumed from it continues with the very next batch,
as an uninterrupted run does.

Ahead of a CUDA device the batches are pinned, so that their copy to the device is
asynchronous. On CPU drawing ahead is off by default: the worker processes of a sweep already
keep every core busy, and a sampling thread would compete with them for one.
"""

from __future__ import annotations

import queue
import random
import threading
from typing import Any

from countlib.batches import Batch, Collator
from countlib.tasks import Task

#: Batches drawn ahead on CUDA when the trainer is not told otherwise: enough to cover a slow
#: draw (a long sequence, a collection pause) without holding many batches in pinned memory.
CUDA_BATCHES_AHEAD = 8
#: How often (seconds) a drawing thread blocked on a full queue checks whether to stop.
_POLL_S = 0.1


def batches_ahead(requested: int | None, device: str) -> int:
    """How many batches to draw ahead: ``requested``, or by default `CUDA_BATCHES_AHEAD` on a
    CUDA device and none on CPU (module docstring)."""
    if requested is None:
        return CUDA_BATCHES_AHEAD if device.startswith("cuda") else 0
    if requested < 0:
        raise ValueError(f"batches drawn ahead must be 0 (none) or more, got {requested}")
    return requested


class TrainingBatches:
    """The batches of ``batch_size`` examples that ``rng`` draws from ``task``, collated by
    ``collator``, on the host. ``ahead`` > 0 draws up to that many ahead on a thread of its own,
    from a copy of ``rng``; ``pin`` pins them for an asynchronous copy to a GPU. ``rng`` itself
    is left where it was; `rng_state` is where the batches handed out leave it."""

    def __init__(
        self,
        task: Task,
        collator: Collator,
        batch_size: int,
        rng: random.Random,
        *,
        ahead: int = 0,
        pin: bool = False,
    ) -> None:
        self.task = task
        self.collator = collator
        self.batch_size = batch_size
        self.ahead = ahead
        self.pin = pin
        self._state = rng.getstate()
        self._rng = random.Random()
        self._rng.setstate(self._state)
        self._queue: queue.Queue[tuple[Batch, Any] | BaseException] = queue.Queue(max(1, ahead))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if ahead:
            self._thread = threading.Thread(target=self._draw_ahead, daemon=True)
            self._thread.start()

    def _draw(self) -> Batch:
        examples = self.task.sample_batch(self._rng, self.batch_size)
        batch = self.collator(examples, self._rng)
        return batch.pin_memory() if self.pin else batch

    def _draw_ahead(self) -> None:
        while not self._stop.is_set():
            try:
                item: tuple[Batch, Any] | BaseException = (self._draw(), self._rng.getstate())
            except BaseException as err:  # handed to the training thread, which raises it
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=_POLL_S)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return

    def __next__(self) -> Batch:
        if self._thread is None:
            batch = self._draw()
            self._state = self._rng.getstate()
            return batch
        item = self._queue.get()
        if isinstance(item, BaseException):
            self.close()
            raise item
        batch, self._state = item
        return batch

    def __iter__(self) -> TrainingBatches:
        return self

    def rng_state(self) -> Any:
        """The data rng's state after the last batch handed out (`random.Random.getstate`)."""
        return self._state

    def close(self) -> None:
        """Stop drawing ahead. The batches drawn and not handed out are dropped, and any batch
        asked for afterwards is drawn on demand from `rng_state`: the same next batch."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
            self._rng.setstate(self._state)
