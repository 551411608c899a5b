"""Collation: examples of token strings to padded tensors, with the position-id schemes of the
original collator (seed-spec 2.1.3) and the per-token masks that the metrics need.

Each sequence gets a list E of m = n + 1 effective positions (n real tokens, one spare slot for a
trailing helper). Walking the raw input, every token takes E[pointer] and the pointer advances
only after a real token, so a helper shares the position of the next real token.
"""

from __future__ import annotations

import random
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields

import torch

from countlib.tasks.base import HELPER_TOKENS, UNSUPERVISED, DataError, Example, Task
from countlib.vocab import PAD

POSITION_SCHEMES = ("none", "shift", "randomized", "scalar_shift", "zooming")
#: Schemes that draw from the collator's rng (evaluation with them is stochastic).
RANDOM_SCHEMES = frozenset({"shift", "randomized", "scalar_shift"})
#: Schemes with float position values, read by the scalar PE.
FLOAT_SCHEMES = frozenset({"scalar_shift", "zooming"})
#: Schemes that place the m positions inside a range of P ids, so m <= P is required.
BOUNDED_SCHEMES = RANDOM_SCHEMES
IGNORE = -1


@dataclass
class Batch:
    input_ids: torch.Tensor  # long [B, T], padded with <pad> to the longest sequence
    labels: torch.Tensor  # long [B, T]; IGNORE at "-1" labels and padding
    attention_mask: torch.Tensor  # bool [B, T]; False at every <pad> (helpers and padding)
    position_ids: torch.Tensor  # long [B, T], float32 for the scalar schemes; 0 on padding
    real_index: torch.Tensor  # long [B, T]; index of the real token at or before; -1 on padding
    lengths: torch.Tensor  # long [B]; real tokens per sequence
    extrapolation: torch.Tensor  # bool [B, T]; supervised and real_index >= max_train_length
    legacy_unseen: torch.Tensor  # bool [B, T]; the original "unseen length" positions

    def to(self, device: torch.device | str) -> Batch:
        # Asynchronous only towards an accelerator: a non-blocking copy back to the CPU could
        # be read before it lands.
        non_blocking = torch.device(device).type != "cpu"
        return Batch(
            **{
                f.name: getattr(self, f.name).to(device, non_blocking=non_blocking)
                for f in fields(self)
            }
        )

    def pin_memory(self) -> Batch:
        """The batch in page-locked host memory, from which a copy to a GPU is asynchronous."""
        return Batch(**{f.name: getattr(self, f.name).pin_memory() for f in fields(self)})

    @property
    def size(self) -> int:
        return self.input_ids.shape[0]

    @property
    def seq_len(self) -> int:
        return self.input_ids.shape[1]

    @property
    def supervised(self) -> torch.Tensor:
        return self.labels != IGNORE


def positions_needed(task: Task) -> int:
    """Position ids m = n + 1 of the task's longest sequence, in training or any split."""
    longest = max(task.train_lengths[1], *(info.lengths[1] for info in task.splits.values()))
    return longest + 1


def max_seen_length(task: Task) -> int:
    """The original ``max_seen_len``: most non-``<pad>`` input tokens over the val lines."""
    return max(sum(tok != PAD for tok in inputs) for inputs, _ in task.split("val"))


class Collator:
    """Turns a list of examples into a Batch. ``rng`` is only drawn from by random schemes, once
    per sequence, so whoever owns it (the trainer) controls and checkpoints all randomness."""

    def __init__(
        self,
        task: Task,
        scheme: str = "none",
        *,
        max_positions: int | None = None,
        legacy_threshold: int | None = None,
    ) -> None:
        if scheme not in POSITION_SCHEMES:
            raise ValueError(
                f"unknown position scheme {scheme!r}; choose from {', '.join(POSITION_SCHEMES)}"
            )
        self.task = task
        self.scheme = scheme
        self.max_positions = task.max_positions if max_positions is None else max_positions
        if self.max_positions < 1:
            raise ValueError(f"max_positions must be positive, got {self.max_positions}")
        self._legacy_threshold = legacy_threshold
        self._pad_id = task.vocab.pad_id
        # Plain dicts for speed; built through Vocab.id so duplicate tokens map as there.
        self._token_ids = {tok: task.vocab.id(tok) for tok in task.vocab.tokens}
        self._label_ids = {**self._token_ids, UNSUPERVISED: IGNORE}

    @property
    def is_random(self) -> bool:
        return self.scheme in RANDOM_SCHEMES

    @property
    def legacy_threshold(self) -> int:
        # Building the val split can take a moment, and training may never need it.
        if self._legacy_threshold is None:
            self._legacy_threshold = max_seen_length(self.task)
        return self._legacy_threshold

    def positions(self, n_real: int, rng: random.Random) -> list[int] | list[float]:
        """The effective positions E of a sequence with ``n_real`` real tokens."""
        m = n_real + 1
        P = self.max_positions
        if self.scheme in BOUNDED_SCHEMES and m > P:
            # this sequence is only the first too long: name what every sequence of the task
            # (and of this one, from a data file perhaps) needs
            needed = max(m, positions_needed(self.task))
            raise ValueError(
                f"a sequence of {n_real} real tokens needs {m} position ids, but the "
                f"{self.scheme!r} scheme has only P = {P}; raise max_positions (the task's "
                f"max_positions or the Collator's max_positions argument) to at least {needed}, "
                f"what the longest sequence of task {self.task.name!r} needs"
            )
        if self.scheme == "none":
            return list(range(m))
        if self.scheme == "shift":
            s = rng.randint(0, P - m)
            return list(range(s, s + m))
        if self.scheme == "randomized":
            return sorted(rng.sample(range(P), m))
        if self.scheme == "scalar_shift":
            s = rng.randint(0, P - m)
            return [(s + j) / P for j in range(m)]
        return [(j + 1) / m for j in range(m)]  # zooming

    def __call__(self, examples: Sequence[Example], rng: random.Random) -> Batch:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        rows = [self._encode(i, example, rng) for i, example in enumerate(examples)]
        ids, labels, positions, indices, lengths = zip(*rows, strict=True)
        T = max(map(len, ids))
        floats = self.scheme in FLOAT_SCHEMES
        input_ids = _padded(ids, T, self._pad_id, torch.long)
        label_ids = _padded(labels, T, IGNORE, torch.long)
        real_index = _padded(indices, T, -1, torch.long)
        supervised = label_ids != IGNORE
        # The original counted supervised positions, not tokens (seed-spec 4.1, quirk 1).
        supervised_rank = supervised.cumsum(dim=1) - 1
        return Batch(
            input_ids=input_ids,
            labels=label_ids,
            attention_mask=input_ids != self._pad_id,
            position_ids=_padded(positions, T, 0, torch.float32 if floats else torch.long),
            real_index=real_index,
            lengths=torch.tensor(lengths, dtype=torch.long),
            extrapolation=supervised & (real_index >= self.task.max_train_length),
            legacy_unseen=supervised & (supervised_rank >= self.legacy_threshold),
        )

    def _encode(self, index: int, example: Example, rng: random.Random) -> tuple:
        """Token ids, label ids, position ids, real-token indices and real length of one
        example, unpadded."""
        inputs, labels = example
        if len(inputs) != len(labels):
            raise DataError(f"example {index}: {len(inputs)} inputs but {len(labels)} labels")
        if not inputs:
            raise DataError(f"example {index} is empty")
        ids = self._lookup(self._token_ids, inputs, "input", index)
        label_ids = self._lookup(self._label_ids, labels, "label", index)
        is_real = [tok not in HELPER_TOKENS for tok in inputs]
        n_real = sum(is_real)
        effective = self.positions(n_real, rng)
        if n_real == len(inputs):  # no helpers, the common case: skip the pointer walk
            return ids, label_ids, effective[:n_real], list(range(n_real)), n_real

        positions, real_index = [], []
        pointer = 0
        for real in is_real:
            positions.append(effective[pointer])
            pointer += real
            real_index.append(pointer - 1)  # a helper keeps the index of the real token before
        return ids, label_ids, positions, real_index, n_real

    def _lookup(self, table: dict[str, int], tokens: list[str], what: str, index: int) -> list:
        try:
            return [table[tok] for tok in tokens]
        except KeyError as err:
            raise DataError(
                f"example {index} of task {self.task.name!r}: {what} token {err.args[0]!r} "
                "is not in the vocabulary"
            ) from None


def _padded(rows: Sequence[list], T: int, pad: float, dtype: torch.dtype) -> torch.Tensor:
    """One [B, T] tensor from ragged rows, through a flat array: building tensors from nested
    lists costs several times more per element."""
    flat: list = []
    for row in rows:
        flat += row
        flat += [pad] * (T - len(row))
    typecode = "f" if dtype == torch.float32 else "q"
    return torch.frombuffer(array(typecode, flat), dtype=dtype).view(len(rows), T)


def evaluation_batches(
    task: Task,
    split_examples: Sequence[Example],
    collator: Collator,
    batch_size: int,
    *,
    shift_samples: int = 1,
    seed: int = 0,
) -> Iterator[Batch]:
    """Batches of a split in order, repeated ``shift_samples`` times with fixed seeds, so that
    evaluation under a random scheme is reproducible (sample k uses ``eval/{seed}/{k}``)."""
    if collator.task is not task:
        raise ValueError(f"the collator belongs to task {collator.task.name!r}, not {task.name!r}")
    if batch_size < 1 or shift_samples < 1:
        raise ValueError(
            f"batch_size and shift_samples must be positive, got {batch_size} and {shift_samples}"
        )
    for k in range(shift_samples):
        rng = random.Random(f"eval/{seed}/{k}")
        for start in range(0, len(split_examples), batch_size):
            yield collator(split_examples[start : start + batch_size], rng)
