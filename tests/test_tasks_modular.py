"""Modular counting tasks (seed-spec 1.4.4)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from countlib.tasks import DataError, get_task, list_tasks, real_length
from countlib.tasks.modular import ModularCounting
from tests.released import (
    SEED_DATA,
    SPLIT_FILES,
    assert_labels_by_hand,
    check_all,
    check_generated,
    generated,
    key,
    read,
    released_split,
    skeleton,
    tokens,
)

# name: (original dir, vocab size, train lengths, (max_positions, max_seq_len),
#        val (lines, min len, max len), ood (same)), from seed-spec 1.4.4, 1.7 and 1.8.
# mod12 has no original; its numbers follow the recipe (diffsymbol OOD: 30 lines per length).
EXPECTED = {
    "mod10": ("counting_samesymbol_mod10", 13, (1, 50), (128, 128), (300, 1, 50), (50, 51, 100)),
    "mod11": ("counting_samesymbol_mod11", 14, (1, 55), (128, 128), (275, 1, 55), (55, 56, 110)),
    "mod12": (None, 15, (1, 60), (128, 128), (300, 1, 60), (60, 61, 120)),
    "mod13": ("counting_samesymbol_mod13", 16, (1, 65), (140, 140), (260, 1, 65), (66, 65, 130)),
    "mod14": ("counting_samesymbol_mod14", 17, (1, 70), (150, 150), (280, 1, 70), (70, 71, 140)),
    "mod15": ("counting_samesymbol_mod15", 18, (1, 75), (160, 160), (300, 1, 75), (75, 76, 150)),
    "mod16": ("counting_samesymbol_mod16", 19, (1, 80), (180, 180), (240, 1, 80), (80, 81, 160)),
    "mod17": ("counting_samesymbol_mod17", 20, (1, 85), (180, 180), (255, 1, 85), (85, 86, 170)),
    "mod18": ("counting_samesymbol_mod18", 21, (1, 90), (190, 190), (270, 1, 90), (90, 91, 180)),
    "mod19": ("counting_samesymbol_mod19", 22, (1, 95), (200, 200), (285, 1, 95), (95, 96, 190)),
    "mod20": ("counting_samesymbol_mod20", 23, (1, 100), (210, 210), (300, 1, 100),
              (100, 101, 200)),
    "mod10_diff": ("counting_diffsymbol_mod10", 38, (1, 50), (128, 128), (300, 1, 50),
                   (2500, 51, 100)),
    "mod11_diff": ("counting_diffsymbol_mod11", 39, (1, 55), (128, 128), (275, 1, 55),
                   (2750, 56, 110)),
    "mod12_diff": (None, 40, (1, 60), (128, 128), (300, 1, 60), (1800, 61, 120)),
    "mod13_diff": ("counting_diffsymbol_mod13", 41, (1, 65), (140, 140), (260, 1, 65),
                   (1980, 65, 130)),
    "mod14_diff": ("counting_diffsymbol_mod14", 42, (1, 70), (150, 150), (280, 1, 70),
                   (2100, 71, 140)),
    "mod15_diff": ("counting_diffsymbol_mod15", 43, (1, 75), (160, 160), (300, 1, 75),
                   (2250, 76, 150)),
    "mod16_diff": ("counting_diffsymbol_mod16", 44, (1, 80), (180, 180), (240, 1, 80),
                   (2800, 81, 160)),
    "mod17_diff": ("counting_diffsymbol_mod17", 45, (1, 85), (180, 180), (255, 1, 85),
                   (2550, 86, 170)),
    "mod18_diff": ("counting_diffsymbol_mod18", 46, (1, 90), (190, 190), (270, 1, 90),
                   (2700, 91, 180)),
    "mod19_diff": ("counting_diffsymbol_mod19", 47, (1, 95), (200, 200), (285, 1, 95),
                   (2850, 96, 190)),
    "mod20_diff": ("counting_diffsymbol_mod20", 48, (1, 100), (210, 210), (300, 1, 100),
                   (3000, 101, 200)),
    "mod10_bos": ("counting_samesymbol_mod10bos", 13, (2, 51), (128, 128), (300, 2, 51),
                  (50, 52, 101)),
    "mod10_pad": ("counting_samesymbol_mod10_padhelper", 13, (1, 50), (128, 210), (300, 1, 50),
                  (50, 51, 100)),
    "mod10_pad_diff": ("counting_diffsymbol_mod10_padhelper", 38, (1, 50), (128, 210),
                       (300, 1, 50), (50, 51, 100)),
    "mod10_tr100": ("counting_samesymbol_mod10_100_200", 13, (1, 100), (256, 256),
                    (300, 1, 100), (100, 101, 200)),
    "mod10_tr100_diff": ("counting_diffsymbol_mod10_100_200", 38, (1, 100), (256, 256),
                         (300, 1, 100), (100, 101, 200)),
}  # fmt: skip


def test_registers_every_variant():
    mine = {t.name for t in list_tasks() if isinstance(t, ModularCounting)}
    assert mine == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_declared_attributes_match_the_original(name):
    directory, vocab_size, train_lengths, (max_pos, max_seq), val, ood = EXPECTED[name]
    task = get_task(name)
    assert task.aliases == ((directory,) if directory else ())
    assert len(task.vocab) == vocab_size
    assert task.train_lengths == train_lengths
    assert task.max_train_length == train_lengths[1]
    assert (task.max_positions, task.max_seq_len) == (max_pos, max_seq)
    deterministic = not name.endswith("_diff")
    for split, (lines, lo, hi) in [("val", val), ("ood", ood)]:
        assert task.splits[split].lines == lines
        assert task.splits[split].lengths == (lo, hi)
        assert task.splits[split].deterministic == deterministic
    assert "->" in task.description


def test_vocab_order_follows_the_original():
    assert get_task("mod10").vocab.tokens == (*map(str, range(11)), "<pad>", "a")
    diff = get_task("counting_diffsymbol_mod13").vocab
    assert diff.tokens[:16] == (*map(str, range(14)), "<pad>", "a")
    assert diff.tokens[-1] == "z" and diff.id("a") == 15


TEN = "a a a a a a a a a a"
LABEL_CASES = [
    ("mod10", "a a a", "1 2 3"),
    ("mod10", TEN + " a a", "1 2 3 4 5 6 7 8 9 10 1 2"),
    ("mod10", TEN + " " + TEN + " a", "1 2 3 4 5 6 7 8 9 10 1 2 3 4 5 6 7 8 9 10 1"),
    ("mod11", TEN + " a a", "1 2 3 4 5 6 7 8 9 10 11 1"),
    ("mod12", TEN + " a a a", "1 2 3 4 5 6 7 8 9 10 11 12 1"),
    ("mod13", TEN + " a a a a", "1 2 3 4 5 6 7 8 9 10 11 12 13 1"),
    ("mod14", TEN + " a a a a a", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 1"),
    ("mod15", TEN + " a a a a a a", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 1"),
    ("mod16", TEN + " a a a a a a a", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 1"),
    ("mod17", TEN + " a a a a a a a a", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 1"),
    ("mod18", TEN + " " + TEN, "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 1 2"),
    ("mod19", TEN + " " + TEN, "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 1"),
    ("mod20", TEN + " " + TEN + " a", "1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 1"),
    ("mod10_diff", "q w e r t y u i o p a s", "1 2 3 4 5 6 7 8 9 10 1 2"),
    ("mod11_diff", "z z z z z z z z z z z z", "1 2 3 4 5 6 7 8 9 10 11 1"),
    ("mod12_diff", "b", "1"),
    ("mod13_diff", "a b c d e f g h i j k l m n", "1 2 3 4 5 6 7 8 9 10 11 12 13 1"),
    ("mod14_diff", "k", "1"),
    ("mod15_diff", "x y", "1 2"),
    ("mod16_diff", "m", "1"),
    ("mod17_diff", "n o", "1 2"),
    ("mod18_diff", "p", "1"),
    ("mod19_diff", "q r s", "1 2 3"),
    ("mod20_diff", "t", "1"),
    ("mod10_bos", "0 a a a", "-1 1 2 3"),
    ("mod10_bos", "0 " + TEN + " a", "-1 1 2 3 4 5 6 7 8 9 10 1"),
    ("mod10_pad", "a <pad> a <pad>", "-1 1 -1 2"),
    (
        "mod10_pad",
        "a <pad> " * 11,
        "-1 1 -1 2 -1 3 -1 4 -1 5 -1 6 -1 7 -1 8 -1 9 -1 10 -1 1",
    ),
    ("mod10_pad_diff", "q <pad> a <pad> z <pad>", "-1 1 -1 2 -1 3"),
    ("mod10_tr100", TEN + " a", "1 2 3 4 5 6 7 8 9 10 1"),
    ("mod10_tr100_diff", "c a b", "1 2 3"),
]


@pytest.mark.parametrize("name, inputs, labels", LABEL_CASES)
def test_labels_by_hand(name, inputs, labels):
    assert_labels_by_hand(name, inputs, labels)


def test_every_task_has_a_hand_checked_case():
    assert {name for name, _, _ in LABEL_CASES} == set(EXPECTED)


INVALID_CASES = [
    ("mod10", "", "empty sequence"),
    ("mod10", "a b", "position 1: expected the counted symbol 'a', got 'b'"),
    ("mod10", "0 a a", "position 0: expected the counted symbol 'a', got '0'"),
    ("mod10_diff", "a 3", "position 1: expected a counted symbol \\(a-z\\), got '3'"),
    ("mod10_bos", "1 a a", "position 0: expected the start number '0', got '1'"),
    ("mod10_bos", "a a", "position 0: expected the start number '0', got 'a'"),
    ("mod10_bos", "0", "no counted symbol"),
    ("mod10_pad", "a a", "position 1: expected helper '<pad>', got 'a'"),
    ("mod10_pad", "a <pad> a", "position 3: expected helper '<pad>', got the end"),
    ("mod10_pad", "<pad> <pad>", "position 0: expected the counted symbol 'a', got '<pad>'"),
]


@pytest.mark.parametrize("name, inputs, message", INVALID_CASES)
def test_invalid_inputs_are_rejected_with_a_reason(name, inputs, message):
    task = get_task(name)
    with pytest.raises(DataError, match=message):
        task.labels(tokens(inputs))


def test_check_rejects_a_count_written_past_the_modulus():
    inputs = tokens(TEN + " a")
    with pytest.raises(DataError, match="label '11' is not in the vocabulary"):
        get_task("mod10").check((inputs, [*map(str, range(1, 12))]))
    with pytest.raises(DataError, match="label at position 10 is '10', the rule gives '1'"):
        get_task("mod10").check((inputs, [*map(str, range(1, 11)), "10"]))
    with pytest.raises(DataError, match="exceed max_seq_len 128"):
        get_task("mod10").check((["a"] * 129, ["1"] * 129))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sampling_is_seeded_and_valid(name):
    task = get_task(name)
    first = task.sample_batch(random.Random(7), 200)
    assert first == task.sample_batch(random.Random(7), 200)
    assert first != task.sample_batch(random.Random(8), 200)
    check_all(name, first)


@pytest.mark.parametrize("name", ["mod10", "mod13_diff", "mod20", "mod10_bos", "mod10_tr100"])
def test_training_draws_every_length_about_equally_often(name):
    task = get_task(name)
    rng = random.Random(3)
    lengths = Counter(real_length(task.sample(rng)[0]) for _ in range(3000))
    lo, hi = task.train_lengths
    assert set(lengths) == set(range(lo, hi + 1))
    assert max(lengths.values()) < 3 * min(lengths.values())


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("split", ["val", "ood"])
def test_generated_splits_match_their_declaration_and_pass_check(name, split):
    task = get_task(name)
    examples = generated(name, split)
    info = task.splits[split]
    assert len(examples) == info.lines
    per_length = check_generated(name, examples)
    assert (min(per_length), max(per_length)) == info.lengths
    # Every length equally often, as in the original generators.
    assert len(set(per_length.values())) == 1
    assert set(per_length) == set(range(info.lengths[0], info.lengths[1] + 1))
    if split == "val":  # random letters make a split seed-dependent
        assert (examples == tuple(task.split(split, seed=1))) == info.deterministic


RELEASED = [
    (name, split) for name in sorted(EXPECTED) if EXPECTED[name][0] for split in SPLIT_FILES
]


@pytest.mark.parametrize("name, split", RELEASED)
def test_check_accepts_every_released_line(name, split):
    check_all(name, released_split(EXPECTED[name][0], split))


@pytest.mark.parametrize("name, split", RELEASED)
def test_split_reproduces_the_released_file(name, split):
    released = released_split(EXPECTED[name][0], split)
    mine = generated(name, split)
    if get_task(name).splits[split].deterministic:
        assert Counter(map(key, mine)) == Counter(map(key, released))
    else:  # random letters over a fixed set of lengths
        assert Counter(map(skeleton, mine)) == Counter(map(skeleton, released))


def test_mod10_probe_file_of_lengths_101_to_200_is_the_tr100_ood():
    probe = read(SEED_DATA / "counting_samesymbol_mod10" / "ood_test_100_200.txt")
    assert Counter(map(key, probe)) == Counter(map(key, generated("mod10_tr100", "ood")))


def test_label_rule_holds_on_the_2000_token_probe():
    ((inputs, labels),) = read(SEED_DATA / "counting_samesymbol_mod10" / "ood_test_long.txt")
    assert get_task("mod10").labels(inputs) == labels
