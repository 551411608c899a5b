"""Accuracy metrics, accumulated over batches: the five original ones (seed-spec 4.1), the
corrected extrapolation accuracy, first-position accuracy, exact match, and per-position /
per-count / per-length tables.

Naming convention for callers: IND accuracy = ``acc`` on the val split and OOD accuracy =
``extrapolation_acc`` on the ood split, unless the task declares other headline metrics
(`countlib.tasks.Task.ind_metric` / ``ood_metric``; the first-token probes score ``first_acc``).
``legacy_unseen_len_acc`` is the paper's original OOD number, which skips the first
extrapolated position when a start or BOS token is present.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from countlib.batches import IGNORE, Batch
from countlib.vocab import Vocab

Tally = dict[int, tuple[int, int]]  # key -> (correct, total)

_SCALARS = ("all", "extrapolation", "legacy", "counting", "first", "last", "exact")


def _ratio(correct: int, total: int) -> float | None:
    return correct / total if total else None


def _rows(key: str, tally: dict) -> list[dict[str, object]]:
    return [{key: k, "correct": c, "total": t, "acc": c / t} for k, (c, t) in tally.items()]


def _frozen(tally: dict[int, list[int]]) -> Tally:
    return {k: (tally[k][0], tally[k][1]) for k in sorted(tally)}


@dataclass
class EvalResult:
    acc: float | None  # all supervised positions (original "Acc")
    extrapolation_acc: float | None  # supervised positions with real_index >= max_train_length
    legacy_unseen_len_acc: float  # original "Unseen Len Acc"; -1.0 when no such position
    counting_acc: float | None  # all supervised positions but the last of each sequence
    first_acc: float | None  # the first supervised position of each sequence
    last_acc: float | None  # the last supervised position of each sequence
    exact_match: float | None  # sequences with every supervised position right
    tokens: int  # supervised positions scored
    extrapolation_tokens: int
    sequences: int  # sequences with at least one supervised position
    per_position: Tally  # by real_index
    per_count: dict[str, tuple[int, int]]  # by label token
    per_length: Tally  # by real length of the sequence

    def to_dict(self, tables: bool = False) -> dict[str, object]:
        """Scalar metrics and counts; with ``tables``, also the per-* tables as lists of rows."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("per_")}
        if tables:
            out["per_position"] = self.per_position_table()
            out["per_count"] = self.per_count_table()
            out["per_length"] = self.per_length_table()
        return out

    def per_position_table(self) -> list[dict[str, object]]:
        return _rows("position", self.per_position)

    def per_count_table(self) -> list[dict[str, object]]:
        return _rows("count", self.per_count)

    def per_length_table(self) -> list[dict[str, object]]:
        return _rows("length", self.per_length)


def _grown(counts: torch.Tensor, width: int) -> torch.Tensor:
    """``counts`` [2, w] zero-padded on the right to ``width`` columns (``width`` >= w)."""
    return torch.nn.functional.pad(counts, (0, width - counts.shape[1]))


def _tally_rows(counts: torch.Tensor) -> dict[int, list[int]]:
    """A [2, K] tally (correct, total by key + 1) as {key: [correct, total]}, keys with a total."""
    correct, totals = counts.tolist()
    return {k - 1: [c, t] for k, (c, t) in enumerate(zip(correct, totals, strict=True)) if t}


class Scores:
    """Accumulates metrics over batches; ``result`` may be called at any point.

    Every count stays on the batches' device until ``result`` reads it back, once: an update
    launches work but never waits for it, so evaluating on a GPU does not stall on each batch.
    Grouped tallies are therefore indexed by key + 1 into tensors whose width is known on the
    host (the batch's length; ``label_ids``, the vocabulary size, for the per-count tally),
    never by reading keys back.
    """

    def __init__(self, label_ids: int | None = None) -> None:
        """``label_ids``: how many label ids there are (the vocabulary's size); None reads the
        largest from each batch, a device synchronisation per batch."""
        self.label_ids = label_ids
        self._sums: torch.Tensor | None = None  # [2 * len(_SCALARS)]: correct, total of each
        #: per-position / per-count / per-length: [2, width] (correct, total) by key + 1
        self._tallies: dict[str, torch.Tensor] = {}

    def update(self, predictions: torch.Tensor, batch: Batch) -> None:
        """``predictions``: arg-max token ids, shaped like ``batch.labels``."""
        labels = batch.labels
        if predictions.shape != labels.shape:
            raise ValueError(
                f"predictions have shape {tuple(predictions.shape)}, labels {tuple(labels.shape)}"
            )
        predictions = predictions.to(labels.device)
        supervised = labels != IGNORE
        right = (predictions == labels) & supervised

        index = torch.arange(labels.shape[1], device=labels.device).expand_as(labels)
        last_index = torch.where(supervised, index, -1).amax(dim=1, keepdim=True)
        is_last = supervised & (index == last_index)
        first_index = torch.where(supervised, index, labels.shape[1]).amin(dim=1, keepdim=True)
        is_first = supervised & (index == first_index)
        counting = supervised & ~is_last
        scored = last_index.squeeze(1) >= 0
        exact = scored & (right.sum(1) == supervised.sum(1))

        masks = {
            "all": supervised,
            "extrapolation": batch.extrapolation & supervised,
            "legacy": batch.legacy_unseen & supervised,
            "counting": counting,
            "first": is_first,
            "last": is_last,
        }
        sums = [t for m in masks.values() for t in ((right & m).sum(), m.sum())]
        sums = torch.stack([*sums, exact.sum(), scored.sum()])
        self._sums = sums if self._sums is None else self._sums + sums

        # keys: real_index >= -1 and lengths <= T, so key + 1 < T + 2; labels < label_ids
        width = labels.shape[1] + 2
        labels_width = 1 + (self.label_ids or int(labels.max()) + 1)
        lengths = batch.lengths.to(labels.device)[:, None].expand_as(labels)
        self._add("position", batch.real_index, supervised, right, width)
        self._add("count", labels, supervised, right, labels_width)
        self._add("length", lengths, supervised, right, width)

    def _add(
        self,
        name: str,
        keys: torch.Tensor,
        supervised: torch.Tensor,
        right: torch.Tensor,
        width: int,
    ) -> None:
        """Add (correct, total) of the supervised positions, grouped by ``keys`` (>= -1)."""
        counts = torch.zeros(2, width, dtype=torch.long, device=keys.device)
        shifted = (keys + 1).flatten()  # real_index and unsupervised labels may be -1
        counts[0].index_add_(0, shifted, right.flatten().long())
        counts[1].index_add_(0, shifted, supervised.flatten().long())
        before = self._tallies.get(name)
        if before is not None:
            width = max(width, before.shape[1])
            counts = _grown(counts, width) + _grown(before, width)
        self._tallies[name] = counts

    def result(self, vocab: Vocab) -> EvalResult:
        sums = [0] * (2 * len(_SCALARS)) if self._sums is None else self._sums.tolist()
        c = {name: sums[2 * i : 2 * i + 2] for i, name in enumerate(_SCALARS)}
        position, count, length = (
            _tally_rows(self._tallies[name]) if name in self._tallies else {}
            for name in ("position", "count", "length")
        )
        legacy = _ratio(*c["legacy"])
        per_count: dict[str, list[int]] = {}
        for label_id in sorted(count):
            # A token listed twice in a vocabulary appears under one name.
            entry = per_count.setdefault(vocab.tokens[label_id], [0, 0])
            entry[0] += count[label_id][0]
            entry[1] += count[label_id][1]
        return EvalResult(
            acc=_ratio(*c["all"]),
            extrapolation_acc=_ratio(*c["extrapolation"]),
            legacy_unseen_len_acc=-1.0 if legacy is None else legacy,
            counting_acc=_ratio(*c["counting"]),
            first_acc=_ratio(*c["first"]),
            last_acc=_ratio(*c["last"]),
            exact_match=_ratio(*c["exact"]),
            tokens=c["all"][1],
            extrapolation_tokens=c["extrapolation"][1],
            sequences=c["exact"][1],
            per_position=_frozen(position),
            per_count={k: (v[0], v[1]) for k, v in per_count.items()},
            per_length=_frozen(length),
        )
