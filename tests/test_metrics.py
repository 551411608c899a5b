import random
from collections.abc import Sequence

import pytest
import torch

from countlib.batches import Batch, Collator, evaluation_batches
from countlib.metrics import EvalResult, Scores
from countlib.tasks import get_task
from countlib.tasks.base import Example, SplitInfo, Task
from countlib.vocab import PAD, Vocab, numbers


class TinyTask(Task):
    """Shifted-start counting trained on `s a a` (3 real tokens); val is given explicitly."""

    def __init__(self, val: Sequence[Example], max_train_length: int = 3) -> None:
        self.name = "tiny"
        self.vocab = Vocab.of(numbers(0, 30), [PAD, "a"])
        self.max_train_length = max_train_length
        self.train_lengths = (max_train_length, max_train_length)
        self._val = list(val)
        self.splits = {"val": SplitInfo(len(val), (1, 1), deterministic=True)}

    def sample(self, rng: random.Random) -> Example:
        return rng.choice(self._val)

    def labels(self, inputs):
        return [None] * len(inputs)

    def _build_split(self, split: str, rng: random.Random) -> list[Example]:
        return self._val


def shifted(s: int, n: int) -> Example:
    return [str(s)] + ["a"] * n, ["-1"] + [str(s + i) for i in range(1, n + 1)]


def helper_plain(n: int) -> Example:
    """``a <pad> a <pad> ..`` -> ``-1 1 -1 2 ..``"""
    inputs, labels = [], []
    for i in range(1, n + 1):
        inputs += ["a", PAD]
        labels += ["-1", str(i)]
    return inputs, labels


@pytest.fixture
def task() -> TinyTask:
    # Val inputs `s a a` have 3 tokens: the legacy threshold is 3.
    return TinyTask([shifted(1, 2), shifted(5, 2)])


def collate(task: Task, examples: list[Example]) -> Batch:
    return Collator(task)(examples, random.Random(0))


def predict(batch: Batch, task: Task, wrong: set[tuple[int, int]]) -> torch.Tensor:
    """Correct predictions except at the (row, column) cells in ``wrong``; unsupervised cells
    get a wrong token, since they must not count."""
    junk = task.vocab.id("0")
    pred = torch.where(batch.supervised, batch.labels, torch.full_like(batch.labels, junk))
    for row, col in wrong:
        pred[row, col] = junk
    return pred


def score(task: Task, *pairs: tuple[Batch, torch.Tensor]) -> EvalResult:
    scores = Scores()
    for batch, pred in pairs:
        scores.update(pred, batch)
    return scores.result(task.vocab)


def test_hand_computed_metrics_with_start_token(task):
    # A = `1 a a a a` -> -1 2 3 4 5, wrong at its 3rd `a` (real index 3, the first
    # extrapolated position); B = `2 a a` -> -1 3 4, all right.
    batch = collate(task, [shifted(1, 4), shifted(2, 2)])
    res = score(task, (batch, predict(batch, task, {(0, 3)})))
    assert res.acc == pytest.approx(5 / 6)
    assert res.tokens == 6 and res.sequences == 2
    # Corrected OOD: real indices 3 and 4, one of them wrong.
    assert res.extrapolation_acc == 0.5 and res.extrapolation_tokens == 2
    # The original threshold skips the wrong position and reports a perfect score.
    assert res.legacy_unseen_len_acc == 1.0
    assert res.counting_acc == pytest.approx(3 / 4)  # A: 2 3 4 (one wrong); B: 3
    assert res.last_acc == 1.0  # A: 5; B: 4
    assert res.exact_match == 0.5
    assert res.per_position == {1: (2, 2), 2: (2, 2), 3: (0, 1), 4: (1, 1)}
    assert res.per_count == {"2": (1, 1), "3": (2, 2), "4": (1, 2), "5": (1, 1)}
    assert res.per_length == {3: (2, 2), 5: (3, 4)}
    assert list(res.per_length) == [3, 5]  # sorted


def test_last_position_errors(task):
    batch = collate(task, [shifted(1, 4), shifted(2, 2)])
    res = score(task, (batch, predict(batch, task, {(0, 4), (1, 2)})))
    assert res.last_acc == 0.0
    assert res.counting_acc == 1.0
    assert res.legacy_unseen_len_acc == 0.0
    assert res.extrapolation_acc == 0.5
    assert res.exact_match == 0.0


def test_no_extrapolation_positions(task):
    batch = collate(task, [shifted(3, 2), shifted(1, 1)])
    res = score(task, (batch, predict(batch, task, set())))
    assert res.acc == 1.0
    assert res.extrapolation_acc is None and res.extrapolation_tokens == 0
    assert res.legacy_unseen_len_acc == -1.0


def test_helper_positions_are_scored_by_real_index():
    task = TinyTask([helper_plain(2)], max_train_length=2)
    # `a <pad> a <pad> a <pad>`: counts sit on the helpers, real indices 0, 1, 2.
    batch = collate(task, [helper_plain(3)])
    res = score(task, (batch, predict(batch, task, {(0, 3)})))
    assert res.per_position == {0: (1, 1), 1: (0, 1), 2: (1, 1)}
    assert res.per_count == {"1": (1, 1), "2": (0, 1), "3": (1, 1)}
    assert res.per_length == {3: (2, 3)}
    assert res.extrapolation_acc == 1.0 and res.extrapolation_tokens == 1
    # Val `a <pad> a <pad>` has 2 non-<pad> tokens: the legacy positions are supervised index >= 2.
    assert res.legacy_unseen_len_acc == 1.0


def test_predictions_at_unsupervised_positions_do_not_count(task):
    batch = collate(task, [shifted(1, 4), shifted(2, 2)])
    good = predict(batch, task, set())
    noisy = torch.where(batch.supervised, good, torch.randint_like(good, len(task.vocab)))
    assert score(task, (batch, noisy)) == score(task, (batch, good))
    assert score(task, (batch, good)).exact_match == 1.0


def test_accumulating_two_batches_equals_one_big_batch(task):
    examples = [shifted(s, n) for s, n in [(2, 2), (4, 1), (1, 6), (3, 4), (2, 5), (1, 3)]]
    gen = torch.Generator().manual_seed(0)
    big = collate(task, examples)
    # Wrong with probability ~1/2 at every cell.
    flip = torch.rand(big.labels.shape, generator=gen) < 0.5
    pred = torch.where(flip, torch.zeros_like(big.labels), big.labels)

    first, second = collate(task, examples[:2]), collate(task, examples[2:])
    assert first.seq_len < big.seq_len  # dynamic padding differs between the batches
    parts = [(first, pred[:2, : first.seq_len]), (second, pred[2:, : second.seq_len])]
    whole = score(task, (big, pred))
    assert score(task, *parts) == whole
    assert 0 < whole.acc < 1 and whole.extrapolation_tokens > 0


def test_scores_over_evaluation_batches_match_single_batch(task):
    examples = [shifted(s, n) for s in (1, 2) for n in (1, 3, 5)]
    collator = Collator(task, "shift", max_positions=16)
    scores = Scores()
    for batch in evaluation_batches(task, examples, collator, 4):
        scores.update(batch.labels.clone(), batch)
    res = scores.result(task.vocab)
    assert res.acc == res.exact_match == 1.0
    assert res.tokens == sum(n for _ in (1, 2) for n in (1, 3, 5))


def test_shape_mismatch_raises(task):
    batch = collate(task, [shifted(1, 2)])
    with pytest.raises(ValueError, match="shape"):
        Scores().update(batch.labels[:, :-1], batch)


def test_to_dict_and_tables(task):
    batch = collate(task, [shifted(1, 4), shifted(2, 2)])
    res = score(task, (batch, predict(batch, task, {(0, 3)})))
    flat = res.to_dict()
    assert flat["acc"] == pytest.approx(5 / 6)
    assert flat["legacy_unseen_len_acc"] == 1.0
    assert not any(key.startswith("per_") for key in flat)
    assert res.per_position_table() == [
        {"position": 1, "correct": 2, "total": 2, "acc": 1.0},
        {"position": 2, "correct": 2, "total": 2, "acc": 1.0},
        {"position": 3, "correct": 0, "total": 1, "acc": 0.0},
        {"position": 4, "correct": 1, "total": 1, "acc": 1.0},
    ]
    full = res.to_dict(tables=True)
    assert full["per_count"][0] == {"count": "2", "correct": 1, "total": 1, "acc": 1.0}
    assert [row["length"] for row in full["per_length"]] == [3, 5]


def test_empty_scores():
    res = Scores().result(Vocab.of([PAD]))
    assert res.acc is None and res.exact_match is None and res.tokens == 0
    assert res.legacy_unseen_len_acc == -1.0
    assert res.per_position == {}


def test_registry_shifted_start_legacy_versus_extrapolation():
    task = get_task("counting_samesymbol_shiftedstart3")
    ood = task.split("ood")[:40]
    collator = Collator(task, "shift")
    scores = Scores()
    for batch in evaluation_batches(task, ood, collator, 16):
        # A model that fails exactly at the first unseen count of every sequence.
        pred = batch.labels.clone()
        pred[batch.real_index == task.max_train_length] = task.vocab.pad_id
        scores.update(pred, batch)
    res = scores.result(task.vocab)
    assert res.legacy_unseen_len_acc == 1.0
    assert res.extrapolation_acc < 1.0
    assert res.per_position[task.max_train_length] == (0, len(ood))


def scores_over(task: Task, batches: list[Batch], **kwargs) -> EvalResult:
    scores = Scores(**kwargs)
    for batch in batches:
        pred = batch.labels.clone()
        pred[batch.real_index % 3 == 1] = task.vocab.id("0")  # some wrong, some right
        scores.update(pred, batch)
    return scores.result(task.vocab)


def test_known_label_count_gives_the_same_scores_as_reading_the_labels():
    """With the vocabulary's size given, the per-count tally never reads labels back; the
    result is the same, batch after batch of other lengths."""
    task = get_task("counting_samesymbol_shiftedstart3")
    batches = list(evaluation_batches(task, task.split("ood")[:30], Collator(task, "shift"), 7))
    assert len({batch.seq_len for batch in batches}) > 1
    known = scores_over(task, batches, label_ids=len(task.vocab))
    assert known == scores_over(task, batches)
    assert 0 < known.acc < 1 and len(known.per_count) > 3


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_scores_update_without_a_device_synchronisation():
    task = get_task("counting_samesymbol_shiftedstart3")
    examples = task.split("ood")[:30]
    batches = [b.to("cuda") for b in evaluation_batches(task, examples, Collator(task), 8)]
    scores = Scores(label_ids=len(task.vocab))
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call in update raises
    try:
        for batch in batches:
            scores.update(batch.labels.clone(), batch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert scores.result(task.vocab).acc == 1.0
