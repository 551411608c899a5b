"""Vocabularies: ordered token lists whose indices are the model's token ids."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

PAD = "<pad>"
BLANK = "<blk>"
HELPER_B = "<b>"
NULL = "<null>"
BOS = "<bos>"


def numbers(first: int, last: int) -> list[str]:
    """Decimal number tokens from ``first`` to ``last`` inclusive."""
    return [str(i) for i in range(first, last + 1)]


LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]


@dataclass(frozen=True)
class Vocab:
    """An ordered token list. A token listed twice maps to its later index, as in the original."""

    tokens: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    token_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {tok: i for i, tok in enumerate(self.tokens)})
        object.__setattr__(self, "token_set", frozenset(self.tokens))

    @classmethod
    def of(cls, *parts: Iterable[str]) -> Vocab:
        return cls(tuple(tok for part in parts for tok in part))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index

    def id(self, token: str) -> int:
        try:
            return self._index[token]
        except KeyError:
            raise KeyError(f"token {token!r} is not in the vocabulary") from None

    def ids(self, tokens: Sequence[str]) -> list[int]:
        return [self.id(t) for t in tokens]

    @property
    def pad_id(self) -> int:
        return self.id(PAD)
