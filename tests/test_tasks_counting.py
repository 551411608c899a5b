"""Count-then-add, plain counting and shifted-start tasks (seed-spec 1.4.1-1.4.3)."""

from __future__ import annotations

import random
import statistics
from collections import Counter

import pytest

from countlib.tasks import DataError, Example, get_task, list_tasks, real_length
from countlib.tasks.counting import CountThenAdd, ShapeCounting
from tests.released import (
    assert_labels_by_hand,
    check_all,
    check_generated,
    generated,
    key,
    released_split,
    skeleton,
    tokens,
)

# name: (original dir, vocab size, train lengths, (max_positions, max_seq_len),
#        val (lines, min len, max len, deterministic), ood (same)), from seed-spec 1.4 and 1.8.
EXPECTED = {
    "count_then_add": ("counting_samesymbol", 103, (2, 51), (128, 128),
                       (300, 2, 51, False), (1225, 52, 100, True)),
    "count_then_add_diff": ("counting_diffsymbol", 128, (2, 51), (128, 128),
                            (300, 2, 51, False), (1225, 52, 100, False)),
    "count_then_add_pad": ("counting_samesymbol_padhelper", 103, (2, 51), (128, 210),
                           (300, 2, 51, False), (1225, 52, 100, True)),
    "count_then_add_blank": ("counting_samesymbol_blankhelper", 104, (2, 51), (128, 210),
                             (300, 2, 51, False), (1225, 52, 100, True)),
    "shifted_start_v1": ("counting_samesymbol_shiftedstart", 103, (2, 51), (128, 128),
                         (600, 2, 51, False), (2450, 52, 100, True)),
    "shifted_start_v1_diff": ("counting_diffsymbol_shiftedstart", 129, (2, 51), (128, 128),
                              (600, 2, 51, False), (2450, 52, 100, False)),
    "shifted_start_v2": ("counting_samesymbol_shiftedstart2", 103, (2, 51), (128, 128),
                         (300, 2, 51, False), (1225, 52, 100, True)),
    "shifted_start_v2_pad": ("counting_samesymbol_shiftedstart2_padhelper", 103, (2, 51),
                             (128, 210), (300, 2, 51, False), (1225, 52, 100, True)),
    "vanilla": ("counting_samesymbol_plain3_nobos", 103, (50, 50), (128, 128),
                (10, 50, 50, True), (49, 51, 99, True)),
    "vanilla_ood100": ("counting_samesymbol_plain", 103, (50, 50), (128, 128),
                       (10, 50, 50, True), (50, 51, 100, True)),
    "vanilla_bos": ("counting_samesymbol_plain3", 103, (51, 51), (128, 128),
                    (10, 51, 51, True), (49, 52, 100, True)),
    "vanilla_bos_1m": ("counting_samesymbol_plain2", 103, (51, 51), (128, 128),
                       (10, 51, 51, True), (49, 52, 100, True)),
    "vanilla_all_lengths": ("counting_samesymbol_addbigram", 103, (1, 50), (128, 128),
                            (300, 1, 50, False), (50, 51, 100, True)),
    "vanilla_all_lengths_diff": ("counting_diffsymbol_addbigram", 129, (1, 50), (128, 128),
                                 (300, 1, 50, False), (3000, 51, 100, False)),
    "shifted_start": ("counting_samesymbol_shiftedstart3", 103, (51, 51), (128, 128),
                      (50, 51, 51, True), (1225, 52, 100, True)),
    "shifted_start_pad": ("counting_samesymbol_shiftedstart3_padhelper", 103, (51, 51),
                          (128, 210), (50, 51, 51, True), (1225, 52, 100, True)),
    "shifted_start_fixed_end": ("counting_samesymbol_shiftedstart4", 103, (2, 51), (128, 128),
                                (300, 2, 51, True), (300, 51, 100, True)),
    "shifted_start_tr25_te50": ("counting_samesymbol_shiftedstart3__tr25_te50__", 53, (26, 26),
                                (64, 64), (26, 26, 26, True), (1250, 27, 51, True)),
    "shifted_start_tr50_te100": ("counting_samesymbol_shiftedstart3__tr50_te100__", 103,
                                 (51, 51), (128, 128), (51, 51, 51, True), (2500, 52, 101, True)),
    "shifted_start_tr25_te100": ("counting_samesymbol_shiftedstart3__tr25_te100__", 103,
                                 (26, 26), (128, 128), (76, 26, 26, True), (3750, 27, 101, True)),
    "shifted_start_tr50_te200": ("counting_samesymbol_shiftedstart3__tr50_te200__", 203,
                                 (51, 51), (256, 256), (151, 51, 51, True), (7500, 52, 201, True)),
    "shifted_start_tr25_te200": ("counting_samesymbol_shiftedstart3__tr25_te200__", 203,
                                 (26, 26), (256, 256), (176, 26, 26, True), (8750, 27, 201, True)),
}  # fmt: skip
LEGACY_DIRS = {"vanilla_all_lengths", "vanilla_all_lengths_diff"}
RANDOM_VAL = {name for name, row in EXPECTED.items() if not row[4][3]}
# Held-out pairs fixed by the task and no random letters: the same val whatever the seed.
SEED_FREE_VAL = {
    "count_then_add", "count_then_add_pad", "count_then_add_blank",
    "shifted_start_v1", "shifted_start_v2", "shifted_start_v2_pad",
}  # fmt: skip
SINGLE_SEQUENCE = {"vanilla", "vanilla_ood100", "vanilla_bos", "vanilla_bos_1m"}


def test_registers_every_family_task_and_nothing_else():
    mine = {t.name for t in list_tasks() if type(t) in (CountThenAdd, ShapeCounting)}
    assert mine == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_declared_attributes_match_the_original(name):
    directory, vocab_size, train_lengths, (max_pos, max_seq), val, ood = EXPECTED[name]
    task = get_task(name)
    if name not in LEGACY_DIRS:
        assert get_task(directory) is task
    assert len(task.vocab) == vocab_size
    assert task.train_lengths == train_lengths
    assert task.max_train_length == train_lengths[1]
    assert (task.max_positions, task.max_seq_len) == (max_pos, max_seq)
    for split, (lines, lo, hi, deterministic) in [("val", val), ("ood", ood)]:
        assert task.splits[split].lines == lines
        assert task.splits[split].lengths == (lo, hi)
        assert task.splits[split].deterministic == deterministic
    assert "->" in task.description


@pytest.mark.parametrize(
    "alias, name",
    [
        ("counting_samesymbol_plain3_nobos", "vanilla"),
        ("counting_samesymbol_plain3", "vanilla_bos"),
        ("counting_samesymbol_plain2", "vanilla_bos_1m"),
        ("counting_samesymbol_plain", "vanilla_ood100"),
        ("counting_samesymbol_shiftedstart4", "shifted_start_fixed_end"),
        ("counting_samesymbol", "count_then_add"),
        ("counting_diffsymbol", "count_then_add_diff"),
        ("counting_samesymbol_shiftedstart", "shifted_start_v1"),
        ("counting_samesymbol_shiftedstart2", "shifted_start_v2"),
        ("counting_samesymbol_shiftedstart3", "shifted_start"),
        ("counting_samesymbol_padhelper", "count_then_add_pad"),
        ("counting_samesymbol_shiftedstart2_padhelper", "shifted_start_v2_pad"),
        ("counting_samesymbol_shiftedstart3_padhelper", "shifted_start_pad"),
    ],
)
def test_original_names_used_by_mixtures_resolve(alias, name):
    assert get_task(alias).name == name


def test_addbigram_config_names_are_left_to_the_mixtures():
    for name in EXPECTED:
        assert not any("addbigram" in alias for alias in get_task(name).aliases)


def test_diffsymbol_vocab_quirk_duplicate_a_maps_to_later_index():
    dup = get_task("counting_diffsymbol_shiftedstart").vocab
    assert dup.tokens[101:104] == ("<pad>", "a", "a")
    assert dup.id("a") == 103 and dup.id("z") == 128
    plain = get_task("counting_diffsymbol").vocab
    assert plain.id("a") == 102 and plain.id("z") == 127
    assert get_task("count_then_add_blank").vocab.id("<blk>") == 103


LABEL_CASES = [
    ("count_then_add", "a a a 5", "1 2 3 8"),
    ("count_then_add", "a 99", "1 100"),
    ("count_then_add_diff", "q a z 5", "1 2 3 8"),
    ("count_then_add_pad", "a <pad> a <pad> 5", "-1 1 -1 2 7"),
    ("count_then_add_blank", "a <blk> a <blk> a <blk> 10", "-1 1 -1 2 -1 3 13"),
    ("shifted_start_v1", "a a a 5", "1 2 3 8"),
    ("shifted_start_v1", "5 a a a", "-1 6 7 8"),
    ("shifted_start_v1_diff", "5 x a y", "-1 6 7 8"),
    ("shifted_start_v1_diff", "x a y 5", "1 2 3 8"),
    ("shifted_start_v2", "97 a a a", "-1 98 99 100"),
    ("shifted_start_v2_pad", "5 <pad> a <pad> a <pad>", "-1 5 -1 6 -1 7"),
    ("vanilla", "a a a a", "1 2 3 4"),
    ("vanilla_ood100", "a a", "1 2"),
    ("vanilla_bos", "1 a a a", "-1 2 3 4"),
    ("vanilla_bos_1m", "1 a", "-1 2"),
    ("vanilla_all_lengths", "a a a", "1 2 3"),
    ("vanilla_all_lengths_diff", "b a c", "1 2 3"),
    ("shifted_start", "3 a a a", "-1 4 5 6"),
    ("shifted_start_pad", "3 <pad> a <pad> a <pad>", "-1 3 -1 4 -1 5"),
    ("shifted_start_fixed_end", "48 a a a", "-1 49 50 51"),
    ("shifted_start_tr25_te50", "0 a a", "-1 1 2"),
    ("shifted_start_tr25_te50", "47 a a a", "-1 48 49 50"),
    ("shifted_start_tr50_te100", "0 a", "-1 1"),
    ("shifted_start_tr25_te100", "98 a a", "-1 99 100"),
    ("shifted_start_tr50_te200", "150 a a", "-1 151 152"),
    ("shifted_start_tr25_te200", "199 a", "-1 200"),
]


@pytest.mark.parametrize("name, inputs, labels", LABEL_CASES)
def test_labels_by_hand(name, inputs, labels):
    assert_labels_by_hand(name, inputs, labels)


def test_every_task_has_a_hand_checked_case():
    assert {name for name, _, _ in LABEL_CASES} == set(EXPECTED)


INVALID_CASES = [
    ("count_then_add", "", "empty sequence"),
    ("count_then_add", "a a a", "position 2: expected a number to add in 1..100, got 'a'"),
    ("count_then_add", "a a 0", "position 2: expected a number to add in 1..100, got '0'"),
    ("count_then_add", "a b 5", "position 1: expected the counted symbol 'a', got 'b'"),
    ("count_then_add", "a 5 a 5", "position 1: expected the counted symbol 'a', got '5'"),
    ("count_then_add", "5", "no counted symbol"),
    ("count_then_add", "a a 99", "final count 101 is beyond the largest number token 100"),
    ("count_then_add_diff", "a <pad> 3", "position 1: expected a counted symbol \\(a-z\\)"),
    ("count_then_add_pad", "a a <pad> 5", "position 1: expected helper '<pad>', got 'a'"),
    ("count_then_add_pad", "a <pad> a 5", "position 3: expected helper '<pad>', got '5'"),
    ("count_then_add_blank", "a <pad> 5", "position 1: expected helper '<blk>', got '<pad>'"),
    ("shifted_start_v1", "5 a a 3", "position 3: expected the counted symbol 'a', got '3'"),
    ("shifted_start", "0 a a", "position 0: expected a start number in 1..99, got '0'"),
    ("shifted_start", "a a a", "position 0: expected a start number in 1..99, got 'a'"),
    ("shifted_start", "60 " + "a " * 41, "final count 101 is beyond"),
    ("shifted_start", "5", "no counted symbol"),
    ("shifted_start_pad", "3 a <pad>", "position 1: expected helper '<pad>', got 'a'"),
    ("shifted_start_pad", "3 <pad> a", "position 3: expected helper '<pad>', got the end"),
    ("vanilla", "1 a a", "position 0: expected the counted symbol 'a', got '1'"),
    ("vanilla_bos", "2 a a", "position 0: expected the start number '1', got '2'"),
    ("vanilla_bos", "a a", "position 0: expected the start number '1', got 'a'"),
    ("shifted_start_tr25_te50", "10 " + "a " * 41, "final count 51 is beyond"),
]


@pytest.mark.parametrize("name, inputs, message", INVALID_CASES)
def test_invalid_inputs_are_rejected_with_a_reason(name, inputs, message):
    task = get_task(name)
    with pytest.raises(DataError, match=message):
        task.labels(tokens(inputs))
    with pytest.raises(DataError):
        task.check((tokens(inputs), ["-1"] * len(tokens(inputs))))


def test_check_reports_a_wrong_label():
    task = get_task("count_then_add")
    with pytest.raises(DataError, match="label at position 2 is '8', the rule gives '7'"):
        task.check((["a", "a", "5"], ["1", "2", "8"]))
    with pytest.raises(DataError, match="label at position 0 is '1'"):
        get_task("shifted_start").check((["3", "a"], ["1", "4"]))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sampling_is_seeded_and_follows_the_training_distribution(name):
    task = get_task(name)
    first = task.sample_batch(random.Random(7), 200)
    assert first == task.sample_batch(random.Random(7), 200)
    if name in SINGLE_SEQUENCE:  # one training line, repeated, equal to the val line
        assert {key(e) for e in first} == {key(generated(name, "val")[0])}
    else:
        assert first != task.sample_batch(random.Random(8), 200)
    lo, hi = task.train_lengths
    lengths = {real_length(inputs) for inputs, _ in check_all(name, first)}
    assert min(lengths) >= lo and max(lengths) <= hi


def test_fixed_support_training_is_uniform_over_its_sequences():
    rng = random.Random(3)
    draws = Counter(get_task("shifted_start").sample(rng)[0][0] for _ in range(5000))
    assert set(draws) == {str(s) for s in range(1, 51)}
    assert max(draws.values()) < 2 * min(draws.values())


def _pair(example: Example) -> tuple[str, int, int]:
    """(form, n, k) of a count-then-add or shifted-start example."""
    real = [tok for tok in example[0] if tok not in ("<pad>", "<blk>")]
    if real[0].isdigit():
        return "shift", len(real) - 1, int(real[0])
    return "add", len(real) - 1, int(real[-1])


@pytest.mark.parametrize("name", sorted(RANDOM_VAL - LEGACY_DIRS))
def test_validation_pairs_are_never_trained_on(name):
    task = get_task(name)
    held_out = set(task.held_out)
    assert len(held_out) == 300
    val_pairs = Counter(_pair(e) for e in generated(name, "val"))
    assert {(n, k) for _, n, k in val_pairs} == held_out
    assert set(val_pairs.values()) == {1}
    assert {form for form, _, _ in val_pairs} == set(task.forms)
    # Held-out pairs are fixed by the task, whatever seed builds the split or samples.
    assert {_pair(e)[1:] for e in task.split("val", seed=5)} == held_out
    rng = random.Random(11)
    # Without the exclusion about 8 % of these draws would hit a held-out pair.
    trained = {_pair(task.sample(rng))[1:] for _ in range(3000)}
    assert not trained & held_out
    assert len(trained) > 1500


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("split", ["val", "ood"])
def test_generated_splits_match_their_declaration_and_pass_check(name, split):
    task = get_task(name)
    examples = generated(name, split)
    info = task.splits[split]
    assert len(examples) == info.lines
    lengths = check_generated(name, examples)
    if name in RANDOM_VAL and split == "val":
        assert info.lengths[0] <= min(lengths) and max(lengths) <= info.lengths[1]
    else:
        assert (min(lengths), max(lengths)) == info.lengths
    seed_free = info.deterministic or (split == "val" and name in SEED_FREE_VAL)
    assert (examples == tuple(task.split(split, seed=1))) == seed_free


RELEASED = [(name, split) for name in sorted(EXPECTED) for split in ("val", "ood")]


@pytest.mark.parametrize("name, split", RELEASED)
def test_check_accepts_every_released_line(name, split):
    check_all(name, released_split(EXPECTED[name][0], split))


@pytest.mark.parametrize("name, split", RELEASED)
def test_split_reproduces_the_released_file(name, split):
    released = released_split(EXPECTED[name][0], split)
    mine = generated(name, split)
    if get_task(name).splits[split].deterministic:
        assert Counter(map(key, mine)) == Counter(map(key, released))
    elif split == "val" and name in RANDOM_VAL:
        _assert_same_random_distribution(name, mine, released)
    else:  # random letters over a fixed set of shapes
        assert Counter(map(skeleton, mine)) == Counter(map(skeleton, released))
        assert len(set(map(key, mine))) > 0.95 * len(mine)


def _assert_same_random_distribution(name, mine, released):
    assert len(mine) == len(released)
    mine_lens = [real_length(inputs) for inputs, _ in mine]
    ref_lens = [real_length(inputs) for inputs, _ in released]
    # Held-out pairs are uniform over cells, which favours short sequences as in the files.
    assert abs(statistics.mean(mine_lens) - statistics.mean(ref_lens)) < 3
    if isinstance(get_task(name), CountThenAdd):
        mine_pairs, ref_pairs = Counter(map(_pair, mine)), Counter(map(_pair, released))
        assert set(mine_pairs.values()) == set(ref_pairs.values()) == {1}
        assert Counter(f for f, _, _ in mine_pairs) == Counter(f for f, _, _ in ref_pairs)
