import json
import random
from collections import Counter
from pathlib import Path

import pytest

from countlib.tasks import DataError, get_task
from countlib.tasks.mixture import Mixture
from countlib.vocab import NULL

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "seed-data" / "rasp_primitives"

# original config -> (auxiliary, default share = aux lines / (main lines + aux lines))
CONFIGS = {
    "counting_samesymbol_addbigram": ("addbigram", 1 / 11),
    "counting_diffsymbol_addbigram": ("addbigram", 1 / 11),
    "counting_samesymbol_plain_addbigram": ("addbigram", 1 / 11),
    "counting_samesymbol_plain2_addbigram": ("addbigram", 1 / 11),
    "counting_samesymbol_plain3_addbigram": ("addbigram", 1 / 2),
    "counting_samesymbol_plain3_nobos_addbigram": ("addbigram", 1 / 2),
    "counting_samesymbol_plain2_addbigram_blkseq": ("addbigram_blkseq", 1 / 11),
    "counting_samesymbol_plain2_addbigram_nullseq": ("addbigram_nullseq", 1 / 11),
    "counting_samesymbol_plain3_addbigram_blkseq": ("addbigram_blkseq", 1 / 2),
    "counting_samesymbol_plain3_addbigram_nullseq": ("addbigram_nullseq", 1 / 2),
    "counting_samesymbol_shiftedstart4_addbigram_blkseq": ("addbigram_shiftedblkseq", 1 / 2),
    "counting_samesymbol_shiftedstart4_addbigram_nullseq": ("addbigram_shiftednullseq", 1 / 2),
    "counting_samesymbol_shiftedstart_addtable": ("addtable", 99 / 1099),
    "counting_samesymbol_shiftedstart2_addtable": ("addtable", 99 / 1099),
    "counting_samesymbol_padhelper_addtable": ("addtable_padhelper", 99 / 1099),
    "counting_samesymbol_shiftedstart2_padhelper_addtable": ("addtable_padhelper", 99 / 1099),
    "counting_samesymbol_shiftedstart3_addtablelarge": ("addtable_large", 499_950 / 1_499_950),
    "counting_samesymbol_shiftedstart3_padhelper_addtablelarge": (
        "addtable_padhelper_large",
        499_950 / 1_499_950,
    ),
}
PAPER_NAMES = {
    "vanilla_succession": "counting_samesymbol_plain3_nobos_addbigram",
    "vanilla_succession_bos": "counting_samesymbol_plain3_addbigram",
    "helper_token": "counting_samesymbol_plain3_addbigram_blkseq",
    "helper_token_shifted_start": "counting_samesymbol_shiftedstart4_addbigram_blkseq",
}


def main_dir(config: str) -> str:
    """The original `trim_task`: the data directory the config's main task reads."""
    for suffix in ("_blkseq", "_nullseq", "_addbigram", "_addtablelarge", "_addtable"):
        config = config.replace(suffix, "")
    return config


def read(path: Path) -> list[tuple[list[str], list[str]]]:
    if not path.exists():
        pytest.skip(f"released data not found at {path}")
    with open(path) as fh:
        return [tuple(json.loads(line)) for line in fh if line.strip()]


def dump(examples) -> Counter:
    return Counter(json.dumps([list(x), list(y)]) for x, y in examples)


def aux_of(mixture: Mixture):
    ((aux, _),) = mixture.auxiliaries
    return aux


@pytest.mark.parametrize("config", CONFIGS)
def test_config_is_a_mixture_of_its_main_data_and_auxiliary(config):
    mixture = get_task(config)
    aux_name, share = CONFIGS[config]
    assert isinstance(mixture, Mixture)
    assert mixture.main is get_task(main_dir(config))
    assert aux_of(mixture) is get_task(aux_name)
    assert mixture.aux_share == pytest.approx(share)
    assert config in mixture.aliases and mixture.name != config
    assert set(mixture.splits) == {"val", "ood", aux_of(mixture).test_split_name}


def test_paper_names():
    for name, config in PAPER_NAMES.items():
        assert get_task(name) is get_task(config)
        assert get_task(name).name == name


@pytest.mark.parametrize(
    ("config", "size"),
    [
        ("counting_samesymbol_plain3_addbigram", 103),
        ("counting_samesymbol_plain3_addbigram_blkseq", 104),
        ("counting_samesymbol_shiftedstart4_addbigram_nullseq", 104),
        ("counting_diffsymbol_addbigram", 129),
        ("counting_samesymbol_shiftedstart3_padhelper_addtablelarge", 103),
    ],
)
def test_vocab_follows_the_original_config(config, size):
    mixture = get_task(config)
    assert len(mixture.vocab) == size
    for task in mixture.components:
        assert all(tok in mixture.vocab for tok in task.vocab.tokens)


def test_helper_token_vocabularies():
    blk = get_task("helper_token").vocab
    assert blk.tokens[-3:] == ("<pad>", "a", "<b>")
    null = get_task("counting_samesymbol_plain3_addbigram_nullseq")
    assert null.vocab.id(NULL) == 0 and null.vocab.id("0") == 1
    assert null.frozen_tokens == (NULL,)
    assert get_task("helper_token").frozen_tokens == ()
    # the diffsymbol config lists `a` twice; the later index is the live one
    diff = get_task("counting_diffsymbol_addbigram").vocab
    assert diff.tokens.count("a") == 2 and diff.id("a") == 103


def component_of(mixture: Mixture, example) -> str:
    try:
        aux_of(mixture).check(example)
        return "aux"
    except DataError:
        mixture.main.check(example)
        return "main"


@pytest.mark.parametrize(
    "name",
    ["vanilla_succession", "helper_token_1m", "shifted_start_addition_table"],
)
def test_sampling_share_matches_the_declared_share(name):
    mixture = get_task(name)
    rng = random.Random(0)
    draws = Counter(component_of(mixture, mixture.sample(rng)) for _ in range(3000))
    assert draws["aux"] / 3000 == pytest.approx(mixture.aux_share, abs=0.03)
    assert mixture.sample_batch(random.Random(1), 50) == mixture.sample_batch(random.Random(1), 50)


def test_with_aux_share():
    mixture = get_task("vanilla_succession")
    less = mixture.with_aux_share(0.1)
    assert less.aux_share == pytest.approx(0.1) and mixture.aux_share == pytest.approx(0.5)
    assert (less.name, less.aliases, less.vocab) == (mixture.name, mixture.aliases, mixture.vocab)
    rng = random.Random(0)
    draws = Counter(component_of(less, less.sample(rng)) for _ in range(3000))
    assert draws["aux"] / 3000 == pytest.approx(0.1, abs=0.02)
    none = mixture.with_aux_share(0.0)
    assert all(component_of(none, none.sample(rng)) == "main" for _ in range(300))
    with pytest.raises(ValueError, match="sum to"):
        mixture.with_aux_share(1.0)


@pytest.mark.parametrize("config", CONFIGS)
def test_check_accepts_each_component_and_rejects_neither(config):
    mixture = get_task(config)
    rng = random.Random(0)
    mixture.check(mixture.main.sample(rng))
    mixture.check(aux_of(mixture).sample(rng))
    with pytest.raises(DataError, match=f"as {mixture.main.name}: .*; as {aux_of(mixture).name}"):
        mixture.check((["b", "b"], ["1", "2"]))


def test_check_rejects_a_wrong_label_of_either_component():
    mixture = get_task("helper_token")
    with pytest.raises(DataError, match="label at position 2 is '4', the rule gives '3'"):
        mixture.check((["1", "<b>", "<b>"], ["1", "2", "4"]))
    with pytest.raises(DataError):
        mixture.check((["1", "a", "a"], ["-1", "2", "4"]))


@pytest.mark.parametrize("config", CONFIGS)
def test_aux_test_split_equals_released_file(config):
    mixture = get_task(config)
    aux = aux_of(mixture)
    name = aux.test_split_name
    ours = mixture.split(name)
    assert ours == aux.split("test")
    # the auxiliary's own folder holds the file (addtable_large reuses addtable's)
    folder = aux.aliases[0].removesuffix("_large")
    assert dump(ours) == dump(read(SEED_DATA / folder / f"{name}.txt"))


# the copies of auxiliary test files in main data directories, and the mixtures that read them
MAIN_DIR_AUX_FILES = [
    (config, CONFIGS[config][0])
    for config in CONFIGS
    if config != "counting_diffsymbol_addbigram"  # its listed file never existed (original bug)
]


@pytest.mark.parametrize(("config", "aux_name"), MAIN_DIR_AUX_FILES)
def test_released_aux_copies_in_main_dirs_pass_check(config, aux_name):
    mixture = get_task(config)
    path = SEED_DATA / main_dir(config) / f"{get_task(aux_name).test_split_name}.txt"
    lines = read(path)
    for example in lines:
        mixture.check(example)
    assert dump(lines) == dump(mixture.split(aux_of(mixture).test_split_name))


def test_diffsymbol_aux_file_was_missing_in_the_original():
    if not SEED_DATA.exists():
        pytest.skip(f"released data not found at {SEED_DATA}")
    assert not (SEED_DATA / "counting_diffsymbol" / "addbigram_test.txt").exists()
    assert "addbigram_test" in get_task("counting_diffsymbol_addbigram").splits


@pytest.mark.parametrize("config", CONFIGS)
def test_released_main_val_passes_check(config):
    mixture = get_task(config)
    for example in read(SEED_DATA / main_dir(config) / "val.txt"):
        mixture.check(example)


def test_mixture_takes_shape_limits_from_all_components():
    mixture = get_task("counting_samesymbol_shiftedstart3_padhelper_addtablelarge")
    assert mixture.max_seq_len == 210 and mixture.max_train_length == 51
    assert mixture.splits["addtable_padhelper_test"].lines == 4950
