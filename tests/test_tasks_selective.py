import functools
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from countlib.tasks import DataError, get_task, real_length
from countlib.tasks.selective import (
    V1_TRAIN_KEEP_BY_MIN_COUNT,
    capped_composition,
    reweighted_composition,
)
from countlib.vocab import BOS, PAD

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "seed-data" / "rasp_primitives"

TASKS = {
    "selective_ab": "counting_selective",
    "selective_ab_padhelper": "counting_selective_padhelper",
    "selective_v1": "counting_selective_10items",
    "selective": "counting_selective_10items2",
    "selective_bos": "counting_selective_10items2bos",
    "selective_v1_padhelper": "counting_selective_10items_padhelper",
    "selective_padhelper": "counting_selective_10items_padhelper2",
    "selective_mod4": "counting_selective_modular_4items",
    "debug": "debug",
}
FILES = {"val": "val.txt", "ood": "ood_test.txt"}
RELEASED = [
    (name, split)
    for name, folder in TASKS.items()
    for split in FILES
    if (SEED_DATA / folder / FILES[split]).exists() or not SEED_DATA.exists()
]


def released(name: str, split: str) -> list[tuple[list[str], list[str]]]:
    path = SEED_DATA / TASKS[name] / FILES[split]
    if not path.exists():
        pytest.skip(f"released data not found at {path}")
    with open(path) as fh:
        return [tuple(json.loads(line)) for line in fh if line.strip()]


@functools.cache
def built(name: str, split: str) -> list:
    return get_task(name).split(split)


def items_of(inputs: list[str]) -> list[str]:
    return [tok for tok in inputs if tok not in (BOS, PAD)]


# --- label rule -------------------------------------------------------------------------------

HAND_CHECKED = [
    ("selective_ab", "b a a b", "1 1 2 2"),
    ("selective_ab_padhelper", "a <pad> b <pad> a <pad>", "-1 1 -1 1 -1 2"),
    ("selective_v1", "4 9 4 4", "0 0 1 2"),
    ("selective", "4 9 4 4 9 0", "0 0 1 2 1 0"),
    ("selective_bos", "<bos> 4 9 4 4", "-1 0 0 1 2"),
    ("selective_v1_padhelper", "4 <pad> 9 <pad> 4 <pad>", "-1 0 -1 0 -1 1"),
    ("selective_padhelper", "7 <pad> 7 <pad> 7 <pad>", "-1 0 -1 1 -1 2"),
    ("selective_mod4", "0 3 0 0 0 0", "0 0 1 2 3 0"),
    ("debug", "a b b a a", "1 1 2 2 3"),
]


@pytest.mark.parametrize(("name", "inputs", "labels"), HAND_CHECKED)
def test_hand_checked_labels(name, inputs, labels):
    task = get_task(name)
    assert task.labels(inputs.split()) == labels.split()
    task.check((inputs.split(), labels.split()))


def test_long_mod4_sequence_wraps_every_four():
    inputs = ["2"] * 9 + ["1"]
    assert get_task("selective_mod4").labels(inputs) == list("012301230") + ["0"]


INVALID = [
    ("selective", "4 a 4", "position 1: 'a' is not an item"),
    ("selective", " ".join(["3"] * 11), "position 10: item '3' occurs more than 10 times"),
    ("selective", "<bos> 3", "position 0: '<bos>' may only open the sequence"),
    ("selective_bos", "3 4", "position 0 must be '<bos>', got '3'"),
    ("selective_bos", "<bos> 3 <bos>", "position 2: '<bos>' may only open"),
    ("selective_padhelper", "3 4 <pad>", "position 1: expected helper '<pad>'"),
    ("selective_padhelper", "3 <pad> 4", "the last item (position 2) lacks its helper"),
    ("selective_padhelper", "<pad> <pad>", "position 0: '<pad>' is not an item"),
    ("selective_ab", " ".join(["a"] * 51), "item 'a' occurs more than 50 times"),
    ("selective_ab", "a c", "position 1: 'c' is not an item (a, b)"),
    ("selective_mod4", "0 4", "'4' is not an item (0, 1, 2, 3)"),
    ("selective_mod4", " ".join(["1"] * 65), "item '1' occurs more than 64 times"),
    ("debug", "a a a a", "item 'a' occurs more than 3 times"),
]


@pytest.mark.parametrize(("name", "inputs", "message"), INVALID)
def test_invalid_inputs_rejected(name, inputs, message):
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        get_task(name).labels(inputs.split())


def test_check_rejects_wrong_label():
    with pytest.raises(DataError, match="label at position 2 is '2', the rule gives '1'"):
        get_task("selective").check((["4", "9", "4"], ["0", "0", "2"]))


@pytest.mark.parametrize(
    ("name", "size", "pad_index"),
    [("selective", 11, 10), ("selective_bos", 12, 11), ("selective_mod4", 5, 4), ("debug", 6, 0)],
)
def test_vocab_order(name, size, pad_index):
    vocab = get_task(name).vocab
    assert len(vocab) == size and vocab.pad_id == pad_index
    assert get_task("selective_bos").vocab.id(BOS) == 10
    assert get_task("selective_ab").vocab.tokens[-3:] == (PAD, "a", "b")


# --- item-count sampler -----------------------------------------------------------------------


def test_capped_composition_is_uniform():
    rng = random.Random(0)
    draws = Counter(tuple(capped_composition(rng, 4, 3, 2)) for _ in range(6000))
    # the 6 ways to write 4 as three counts of at most 2
    assert set(draws) == {(2, 2, 0), (2, 0, 2), (0, 2, 2), (2, 1, 1), (1, 2, 1), (1, 1, 2)}
    assert all(880 < n < 1120 for n in draws.values()), draws


def test_capped_composition_reaches_the_cap_fast():
    # the original's redraw-until-capped would need ~10^11 draws here
    counts = capped_composition(random.Random(1), 99, 10, 10)
    assert sorted(counts) == [9] + [10] * 9
    with pytest.raises(ValueError, match="does not fit"):
        capped_composition(random.Random(1), 101, 10, 10)


def test_reweighted_composition_matches_rejection():
    # 10 ways to write 3 as three counts; only (1, 1, 1) has no zero. Keeping zero-holding draws
    # with probability 1/2 gives (1, 1, 1) weight 1 against 9 x 1/2.
    rng = random.Random(0)
    draws = Counter(tuple(reweighted_composition(rng, 3, 3, 3, (0.5,))) for _ in range(11000))
    assert len(draws) == 10
    assert 1850 < draws[(1, 1, 1)] < 2150  # expected 2000
    assert all(sum(c) == 3 for c in draws)


def test_v1_reweighting_makes_long_sequences_hold_every_item():
    rng = random.Random(0)
    mins = Counter(
        min(reweighted_composition(rng, 40, 10, 10, V1_TRAIN_KEEP_BY_MIN_COUNT))
        for _ in range(2000)
    )
    plain = Counter(min(capped_composition(rng, 40, 10, 10)) for _ in range(2000))
    # exact shares of smallest count 0 / 1 / 2 at length 40: unweighted 0.817 / 0.170 / 0.013,
    # reweighted 0.072 / 0.449 / 0.459 (class sizes times keep probabilities)
    assert 1550 < plain[0] < 1720 and plain[2] < 50
    assert 100 < mins[0] < 190 and 800 < mins[1] < 990 and 820 < mins[2] < 1010


# --- sampling ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
def test_sampling_is_seeded_and_valid(name):
    task = get_task(name)
    first = task.sample_batch(random.Random(7), 200)
    assert first == task.sample_batch(random.Random(7), 200)
    assert first != task.sample_batch(random.Random(8), 200)
    for example in first:
        task.check(example)
        lo, hi = task.train_lengths
        assert lo <= real_length(example[0]) <= hi


@pytest.mark.parametrize(
    ("name", "lengths"),
    [("selective", {50}), ("selective_mod4", {64}), ("selective_v1", set(range(1, 51)))],
)
def test_training_lengths(name, lengths):
    task = get_task(name)
    seen = {len(task.sample(random.Random(i))[0]) for i in range(600)}
    assert seen == lengths


def test_pair_training_draws_pairs_uniformly():
    task = get_task("selective_ab")
    rng = random.Random(0)
    n_a = Counter(task.sample(rng)[0].count("a") for _ in range(5000))
    # #a = 1 has 50 pairs, #a = 50 has 1 pair, out of 1,275
    assert 150 < n_a[1] < 250 and n_a[50] < 15 and 0 not in n_a


# --- splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("split", ["val", "ood"])
def test_split_matches_declaration(name, split):
    task = get_task(name)
    info = task.splits[split]
    lines = built(name, split)
    assert len(lines) == info.lines
    lengths = [real_length(inputs) for inputs, _ in lines]
    assert (min(lengths), max(lengths)) == info.lengths
    for example in lines:
        task.check(example)


@pytest.mark.parametrize("name", ["selective_ab", "selective"])
def test_random_splits_are_seeded(name):
    task = get_task(name)
    assert task.split("val") == built(name, "val")
    assert task.split("val", seed=1) != built(name, "val")


def test_pair_splits_cover_every_count_pair():
    val = Counter((x.count("a"), x.count("b")) for x, _ in built("selective_ab", "val"))
    assert len(val) == 1275 and set(val.values()) == {1}
    ood = Counter((x.count("a"), x.count("b")) for x, _ in built("selective_ab", "ood"))
    assert len(ood) == 1275 and set(ood.values()) == {2}
    assert min(a + b for a, b in ood) == 51 and max(max(pair) for pair in ood) == 50


@pytest.mark.parametrize(("name", "split"), RELEASED)
def test_released_file_passes_check(name, split):
    task = get_task(name)
    for example in released(name, split):
        task.check(example)


def count_pairs(lines) -> Counter:
    return Counter((items_of(x).count("a"), items_of(x).count("b")) for x, _ in lines)


def dump(lines) -> Counter:
    return Counter(json.dumps([list(x), list(y)]) for x, y in lines)


def label_set(lines) -> set[str]:
    return {tok for _, labels in lines for tok in labels}


def total_variation(a: Counter, b: Counter) -> float:
    na, nb = sum(a.values()), sum(b.values())
    return sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b)) / 2


@pytest.mark.parametrize(("name", "split"), RELEASED)
def test_split_distribution_matches_released(name, split):
    ours, theirs = built(name, split), released(name, split)
    if get_task(name).splits[split].deterministic:
        assert dump(ours) == dump(theirs)
        return
    assert len(ours) == len(theirs)
    assert Counter(real_length(x) for x, _ in ours) == Counter(real_length(x) for x, _ in theirs)
    assert label_set(ours) == label_set(theirs)
    if name.startswith("selective_ab"):
        # the (#a, #b) pairs are fixed by the recipe; only their order in the line is random
        assert count_pairs(ours) == count_pairs(theirs)
        return
    items = get_task(name).items

    def extreme(lines) -> Counter:
        # training recipes shape the smallest item count, OOD recipes the largest
        pick = min if split == "val" else max
        return Counter(pick(Counter(items_of(x)).get(i, 0) for i in items) for x, _ in lines)

    assert total_variation(extreme(ours), extreme(theirs)) < 0.08, (extreme(ours), extreme(theirs))


def test_selective_bos_is_the_v1_recipe_plus_bos():
    v1 = Counter(len(x) for x, _ in built("selective_v1", "val"))
    bos = Counter(len(x) - 1 for x, _ in built("selective_bos", "val"))
    assert v1 == bos == {n: 40 for n in range(1, 51)}
    assert all(x[0] == BOS and y[0] == "-1" for x, y in built("selective_bos", "ood"))
    assert "v1 recipe" in get_task("selective_bos").description


def test_aliases_reach_tasks():
    for name, alias in TASKS.items():
        assert get_task(alias) is get_task(name)
    assert get_task("selective_padhelper").max_seq_len == 210
    assert get_task("selective_mod4").max_positions == 130
