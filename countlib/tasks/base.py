"""The task interface: a task samples training examples, builds its evaluation splits, and
owns the label rule that `countlib data check` enforces.

An example is a pair ``(inputs, labels)`` of equally long token lists, exactly the original
JSON-lines format; the label ``"-1"`` marks a position that is neither trained nor scored.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from countlib.vocab import BLANK, PAD, Vocab

Example = tuple[list[str], list[str]]
UNSUPERVISED = "-1"
HELPER_TOKENS = frozenset({PAD, BLANK})


class DataError(ValueError):
    """An example that breaks its task's format or label rule."""


@dataclass(frozen=True)
class SplitInfo:
    """What a split holds. ``lengths`` counts real tokens (helpers excluded, start/BOS included)."""

    lines: int
    lengths: tuple[int, int]
    deterministic: bool


def real_length(tokens: Sequence[str]) -> int:
    return sum(tok not in HELPER_TOKENS for tok in tokens)


class Task(ABC):
    """A counting task: vocabulary, sampler, label rule and split definitions.

    Subclasses set the class-level description fields in ``__init__`` and implement
    ``sample``, ``labels`` and ``_build_split``.
    """

    name: str
    aliases: tuple[str, ...] = ()
    vocab: Vocab
    description: str = ""
    #: Longest training sequence in real tokens; positions at or beyond it are extrapolation.
    max_train_length: int
    #: Range of position ids P (``max_position_embeddings`` of the original).
    max_positions: int = 128
    #: Longest raw sequence (helpers included) the task's models must accept.
    max_seq_len: int = 128
    #: Training length distribution, as the original generator drew it.
    train_lengths: tuple[int, int]
    #: Evaluation splits by name: always "val" and "ood", plus auxiliary test sets.
    splits: dict[str, SplitInfo]
    #: Vocabulary rows whose embedding must stay fixed (frozen ``<null>``).
    frozen_tokens: tuple[str, ...] = ()
    #: The metrics (`countlib.metrics.EvalResult` fields) that are this task's IND accuracy on
    #: the "val" split and its OOD accuracy on the "ood" split: what the tables report and what
    #: selects the best checkpoints.
    ind_metric: str = "acc"
    ood_metric: str = "extrapolation_acc"

    @property
    def recorded_metrics(self) -> dict[str, str]:
        """The IND and OOD metrics as run records name them (``split/metric``, summary.json's
        ``metrics``)."""
        return {"ind": f"val/{self.ind_metric}", "ood": f"ood/{self.ood_metric}"}

    @abstractmethod
    def sample(self, rng: random.Random) -> Example:
        """One training example drawn from the training distribution."""

    @abstractmethod
    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        """The label rule. ``None`` allows any label at that position (e.g. the unknowable next
        token at the end of a RASP-L window). Raises DataError for an invalid input sequence."""

    @abstractmethod
    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        """Examples of a split named in ``self.splits``."""

    def sample_batch(self, rng: random.Random, n: int) -> list[Example]:
        return [self.sample(rng) for _ in range(n)]

    def split(self, name: str, seed: int = 0) -> list[Example]:
        """A deterministic evaluation split; ``seed`` only matters for randomly drawn splits."""
        if name not in self.splits:
            raise KeyError(
                f"task {self.name!r} has no split {name!r}; choose from {sorted(self.splits)}"
            )
        return self._build_split(name, random.Random(f"{self.name}/{name}/{seed}"))

    def check(self, example: Example) -> None:
        """Validate one example against vocabulary, length and label rule."""
        inputs, labels = example
        if len(inputs) != len(labels):
            raise DataError(f"{len(inputs)} inputs but {len(labels)} labels")
        if not inputs:
            raise DataError("empty sequence")
        if len(inputs) > self.max_seq_len:
            raise DataError(f"{len(inputs)} tokens exceed max_seq_len {self.max_seq_len}")
        known = self.vocab.token_set
        for tok in set(inputs) - known:
            raise DataError(f"input token {tok!r} is not in the vocabulary")
        for tok in set(labels) - known - {UNSUPERVISED}:
            raise DataError(f"label {tok!r} is not in the vocabulary")
        expected = self.labels(inputs)
        for i, (got, want) in enumerate(zip(labels, expected, strict=True)):
            if want is not None and got != want:
                raise DataError(f"label at position {i} is {got!r}, the rule gives {want!r}")

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name,
            "aliases": list(self.aliases),
            "vocab_size": len(self.vocab),
            "train_lengths": self.train_lengths,
            "max_train_length": self.max_train_length,
            **{f"{k}_lengths": v.lengths for k, v in self.splits.items()},
        }
