"""RASP-L counting (`counting_raspL`, seed-spec 1.4.6), after Zhou et al. 2023.

An episode `<sos> a b < a a+1 .. b <eos>` asks the model to count from `a` to `b`
(0 <= a < b <= 155, b - a + 1 <= 50 in training). Unlike the other tasks this is ordinary
next-token prediction: the label at position i is the token at position i + 1.

* Training and val: episodes packed into one stream, cut after 256 tokens (the cut episode's tail
  is dropped and the next window starts afresh); input = the first 255 tokens, label = the last
  255. The released val file has exactly this form (every window opens with `<sos>`).
* OOD: one unpacked episode for every 1 <= a < b <= 155 with b - a + 1 > 50 (5,565 lines),
  input = episode[:-1], label = episode[1:] as in the windows, so the last label is `<eos>`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from countlib.tasks.base import DataError, Example, SplitInfo, Task
from countlib.tasks.registry import register
from countlib.vocab import PAD, Vocab, numbers

SOS, SEP, EOS = "<sos>", "<", "<eos>"
LARGEST = 155
MAX_SPAN = 50  # training episodes count at most 50 numbers
WINDOW = 256


def episode(a: int, b: int) -> list[str]:
    return [SOS, str(a), str(b), SEP, *numbers(a, b), EOS]


def _number(tok: str, where: int) -> int:
    if not tok.isdigit() or int(tok) > LARGEST:
        raise DataError(f"position {where}: expected a number 0-{LARGEST}, got {tok!r}")
    return int(tok)


def next_tokens(inputs: Sequence[str]) -> list[str | None]:
    """For every prefix of a valid stream, the token that must come next; None where it is free
    (the `a` and `b` that follow `<sos>`). Raises DataError where the stream breaks the grammar.
    """
    expected: list[str | None] = []
    want: str | None = SOS
    header = 0  # free numbers still to read after <sos>: 2, then 1
    a = b = 0
    for i, tok in enumerate(inputs):
        if header == 2:
            a, header, want = _number(tok, i), 1, None
        elif header == 1:
            b, header, want = _number(tok, i), 0, SEP
            if b <= a:
                raise DataError(f"position {i}: the end {b} must exceed the start {a}")
        elif tok != want:
            raise DataError(f"position {i}: expected {want!r}, got {tok!r}")
        elif tok == SOS:
            header, want = 2, None
        elif tok == SEP:
            want = str(a)
        elif tok == EOS:
            want = SOS
        else:
            want = str(int(tok) + 1) if int(tok) < b else EOS
        expected.append(want)
    return expected


class RaspLCounting(Task):
    def __init__(self) -> None:
        self.name = "raspl_counting"
        self.aliases = ("counting_raspL",)
        self.vocab = Vocab.of(numbers(0, LARGEST), [PAD, SEP, EOS, SOS])
        self.description = (
            "RASP-L counting from a to b, episodes packed into 256-token windows, next-token "
            "labels: `<sos> 3 5 < 3 4 5 <eos>` -> `3 5 < 3 4 5 <eos> <sos>`"
        )
        self.max_train_length = WINDOW - 1
        self.train_lengths = (WINDOW - 1, WINDOW - 1)
        self.max_positions = self.max_seq_len = WINDOW
        # OOD inputs drop the episode's final <eos>
        ood_lengths = (len(episode(1, 1 + MAX_SPAN)) - 1, len(episode(1, LARGEST)) - 1)
        self.splits = {
            "val": SplitInfo(300, (WINDOW - 1, WINDOW - 1), deterministic=False),
            "ood": SplitInfo(5565, ood_lengths, deterministic=True),
        }
        # training draws (a, b) uniformly over the allowed pairs, as the released val shows
        self._episodes = [
            episode(a, b)
            for a in range(LARGEST + 1)
            for b in range(a + 1, min(a + MAX_SPAN - 1, LARGEST) + 1)
        ]

    def sample(self, rng: random.Random) -> Example:
        stream: list[str] = []
        while len(stream) < WINDOW:
            stream += rng.choice(self._episodes)
        return stream[: WINDOW - 1], stream[1:WINDOW]

    def labels(self, inputs: Sequence[str]) -> list[str | None]:
        expected = next_tokens(inputs)
        # inside the sequence the next token is known; after the last one it may be free
        return [*inputs[1:], expected[-1]] if inputs else []

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        if split == "val":
            return [self.sample(rng) for _ in range(self.splits["val"].lines)]
        return [
            (ep[:-1], ep[1:])
            for a in range(1, LARGEST + 1)
            for b in range(a + MAX_SPAN, LARGEST + 1)
            for ep in [episode(a, b)]
        ]


register(RaspLCounting())
