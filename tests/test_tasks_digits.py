"""Digit-tokenised task variants (`countlib.tasks.digits`)."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F

from countlib.batches import IGNORE, Collator, positions_needed
from countlib.models import build_model
from countlib.paper import RECURRENT_TASKS
from countlib.tasks import DataError, UnknownTaskError, get_task, real_length
from countlib.tasks.counting import as_number
from countlib.tasks.digits import DigitTask, digits_of_largest
from countlib.vocab import BLANK, PAD

WIDTH = {
    "helper_token": 3,
    "helper_token_shifted_start": 3,
    "shifted_start": 3,
    "mod10": 2,
    "selective": 1,
    "selective_mod4": 1,
}
VARIANTS = [f"{name}_digits" for name, width in WIDTH.items() if width > 1]


def tokens(text: str) -> list[str]:
    return text.split()


def digit_task(name: str) -> DigitTask:
    task = get_task(name)
    assert isinstance(task, DigitTask)
    return task


def test_every_table_a1_task_with_numbers_of_several_digits_has_a_registered_variant():
    assert set(WIDTH) == set(RECURRENT_TASKS)
    assert {digit_task(name).base.name for name in VARIANTS} == {"helper_token",
            "helper_token_shifted_start", "shifted_start", "mod10"}  # fmt: skip
    assert all(not get_task(name).aliases for name in VARIANTS)
    with pytest.raises(UnknownTaskError, match="unknown task 'selective_digits'"):
        get_task("selective_digits")  # single-digit labels: the base under another name


@pytest.mark.parametrize("base", RECURRENT_TASKS)
def test_width_is_that_of_the_largest_label(base):
    base_task = get_task(base)
    assert digits_of_largest(base_task) == WIDTH[base]
    labels = {y for s in base_task.splits for _, ys in base_task.split(s) for y in ys}
    assert len(str(max(n for n in map(as_number, labels) if n is not None))) == WIDTH[base]
    if WIDTH[base] == 1:
        with pytest.raises(ValueError, match="single-digit numbers only"):
            DigitTask(base_task)
    else:
        assert DigitTask(base_task).width == WIDTH[base]


@pytest.mark.parametrize("name", VARIANTS)
def test_vocab_is_digits_helpers_and_the_base_symbols(name):
    task = digit_task(name)
    others = [t for t in task.base.vocab.tokens if as_number(t) is None]
    assert task.vocab.tokens == (*"0123456789", *others, BLANK)
    assert task.vocab.pad_id == task.vocab.id(PAD)
    assert "per digit" in task.description


# --- hand-checked examples ----------------------------------------------------------------------


def test_shifted_start_by_hand():
    task = digit_task("shifted_start_digits")
    fmt = get_task("shifted_start").fmt
    # `98 a a` -> `-1 99 100`: zero-padded start, a three-digit count
    example = task.rewrite(fmt.encode(["a", "a"], start=98))
    assert example == (
        tokens("0 9 8 a <blk> <blk> a <blk> <blk>"),
        tokens("-1 -1 -1 0 9 9 1 0 0"),
    )
    assert task.labels(example[0]) == example[1]
    task.check(example)


def test_mod10_by_hand():
    task = digit_task("mod10_digits")
    fmt = get_task("mod10").fmt
    # `a^11` -> `1 .. 10 1`
    example = task.rewrite(fmt.encode(["a"] * 11))
    assert example == (
        ["a", BLANK] * 11,
        tokens("0 1 0 2 0 3 0 4 0 5 0 6 0 7 0 8 0 9 1 0 0 1"),
    )
    assert task.labels(example[0]) == example[1]
    task.check(example)


def test_helper_sequence_start_keeps_its_label():
    # the helper-token auxiliary labels its start number with itself
    task = digit_task("helper_token_digits")
    inputs = tokens("0 0 1 <blk> <blk> <b> <blk> <blk>")
    assert task.labels(inputs) == tokens("-1 -1 0 0 1 0 0 2")


# --- sampling and the label rule ----------------------------------------------------------------


@pytest.mark.parametrize("name", VARIANTS)
def test_samples_are_base_samples_rewritten_and_follow_the_rule(name):
    task = digit_task(name)
    ours, theirs = random.Random(7), random.Random(7)
    for _ in range(20):
        example, base_example = task.sample(ours), task.base.sample(theirs)
        assert example == task.rewrite(base_example)
        assert task.labels(example[0]) == example[1]
        # each input number adds W - 1 real tokens
        numbers = sum(as_number(tok) is not None for tok in base_example[0])
        base_real = real_length(base_example[0])
        assert real_length(example[0]) == base_real + (task.width - 1) * numbers
        # (a mixture's train_lengths are its main task's; auxiliary draws may be longer)
        if task.base.train_lengths[0] <= base_real <= task.base.train_lengths[1]:
            assert task.train_lengths[0] <= real_length(example[0]) <= task.train_lengths[1]


@pytest.mark.parametrize("name", VARIANTS)
def test_split_examples_pass_check(name):
    task = digit_task(name)
    for split in task.splits:
        examples = task.split(split)
        assert len(examples) == task.splits[split].lines
        for example in examples[:5]:
            task.check(example)


@pytest.mark.parametrize("name", VARIANTS)
def test_lengths_cover_every_split(name):
    task = digit_task(name)
    assert positions_needed(task) <= task.max_positions
    for split, info in task.splits.items():
        examples = task.split(split)
        assert max(len(inputs) for inputs, _ in examples) <= task.max_seq_len
        real = [real_length(inputs) for inputs, _ in examples]
        assert (min(real), max(real)) == info.lengths


def test_split_lengths_shift_by_the_start_number():
    task = digit_task("shifted_start_digits")
    assert (task.max_train_length, task.max_seq_len, task.max_positions) == (53, 300, 128)
    assert task.splits["ood"].lengths == (54, 102)


MALFORMED = [
    ("0 3 a <blk> <blk>", 0, "a number of 2 digit"),
    ("9 9 9 a <blk> <blk>", 0, "999 is not a number"),
    ("<blk> 0 0 3 a <blk> <blk>", 0, "no token precedes"),
    ("0 0 3 a <blk> a <blk> <blk>", 4, "1 '<blk>' in a row"),
    ("0 0 3 <blk> <blk> a <blk> <blk>", 3, "labelled '-1'"),
    ("0 0 3 b <blk> <blk>", 3, "'b' is not a token"),
    # the base's own error, moved to the digit-written position
    ("0 0 3 a <blk> <blk> 0 0 3", 6, "expected the counted symbol"),
]


@pytest.mark.parametrize(("inputs", "position", "message"), MALFORMED)
def test_malformed_input_names_its_position(inputs, position, message):
    task = get_task("shifted_start_digits")
    with pytest.raises(DataError, match=rf"position {position}\b.*{message}"):
        task.labels(tokens(inputs))


def test_a_wrong_digit_label_fails_check():
    task = get_task("mod10_digits")
    inputs = ["a", BLANK] * 3
    with pytest.raises(DataError, match="position 5"):
        task.check((inputs, tokens("0 1 0 2 0 4")))


# --- metrics and training -----------------------------------------------------------------------


def _scored(task, examples) -> list[list[str]]:
    """Per example, the labels at the positions the OOD metric scores."""
    batch = Collator(task)(examples, random.Random(0))
    ids = batch.labels.masked_fill(~batch.extrapolation, IGNORE)
    return [[task.vocab.tokens[i] for i in row if i != IGNORE] for row in ids.tolist()]


def _numbers(digits: list[str], width: int) -> list[str]:
    return [str(int("".join(digits[i : i + width]))) for i in range(0, len(digits), width)]


@pytest.mark.parametrize("name", VARIANTS)
def test_extrapolation_scores_the_base_counts_digit_by_digit(name):
    task = digit_task(name)
    base = task.base
    for split in base.splits:
        ours, theirs = task.split(split)[:32], base.split(split)[:32]
        for mine, base_labels in zip(_scored(task, ours), _scored(base, theirs), strict=True):
            assert len(mine) == task.width * len(base_labels)
            assert _numbers(mine, task.width) == base_labels


def test_first_extrapolated_position_is_the_base_one():
    task = digit_task("shifted_start_digits")
    base = task.base
    example, base_example = task.split("ood")[0], base.split("ood")[0]  # `1 a^51`
    batch = Collator(task)([example], random.Random(0))
    base_batch = Collator(base)([base_example], random.Random(0))
    first = int(batch.extrapolation[0].nonzero()[0])
    base_first = int(base_batch.extrapolation[0].nonzero()[0])
    # the start's two extra digits shift every real index by two
    assert int(base_batch.real_index[0, base_first]) == base.max_train_length == 51
    assert int(batch.real_index[0, first]) == task.max_train_length == 53
    assert base_example[1][base_first] == "52"
    assert example[1][first : first + 3] == ["0", "5", "2"]
    assert not Collator(task)(task.split("val"), random.Random(0)).extrapolation.any()


def test_one_training_step_on_a_digit_batch():
    torch.manual_seed(0)
    task = get_task("mod10_digits")
    rng = random.Random(0)
    batch = Collator(task)(task.sample_batch(rng, 8), rng)
    model = build_model("lstm", len(task.vocab), hidden=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    logits = model(batch.input_ids, attention_mask=batch.attention_mask)
    loss = F.cross_entropy(logits.flatten(0, 1), batch.labels.flatten(), ignore_index=IGNORE)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
