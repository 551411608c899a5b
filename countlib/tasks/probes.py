"""First-token recognition probes (paper Tables A5/A6).

The original generator was never released; this one follows the paper's description. At every
position the label says whether that position holds the sequence's first token: `T` at position
0, `F` everywhere else. Training sequences have length 50, OOD sequences length 128. Training
is supervised at every position, but, as in the paper, the task's IND and OOD accuracy score
only the first token's T/F prediction (``first_acc``, on the length-50 and length-128 splits):
over all positions a model that always answers `F` would read 98 % / 99 %.

* ``first_token_homogeneous``: every token is `a`, so only position can tell the first token.
* ``first_token_heterogeneous``: the 10 tokens `a`..`j`, each repeated equally often as far as
  the length allows (5 times each at length 50, 12 or 13 times at 128), in random order. The
  first token's identity recurs later in the sequence, so it must again be recognised by
  position, not identity.

Vocabulary: the labels `F`, `T`, then `<pad>`, then the symbols, mirroring the original order
(label numbers, `<pad>`, symbols).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from countlib.tasks.base import DataError, Example, SplitInfo, Task
from countlib.tasks.registry import register
from countlib.vocab import LETTERS, PAD, Vocab

FIRST, LATER = "T", "F"
TRAIN_LENGTH, OOD_LENGTH = 50, 128


class FirstTokenProbe(Task):
    ind_metric = ood_metric = "first_acc"

    def __init__(
        self, name: str, alias: str, symbols: Sequence[str], *, lines: int, description: str
    ) -> None:
        self.name = name
        self.aliases = (alias,)  # the paper's table name
        self.symbols = tuple(symbols)
        self._symbol_set = frozenset(symbols)
        self.vocab = Vocab.of([LATER, FIRST, PAD], self.symbols)
        self.description = description
        self.max_train_length = TRAIN_LENGTH
        self.train_lengths = (TRAIN_LENGTH, TRAIN_LENGTH)
        self.max_seq_len = OOD_LENGTH
        # every position scheme uses one id more than there are real tokens (seed-spec 4.2)
        self.max_positions = OOD_LENGTH + 1
        # a single symbol leaves a single sequence per length: the splits are then fixed
        fixed = len(self.symbols) == 1
        self.splits = {
            "val": SplitInfo(lines, (TRAIN_LENGTH, TRAIN_LENGTH), deterministic=fixed),
            "ood": SplitInfo(lines, (OOD_LENGTH, OOD_LENGTH), deterministic=fixed),
        }

    def _draw(self, rng: random.Random, length: int) -> Example:
        # every symbol floor(length / k) or ceil(length / k) times, in random order
        whole, rest = divmod(length, len(self.symbols))
        inputs = list(self.symbols) * whole + rng.sample(self.symbols, rest)
        rng.shuffle(inputs)
        return inputs, [FIRST] + [LATER] * (length - 1)

    def sample(self, rng: random.Random) -> Example:
        return self._draw(rng, TRAIN_LENGTH)

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        for i, tok in enumerate(inputs):
            if tok not in self._symbol_set:
                raise DataError(
                    f"position {i}: {tok!r} is not a symbol ({', '.join(self.symbols)})"
                )
        return [FIRST] + [LATER] * (len(inputs) - 1) if inputs else []

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        length = TRAIN_LENGTH if split == "val" else OOD_LENGTH
        return [self._draw(rng, length) for _ in range(self.splits[split].lines)]


register(
    FirstTokenProbe(
        "first_token_homogeneous",
        "first_tok_homogeneous",
        ["a"],
        lines=10,
        description=(
            f"First-token recognition on `a`^{TRAIN_LENGTH} (OOD `a`^{OOD_LENGTH}): "
            "`a a a` -> `T F F`"
        ),
    )
)
register(
    FirstTokenProbe(
        "first_token_heterogeneous",
        "first_tok_heterogeneous",
        LETTERS[:10],
        lines=300,
        description=(
            f"First-token recognition on the 10 tokens a-j, equally often and shuffled, length "
            f"{TRAIN_LENGTH} (OOD {OOD_LENGTH}): `c a c j` -> `T F F F`"
        ),
    )
)
