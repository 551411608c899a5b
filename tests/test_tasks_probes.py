import random
from collections import Counter

import pytest

from countlib.tasks import DataError, get_task

NAMES = ["first_token_homogeneous", "first_token_heterogeneous"]


@pytest.mark.parametrize(
    ("name", "inputs", "labels"),
    [
        ("first_token_homogeneous", "a a a", "T F F"),
        ("first_token_homogeneous", "a", "T"),
        ("first_token_heterogeneous", "c a c j", "T F F F"),
    ],
)
def test_hand_checked_labels(name, inputs, labels):
    task = get_task(name)
    assert task.labels(inputs.split()) == labels.split()
    task.check((inputs.split(), labels.split()))


@pytest.mark.parametrize(
    ("name", "inputs", "message"),
    [
        ("first_token_homogeneous", "a b", "position 1: 'b' is not a symbol \\(a\\)"),
        ("first_token_heterogeneous", "a k", "position 1: 'k' is not a symbol"),
        ("first_token_heterogeneous", "T F", "position 0: 'T' is not a symbol"),
    ],
)
def test_invalid_inputs_rejected(name, inputs, message):
    with pytest.raises(DataError, match=message):
        get_task(name).labels(inputs.split())


def test_check_rejects_a_second_first_token():
    with pytest.raises(DataError, match="label at position 1 is 'T', the rule gives 'F'"):
        get_task("first_token_heterogeneous").check((["a", "a"], ["T", "T"]))


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_vocab(name):
    task = get_task(name)
    assert task.vocab.tokens[:3] == ("F", "T", "<pad>")
    assert task.max_train_length == 50 and task.train_lengths == (50, 50)
    assert task.max_positions >= 128 and task.max_seq_len >= 128


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("split", "length"), [("val", 50), ("ood", 128)])
def test_splits(name, split, length):
    task = get_task(name)
    lines = task.split(split)
    assert len(lines) == task.splits[split].lines
    assert task.splits[split].lengths == (length, length)
    for example in lines:
        task.check(example)
        assert len(example[0]) == length
    if task.splits[split].deterministic:
        assert task.split(split, seed=5) == lines
    else:
        assert task.split(split) == lines and task.split(split, seed=5) != lines


@pytest.mark.parametrize("name", NAMES)
def test_sampling_is_seeded_and_valid(name):
    task = get_task(name)
    draws = task.sample_batch(random.Random(0), 100)
    assert draws == task.sample_batch(random.Random(0), 100)
    for example in draws:
        task.check(example)


def test_heterogeneous_first_token_recurs_and_tokens_are_balanced():
    task = get_task("first_token_heterogeneous")
    rng = random.Random(0)
    firsts = Counter()
    for _ in range(500):
        inputs, _ = task.sample(rng)
        counts = Counter(inputs)
        # length 50 = every one of the 10 tokens exactly 5 times, so identity never marks position 0
        assert set(counts.values()) == {5} and len(counts) == 10
        firsts[inputs[0]] += 1
    assert len(firsts) == 10 and max(firsts.values()) < 80  # 50 expected per token
    ood = Counter(task.split("ood")[0][0])
    assert sorted(ood.values()) == [12] * 2 + [13] * 8  # 128 tokens
    assert task.sample_batch(random.Random(1), 20) != task.sample_batch(random.Random(2), 20)
