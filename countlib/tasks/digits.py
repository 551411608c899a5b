"""Digit-tokenised variants of the Table A1 tasks: every number written as W digit tokens.

The base tasks give each number one token (`12` is one vocabulary entry). `DigitTask` wraps a
registered task and rewrites every example it produces, training draws and every split, so the
label rule, the splits and the sampling stay the base task's (a split holds the base's own
examples, drawn from the base's seed, so that a digits run and a base run are scored on the same
sequences). The variants are registered as ``<base>_digits`` with no aliases, for the Table A1
tasks whose numbers have more than one digit.

- Width: W is the number of decimal digits of the base vocabulary's largest number token, which
  bounds every label and input number the base can produce. Every number is written with W
  digits, leading zeros included (`7` -> `0 0 7` at W = 3), so the input length never reveals
  the count's size. W = 3 for `helper_token`, `helper_token_shifted_start` and
  `shifted_start` (labels up to 100) and 2 for `mod10` (labels 1-10). `selective` (labels
  0-9) and `selective_mod4` (0-3) would have W = 1, the base under another name, and get no
  variant.
- Rewrite, per base position (x, y): the block's inputs are x's W digits if x is a number
  token, else x; if y is a number, W - 1 `<blk>` follow. Every position of the block is
  unsupervised except, when y is a number, the block's last input, which carries y's first
  digit, and the blanks, which carry its other digits. A label that is not a number (``-1``)
  stays on the block's last input, so an unsupervised position gives an unsupervised block.
  `3 a a` -> `-1 4 5` at W = 3 becomes `0 0 3 a <blk> <blk> a <blk> <blk>` ->
  `-1 -1 -1 0 0 4 0 0 5`.
- Real tokens: blanks are helpers, digits are real, so an input number counts W real tokens.
  The training and split lengths, and with them ``max_train_length`` (the longest rewritten
  training sequence, measured on the val split, which spans the training lengths), are
  measured on the rewritten splits, as `countlib.batches` computes real indices. In each
  wrapped task every input number precedes the counted tokens (one leading start number, or
  none; selective's items are numbers, but W = 1 there), so a rewritten real index is the
  base's plus a constant and the OOD metric scores exactly the base's extrapolation positions,
  W - 1 real tokens later per leading number (`shifted_start`: from 53 instead of 51).
- ``max_seq_len`` and ``max_positions`` are the base's, raised where a rewritten split needs
  more (`helper_token`: 302 raw tokens). Lengths are measured on first use, not at import.
- Vocabulary: the digits `0`-`9`, then the base's other tokens in the base's order, then
  `<blk>`; a base that uses `<blk>` itself cannot be wrapped (its blanks would be ambiguous).
- The IND/OOD metrics stay the base's (``acc`` / ``extrapolation_acc``) and score every digit
  token: a wrong units digit costs one of a count's W scored positions, not the whole count.
- `DigitTask.labels` parses a digit-written input back to the base's tokens, applies the base
  rule and rewrites its labels; a malformed input (a digit group of the wrong width, a blank
  where none belongs, an unknown token) raises DataError naming its position, and the base's
  own errors are translated to positions of the digit-written input.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

# The wrapped families register their tasks on import; `countlib.tasks` imports this module
# before some of them (its import list is sorted), so import them here: as modules of their
# own, not from the package `countlib.tasks`, which imports this one (no cycle).
import countlib.tasks.counting  # noqa: F401
import countlib.tasks.mixtures  # noqa: F401
import countlib.tasks.modular  # noqa: F401
import countlib.tasks.selective  # noqa: F401
from countlib.paper import RECURRENT_TASKS
from countlib.tasks.base import UNSUPERVISED, DataError, Example, SplitInfo, Task, real_length
from countlib.tasks.counting import as_number, largest_number
from countlib.tasks.registry import get_task, register
from countlib.vocab import BLANK, Vocab, numbers

DIGITS = tuple(numbers(0, 9))
_DIGIT_SET = frozenset(DIGITS)
_POSITION = re.compile(r"position (\d+)")


@dataclass(frozen=True)
class _Layout:
    """What the rewritten splits measure."""

    splits: dict[str, SplitInfo]
    train_lengths: tuple[int, int]
    max_seq_len: int
    max_positions: int


@dataclass(frozen=True)
class _Parsed:
    """A digit-written input read as the base's tokens; block j of the input spans
    ``starts[j]`` to ``ends[j]`` (exclusive), then ``blanks[j]`` blanks."""

    tokens: list[str]
    starts: list[int]
    ends: list[int]
    blanks: list[int]


class DigitTask(Task):
    """A registered task with its numbers written as ``width`` digit tokens (module docstring)."""

    def __init__(self, base: Task) -> None:
        if BLANK in base.vocab:
            raise ValueError(f"task {base.name!r} uses {BLANK!r} itself; its blanks are ambiguous")
        self.width = digits_of_largest(base)
        if self.width == 1:
            raise ValueError(
                f"task {base.name!r} has single-digit numbers only: its variant would be the base"
            )
        self.base = base
        self.name = f"{base.name}_digits"
        self.aliases = ()
        number_tokens = [tok for tok in base.vocab.tokens if as_number(tok) is not None]
        self._digits = {tok: list(tok.zfill(self.width)) for tok in number_tokens}
        self._blanks = [BLANK] * (self.width - 1)
        self._leading = [UNSUPERVISED] * (self.width - 1)
        # dict.fromkeys: a token the base lists twice gets one id here
        others = dict.fromkeys(tok for tok in base.vocab.tokens if as_number(tok) is None)
        self._others = frozenset(others)
        self.vocab = Vocab.of(DIGITS, others, [BLANK])
        self.description = f"{base.description.rstrip('.')}. {self._digit_note()}"
        self.frozen_tokens = base.frozen_tokens
        self.ind_metric = base.ind_metric
        self.ood_metric = base.ood_metric

    def _digit_note(self) -> str:
        w = self.width
        seven = " ".join("7".zfill(w))
        rest = (
            "its second digit labels the `<blk>` helper after it"
            if w == 2
            else f"its other {w - 1} digits label the {w - 1} `<blk>` helpers after it"
        )
        return (
            f"Numbers written as {w} digits, one token each (`7` -> `{seven}`; a count's first "
            f"digit labels its token, {rest}); a count is scored per digit."
        )

    # -- lengths, measured on the rewritten splits ----------------------------------------------

    @functools.cached_property
    def _layout(self) -> _Layout:
        # On first use: building every split of every variant at import would slow every command.
        splits, longest_raw, longest_real = {}, 0, 0
        for name, info in self.base.splits.items():
            base_examples = self.base.split(name)
            examples = [self.rewrite(example) for example in base_examples]
            real = [real_length(inputs) for inputs, _ in examples]
            splits[name] = SplitInfo(info.lines, (min(real), max(real)), info.deterministic)
            longest_raw = max(longest_raw, *(len(inputs) for inputs, _ in examples))
            longest_real = max(longest_real, *real)
            if name == "val":
                base_real = [real_length(inputs) for inputs, _ in base_examples]
                # then val measures the training lengths, rewritten
                if (min(base_real), max(base_real)) != tuple(self.base.train_lengths):
                    raise ValueError(
                        f"task {self.base.name!r}: its val split does not span the training "
                        f"lengths {self.base.train_lengths}, so the rewritten ones are unknown"
                    )
        return _Layout(
            splits=splits,
            train_lengths=splits["val"].lengths,
            max_seq_len=max(self.base.max_seq_len, longest_raw),
            # a sequence of n real tokens takes n + 1 position ids (`countlib.batches`)
            max_positions=max(self.base.max_positions, longest_real + 1),
        )

    @property
    def splits(self) -> dict[str, SplitInfo]:
        return self._layout.splits

    @property
    def train_lengths(self) -> tuple[int, int]:
        return self._layout.train_lengths

    @property
    def max_train_length(self) -> int:
        return self._layout.train_lengths[1]

    @property
    def max_seq_len(self) -> int:
        return self._layout.max_seq_len

    @property
    def max_positions(self) -> int:
        return self._layout.max_positions

    # -- examples -------------------------------------------------------------------------------

    def rewrite(self, example: Example) -> Example:
        """A base example with its numbers written as digits (the rule in the module docstring)."""
        inputs: list[str] = []
        labels: list[str] = []
        for x, y in zip(*example, strict=True):
            block = self._digits.get(x) or [x]
            inputs += block
            labels += self._leading[: len(block) - 1]
            digits = self._digits.get(y)
            if digits is None:
                labels.append(y)
            else:
                inputs += self._blanks
                labels += digits
        return inputs, labels

    def sample(self, rng: random.Random) -> Example:
        return self.rewrite(self.base.sample(rng))

    def split(self, name: str, seed: int = 0) -> list[Example]:
        # The base's own examples (its seed), so that both tokenisations see the same sequences.
        return [self.rewrite(example) for example in self.base.split(name, seed)]

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        """The Task interface's hook; `split` bypasses it to keep the base's seeds."""
        return [self.rewrite(example) for example in self.base._build_split(split, rng)]

    # -- label rule -----------------------------------------------------------------------------

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        parsed = self._parse(inputs)
        try:
            base_labels = self.base.labels(parsed.tokens)
        except DataError as err:
            raise DataError(_in_positions(str(err), [*parsed.starts, len(inputs)])) from None
        out: list[str | None] = []
        for j, label in enumerate(base_labels):
            digits = self._digits.get(label) if label is not None else None
            blanks = parsed.blanks[j]
            # None allows any label, so a blank may or may not follow there
            if label is not None and blanks != (len(self._blanks) if digits else 0):
                raise DataError(
                    f"position {parsed.ends[j]}: {blanks} {BLANK!r} after a token labelled "
                    f"{label!r}; the rule puts {self.width - 1} after a number label, else none"
                )
            out += self._leading[: parsed.ends[j] - parsed.starts[j] - 1]
            out += digits if digits else [label] * (1 + blanks)
        return out

    def _parse(self, inputs: Sequence[str]) -> _Parsed:
        parsed = _Parsed([], [], [], [])
        i = 0
        while i < len(inputs):
            parsed.starts.append(i)
            token = inputs[i]
            if token in _DIGIT_SET:
                token = self._read_number(inputs, i)
                i += self.width
            elif token in self._others:
                i += 1
            elif token == BLANK:  # only at position 0: later blanks are read with their block
                raise DataError(f"position {i}: {BLANK!r} where no token precedes it")
            else:
                raise DataError(f"position {i}: {token!r} is not a token of {self.name}")
            parsed.tokens.append(token)
            parsed.ends.append(i)
            blanks = _run_of(inputs, i, BLANK)
            if blanks not in (0, self.width - 1):
                raise DataError(
                    f"position {i}: {blanks} {BLANK!r} in a row; a number label takes "
                    f"{self.width - 1}, anything else none"
                )
            parsed.blanks.append(blanks)
            i += blanks
        return parsed

    def _read_number(self, inputs: Sequence[str], i: int) -> str:
        """The base's number token written by the W digits from position ``i``."""
        group = inputs[i : i + self.width]
        width = next((k for k, tok in enumerate(group) if tok not in _DIGIT_SET), len(group))
        if width != self.width:
            raise DataError(
                f"position {i}: a number of {width} digit(s); {self.name} writes every number "
                f"with {self.width}"
            )
        number = str(int("".join(group)))
        if number not in self._digits:
            raise DataError(f"position {i}: {number} is not a number of {self.base.name}")
        return number


def _run_of(tokens: Sequence[str], start: int, token: str) -> int:
    """How many copies of ``token`` follow one another from ``start``."""
    end = start
    while end < len(tokens) and tokens[end] == token:
        end += 1
    return end - start


def _in_positions(message: str, starts: list[int]) -> str:
    """A base error names positions of the base's tokens; name the digit-written ones instead
    (``starts``: where each base token's block begins, then the input's end)."""
    return _POSITION.sub(lambda m: f"position {starts[int(m[1])]}", message)


def digits_of_largest(task: Task) -> int:
    """W: the decimal digits of the task's largest number token, which bounds every label and
    input number the task can produce."""
    return len(str(largest_number(task.vocab)))


for _name in RECURRENT_TASKS:
    if digits_of_largest(get_task(_name)) > 1:  # Selective's: single digits, nothing to split
        register(DigitTask(get_task(_name)))
