import json
import random
from collections import Counter
from pathlib import Path

import pytest

from countlib.tasks import DataError, get_task, real_length
from countlib.vocab import NULL

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "seed-data" / "rasp_primitives"

# readable name -> (original name, folder holding the released test file)
TASKS = {
    "succession": ("addbigram", "addbigram"),
    "succession_200": ("addbigram_upto200", "addbigram_upto200"),
    "helper_sequence": ("addbigram_blkseq", "addbigram_blkseq"),
    "helper_sequence_null": ("addbigram_nullseq", "addbigram_nullseq"),
    "helper_sequence_shifted": ("addbigram_shiftedblkseq", "addbigram_shiftedblkseq"),
    "helper_sequence_shifted_null": ("addbigram_shiftednullseq", "addbigram_shiftednullseq"),
    "addition_table": ("addtable", "addtable"),
    "addition_table_large": ("addtable_large", "addtable"),
    "addition_table_padhelper": ("addtable_padhelper", "addtable_padhelper"),
    "addition_table_padhelper_large": ("addtable_padhelper_large", "addtable_padhelper"),
}


def released(name: str) -> list[str]:
    task = get_task(name)
    path = SEED_DATA / TASKS[name][1] / f"{task.test_split_name}.txt"
    if not path.exists():
        pytest.skip(f"released data not found at {path}")
    with open(path) as fh:
        return [json.dumps(json.loads(line)) for line in fh if line.strip()]


def dump(examples) -> list[str]:
    return [json.dumps([list(x), list(y)]) for x, y in examples]


HAND_CHECKED = [
    ("succession", "1 2 3 4", "2 3 4 5"),
    ("succession_200", "1 2", "2 3"),
    ("helper_sequence", "1 <b> <b> <b>", "1 2 3 4"),
    ("helper_sequence_null", "1 <null> <null>", "1 2 3"),
    ("helper_sequence_shifted", "37 <b> <b>", "37 38 39"),
    ("helper_sequence_shifted_null", "50 <null>", "50 51"),
    ("addition_table", "3 4", "3 7"),
    ("addition_table_large", "99 1", "99 100"),
    ("addition_table_padhelper", "3 <pad> 4 <pad>", "-1 3 -1 7"),
    ("addition_table_padhelper_large", "1 <pad> 1 <pad>", "-1 1 -1 2"),
]


@pytest.mark.parametrize(("name", "inputs", "labels"), HAND_CHECKED)
def test_hand_checked_labels(name, inputs, labels):
    task = get_task(name)
    assert task.labels(inputs.split()) == labels.split()
    task.check((inputs.split(), labels.split()))


def test_full_succession_line():
    inputs = [str(i) for i in range(1, 100)]
    assert get_task("succession").labels(inputs) == [str(i) for i in range(2, 101)]


INVALID = [
    ("succession", "1 2 4", "position 2: expected 3 \\(counting up from 1\\), got '4'"),
    ("succession", "2 3", "position 0: expected 1"),
    ("succession", "1 a", "position 1: expected a number, got 'a'"),
    ("succession", " ".join(str(i) for i in range(1, 101)), "succession stops at 99"),
    ("helper_sequence", "2 <b>", "start 2 is outside 1-1"),
    ("helper_sequence", "1 <b> a", "position 2: expected '<b>', got 'a'"),
    ("helper_sequence", "1 <null>", "expected '<b>', got '<null>'"),
    ("helper_sequence_null", "1 <b>", "expected '<null>', got '<b>'"),
    ("helper_sequence_shifted", "51 <b>", "start 51 is outside 1-50"),
    ("helper_sequence_shifted", "50" + " <b>" * 51, "the count passes 100 at position 51"),
    ("helper_sequence_shifted", "<b> <b>", "position 0: expected a number"),
    ("addition_table", "50 51", "50 \\+ 51 is outside the table"),
    ("addition_table", "0 5", "0 \\+ 5 is outside the table"),
    ("addition_table", "3 4 5", "expected 2 tokens, got 3"),
    ("addition_table_padhelper", "3 4 <pad> <pad>", "position 1: expected helper '<pad>'"),
    ("addition_table_padhelper", "3 4", "expected 4 tokens, got 2"),
]


@pytest.mark.parametrize(("name", "inputs", "message"), INVALID)
def test_invalid_inputs_rejected(name, inputs, message):
    with pytest.raises(DataError, match=message):
        get_task(name).labels(inputs.split())


def test_check_rejects_wrong_label():
    with pytest.raises(DataError, match="label at position 1 is '8', the rule gives '7'"):
        get_task("addition_table").check((["3", "4"], ["3", "8"]))


@pytest.mark.parametrize("name", TASKS)
def test_test_split_equals_released_file(name):
    task = get_task(name)
    ours = task.split("test")
    assert Counter(dump(ours)) == Counter(released(name))
    info = task.splits["test"]
    assert info.deterministic and len(ours) == info.lines
    lengths = [real_length(x) for x, _ in ours]
    assert (min(lengths), max(lengths)) == info.lengths


@pytest.mark.parametrize("name", TASKS)
def test_released_file_passes_check(name):
    task = get_task(name)
    for line in released(name):
        task.check(tuple(json.loads(line)))


@pytest.mark.parametrize("name", TASKS)
def test_sampling_is_seeded_and_valid(name):
    task = get_task(name)
    draws = task.sample_batch(random.Random(3), 300)
    assert draws == task.sample_batch(random.Random(3), 300)
    for example in draws:
        task.check(example)
        lo, hi = task.train_lengths
        assert lo <= real_length(example[0]) <= hi
    distinct = {json.dumps(ex) for ex in draws}
    if len(task.split("test")) > 50:  # many distinct training lines: seeds must differ
        assert draws != task.sample_batch(random.Random(4), 300)
        assert len(distinct) > 250


def test_shifted_helper_draws_starts_uniformly():
    rng = random.Random(0)
    starts = Counter(get_task("helper_sequence_shifted").sample(rng)[0][0] for _ in range(5000))
    assert set(starts) == {str(s) for s in range(1, 51)}
    assert max(starts.values()) < 150  # 100 expected per start


def test_vocabularies_follow_the_original_order():
    assert get_task("helper_sequence").vocab.tokens[-3:] == ("<pad>", "a", "<b>")
    null = get_task("helper_sequence_null")
    assert null.vocab.id(NULL) == 0 and len(null.vocab) == 104
    assert null.frozen_tokens == (NULL,)
    assert get_task("succession").frozen_tokens == ()
    assert len(get_task("succession_200").vocab) == 203
    assert get_task("succession_200").max_seq_len >= 199


def test_large_tables_differ_only_in_original_size():
    small, large = get_task("addition_table"), get_task("addition_table_large")
    assert small.split("test") == large.split("test")
    assert (small.original_lines, large.original_lines) == (99_000, 499_950)
    assert small.test_split_name == large.test_split_name == "addtable_test"


def test_aliases_reach_tasks():
    for name, (alias, _) in TASKS.items():
        assert get_task(alias) is get_task(name)


def test_samples_are_copies():
    task = get_task("succession")
    inputs, labels = task.sample(random.Random(0))
    inputs.append("<pad>")
    labels[0] = "-1"
    assert task.sample(random.Random(0)) == (task.split("test")[0][0], task.split("test")[0][1])
    assert len(task.sample(random.Random(0))[0]) == 99
