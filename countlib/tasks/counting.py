"""Counting a run of symbols: count-then-add, plain counting and shifted start (seed-spec 1.4.1-3).

Every example is one running count written in a `CountFormat`: an optional start number, the
counted symbols, an optional trailing addend, and optionally a helper token after the start and
each symbol. The task families differ only in which shapes they draw for training and evaluation:

- `CountThenAdd`: pairs (n, k) with held-out validation pairs (count-then-add, shifted start v1/v2);
- `ShapeCounting`: a fixed list of (start, n) shapes (plain counting, shifted start 3/4, the
  Table A8 variants, and the modular tasks in `modular.py`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from countlib.tasks.base import UNSUPERVISED, DataError, Example, SplitInfo, Task
from countlib.tasks.registry import register
from countlib.vocab import BLANK, LETTERS, PAD, Vocab, numbers

#: (start number or None, number of counted symbols)
Shape = tuple[int | None, int]

SAME_SYMBOL = ("a",)
DIFF_SYMBOLS = tuple(LETTERS)
#: Lines of the original validation files with random or held-out content.
VAL_LINES = 300


def as_number(token: str) -> int | None:
    """The value of a canonical decimal number token, else None."""
    if token.isascii() and token.isdigit() and str(int(token)) == token:
        return int(token)
    return None


_NUMERALS = [str(i) for i in range(256)]


def numerals(first: int, n: int) -> list[str]:
    """``str(first) .. str(first + n - 1)``; sliced from a table on the per-example hot path."""
    if first + n <= len(_NUMERALS):
        return _NUMERALS[first : first + n]
    return [str(c) for c in range(first, first + n)]


def largest_number(vocab: Vocab) -> int:
    return max(n for n in map(as_number, vocab.tokens) if n is not None)


def _expect_number(token: str, pos: int, what: str, lo: int, hi: int) -> int:
    value = as_number(token)
    if value is not None and lo <= value <= hi:
        return value
    want = f"the {what} '{lo}'" if lo == hi else f"a {what} in {lo}..{hi}"
    raise DataError(f"position {pos}: expected {want}, got {token!r}")


@dataclass(frozen=True)
class CountFormat:
    """How one running count is written: ``[start] x_1 .. x_n [addend]``.

    ``x_i`` is labelled with the count ``start + i`` (as ``((c - 1) mod N) + 1`` under a modulus,
    so the cycle reads 1..N), the start token is unsupervised, and the addend is labelled
    ``n + addend``. With a helper, the helper follows the start and every symbol and carries that
    token's label (the start's helper echoes the start); the real token becomes unsupervised.
    """

    max_label: int
    symbols: tuple[str, ...] = SAME_SYMBOL
    start: tuple[int, int] | None = None  # allowed start numbers; None: no start token
    addend: bool = False
    helper: str | None = None
    modulus: int | None = None
    _symbol_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_symbol_set", frozenset(self.symbols))

    def count_labels(self, first: int, n: int) -> list[str]:
        """Labels of the counts ``first .. first + n - 1``."""
        if self.modulus is None:
            return numerals(first, n)
        m = self.modulus
        skip = (first - 1) % m
        return (numerals(1, m) * ((skip + n) // m + 1))[skip : skip + n]

    def draw_symbols(self, rng: random.Random, n: int) -> list[str]:
        if len(self.symbols) == 1:
            return [self.symbols[0]] * n
        return rng.choices(self.symbols, k=n)

    def encode(
        self, seq: Sequence[str], start: int | None = None, addend: int | None = None
    ) -> Example:
        offset = start or 0
        inputs = list(seq)
        labels = self.count_labels(offset + 1, len(seq))
        if start is not None:
            inputs.insert(0, str(start))
            labels.insert(0, str(start) if self.helper else UNSUPERVISED)
        if self.helper is not None:
            # Each real token hands its label to the helper that follows it.
            raw = [self.helper] * (2 * len(inputs))
            moved = [UNSUPERVISED] * (2 * len(inputs))
            raw[0::2], moved[1::2] = inputs, labels
            inputs, labels = raw, moved
        if addend is not None:
            inputs.append(str(addend))
            labels.append(str(offset + len(seq) + addend))
        return inputs, labels

    def draw(self, rng: random.Random, shape: Shape) -> Example:
        start, n = shape
        return self.encode(self.draw_symbols(rng, n), start)

    def labels(self, inputs: Sequence[str]) -> list[str]:
        start, seq, addend = self.parse(inputs)
        return self.encode(seq, start, addend)[1]

    def parse(self, inputs: Sequence[str]) -> tuple[int | None, list[str], int | None]:
        """(start, counted symbols, addend) of a well-formed input; DataError otherwise."""
        if not inputs:
            raise DataError("empty sequence")
        body = list(inputs)
        addend = None
        if self.addend:
            addend = _expect_number(body[-1], len(body) - 1, "number to add", 1, self.max_label)
            body.pop()
        step = 1
        if self.helper is not None:
            self._check_helpers(body, inputs)
            step = 2
        # Slices keep this linear in C: `data check` runs it on every line of a file.
        seq = body[::step]
        start = None
        if self.start is not None:
            if not seq:
                raise DataError("missing the start number")
            start = _expect_number(seq.pop(0), 0, "start number", *self.start)
        if not seq:
            raise DataError("no counted symbol")
        if not self._symbol_set.issuperset(seq):
            first = next(i for i, tok in enumerate(seq) if tok not in self._symbol_set)
            pos = (first + (start is not None)) * step
            raise DataError(f"position {pos}: expected {self._symbol_text()}, got {seq[first]!r}")
        if self.modulus is None:
            final = (start or 0) + len(seq) + (addend or 0)
            if final > self.max_label:
                raise DataError(
                    f"final count {final} is beyond the largest number token {self.max_label}"
                )
        return start, seq, addend

    def _check_helpers(self, body: list[str], inputs: Sequence[str]) -> None:
        """A helper must follow every real token of ``body``."""
        if len(body) % 2 == 0 and body[1::2].count(self.helper) == len(body) // 2:
            return
        pos = next((p for p in range(1, len(body), 2) if body[p] != self.helper), len(body))
        got = repr(inputs[pos]) if pos < len(inputs) else "the end"
        raise DataError(f"position {pos}: expected helper {self.helper!r}, got {got}")

    def _symbol_text(self) -> str:
        if len(self.symbols) == 1:
            return f"the counted symbol {self.symbols[0]!r}"
        return f"a counted symbol ({self.symbols[0]}-{self.symbols[-1]})"


def shape_length(shape: Shape) -> int:
    """Real tokens of a shape: the start number (if any) plus the counted symbols."""
    start, n = shape
    return n + (start is not None)


class CountingTask(Task):
    """A task written in one format, or in two that a leading number tells apart."""

    formats: tuple[CountFormat, ...]

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        return list(self._format_for(inputs).labels(inputs))

    def _format_for(self, inputs: Sequence[str]) -> CountFormat:
        if len(self.formats) == 1:
            return self.formats[0]
        leading_number = bool(inputs) and as_number(inputs[0]) is not None
        return next(f for f in self.formats if (f.start is not None) == leading_number)


class ShapeCounting(CountingTask):
    """Examples of fixed shapes (start, n): training draws a shape uniformly from ``train``; each
    split lists its shapes with repeats, or (an int) draws that many lines from training."""

    def __init__(
        self,
        name: str,
        aliases: tuple[str, ...],
        description: str,
        fmt: CountFormat,
        vocab: Vocab,
        *,
        train: Sequence[Shape],
        val: Sequence[Shape] | int,
        ood: Sequence[Shape],
        max_positions: int = 128,
        max_seq_len: int = 128,
    ) -> None:
        self.name = name
        self.aliases = aliases
        self.description = description
        self.vocab = vocab
        self.formats = (fmt,)
        self.max_positions = max_positions
        self.max_seq_len = max_seq_len
        self._train = list(train)
        self._shapes = {"val": val, "ood": list(ood)}
        train_lens = [shape_length(s) for s in self._train]
        self.train_lengths = (min(train_lens), max(train_lens))
        self.max_train_length = self.train_lengths[1]
        fixed_symbols = len(fmt.symbols) == 1
        self.splits = {}
        for split, shapes in self._shapes.items():
            if isinstance(shapes, int):
                self.splits[split] = SplitInfo(shapes, self.train_lengths, deterministic=False)
            else:
                lens = [shape_length(s) for s in shapes]
                self.splits[split] = SplitInfo(len(shapes), (min(lens), max(lens)), fixed_symbols)

    @property
    def fmt(self) -> CountFormat:
        return self.formats[0]

    def sample(self, rng: random.Random) -> Example:
        return self.fmt.draw(rng, rng.choice(self._train))

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        shapes = self._shapes[split]
        if isinstance(shapes, int):
            return [self.sample(rng) for _ in range(shapes)]
        return [self.fmt.draw(rng, shape) for shape in shapes]


ADD, SHIFT = "add", "shift"
PAIR_MAX_N = 50


class CountThenAdd(CountingTask):
    """Pairs (n, k), n uniform on 1-50 and k uniform on 1-(100 - n), written as count-then-add
    ``a^n k`` (labels ``1..n, n+k``) and/or shifted start ``k a^n`` (labels ``-1, k+1..k+n``).

    300 distinct pairs, drawn once per task from a fixed seed, form the validation split and are
    never sampled for training, as in the original. OOD holds every pair with n in 51-99.
    """

    def __init__(
        self,
        name: str,
        aliases: tuple[str, ...],
        description: str,
        vocab: Vocab,
        *,
        forms: tuple[str, ...],
        symbols: tuple[str, ...] = SAME_SYMBOL,
        helper: str | None = None,
        max_seq_len: int = 128,
    ) -> None:
        self.name = name
        self.aliases = aliases
        self.description = description
        self.vocab = vocab
        self.forms = forms
        top = largest_number(vocab)
        self._fmt = {
            ADD: CountFormat(top, symbols, addend=True, helper=helper),
            SHIFT: CountFormat(top, symbols, start=(1, top - 1), helper=helper),
        }
        self.formats = tuple(self._fmt[form] for form in forms)
        self.max_seq_len = max_seq_len
        self.train_lengths = (2, PAIR_MAX_N + 1)
        self.max_train_length = PAIR_MAX_N + 1
        cells = [(n, k) for n in range(1, PAIR_MAX_N + 1) for k in range(1, top - n + 1)]
        # Uniform over cells, like the released val files (they favour small n).
        self.held_out = sorted(random.Random(f"{name}/held-out").sample(cells, VAL_LINES))
        self._held_out = set(self.held_out)
        self._ood = [(n, k) for n in range(PAIR_MAX_N + 1, top) for k in range(1, top - n + 1)]
        same = len(symbols) == 1
        self.splits = {
            "val": SplitInfo(VAL_LINES * len(forms), (2, PAIR_MAX_N + 1), deterministic=False),
            "ood": SplitInfo(len(self._ood) * len(forms), (PAIR_MAX_N + 2, top), same),
        }

    def write(self, rng: random.Random, form: str, n: int, k: int) -> Example:
        fmt = self._fmt[form]
        seq = fmt.draw_symbols(rng, n)
        return fmt.encode(seq, addend=k) if form == ADD else fmt.encode(seq, start=k)

    def sample(self, rng: random.Random) -> Example:
        top = self._fmt[ADD].max_label
        while True:
            n = rng.randint(1, PAIR_MAX_N)
            k = rng.randint(1, top - n)
            if (n, k) not in self._held_out:
                break
        form = self.forms[0] if len(self.forms) == 1 else rng.choice(self.forms)
        return self.write(rng, form, n, k)

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        cells = self.held_out if split == "val" else self._ood
        return [self.write(rng, form, n, k) for n, k in cells for form in self.forms]


SAME_VOCAB = Vocab.of(numbers(0, 100), [PAD], SAME_SYMBOL)
DIFF_VOCAB = Vocab.of(numbers(0, 100), [PAD], DIFF_SYMBOLS)
# The original diffsymbol shiftedstart/addbigram configs list `a` twice; the later id wins.
DIFF_VOCAB_DUP_A = Vocab.of(numbers(0, 100), [PAD], SAME_SYMBOL, DIFF_SYMBOLS)
BLANK_VOCAB = Vocab.of(numbers(0, 100), [PAD], SAME_SYMBOL, [BLANK])
HELPER_SEQ_LEN = 210  # padhelper/blankhelper configs: up to 200 raw tokens

# Pairs: count-then-add and shifted start v1/v2.
for _name, _aliases, _desc, _vocab, _kw in [
    (
        "count_then_add",
        ("counting_samesymbol",),
        "Count the `a`s, then add the final number: `a a a 5` -> `1 2 3 8`.",
        SAME_VOCAB,
        {"forms": (ADD,)},
    ),
    (
        "count_then_add_diff",
        ("counting_diffsymbol",),
        "Count-then-add over random letters: `q a z 5` -> `1 2 3 8`.",
        DIFF_VOCAB,
        {"forms": (ADD,), "symbols": DIFF_SYMBOLS},
    ),
    (
        "count_then_add_pad",
        ("counting_samesymbol_padhelper",),
        "Count-then-add, each count on a masked `<pad>` helper: "
        "`a <pad> a <pad> 5` -> `-1 1 -1 2 7`.",
        SAME_VOCAB,
        {"forms": (ADD,), "helper": PAD, "max_seq_len": HELPER_SEQ_LEN},
    ),
    (
        "count_then_add_blank",
        ("counting_samesymbol_blankhelper",),
        "Count-then-add, each count on an attendable `<blk>` helper: "
        "`a <blk> a <blk> 5` -> `-1 1 -1 2 7`.",
        BLANK_VOCAB,
        {"forms": (ADD,), "helper": BLANK, "max_seq_len": HELPER_SEQ_LEN},
    ),
    (
        "shifted_start_v1",
        ("counting_samesymbol_shiftedstart",),
        "Each pair as count-then-add and as shifted start: "
        "`a a a 5` -> `1 2 3 8` and `5 a a a` -> `-1 6 7 8`.",
        SAME_VOCAB,
        {"forms": (ADD, SHIFT)},
    ),
    (
        "shifted_start_v1_diff",
        ("counting_diffsymbol_shiftedstart",),
        "Shifted start v1 over random letters: `q a z 5` -> `1 2 3 8` and `5 q a z` -> `-1 6 7 8`.",
        DIFF_VOCAB_DUP_A,
        {"forms": (ADD, SHIFT), "symbols": DIFF_SYMBOLS},
    ),
    (
        "shifted_start_v2",
        ("counting_samesymbol_shiftedstart2",),
        "Count on from k over n `a`s, n in 1-50, k in 1-(100-n): `5 a a a` -> `-1 6 7 8`.",
        SAME_VOCAB,
        {"forms": (SHIFT,)},
    ),
    (
        "shifted_start_v2_pad",
        ("counting_samesymbol_shiftedstart2_padhelper",),
        "Shifted start v2 with `<pad>` helpers, the first echoing the start: "
        "`5 <pad> a <pad> a <pad>` -> `-1 5 -1 6 -1 7`.",
        SAME_VOCAB,
        {"forms": (SHIFT,), "helper": PAD, "max_seq_len": HELPER_SEQ_LEN},
    ),
]:
    register(CountThenAdd(_name, _aliases, _desc, _vocab, **_kw))

_SAME = CountFormat(100)
_FROM_ONE = CountFormat(100, start=(1, 1))
_SHIFTED = CountFormat(100, start=(1, 99))
_SHIFTED_PAD = CountFormat(100, start=(1, 99), helper=PAD)
# Starts 1-49 with more than 50 symbols, final count at most 100 (shiftedstart2/3 OOD).
_SHIFTED_OOD = [(s, n) for s in range(1, 50) for n in range(51, 101 - s)]

# Plain counting: one training sequence, repeated.
register(
    ShapeCounting(
        "vanilla",
        ("counting_samesymbol_plain3_nobos",),
        "Count 50 `a`s (paper: Vanilla): `a a a` -> `1 2 3`; OOD 51-99 `a`s.",
        _SAME,
        SAME_VOCAB,
        train=[(None, 50)],
        val=[(None, 50)] * 10,
        ood=[(None, n) for n in range(51, 100)],
    )
)
register(
    ShapeCounting(
        "vanilla_ood100",
        ("counting_samesymbol_plain",),
        "Count 50 `a`s, OOD 51-100 `a`s (first plain task): `a a a` -> `1 2 3`.",
        _SAME,
        SAME_VOCAB,
        train=[(None, 50)],
        val=[(None, 50)] * 10,
        ood=[(None, n) for n in range(51, 101)],
    )
)
for _name, _alias, _note in [
    ("vanilla_bos", "counting_samesymbol_plain3", "100,000"),
    ("vanilla_bos_1m", "counting_samesymbol_plain2", "1,000,000"),
]:
    register(
        ShapeCounting(
            _name,
            (_alias,),
            "Count 50 `a`s after a leading `1` that acts as BOS (original train file: "
            f"{_note} lines): `1 a a a` -> `-1 2 3 4`.",
            _FROM_ONE,
            SAME_VOCAB,
            train=[(1, 50)],
            val=[(1, 50)] * 10,
            ood=[(1, n) for n in range(51, 100)],
        )
    )

# Legacy data directories `counting_{same,diff}symbol_addbigram/`: plain counting of 1-50
# symbols. No alias: the configs of those names are mixtures over count-then-add data.
register(
    ShapeCounting(
        "vanilla_all_lengths",
        (),
        "Count 1-50 `a`s (legacy counting_samesymbol_addbigram data): `a a a` -> `1 2 3`.",
        _SAME,
        SAME_VOCAB,
        train=[(None, n) for n in range(1, 51)],
        val=VAL_LINES,
        ood=[(None, n) for n in range(51, 101)],
    )
)
register(
    ShapeCounting(
        "vanilla_all_lengths_diff",
        (),
        "Count 1-50 random letters (legacy counting_diffsymbol_addbigram data): "
        "`q a z` -> `1 2 3`.",
        CountFormat(100, DIFF_SYMBOLS),
        DIFF_VOCAB_DUP_A,
        train=[(None, n) for n in range(1, 51)],
        val=VAL_LINES,
        ood=[(None, n) for n in range(51, 101) for _ in range(60)],
    )
)

# Shifted start with fixed shapes.
register(
    ShapeCounting(
        "shifted_start",
        ("counting_samesymbol_shiftedstart3",),
        "Count on from s in 1-50 over 50 `a`s (paper: Shifted Start): `3 a a a` -> `-1 4 5 6`.",
        _SHIFTED,
        SAME_VOCAB,
        train=[(s, 50) for s in range(1, 51)],
        val=[(s, 50) for s in range(1, 51)],
        ood=_SHIFTED_OOD,
    )
)
register(
    ShapeCounting(
        "shifted_start_pad",
        ("counting_samesymbol_shiftedstart3_padhelper",),
        "Shifted start with `<pad>` helpers, the first echoing the start: "
        "`3 <pad> a <pad> a <pad>` -> `-1 3 -1 4 -1 5`.",
        _SHIFTED_PAD,
        SAME_VOCAB,
        train=[(s, 50) for s in range(1, 51)],
        val=[(s, 50) for s in range(1, 51)],
        ood=_SHIFTED_OOD,
        max_seq_len=HELPER_SEQ_LEN,
    )
)
register(
    ShapeCounting(
        "shifted_start_fixed_end",
        ("counting_samesymbol_shiftedstart4",),
        "Count on from s in 1-50 up to exactly 51 (OOD: up to 100): `48 a a a` -> `-1 49 50 51`.",
        _SHIFTED,
        SAME_VOCAB,
        train=[(s, 51 - s) for s in range(1, 51)],
        val=[(s, 51 - s) for s in range(1, 51)] * 6,
        ood=[(s, 100 - s) for s in range(1, 51)] * 6,
    )
)

# Paper Table A8: X symbols in training, starts 0..Y-X, so the largest training label is Y.
for _x, _y in [(25, 50), (50, 100), (25, 100), (50, 200), (25, 200)]:
    _span = 64 if _y <= 50 else 128 if _y <= 100 else 256
    register(
        ShapeCounting(
            f"shifted_start_tr{_x}_te{_y}",
            (f"counting_samesymbol_shiftedstart3__tr{_x}_te{_y}__",),
            f"Count on from s in 0-{_y - _x} over {_x} `a`s; OOD ends exactly at {_y}: "
            "`0 a a a` -> `-1 1 2 3`.",
            CountFormat(_y, start=(0, _y - 1)),
            Vocab.of(numbers(0, _y), [PAD], SAME_SYMBOL),
            train=[(s, _x) for s in range(_y - _x + 1)],
            val=[(s, _x) for s in range(_y - _x + 1)],
            ood=[(s, _y - s) for s in range(_y - _x)] * 50,
            max_positions=_span,
            max_seq_len=_span,
        )
    )
