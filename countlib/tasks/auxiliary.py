"""Auxiliary tasks, mixed into a main task's training data (seed-spec 1.5).

Each has one released test set, `<test_split_name>.txt`, which is fully determined by its recipe,
and ``original_lines``: its training-file size in the original, which together with the main
task's size sets a mixture's default auxiliary share.
"""

from __future__ import annotations

import random
from abc import abstractmethod
from collections.abc import Sequence

from countlib.tasks.base import UNSUPERVISED, DataError, Example, Task, real_length
from countlib.tasks.mixture import auxiliary_split_info
from countlib.tasks.registry import register
from countlib.vocab import HELPER_B, NULL, PAD, Vocab, numbers

TOP = 100  # every auxiliary counts or adds up to 100 (succession up to 200 has its own top)


def _number(tok: str, where: int) -> int:
    if not tok.isdigit():
        raise DataError(f"position {where}: expected a number, got {tok!r}")
    return int(tok)


class AuxiliaryTask(Task):
    """A task with a few distinct lines; ``splits`` holds only its released "test" set."""

    test_split_name: str
    original_lines: int
    _test_copies: int = 1

    @abstractmethod
    def _distinct(self) -> list[Example]:
        """The distinct training sequences; training draws them uniformly, as the original's
        copies did, and the test set lists each ``_test_copies`` times."""

    def sample(self, rng: random.Random) -> Example:
        inputs, labels = rng.choice(self._examples)
        return list(inputs), list(labels)  # copies: callers may pad or edit them

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        return [(list(x), list(y)) for x, y in self._examples for _ in range(self._test_copies)]

    def _finish(self, name: str, aliases: tuple[str, ...], test_split_name: str) -> None:
        self.name = name
        self.aliases = aliases
        self.test_split_name = test_split_name
        self._examples = self._distinct()
        lengths = [real_length(inputs) for inputs, _ in self._examples]
        real = (min(lengths), max(lengths))
        self.train_lengths = real
        self.max_train_length = real[1]
        self.splits = auxiliary_split_info(len(self._examples) * self._test_copies, real)


class Succession(AuxiliaryTask):
    """`addbigram` ("Succession"): `1 2 .. top-1` -> `2 3 .. top`, next-number prediction."""

    _test_copies = 10  # the released test file repeats the single line 10 times

    def __init__(self, name: str, aliases: tuple[str, ...], *, top: int, test_split_name: str):
        self.top = top
        self.vocab = Vocab.of(numbers(0, top), [PAD, "a"])
        self.description = f"Succession: the next number, `1 2 .. {top - 1}` -> `2 3 .. {top}`"
        self.max_positions = self.max_seq_len = 128 if top <= 128 else 256
        self.original_lines = 100_000
        self._finish(name, aliases, test_split_name)

    def _distinct(self) -> list[Example]:
        return [(numbers(1, self.top - 1), numbers(2, self.top))]

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        if len(inputs) >= self.top:
            raise DataError(f"{len(inputs)} numbers: succession stops at {self.top - 1}")
        for i, tok in enumerate(inputs):
            if _number(tok, i) != i + 1:
                raise DataError(f"position {i}: expected {i + 1} (counting up from 1), got {tok!r}")
        return numbers(2, len(inputs) + 1)


class HelperSequence(AuxiliaryTask):
    """`addbigram_{,shifted}{blk,null}seq`: `s F F ..` -> `s s+1 ..` up to 100, F a filler token.

    The filler is the paper's helper token `<b>`, or `<null>` whose embedding stays frozen. The
    start is labelled with itself, unlike the `-1` of the shifted-start main tasks.
    """

    def __init__(
        self,
        name: str,
        aliases: tuple[str, ...],
        *,
        filler: str,
        starts: range,
        test_split_name: str,
    ) -> None:
        self.filler = filler
        self.starts = starts
        if filler == NULL:
            self.vocab = Vocab.of([NULL], numbers(0, TOP), [PAD, "a"])
            self.frozen_tokens = (NULL,)
        else:
            self.vocab = Vocab.of(numbers(0, TOP), [PAD, "a", filler])
        first = starts[0]
        start = f"s in {first}-{starts[-1]}" if len(starts) > 1 else str(first)
        self.description = (
            f"Helper-token count from {start} to {TOP}: "
            f"`{first} {filler} {filler}` -> `{first} {first + 1} {first + 2}`"
        )
        self.max_positions = self.max_seq_len = 128
        self.original_lines = 100_000
        # the unshifted test file repeats its single line 10 times, the shifted one has 1 per s
        self._test_copies = 10 if len(starts) == 1 else 1
        self._finish(name, aliases, test_split_name)

    def _distinct(self) -> list[Example]:
        return [([str(s)] + [self.filler] * (TOP - s), numbers(s, TOP)) for s in self.starts]

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        if not inputs:
            raise DataError("empty sequence")
        start = _number(inputs[0], 0)
        if start not in self.starts:
            raise DataError(f"start {start} is outside {self.starts[0]}-{self.starts[-1]}")
        for i, tok in enumerate(inputs[1:], 1):
            if tok != self.filler:
                raise DataError(f"position {i}: expected {self.filler!r}, got {tok!r}")
        if start + len(inputs) - 1 > TOP:
            raise DataError(f"the count passes {TOP} at position {TOP - start + 1}")
        return numbers(start, start + len(inputs) - 1)


class AdditionTable(AuxiliaryTask):
    """`addtable{,_padhelper}{,_large}`: `x1 x2` -> `x1 x1+x2` over every pair with sum <= 100.

    The helper form puts `<pad>` after each addend: `x1 <pad> x2 <pad>` -> `-1 x1 -1 x1+x2`. The
    `_large` variants hold the same data; only their training files were larger.
    """

    def __init__(
        self,
        name: str,
        aliases: tuple[str, ...],
        *,
        helper: bool,
        original_lines: int,
        test_split_name: str,
    ) -> None:
        self.helper = helper
        self.vocab = Vocab.of(numbers(0, TOP), [PAD, "a"])
        shown = "`3 <pad> 4 <pad>` -> `-1 3 -1 7`" if helper else "`3 4` -> `3 7`"
        self.description = f"Addition table, x1 >= 1, x2 >= 1, x1 + x2 <= {TOP}: {shown}"
        self.max_positions = self.max_seq_len = 128
        self.original_lines = original_lines
        self._finish(name, aliases, test_split_name)

    def _pair(self, x1: int, x2: int) -> Example:
        if self.helper:
            return [str(x1), PAD, str(x2), PAD], [UNSUPERVISED, str(x1), UNSUPERVISED, str(x1 + x2)]
        return [str(x1), str(x2)], [str(x1), str(x1 + x2)]

    def _distinct(self) -> list[Example]:
        return [self._pair(x1, x2) for x1 in range(1, TOP) for x2 in range(1, TOP - x1 + 1)]

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        expected = 4 if self.helper else 2
        if len(inputs) != expected:
            raise DataError(f"expected {expected} tokens, got {len(inputs)}")
        if self.helper:
            for i in (1, 3):
                if inputs[i] != PAD:
                    raise DataError(f"position {i}: expected helper {PAD!r}, got {inputs[i]!r}")
        step = 2 if self.helper else 1
        x1, x2 = _number(inputs[0], 0), _number(inputs[step], step)
        if x1 < 1 or x2 < 1 or x1 + x2 > TOP:
            raise DataError(f"{x1} + {x2} is outside the table (both >= 1, sum <= {TOP})")
        return list(self._pair(x1, x2)[1])


for _task in (
    Succession("succession", ("addbigram",), top=100, test_split_name="addbigram_test"),
    Succession(
        "succession_200", ("addbigram_upto200",), top=200, test_split_name="addbigram_upto200_test"
    ),
    HelperSequence(
        "helper_sequence",
        ("addbigram_blkseq",),
        filler=HELPER_B,
        starts=range(1, 2),
        test_split_name="addbigram_blkseq_test",
    ),
    HelperSequence(
        "helper_sequence_null",
        ("addbigram_nullseq",),
        filler=NULL,
        starts=range(1, 2),
        test_split_name="addbigram_nullseq_test",
    ),
    HelperSequence(
        "helper_sequence_shifted",
        ("addbigram_shiftedblkseq",),
        filler=HELPER_B,
        starts=range(1, 51),
        test_split_name="addbigram_shiftedblkseq_test",
    ),
    HelperSequence(
        "helper_sequence_shifted_null",
        ("addbigram_shiftednullseq",),
        filler=NULL,
        starts=range(1, 51),
        test_split_name="addbigram_shiftednullseq_test",
    ),
    AdditionTable(
        "addition_table",
        ("addtable",),
        helper=False,
        original_lines=99_000,
        test_split_name="addtable_test",
    ),
    AdditionTable(
        "addition_table_large",
        ("addtable_large",),
        helper=False,
        original_lines=499_950,
        test_split_name="addtable_test",
    ),
    AdditionTable(
        "addition_table_padhelper",
        ("addtable_padhelper",),
        helper=True,
        original_lines=99_000,
        test_split_name="addtable_padhelper_test",
    ),
    AdditionTable(
        "addition_table_padhelper_large",
        ("addtable_padhelper_large",),
        helper=True,
        original_lines=499_950,
        test_split_name="addtable_padhelper_test",
    ),
):
    register(_task)
