"""Helpers shared by the task tests that check generated and released (seed-data) splits."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from countlib.tasks import Example, get_task, real_length

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "seed-data" / "rasp_primitives"
MASK_LETTERS = {letter: "*" for letter in "abcdefghijklmnopqrstuvwxyz"}
SPLIT_FILES = {"val": "val.txt", "ood": "ood_test.txt"}

Line = tuple[tuple[str, ...], tuple[str, ...]]


def tokens(text: str) -> list[str]:
    return text.split()


def key(example: Example) -> Line:
    return tuple(example[0]), tuple(example[1])


def skeleton(example: Example) -> Line:
    """The line with every letter masked, i.e. what a random-letter generator fixes."""
    inputs, labels = example
    return tuple(map(MASK_LETTERS.get, inputs, inputs)), tuple(labels)


@cache
def _passes_check(name: str, example: Line) -> bool:
    get_task(name).check(example)
    return True


def check_all(name: str, examples) -> set[Line]:
    """Check every example (each distinct line once, across tests); returns the distinct lines."""
    distinct = set(map(key, examples))
    for example in distinct:
        assert _passes_check(name, example)
    return distinct


def check_generated(name: str, examples) -> Counter:
    """Check every generated example, cheaply: lines that differ only in their letters pass or
    fail together as long as every letter is a counted symbol of the task, so one line per
    skeleton is checked and the letters of all lines are tested as a set.

    Returns how many lines there are of each real length."""
    letters = set().union(*(inputs for inputs, _ in examples)) & MASK_LETTERS.keys()
    assert letters <= {s for fmt in get_task(name).formats for s in fmt.symbols}
    by_skeleton = {skeleton(e): e for e in examples}
    check_all(name, by_skeleton.values())
    per_length = Counter()
    for (inputs, _), count in Counter(map(skeleton, examples)).items():
        per_length[real_length(inputs)] += count
    return per_length


@cache
def generated(name: str, split: str) -> tuple[Example, ...]:
    """The task's own split (default seed), built once across tests."""
    return tuple(get_task(name).split(split))


def read(path: Path) -> tuple[Example, ...]:
    """The lines of a released file; skips the test when the seed data or the file is absent."""
    if not SEED_DATA.is_dir():
        pytest.skip(f"released seed data not found at {SEED_DATA}")
    if not path.exists():
        pytest.skip(f"{path} is absent from the original snapshot")
    with open(path) as fh:
        return tuple(tuple(json.loads(line)) for line in fh if line.strip())


@cache
def released_split(directory: str, split: str) -> tuple[Example, ...]:
    """The released `split` file of the original data directory `directory`."""
    return read(SEED_DATA / directory / SPLIT_FILES[split])


def assert_labels_by_hand(name: str, inputs: str, labels: str) -> None:
    task = get_task(name)
    assert task.labels(tokens(inputs)) == tokens(labels)
    task.check((tokens(inputs), tokens(labels)))
