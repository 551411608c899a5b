"""Modular counting (seed-spec 1.4.4): the running count cycles 1..N (N written instead of 0).

`a^12` -> `1 2 .. 10 1 2` under mod 10. Training lengths are uniform on 1..5N (every length
equally often); validation repeats every training length ``300 // 5N`` times; OOD covers lengths
5N+1..10N once each for the same symbol and several random-letter copies each otherwise.
"""

from __future__ import annotations

from countlib.tasks.counting import (
    DIFF_SYMBOLS,
    SAME_SYMBOL,
    VAL_LINES,
    CountFormat,
    ShapeCounting,
)
from countlib.tasks.registry import register
from countlib.vocab import PAD, Vocab, numbers

# max_seq_len = max_position_embeddings of the original mod-N configs (12 has none: 10N fits 128).
_LENS = [128, 128, 128, 140, 150, 160, 180, 180, 190, 200, 210]
SEQ_LEN = dict(zip(range(10, 21), _LENS, strict=True))


def diff_ood_copies(modulus: int) -> int:
    """Random-letter OOD lines per length in the released diffsymbol mod-N files."""
    return {10: 50, 11: 50, 16: 35}.get(modulus, 30)


class ModularCounting(ShapeCounting):
    """Count ``a``s (or random letters) modulo ``modulus``.

    ``bos`` prepends the start token ``0`` (unsupervised), ``helper`` puts a ``<pad>`` helper
    after every token, and ``train_max`` overrides the longest training length 5N.
    """

    def __init__(
        self,
        modulus: int,
        symbols: str = "same",
        *,
        bos: bool = False,
        helper: str | None = None,
        train_max: int | None = None,
    ) -> None:
        same = symbols == "same"
        longest = train_max or 5 * modulus
        # The released mod-13 OOD starts at 65, the longest training length (original quirk).
        ood_first = longest if modulus == 13 and train_max is None else longest + 1
        ood_copies = 1 if same or helper or train_max else diff_ood_copies(modulus)
        start = 0 if bos else None
        name, alias = self._names(modulus, same, bos, helper, train_max)
        fmt = CountFormat(
            modulus,
            SAME_SYMBOL if same else DIFF_SYMBOLS,
            start=(0, 0) if bos else None,
            helper=helper,
            modulus=modulus,
        )
        if train_max:
            max_positions = max_seq_len = 256
        elif helper:
            max_positions, max_seq_len = 128, 210
        else:
            max_positions = max_seq_len = SEQ_LEN[modulus]
        super().__init__(
            name,
            (alias,) if alias else (),
            self._describe(modulus, same, bos, helper, longest),
            fmt,
            Vocab.of(numbers(0, modulus), [PAD], fmt.symbols),
            train=[(start, n) for n in range(1, longest + 1)],
            val=[(start, n) for n in range(1, longest + 1)] * (VAL_LINES // longest),
            ood=[(start, n) for n in range(ood_first, 2 * longest + 1)] * ood_copies,
            max_positions=max_positions,
            max_seq_len=max_seq_len,
        )

    @staticmethod
    def _describe(modulus: int, same: bool, bos: bool, helper: str | None, longest: int) -> str:
        what = "`a`s" if same else "random letters"
        wrap = f"1 2 .. {modulus} 1 2"
        if helper:
            example = f"`a {helper} a {helper} ..` -> `-1 1 -1 2 .. -1 {modulus} -1 1`"
        elif bos:
            example = f"`0 a^{modulus + 2}` -> `-1 {wrap}`"
        else:
            example = f"`a^{modulus + 2}` -> `{wrap}`"
        return f"Count {what} modulo {modulus}, training lengths 1-{longest}: {example}."

    @staticmethod
    def _names(
        modulus: int, same: bool, bos: bool, helper: str | None, train_max: int | None
    ) -> tuple[str, str | None]:
        """Readable name and original config name (None where the original has no such task)."""
        name = f"mod{modulus}" + "_bos" * bos + "_pad" * bool(helper)
        name += f"_tr{train_max}" * bool(train_max) + "_diff" * (not same)
        alias = f"counting_{'same' if same else 'diff'}symbol_mod{modulus}" + "bos" * bos
        alias += "_padhelper" * bool(helper) + "_100_200" * bool(train_max)
        return name, None if modulus == 12 else alias


for _modulus in range(10, 21):
    for _symbols in ("same", "diff"):
        register(ModularCounting(_modulus, _symbols))
register(ModularCounting(10, bos=True))
for _symbols in ("same", "diff"):
    register(ModularCounting(10, _symbols, helper=PAD))
    register(ModularCounting(10, _symbols, train_max=100))
