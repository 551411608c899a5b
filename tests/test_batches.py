import random
import time
from collections.abc import Sequence

import pytest
import torch

from countlib.batches import (
    IGNORE,
    POSITION_SCHEMES,
    Batch,
    Collator,
    evaluation_batches,
    max_seen_length,
)
from countlib.tasks import get_task
from countlib.tasks.base import DataError, Example, SplitInfo, Task, real_length
from countlib.vocab import BLANK, PAD, Vocab, numbers


class TinyTask(Task):
    """Shifted-start counting on a small vocabulary; val and ood are given explicitly."""

    def __init__(
        self,
        val: Sequence[Example],
        ood: Sequence[Example] = (),
        *,
        max_train_length: int = 3,
        max_positions: int = 8,
    ) -> None:
        self.name = "tiny"
        self.vocab = Vocab.of(numbers(0, 100), [PAD, "a", BLANK])
        self.max_train_length = max_train_length
        self.max_positions = max_positions
        self.train_lengths = (max_train_length, max_train_length)
        self._splits = {"val": list(val), "ood": list(ood)}
        self.splits = {
            name: SplitInfo(len(lines), (1, 1), deterministic=True)
            for name, lines in self._splits.items()
        }

    def sample(self, rng: random.Random) -> Example:
        return rng.choice(self._splits["val"])

    def labels(self, inputs):
        return [None] * len(inputs)

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        return self._splits[split]


def shifted(s: int, n: int) -> Example:
    """``s a^n`` -> ``-1 s+1 .. s+n``"""
    return [str(s)] + ["a"] * n, ["-1"] + [str(s + i) for i in range(1, n + 1)]


def helper_shifted(s: int, n: int, helper: str = PAD) -> Example:
    """``s H a H .. a H`` -> ``-1 s -1 s+1 .. -1 s+n``: the count sits on the helper."""
    inputs, labels = [str(s), helper], ["-1", str(s)]
    for i in range(1, n + 1):
        inputs += ["a", helper]
        labels += ["-1", str(s + i)]
    return inputs, labels


def plain(n: int) -> Example:
    return ["a"] * n, [str(i) for i in range(1, n + 1)]


@pytest.fixture
def task() -> TinyTask:
    return TinyTask([shifted(1, 2), shifted(4, 2)])


def rows(tensor: torch.Tensor) -> list[list]:
    return tensor.tolist()


def test_dynamic_padding_and_fields(task):
    batch = Collator(task)([shifted(2, 2), shifted(1, 4)], random.Random(0))
    vocab = task.vocab
    assert (batch.size, batch.seq_len) == (2, 5)
    pad, a = vocab.pad_id, vocab.id("a")
    assert rows(batch.input_ids) == [
        [vocab.id("2"), a, a, pad, pad],
        [vocab.id("1"), a, a, a, a],
    ]
    assert rows(batch.labels) == [
        [IGNORE, vocab.id("3"), vocab.id("4"), IGNORE, IGNORE],
        [IGNORE, *vocab.ids(["2", "3", "4", "5"])],
    ]
    assert rows(batch.attention_mask) == [[True] * 3 + [False] * 2, [True] * 5]
    assert rows(batch.position_ids) == [[0, 1, 2, 0, 0], [0, 1, 2, 3, 4]]
    assert rows(batch.real_index) == [[0, 1, 2, -1, -1], [0, 1, 2, 3, 4]]
    assert rows(batch.lengths) == [3, 5]
    assert batch.position_ids.dtype == torch.long
    assert rows(batch.supervised) == [[False, True, True, False, False], [False] + [True] * 4]


def test_pad_helper_shares_next_position_and_is_masked():
    task = TinyTask([helper_shifted(1, 1)])
    batch = Collator(task)([helper_shifted(2, 2)], random.Random(0))
    # tokens: 2 <pad> a <pad> a <pad>; E = 0..3
    assert rows(batch.position_ids) == [[0, 1, 1, 2, 2, 3]]
    assert rows(batch.attention_mask) == [[True, False, True, False, True, False]]
    assert rows(batch.real_index) == [[0, 0, 1, 1, 2, 2]]
    assert rows(batch.lengths) == [3]
    # Without shift, the helper's position id equals the running count of real tokens.
    assert batch.labels[0, 1::2].tolist() == task.vocab.ids(["2", "3", "4"])


def test_blank_helper_shares_position_but_is_attendable():
    task = TinyTask([plain(2)])
    example = (["a", BLANK, "a", BLANK, "5"], ["-1", "1", "-1", "2", "7"])
    batch = Collator(task)([example], random.Random(0))
    assert rows(batch.position_ids) == [[0, 1, 1, 2, 2]]
    assert rows(batch.attention_mask) == [[True] * 5]
    assert rows(batch.real_index) == [[0, 0, 1, 1, 2]]
    assert rows(batch.lengths) == [real_length(example[0])] == [3]


def test_shift_range_per_sequence_and_reproducible(task):
    P, n = task.max_positions, 3
    m = n + 1
    collator = Collator(task, "shift")
    batch = collator([plain(n)] * 400, random.Random(7))
    starts = batch.position_ids[:, 0]
    # Consecutive ids from a start s that covers 0..P-m inclusive, drawn per sequence.
    assert torch.equal(batch.position_ids - starts[:, None], torch.arange(n).expand(400, n))
    assert set(starts.tolist()) == set(range(P - m + 1))
    again = collator([plain(n)] * 400, random.Random(7))
    assert torch.equal(again.position_ids, batch.position_ids)


def test_shift_places_helpers_with_the_next_real_token():
    task = TinyTask([helper_shifted(1, 1)], max_positions=16)
    batch = Collator(task, "shift")([helper_shifted(2, 2)] * 50, random.Random(1))
    s = batch.position_ids[:, :1]
    assert torch.equal(batch.position_ids - s, torch.tensor([[0, 1, 1, 2, 2, 3]]).expand(50, 6))
    # The trailing helper takes E[n] = s + n, so s <= P - m with m = n + 1 = 4.
    assert int(s.max()) <= 16 - 4


def test_randomized_sorted_distinct_in_range():
    task = TinyTask([plain(2)], max_positions=10)
    collator = Collator(task, "randomized")
    batch = collator([helper_shifted(2, 3)] * 200, random.Random(3))
    pos = batch.position_ids
    real = pos[:, 0::2]  # real tokens sit at even indices, each helper after its real token
    assert bool((real[:, 1:] > real[:, :-1]).all())
    assert int(pos.min()) >= 0 and int(pos.max()) <= 9
    # A helper shares the next real token's id; the trailing helper gets the last of m ids.
    assert torch.equal(pos[:, 1:-1:2], pos[:, 2::2])
    assert bool((pos[:, -1] > pos[:, -2]).all())
    assert len({tuple(r) for r in pos.tolist()}) > 1
    # With m = P the only sorted choice is every id.
    full = collator([plain(9)], random.Random(0))
    assert rows(full.position_ids) == [list(range(9))]


def test_scalar_schemes_are_float():
    task = TinyTask([plain(2)], max_positions=8)
    zoom = Collator(task, "zooming")([plain(3), plain(1)], random.Random(0))
    assert zoom.position_ids.dtype == torch.float32
    assert rows(zoom.position_ids) == [[0.25, 0.5, 0.75], [0.5, 0.0, 0.0]]

    batch = Collator(task, "scalar_shift")([plain(3)] * 100, random.Random(0))
    assert batch.position_ids.dtype == torch.float32
    steps = batch.position_ids * 8
    s = steps[:, 0]
    assert torch.allclose(steps - s[:, None], torch.arange(3.0).expand(100, 3))
    assert set(s.round().long().tolist()) == set(range(8 - 4 + 1))


def test_unknown_scheme_lists_schemes(task):
    with pytest.raises(ValueError, match="unknown position scheme 'rope'") as err:
        Collator(task, "rope")
    for scheme in POSITION_SCHEMES:
        assert scheme in str(err.value)


@pytest.mark.parametrize("scheme", ["shift", "randomized", "scalar_shift"])
def test_too_long_for_position_range_raises(task, scheme):
    rng = random.Random(0)
    Collator(task, scheme)([plain(7)], rng)  # m = 8 = P fits exactly
    with pytest.raises(ValueError, match=r"8 real tokens needs 9 .* P = 8.*max_positions"):
        Collator(task, scheme)([plain(8)], rng)
    Collator(task, scheme, max_positions=9)([plain(8)], rng)


@pytest.mark.parametrize("scheme", ["none", "zooming"])
def test_unbounded_schemes_accept_long_sequences(task, scheme):
    batch = Collator(task, scheme)([plain(20)], random.Random(0))
    assert batch.seq_len == 20


def test_unknown_tokens_are_named(task):
    collator = Collator(task)
    with pytest.raises(DataError, match="example 1 of task 'tiny': input token 'zz'"):
        collator([plain(2), (["a", "zz"], ["1", "2"])], random.Random(0))
    with pytest.raises(DataError, match="label token '999'"):
        collator([(["a"], ["999"])], random.Random(0))
    with pytest.raises(DataError, match="2 inputs but 1 labels"):
        collator([(["a", "a"], ["1"])], random.Random(0))
    with pytest.raises(DataError, match="example 0 is empty"):
        collator([([], [])], random.Random(0))
    with pytest.raises(ValueError, match="empty list"):
        collator([], random.Random(0))


def test_extrapolation_versus_legacy_with_start_token():
    # Trained on `s a a` (3 real tokens): the 3rd and 4th `a` of `s a a a a` extrapolate,
    # but the original counted supervised positions from max_seen_len = 3, skipping the 3rd.
    task = TinyTask([shifted(1, 2), shifted(5, 2)], max_train_length=3)
    collator = Collator(task)
    assert collator.legacy_threshold == 3 == max_seen_length(task)
    batch = collator([shifted(1, 4), shifted(2, 2)], random.Random(0))
    assert rows(batch.extrapolation) == [[False] * 3 + [True] * 2, [False] * 3 + [False] * 2]
    assert rows(batch.legacy_unseen) == [[False] * 4 + [True], [False] * 5]


def test_extrapolation_without_start_token_agrees_with_legacy():
    task = TinyTask([plain(3)], max_train_length=3)
    batch = Collator(task)([plain(5)], random.Random(0))
    assert rows(batch.extrapolation) == rows(batch.legacy_unseen) == [[False] * 3 + [True] * 2]


def test_legacy_threshold_counts_blank_but_not_pad_helpers():
    val_pad = [helper_shifted(1, 2, PAD)]  # 3 real tokens, 3 <pad> helpers
    val_blk = [helper_shifted(1, 2, BLANK)]
    assert max_seen_length(TinyTask(val_pad)) == 3
    assert max_seen_length(TinyTask(val_blk)) == 6  # quirk 2 of seed-spec 4.1
    assert Collator(TinyTask(val_blk), legacy_threshold=2).legacy_threshold == 2


def test_legacy_threshold_is_lazy_and_computed_once():
    calls = []

    class Counting(TinyTask):
        def _build_split(self, split, rng):
            calls.append(split)
            return super()._build_split(split, rng)

    collator = Collator(Counting([plain(3)]))
    assert calls == []
    collator([plain(2)], random.Random(0))
    collator([plain(2)], random.Random(0))
    assert calls == ["val"]


def test_evaluation_batches_deterministic_and_ordered(task):
    split = [plain(n) for n in range(1, 8)]
    collator = Collator(task, "shift")

    def run(**kw) -> list[Batch]:
        return list(evaluation_batches(task, split, collator, 3, **kw))

    first, second = run(shift_samples=2), run(shift_samples=2)
    assert [b.size for b in first] == [3, 3, 1, 3, 3, 1]
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.position_ids, b.position_ids)
    # Sample k restarts the split with its own seed; lengths follow the split order.
    assert [b.lengths.tolist() for b in first[:3]] == [[1, 2, 3], [4, 5, 6], [7]]
    k0 = torch.cat([b.position_ids[:, 0] for b in first[:3]])
    k1 = torch.cat([b.position_ids[:, 0] for b in first[3:]])
    assert not torch.equal(k0, k1)
    other_seed = run(shift_samples=1, seed=1)
    assert not torch.equal(torch.cat([b.position_ids[:, 0] for b in other_seed]), k0)
    # One rng per sample, drawn once per sequence in split order: chunking changes nothing.
    expected = Collator(task, "shift")(split, random.Random("eval/0/0"))
    assert torch.equal(expected.position_ids[:, 0], k0)


def test_evaluation_batches_validates_arguments(task):
    other = TinyTask([plain(3)])
    with pytest.raises(ValueError, match="belongs to task"):
        list(evaluation_batches(other, [plain(2)], Collator(task), 2))
    with pytest.raises(ValueError, match="positive"):
        list(evaluation_batches(task, [plain(2)], Collator(task), 0))


def test_to_device_keeps_values(task):
    batch = Collator(task, "zooming")([shifted(1, 3)], random.Random(0))
    moved = batch.to("cpu")
    for name in ("input_ids", "labels", "position_ids", "legacy_unseen", "lengths"):
        assert torch.equal(getattr(moved, name), getattr(batch, name))


def test_collation_is_fast():
    task = TinyTask([plain(50)], max_train_length=50, max_positions=128)
    collator = Collator(task, "shift")
    examples = [plain(50)] * 32
    rng = random.Random(0)
    collator(examples, rng)
    start = time.perf_counter()
    for _ in range(20):
        collator(examples, rng)
    per_batch = (time.perf_counter() - start) / 20
    assert per_batch < 0.01, f"{per_batch * 1e3:.2f} ms per batch of 32 x 50"


# Registry tasks.


def test_registry_shiftedstart3_legacy_off_by_one():
    task = get_task("counting_samesymbol_shiftedstart3")
    collator = Collator(task, "shift")
    assert collator.legacy_threshold == 51 == task.max_train_length
    ood = task.split("ood")[:64]
    batch = collator(ood, random.Random(0))
    extra = batch.extrapolation.sum(1)
    legacy = batch.legacy_unseen.sum(1)
    assert torch.equal(extra, legacy + 1)
    assert torch.equal(extra, batch.lengths - 51)


def test_registry_padhelper_positions():
    task = get_task("counting_samesymbol_shiftedstart3_padhelper")
    inputs, _ = task.split("val")[0]
    batch = Collator(task)([task.split("val")[0]], random.Random(0))
    is_pad = torch.tensor([tok == PAD for tok in inputs])
    assert torch.equal(batch.attention_mask[0], ~is_pad)
    # Without shift, the helper after the k-th real token has position id k.
    pos = batch.position_ids[0]
    assert torch.equal(pos[is_pad], batch.real_index[0][is_pad] + 1)


PAPER_TASKS = [
    "counting_samesymbol_plain3_nobos",
    "counting_samesymbol_plain3",
    "counting_samesymbol_shiftedstart3",
    "counting_samesymbol_shiftedstart3_padhelper",
    "counting_samesymbol_shiftedstart3__tr25_te50__",
    "counting_samesymbol_blankhelper",
    "counting_samesymbol_mod10",
    "counting_samesymbol_mod10bos",
]


@pytest.mark.parametrize("name", PAPER_TASKS)
def test_registry_splits_fit_and_mark_extrapolation(name):
    # Val stays within the training lengths and every OOD sequence extrapolates, which ties
    # each task's max_train_length and max_positions to its splits.
    task = get_task(name)
    collator = Collator(task, "shift")
    val = collator(task.split("val")[:64], random.Random(0))
    assert not val.extrapolation.any()
    ood = collator(task.split("ood")[:64], random.Random(0))
    assert bool(ood.extrapolation.any(dim=1).all())
