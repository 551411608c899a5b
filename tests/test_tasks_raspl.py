import json
import random
from collections import Counter
from pathlib import Path

import pytest

from countlib.tasks import DataError, get_task
from countlib.tasks.raspl import episode, next_tokens

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "seed-data" / "rasp_primitives"
VAL = SEED_DATA / "counting_raspL" / "val.txt"


@pytest.fixture(scope="module")
def task():
    return get_task("counting_raspL")


@pytest.fixture(scope="module")
def released():
    if not VAL.exists():
        pytest.skip(f"released data not found at {VAL}")
    with open(VAL) as fh:
        return [tuple(json.loads(line)) for line in fh if line.strip()]


def spans(lines) -> Counter:
    """b - a + 1 of every complete episode in the windows."""
    out = Counter()
    for inputs, labels in lines:
        stream = [*inputs, labels[-1]]
        for i, tok in enumerate(stream):
            if tok == "<sos>" and "<eos>" in stream[i:]:
                out[int(stream[i + 2]) - int(stream[i + 1]) + 1] += 1
    return out


def toks(text: str) -> list[str]:
    return text.split()


def short_share(spans: Counter) -> float:
    return sum(n for span, n in spans.items() if span <= 25) / sum(spans.values())


def test_hand_checked_labels(task):
    inputs = toks("<sos> 3 5 < 3 4 5 <eos> <sos> 7")
    # inside the window the label is the next token; after `<sos> 7` the end b is free
    assert task.labels(inputs) == [*toks("3 5 < 3 4 5 <eos> <sos> 7"), None]
    assert next_tokens(inputs) == [None, None, "<", "3", "4", "5", "<eos>", "<sos>", None, None]
    # the end of a window: the next token is known unless it is a free header number
    assert task.labels(toks("<sos> 3 5 < 3"))[-1] == "4"
    assert task.labels(toks("<sos> 3 5 < 3 4 5"))[-1] == "<eos>"
    assert task.labels(toks("<sos> 3 5"))[-1] == "<"
    task.check((toks("<sos> 0 1 < 0 1"), toks("0 1 < 0 1 <eos>")))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ("3 5 < 3", "position 0: expected '<sos>', got '3'"),
        ("<sos> 5 3 <", "position 2: the end 3 must exceed the start 5"),
        ("<sos> 3 5 < 4", "position 4: expected '3', got '4'"),
        ("<sos> 3 5 < 3 4 5 6", "position 7: expected '<eos>', got '6'"),
        ("<sos> 3 5 < 3 4 5 <eos> 3", "position 8: expected '<sos>', got '3'"),
        ("<sos> <sos>", "position 1: expected a number 0-155, got '<sos>'"),
        ("<sos> 3 156", "position 2: expected a number 0-155, got '156'"),
        ("<sos> 3 5 3", "position 3: expected '<', got '3'"),
    ],
)
def test_invalid_streams_rejected(task, inputs, message):
    with pytest.raises(DataError, match=message):
        task.labels(inputs.split())


def test_check_rejects_wrong_label(task):
    with pytest.raises(DataError, match="label at position 3 is '4', the rule gives '3'"):
        task.check((toks("<sos> 3 5 < 3"), toks("3 5 < 4 4")))


def test_vocab(task):
    assert len(task.vocab) == 160
    assert task.vocab.tokens[155:] == ("155", "<pad>", "<", "<eos>", "<sos>")
    assert task.max_positions == task.max_seq_len == 256


def test_sampling_packs_windows(task):
    draws = task.sample_batch(random.Random(0), 200)
    assert draws == task.sample_batch(random.Random(0), 200)
    assert draws != task.sample_batch(random.Random(1), 200)
    for inputs, labels in draws:
        task.check((inputs, labels))
        assert len(inputs) == 255 and inputs[0] == "<sos>" and inputs[1:] == labels[:-1]
    assert max(spans(draws)) == 50 and min(spans(draws)) == 2


def test_val_matches_released_distribution(task, released):
    val = task.split("val")
    assert len(val) == len(released) == task.splits["val"].lines
    assert {len(x) for x, _ in val} == {len(x) for x, _ in released} == {255}
    ours, theirs = spans(val), spans(released)
    assert abs(sum(ours.values()) - sum(theirs.values())) < 0.05 * sum(theirs.values())
    # short spans are more frequent (more (a, b) pairs): compare the share of spans <= 25
    assert abs(short_share(ours) - short_share(theirs)) < 0.04


def test_released_val_passes_check(task, released):
    for example in released:
        task.check(example)


def test_ood_has_one_episode_per_long_pair(task):
    ood = task.split("ood")
    assert len(ood) == task.splits["ood"].lines == 5565
    pairs = Counter((int(x[1]), int(x[2])) for x, _ in ood)
    assert set(pairs.values()) == {1}
    assert all(a >= 1 and b - a + 1 > 50 and b <= 155 for a, b in pairs)
    lengths = [len(x) for x, _ in ood]
    assert (min(lengths), max(lengths)) == task.splits["ood"].lengths == (55, 159)
    inputs, labels = ood[0]
    assert [*inputs, labels[-1]] == episode(int(inputs[1]), int(inputs[2]))
    assert labels[-1] == "<eos>"
    for example in ood[::50]:
        task.check(example)
