"""Selective counting: at every item, count the earlier occurrences of that same item.

Two generations exist in the original code (seed-spec 1.4.5):

* a/b tasks (April): two items, the label is the inclusive 1-based running count (`b a a b` ->
  `1 1 2 2`), and the item counts are drawn uniformly over the ``(#a, #b)`` pairs;
* item tasks (10 items, and 4 items mod 4): the label is the 0-based number of *previous*
  occurrences (`4 9 4 4` -> `0 0 1 2`), and the item counts are a uniform composition of the
  length, capped per item and, in the v1 recipe, reweighted by their smallest (or largest) count.
"""

from __future__ import annotations

import functools
import random
from collections import Counter
from collections.abc import Sequence
from math import comb

from countlib.tasks.base import UNSUPERVISED, DataError, Example, SplitInfo, Task
from countlib.tasks.registry import register
from countlib.vocab import BOS, PAD, Vocab, numbers

# v1 recipe: for lengths above 20, a draw whose smallest item count is 0 / 1 / 2 / 3 is kept with
# these probabilities, so that long training sequences hold every item several times.
V1_TRAIN_KEEP_BY_MIN_COUNT = (0.0005, 0.015, 0.2, 0.8)
V1_REWEIGHT_ABOVE_LENGTH = 20
# v1 OOD: counts are `cap - deficit`; a draw whose smallest deficit (the largest count's distance
# to the cap) is 0 / 1 / 2 is kept with these probabilities, so few items sit at the cap.
V1_OOD_KEEP_BY_MIN_DEFICIT = (0.01, 0.5, 0.8)


# ---------------------------------------------------------------------------------------------
# item-count sampler


@functools.cache
def _compositions(total: int, parts: int, cap: int) -> int:
    """Number of ways to write ``total`` as ``parts`` ordered counts, each in [0, cap]."""
    if total < 0 or cap < 0:
        return 0
    # inclusion-exclusion over the set of parts that exceed the cap
    return sum(
        (-1) ** j * comb(parts, j) * comb(total - j * (cap + 1) + parts - 1, parts - 1)
        for j in range(parts + 1)
        if total - j * (cap + 1) >= 0
    )


@functools.cache
def _first_count_cum_weights(total: int, parts: int, cap: int) -> tuple[int, ...]:
    """Cumulative number of capped compositions, by the value of their first count."""
    cum, acc = [], 0
    for first in range(min(cap, total) + 1):
        acc += _compositions(total - first, parts - 1, cap)
        cum.append(acc)
    return tuple(cum)


def capped_composition(rng: random.Random, total: int, parts: int, cap: int) -> list[int]:
    """Uniform over ``parts`` non-negative counts summing to ``total``, each at most ``cap``.

    The original drew stars-and-bars cut points and redrew while a count exceeded the cap; that
    needs ~12 draws at length 50 and ~10^11 at length 99, so counts are drawn one at a time here,
    each with probability proportional to the number of ways to finish: the same distribution.
    """
    if total > parts * cap:
        raise ValueError(f"{total} does not fit into {parts} counts of at most {cap}")
    counts = []
    for left in range(parts, 1, -1):
        cum = _first_count_cum_weights(total, left, cap)
        (first,) = rng.choices(range(len(cum)), cum_weights=cum)
        counts.append(first)
        total -= first
    counts.append(total)
    return counts


@functools.cache
def _min_class_cum_weights(
    total: int, parts: int, cap: int, keep: tuple[float, ...]
) -> tuple[float, ...]:
    """Cumulative weights of "smallest count == m" for m < len(keep), then "smallest >= len(keep)".

    A class weighs (number of capped compositions in it) x (its keep probability).
    """

    def at_least(m: int) -> int:
        return _compositions(total - parts * m, parts, cap - m)

    weights = [(at_least(m) - at_least(m + 1)) * p for m, p in enumerate(keep)]
    weights.append(at_least(len(keep)))
    cum, acc = [], 0.0
    for w in weights:
        acc += w
        cum.append(acc)
    return tuple(cum)


def reweighted_composition(
    rng: random.Random, total: int, parts: int, cap: int, keep: tuple[float, ...]
) -> list[int]:
    """A capped composition kept with probability ``keep[min(counts)]`` (1 past the tuple's end).

    The original redrew until a draw was kept, which takes thousands of draws for lengths just
    above 20; choosing the smallest-count class first and then a composition inside it gives
    exactly the same distribution in a few draws.
    """
    cum = _min_class_cum_weights(total, parts, cap, keep)
    (m,) = rng.choices(range(len(cum)), cum_weights=cum)
    while True:
        # every count >= m; inside an exact class one of them must equal m
        counts = capped_composition(rng, total - parts * m, parts, cap - m)
        if m == len(keep) or 0 in counts:
            return [c + m for c in counts]


# ---------------------------------------------------------------------------------------------
# shared label rule and formatting


class SelectiveCounting(Task):
    """The label rule and example layout common to every selective task.

    ``first_count`` is the label of an item's first occurrence (1 for the a/b tasks, 0 for the
    item tasks); ``cap`` is the most occurrences of one item; ``helper`` puts a `<pad>` after every
    item, which then carries the label.
    """

    items: tuple[str, ...]
    first_count: int
    cap: int
    modulus: int | None = None
    bos: bool = False
    helper: bool = False

    def _setup_layout(self, *, bos: bool, helper: bool, max_positions: int = 128) -> None:
        self.bos = bos
        self.helper = helper
        self.max_positions = max_positions
        # the helper doubles the raw length; the original then used max_seq_len 210
        self.max_seq_len = 210 if helper else max_positions
        self._item_set = frozenset(self.items)
        # label text of an item's n-th occurrence (n from 0), precomputed for speed
        counts = range(self.first_count, self.first_count + self.cap)
        self._label_text = [str(c % self.modulus if self.modulus else c) for c in counts]

    def _format(self, seq: Sequence[str]) -> Example:
        seen = dict.fromkeys(self.items, 0)
        labels = []
        for tok in seq:
            n = seen[tok]
            seen[tok] = n + 1
            labels.append(self._label_text[n])
        if self.helper:
            inputs = [t for tok in seq for t in (tok, PAD)]
            labels = [t for label in labels for t in (UNSUPERVISED, label)]
        else:
            inputs = list(seq)
        if self.bos:
            return [BOS, *inputs], [UNSUPERVISED, *labels]
        return inputs, labels

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        start = 0
        if self.bos:
            if not inputs or inputs[0] != BOS:
                got = repr(inputs[0]) if inputs else "nothing"
                raise DataError(f"position 0 must be {BOS!r}, got {got}")
            start = 1
        body = list(inputs[start:])
        step = 2 if self.helper else 1
        if self.helper:
            for i in range(1, len(body), 2):
                if body[i] != PAD:
                    raise DataError(f"position {start + i}: expected helper {PAD!r} after an item")
            if len(body) % 2:
                raise DataError(f"the last item (position {len(inputs) - 1}) lacks its helper")
            body = body[::2]
        if not self._item_set.issuperset(body) or max(Counter(body).values(), default=0) > self.cap:
            self._raise_bad_item(body, start, step)
        return list(self._format(body)[1])

    def _raise_bad_item(self, body: Sequence[str], start: int, step: int) -> None:
        seen: Counter[str] = Counter()
        for j, tok in enumerate(body):
            where = f"position {start + j * step}"
            if tok == BOS:
                raise DataError(f"{where}: {BOS!r} may only open the sequence")
            if tok not in self._item_set:
                raise DataError(f"{where}: {tok!r} is not an item ({', '.join(self.items)})")
            seen[tok] += 1
            if seen[tok] > self.cap:
                raise DataError(
                    f"{where}: item {tok!r} occurs more than {self.cap} times, "
                    "beyond the task's range"
                )


# ---------------------------------------------------------------------------------------------
# a/b tasks


class PairSelective(SelectiveCounting):
    """`counting_selective` (+ `_padhelper`): `a`/`b` strings, inclusive running count."""

    items = ("a", "b")
    first_count = 1
    cap = 50

    def __init__(self, name: str, aliases: tuple[str, ...], *, helper: bool = False) -> None:
        self.name = name
        self.aliases = aliases
        self.vocab = Vocab.of(numbers(0, 50), [PAD, "a", "b"])
        shape = (
            "`a <pad> b <pad> a <pad>` -> `-1 1 -1 1 -1 2`" if helper else "`b a a b` -> `1 1 2 2`"
        )
        self.description = (
            "Count each of two items so far (#a 1-50, #b 0-(50-#a), OOD both up to 50 with "
            f"length 51-100): {shape}"
        )
        self.max_train_length = 50
        self.train_lengths = (1, 50)
        self.splits = {
            "val": SplitInfo(1275, (1, 50), deterministic=False),
            "ood": SplitInfo(2550, (51, 100), deterministic=False),
        }
        self._setup_layout(bos=False, helper=helper)
        # training draws (#a, #b) uniformly, as 784 copies of every pair did
        self._train_pairs = [(na, nb) for na in range(1, 51) for nb in range(51 - na)]

    def _arrange(self, rng: random.Random, na: int, nb: int) -> Example:
        seq = ["a"] * na + ["b"] * nb
        rng.shuffle(seq)
        return self._format(seq)

    def sample(self, rng: random.Random) -> Example:
        return self._arrange(rng, *rng.choice(self._train_pairs))

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        if split == "val":
            return [self._arrange(rng, na, nb) for na, nb in self._train_pairs]
        # OOD: every pair whose total exceeds 50 (both counts stay <= 50), twice
        pairs = [(na, nb) for na in range(51) for nb in range(51) if na + nb > 50]
        return [self._arrange(rng, na, nb) for na, nb in pairs for _ in range(2)]


class DebugSelective(SelectiveCounting):
    """`debug`: the a/b rule on length 3 (val `a b b`) and length 5 (OOD `a b b a a`)."""

    items = ("a", "b")
    first_count = 1
    cap = 3

    def __init__(self) -> None:
        self.name = "debug"
        self.aliases = ()
        self.vocab = Vocab.of([PAD, "a", "b"], numbers(1, 3))
        self.description = (
            "Toy a/b selective counting for smoke tests; trains on all 8 a/b strings of length 3 "
            "(the original released no training file): `a b b` -> `1 1 2`"
        )
        self.max_train_length = 3
        self.train_lengths = (3, 3)
        self.splits = {
            "val": SplitInfo(8, (3, 3), deterministic=True),
            "ood": SplitInfo(8, (5, 5), deterministic=True),
        }
        self._setup_layout(bos=False, helper=False)

    def sample(self, rng: random.Random) -> Example:
        return self._format(rng.choices(self.items, k=3))

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        seq = ["a", "b", "b"] if split == "val" else ["a", "b", "b", "a", "a"]
        return [self._format(seq) for _ in range(8)]


# ---------------------------------------------------------------------------------------------
# item tasks


class ItemSelective(SelectiveCounting):
    """10-item (v1, v2) and 4-item mod-4 selective counting; the items are the tokens "0", "1"...

    ``reweight=True`` is the v1 recipe: variable lengths with the smallest-count reweighting in
    training and the smallest-deficit reweighting in OOD. Val spreads its lines evenly over the
    training lengths; OOD spreads its lines evenly over ``ood_lengths``.
    """

    first_count = 0

    def __init__(
        self,
        name: str,
        aliases: tuple[str, ...],
        *,
        n_items: int,
        cap: int,
        lengths: tuple[int, int],
        ood_lengths: tuple[int, int],
        ood_lines: int,
        reweight: bool = False,
        modulus: int | None = None,
        bos: bool = False,
        helper: bool = False,
        max_positions: int = 128,
        description: str,
    ) -> None:
        self.name = name
        self.aliases = aliases
        self.items = tuple(numbers(0, n_items - 1))
        self.cap = cap
        self.modulus = modulus
        self.reweight = reweight
        # labels (0 .. cap-1, or 0 .. modulus-1) reuse the item tokens
        assert (modulus or cap) <= n_items, "labels must be item tokens"
        self.vocab = Vocab.of(self.items, [BOS] if bos else [], [PAD])
        self.description = description
        extra = 1 if bos else 0
        self.train_lengths = (lengths[0] + extra, lengths[1] + extra)
        self.max_train_length = self.train_lengths[1]
        self._lengths = lengths
        self._ood_lengths = ood_lengths
        self._ood_lines = ood_lines
        self.splits = {
            "val": SplitInfo(2000, self.train_lengths, deterministic=False),
            "ood": SplitInfo(
                ood_lines, (ood_lengths[0] + extra, ood_lengths[1] + extra), deterministic=False
            ),
        }
        self._setup_layout(bos=bos, helper=helper, max_positions=max_positions)

    def _train_counts(self, rng: random.Random, length: int) -> list[int]:
        if self.reweight and length > V1_REWEIGHT_ABOVE_LENGTH:
            return reweighted_composition(
                rng, length, len(self.items), self.cap, V1_TRAIN_KEEP_BY_MIN_COUNT
            )
        return capped_composition(rng, length, len(self.items), self.cap)

    def _ood_counts(self, rng: random.Random, length: int) -> list[int]:
        if not self.reweight:
            return capped_composition(rng, length, len(self.items), self.cap)
        deficit = len(self.items) * self.cap - length
        deficits = reweighted_composition(
            rng, deficit, len(self.items), self.cap, V1_OOD_KEEP_BY_MIN_DEFICIT
        )
        return [self.cap - d for d in deficits]

    def _arrange(self, rng: random.Random, counts: Sequence[int]) -> Example:
        seq = [tok for tok, n in zip(self.items, counts, strict=True) for _ in range(n)]
        rng.shuffle(seq)
        return self._format(seq)

    def sample(self, rng: random.Random) -> Example:
        length = rng.randint(*self._lengths)
        return self._arrange(rng, self._train_counts(rng, length))

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        if split == "val":
            lengths, lines, counts = self._lengths, 2000, self._train_counts
        else:
            lengths, lines, counts = self._ood_lengths, self._ood_lines, self._ood_counts
        span = range(lengths[0], lengths[1] + 1)
        per_length, rest = divmod(lines, len(span))
        assert rest == 0, f"{lines} lines do not spread evenly over lengths {lengths}"
        return [self._arrange(rng, counts(rng, n)) for n in span for _ in range(per_length)]


def _ten_items(
    name: str, alias: str, *, v1: bool, bos: bool = False, helper: bool = False, note: str = ""
) -> ItemSelective:
    lengths = (1, 50) if v1 else (50, 50)
    shown = "`<bos> 4 9 4 4` -> `-1 0 0 1 2`" if bos else "`4 9 4 4` -> `0 0 1 2`"
    if helper:
        shown = "`4 <pad> 9 <pad> 4 <pad>` -> `-1 0 -1 0 -1 1`"
    length_text = "lengths 1-50 (v1 recipe)" if v1 else "length 50"
    return ItemSelective(
        name,
        (alias,),
        n_items=10,
        cap=10,
        lengths=lengths,
        ood_lengths=(51, 99),
        ood_lines=2989,
        reweight=v1,
        bos=bos,
        helper=helper,
        description=(
            f"Selective counting over 10 items, each at most 10 times, {length_text}, "
            f"OOD lengths 51-99; label = earlier occurrences of the item{note}: {shown}"
        ),
    )


for _task in (
    PairSelective("selective_ab", ("counting_selective",)),
    PairSelective("selective_ab_padhelper", ("counting_selective_padhelper",), helper=True),
    _ten_items("selective_v1", "counting_selective_10items", v1=True),
    _ten_items("selective", "counting_selective_10items2", v1=False),
    _ten_items(
        "selective_bos",
        "counting_selective_10items2bos",
        v1=True,
        bos=True,
        note=(
            " (despite its original name this is the v1 recipe plus <bos>, so comparing it with "
            "`selective` also changes the length distribution)"
        ),
    ),
    _ten_items(
        "selective_v1_padhelper", "counting_selective_10items_padhelper", v1=True, helper=True
    ),
    _ten_items(
        "selective_padhelper", "counting_selective_10items_padhelper2", v1=False, helper=True
    ),
    ItemSelective(
        "selective_mod4",
        ("counting_selective_modular_4items",),
        n_items=4,
        cap=64,
        lengths=(64, 64),
        ood_lengths=(128, 128),
        ood_lines=3000,
        modulus=4,
        max_positions=130,
        description=(
            "Selective counting mod 4 over 4 items, length 64, OOD length 128 (at most 64 of "
            "each item): `0 3 0 0 0 0` -> `0 0 1 2 3 0`"
        ),
    ),
    DebugSelective(),
):
    register(_task)
