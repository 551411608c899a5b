"""Main tasks mixed with an auxiliary task: every original config that paired them (seed-spec 1.5,
1.8), under a readable name with the config name as alias.

The original concatenated training files, so their sizes set the mix. The default auxiliary share
here is that proportion, aux lines / (main lines + aux lines): 100k + 100k -> 1/2,
1M + 100k -> 1/11, 1M + 99k -> 99/1099, 1M + 499,950 -> ~1/3. `Mixture.with_aux_share` changes it.

`counting_diffsymbol_addbigram` listed an `addbigram_test` file that did not exist in its data
directory (`counting_diffsymbol/`); here it simply has the auxiliary's test split, like the rest.
"""

from __future__ import annotations

from countlib.tasks.auxiliary import AuxiliaryTask, HelperSequence
from countlib.tasks.mixture import Mixture
from countlib.tasks.registry import get_task, register
from countlib.vocab import LETTERS, PAD, Vocab, numbers

MILLION, HUNDRED_K = 1_000_000, 100_000

# The count-then-add-with-succession config over letters lists `a` twice (the later id wins).
DIFF_VOCAB_DUP_A = Vocab.of(numbers(0, 100), [PAD, "a"], LETTERS)

# readable name, original config name, main data directory, main training lines, auxiliary
MIXTURES: list[tuple[str, str, str, int, str]] = [
    # Vanilla + Succession (paper), without and with the leading `1` as BOS
    ("vanilla_succession", "counting_samesymbol_plain3_nobos_addbigram",
     "counting_samesymbol_plain3_nobos", HUNDRED_K, "addbigram"),
    ("vanilla_succession_bos", "counting_samesymbol_plain3_addbigram",
     "counting_samesymbol_plain3", HUNDRED_K, "addbigram"),
    ("vanilla_succession_bos_1m", "counting_samesymbol_plain2_addbigram",
     "counting_samesymbol_plain2", MILLION, "addbigram"),
    # the first plain task's training size is unknown; 1M like its siblings is the best guess
    ("vanilla_ood100_succession", "counting_samesymbol_plain_addbigram",
     "counting_samesymbol_plain", MILLION, "addbigram"),
    ("count_then_add_succession", "counting_samesymbol_addbigram",
     "counting_samesymbol", MILLION, "addbigram"),
    ("count_then_add_diff_succession", "counting_diffsymbol_addbigram",
     "counting_diffsymbol", MILLION, "addbigram"),
    # Helper Token (paper): `1 <b>^99` -> `1 .. 100`, or the frozen `<null>` filler
    ("helper_token", "counting_samesymbol_plain3_addbigram_blkseq",
     "counting_samesymbol_plain3", HUNDRED_K, "addbigram_blkseq"),
    ("helper_token_null", "counting_samesymbol_plain3_addbigram_nullseq",
     "counting_samesymbol_plain3", HUNDRED_K, "addbigram_nullseq"),
    ("helper_token_1m", "counting_samesymbol_plain2_addbigram_blkseq",
     "counting_samesymbol_plain2", MILLION, "addbigram_blkseq"),
    ("helper_token_null_1m", "counting_samesymbol_plain2_addbigram_nullseq",
     "counting_samesymbol_plain2", MILLION, "addbigram_nullseq"),
    # Helper Token + Shifted Start (paper)
    ("helper_token_shifted_start", "counting_samesymbol_shiftedstart4_addbigram_blkseq",
     "counting_samesymbol_shiftedstart4", HUNDRED_K, "addbigram_shiftedblkseq"),
    ("helper_token_null_shifted_start", "counting_samesymbol_shiftedstart4_addbigram_nullseq",
     "counting_samesymbol_shiftedstart4", HUNDRED_K, "addbigram_shiftednullseq"),
    # shifted start and count-then-add with the addition table
    ("shifted_start_v1_addition_table", "counting_samesymbol_shiftedstart_addtable",
     "counting_samesymbol_shiftedstart", MILLION, "addtable"),
    ("shifted_start_v2_addition_table", "counting_samesymbol_shiftedstart2_addtable",
     "counting_samesymbol_shiftedstart2", MILLION, "addtable"),
    ("count_then_add_pad_addition_table", "counting_samesymbol_padhelper_addtable",
     "counting_samesymbol_padhelper", MILLION, "addtable_padhelper"),
    ("shifted_start_v2_pad_addition_table", "counting_samesymbol_shiftedstart2_padhelper_addtable",
     "counting_samesymbol_shiftedstart2_padhelper", MILLION, "addtable_padhelper"),
    ("shifted_start_addition_table", "counting_samesymbol_shiftedstart3_addtablelarge",
     "counting_samesymbol_shiftedstart3", MILLION, "addtable_large"),
    ("shifted_start_pad_addition_table",
     "counting_samesymbol_shiftedstart3_padhelper_addtablelarge",
     "counting_samesymbol_shiftedstart3_padhelper", MILLION, "addtable_padhelper_large"),
]  # fmt: skip


def _vocab(config: str, main_vocab: Vocab, aux: AuxiliaryTask) -> Vocab:
    """The original config's vocabulary (seed-spec 1.3)."""
    if config == "counting_diffsymbol_addbigram":
        return DIFF_VOCAB_DUP_A
    if isinstance(aux, HelperSequence):
        # helper-token mixtures: samesymbol + `<b>`, or `<null>` first
        return aux.vocab
    return main_vocab


def build_mixture(name: str, config: str, main_dir: str, main_lines: int, aux_name: str) -> Mixture:
    main, aux = get_task(main_dir), get_task(aux_name)
    assert isinstance(aux, AuxiliaryTask), f"{aux_name} is not an auxiliary task"
    share = aux.original_lines / (main_lines + aux.original_lines)
    return Mixture(
        name,
        main,
        [(aux, share)],
        vocab=_vocab(config, main.vocab, aux),
        aliases=(config,),
        description=(
            f"{main.description.rstrip('.')}; mixed with {aux.name} ({share:.3g} of draws): "
            f"{aux.description}"
        ),
    )


for _row in MIXTURES:
    register(build_mixture(*_row))
