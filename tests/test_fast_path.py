"""The fast path's pieces change no number: training batches drawn ahead on a thread are the
batches drawn on demand, a checkpoint taken while batches are drawn ahead resumes exactly, and a
run keeps the AdamW kernels it started with."""

import dataclasses
import random

import pytest
import torch

from countlib.batches import Batch, Collator
from countlib.tasks import get_task
from countlib.tasks.base import DataError
from countlib.train import Trainer, train
from countlib.train.stacked import train_stacked
from countlib.train.stream import CUDA_BATCHES_AHEAD, TrainingBatches, batches_ahead
from tests.test_stacked import SEEDS, assert_same_records
from tests.test_stacked import config as stacked_config
from tests.test_trainer import assert_same_numbers, tiny


def same(a: Batch, b: Batch) -> bool:
    return all(torch.equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))


def stream(ahead: int, task_name: str = "shifted_start", seed: int = 3) -> TrainingBatches:
    task = get_task(task_name)
    # a random position scheme: the collator draws from the same rng as the sampler
    collator = Collator(task, "shift", max_positions=256)
    return TrainingBatches(task, collator, 8, random.Random(seed), ahead=ahead)


def test_batches_drawn_ahead_are_the_batches_drawn_on_demand():
    on_demand, ahead = stream(0), stream(3)
    for _ in range(12):
        assert same(next(on_demand), next(ahead))
        assert on_demand.rng_state() == ahead.rng_state()
    ahead.close()


def test_a_closed_stream_goes_on_with_the_next_batch():
    on_demand, ahead = stream(0), stream(4)
    for _ in range(3):
        next(on_demand), next(ahead)
    ahead.close()  # four or so batches were drawn ahead and are dropped
    for _ in range(3):
        assert same(next(on_demand), next(ahead))


def test_the_callers_rng_is_left_where_it_was():
    rng = random.Random(5)
    before = rng.getstate()
    batches = TrainingBatches(get_task("mod10"), Collator(get_task("mod10")), 4, rng, ahead=2)
    next(batches)
    assert rng.getstate() == before and batches.rng_state() != before
    batches.close()


class FailsAtDraw:
    """A task whose sampler raises at its ``at``-th draw."""

    def __init__(self, task, at: int) -> None:
        self.task, self.at, self.draws = task, at, 0

    def sample_batch(self, rng, size):
        self.draws += 1
        if self.draws == self.at:
            raise DataError(f"draw {self.at} is broken")
        return self.task.sample_batch(rng, size)


@pytest.mark.parametrize("ahead", [0, 3])
def test_an_error_while_drawing_reaches_the_training_step_at_its_batch(ahead):
    task = get_task("mod10")
    broken = FailsAtDraw(task, 3)
    batches = TrainingBatches(broken, Collator(task), 4, random.Random(0), ahead=ahead)
    next(batches), next(batches)
    with pytest.raises(DataError, match="draw 3 is broken"):
        next(batches)
    batches.close()


def test_default_draws_ahead_on_cuda_only_and_refuses_a_negative_count():
    assert batches_ahead(None, "cuda:0") == CUDA_BATCHES_AHEAD
    assert batches_ahead(None, "cpu") == 0 and batches_ahead(2, "cpu") == 2
    with pytest.raises(ValueError, match="0 \\(none\\) or more"):
        batches_ahead(-1, "cpu")


class StopsAfterCheckpoint(Trainer):
    """Dies right after the checkpoint at ``stop_at``, as a killed process would."""

    stop_at = 6

    def evaluate_and_checkpoint(self) -> None:
        super().evaluate_and_checkpoint()
        if self.step == self.stop_at:
            raise KeyboardInterrupt


def test_a_run_drawing_ahead_resumes_exactly(tmp_path):
    config = tiny(steps=12, every=6)
    reference = train(config, tmp_path / "ref", device="cpu", progress=False, batches_ahead=0)
    killed = StopsAfterCheckpoint(config, tmp_path / "ahead", device="cpu", progress=False,
                                  batches_ahead=5)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        killed.run_training()
    # the checkpoint at step 6 was taken with batches 7-11 already drawn ahead
    resumed = train(config, tmp_path / "ahead", device="cpu", progress=False, batches_ahead=5)
    assert_same_numbers(resumed.run_dir.path, reference.run_dir.path)
    segments = resumed.run_dir.read_environment()["segments"]
    assert [s["batches_ahead"] for s in segments] == [5, 5]


def test_stacked_runs_drawing_ahead_keep_each_runs_batches(tmp_path):
    configs = [stacked_config("lstm", seed) for seed in SEEDS]
    alone = [train(c, tmp_path / "alone", device="cpu", progress=False) for c in configs]
    stacked = train_stacked(configs, tmp_path / "stacked", device="cpu", progress=False,
                            batches_ahead=3)  # fmt: skip
    for run_alone, result in zip(alone, stacked, strict=True):
        assert_same_records(run_alone.run_dir, result.run_dir)


class FusedStopsAfterCheckpoint(StopsAfterCheckpoint):
    def fused_adamw(self) -> bool:
        return True  # as on CUDA; torch has a fused AdamW for CPU too


def test_a_run_resumes_with_the_adamw_kernels_it_started_with(tmp_path):
    """A run started fused (on a GPU) and resumed where the default is unfused (a CPU) goes on
    fused, so its numbers are an uninterrupted fused run's."""
    config = tiny(steps=12, every=6)
    reference = FusedStopsAfterCheckpoint(config, tmp_path / "ref", device="cpu", progress=False)
    reference.stop_at = None
    reference.run_training()
    killed = FusedStopsAfterCheckpoint(config, tmp_path / "run", device="cpu", progress=False)
    with pytest.raises(KeyboardInterrupt):
        killed.run_training()
    resumed = train(config, tmp_path / "run", device="cpu", progress=False)
    assert_same_numbers(resumed.run_dir.path, reference.run.path)
    segments = resumed.run_dir.read_environment()["segments"]
    assert [s["adamw"] for s in segments] == ["fused", "fused"]
    unfused = train(config, tmp_path / "unfused", device="cpu", progress=False)
    assert unfused.run_dir.read_environment()["segments"][0]["adamw"] == "unfused"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_batches_are_drawn_ahead_and_adamw_is_fused(tmp_path):
    """The CUDA defaults, against a run drawing in the step: the same batches, so the same run
    up to GPU kernels' run-to-run differences (atomics in embedding backward)."""
    config = tiny(steps=12, every=6, precision="fp32")
    ahead = train(config, tmp_path / "ahead", device="cuda", progress=False)
    in_step = train(config, tmp_path / "in_step", device="cuda", progress=False, batches_ahead=0)
    (segment,) = ahead.run_dir.read_environment()["segments"]
    assert segment["batches_ahead"] == CUDA_BATCHES_AHEAD and segment["adamw"] == "fused"
    for rule in ("final", "best_val", "best_ood"):
        assert ahead.summary[rule]["step"] == in_step.summary[rule]["step"]
        assert ahead.summary[rule]["ood"] == pytest.approx(in_step.summary[rule]["ood"], abs=5e-3)
