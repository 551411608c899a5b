import dataclasses
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from countlib.batches import Collator, evaluation_batches
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import MODELS
from countlib.models.positions import PE_SCHEMES, parse_pe
from countlib.paper import NEGATIVE, NEGATIVE_FAMILIES, PAPER_TASKS
from countlib.tasks import list_tasks
from countlib.train import Trainer, train
from countlib.train.checkpoint import CheckpointError, load_state
from countlib.train.records import RunLockedError
from countlib.train.reload import evaluate_run, load_run_model
from tests.test_fidelity import OPTIONS


def tiny(task="shifted_start", model="lstm", steps=12, every=6, **kwargs):
    return RunConfig(
        task=task,
        model=model,
        model_options={"hidden": 16},
        optim=OptimConfig(steps=steps, batch_size=8, lr=1e-2),
        eval=EvalConfig(every=every, batch_size=256),
        **kwargs,
    )


def test_run_records_are_complete(tmp_path):
    result = train(tiny(), tmp_path, device="cpu", progress=False)
    run = result.run_dir
    assert result.status == "complete" and not result.skipped
    for path in (run.config, run.environment, run.train_log, run.eval_log, run.per_position):
        assert path.exists(), path
    assert run.last.exists() and run.best_val.exists() and run.best_ood.exists()
    assert run.complete_marker.read_text().strip() == "complete"
    summary = run.read_summary()
    assert summary["steps"] == 12
    assert {"step", "ind", "ood"} <= set(summary["best_ood"])
    assert "test split" in summary["note"]
    env = json.loads(run.environment.read_text())
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    assert env["cpu_count"] == os.cpu_count() and env["cpu"]  # the hardware behind the numbers
    eval_lines = run.eval_log.read_text().splitlines()
    assert eval_lines[0] == "step,split,metric,value"
    steps = {int(line.split(",")[0]) for line in eval_lines[1:]}
    assert steps == {0, 6, 12}
    # The OOD split is scored at positions past the 51 training tokens only.
    positions = [line.split(",") for line in run.per_position.read_text().splitlines()[1:]]
    assert max(int(p[2]) for p in positions if p[1] == "ood") == 99


def test_completed_run_is_skipped(tmp_path):
    first = train(tiny(), tmp_path, device="cpu", progress=False)
    stamp = first.run_dir.summary.stat().st_mtime_ns
    again = train(tiny(), tmp_path, device="cpu", progress=False)
    assert again.skipped and again.summary == first.summary
    assert first.run_dir.summary.stat().st_mtime_ns == stamp


#: Figure 1's tasks: Vanilla, then the paper's tasks 2-8.
FIGURE_1_TASKS = ["vanilla", *PAPER_TASKS]


@pytest.mark.parametrize("task", [t.name for t in list_tasks() if "val" in t.splits])
def test_trainer_runs_every_task(task, tmp_path):
    result = train(tiny(task, steps=2, every=2), tmp_path, device="cpu", progress=False)
    assert result.status == "complete"
    assert math.isfinite(result.summary["final"]["ind"])


@pytest.mark.parametrize("model", ["rnn", "gru"])
def test_trainer_runs_other_recurrent_families(model, tmp_path):
    assert train(tiny(model=model), tmp_path, device="cpu", progress=False).status == "complete"


#: Every registered family (tiny options of tests/test_fidelity.py), the Transformer once per
#: registered positional scheme and once with a combination of an input and an attention scheme.
FAMILY_OPTIONS = {
    **{
        f"transformer/{pe}": ("transformer", {"pe": pe, "hidden": 16, "heads": 2, "layers": 1})
        for pe in [*PE_SCHEMES, "rope+ape"]
    },
    **{name: (name, options) for name, options in OPTIONS.items() if name != "transformer"},
    # and with transitions in [-1, 1] (Table H1's option)
    **{
        f"{name}/negative_eigenvalues": (name, {**OPTIONS[name], NEGATIVE: True})
        for _, name in NEGATIVE_FAMILIES
    },
}


def test_every_registered_family_is_trained_on_the_paper_tasks():
    assert {model for model, _ in FAMILY_OPTIONS.values()} == set(MODELS)


@pytest.mark.parametrize("family", sorted(FAMILY_OPTIONS))
@pytest.mark.parametrize("task", FIGURE_1_TASKS)
def test_every_family_trains_on_every_paper_task(family, task, tmp_path):
    """A few steps, then evaluation on the OOD lengths: no index error, finite numbers."""
    model, options = FAMILY_OPTIONS[family]
    config = RunConfig(
        task=task,
        model=model,
        model_options=options,
        optim=OptimConfig(steps=2, batch_size=4, warmup_steps=0),
        eval=EvalConfig(every=2, batch_size=512),
    )
    result = train(config, tmp_path, device="cpu", progress=False)
    assert result.status == "complete"
    assert 0 <= result.summary["final"]["ood"] <= 1
    schemes = parse_pe(options["pe"]) if model == "transformer" else ()
    expected = "shift" if any(s.reads_positions for s in schemes) else "none"
    if any(s.float_positions for s in schemes):
        expected = "scalar_shift"
    assert json.loads(result.run_dir.config.read_text())["position_scheme"] == expected


class PoisonedTrainer(Trainer):
    """Injects a NaN weight at step 5, as an fp16 overflow would."""

    def train_step(self):
        if self.step == 5:
            with torch.no_grad():
                next(self.model.parameters()).fill_(float("nan"))
        return super().train_step()


def test_non_finite_loss_stops_and_marks_diverged(tmp_path):
    trainer = PoisonedTrainer(tiny(steps=200, every=100), tmp_path, device="cpu", progress=False)
    trainer.log_every = 10
    result = trainer.run_training()
    assert result.status == "diverged"
    assert result.summary["steps"] == 10
    assert "non-finite" in result.summary["reason"]
    assert result.run_dir.complete_marker.read_text().strip() == "diverged"


def _cli_train(runs_dir: Path, steps: int) -> list[str]:
    return [
        sys.executable, "-m", "countlib", "train", "--task", "mod10", "--model", "lstm",
        "--hidden", "32", "--steps", str(steps), "--eval-every", "25", "--lr", "0.01",
        "--runs-dir", str(runs_dir), "--device", "cpu", "--quiet", "--set", "dropout=0.1",
        "--layers", "2",
    ]  # fmt: skip


def test_sigkill_and_resume_gives_identical_metrics(tmp_path):
    steps = 300
    reference = subprocess.run(_cli_train(tmp_path / "ref", steps), capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    (ref_run,) = (tmp_path / "ref").iterdir()

    killed_dir = tmp_path / "killed"
    proc = subprocess.Popen(_cli_train(killed_dir, steps), stdout=subprocess.DEVNULL)
    # Kill at a random moment after the first mid-training checkpoint has landed.
    wanted = random.Random().choice([25, 50, 75, 100])
    deadline = time.time() + 120
    while time.time() < deadline:
        lasts = list(killed_dir.glob("*/last.pt"))
        if lasts and _checkpoint_step(lasts[0]) >= wanted:
            break
        time.sleep(0.05)
    time.sleep(random.random() * 0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    (run,) = killed_dir.iterdir()
    assert not (run / "COMPLETE").exists(), "the run finished before it could be killed"

    resumed = subprocess.run(_cli_train(killed_dir, steps), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_numbers(run, ref_run)


def assert_same_numbers(run: Path, ref_run: Path) -> None:
    """Every metric, tally and loss of ``run`` is exactly ``ref_run``'s (wall times aside)."""
    for name in ("eval.csv", "per_position.csv", "per_count.csv", "per_length.csv"):
        assert (run / name).read_text() == (ref_run / name).read_text(), name
    assert _losses(run) == _losses(ref_run)
    ref_summary = json.loads((ref_run / "summary.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    for key in ("final", "best_val", "best_ood", "steps"):
        assert summary[key] == ref_summary[key]


def _losses(run: Path) -> list[list[str]]:
    """train.csv without its wall-clock column."""
    return [line.split(",")[:3] for line in (run / "train.csv").read_text().splitlines()]


class KilledBetweenEvaluations(Trainer):
    """Stops the way a kill does at step 9: after the step-6 checkpoint and the log intervals
    of steps 6 and 8, before the step-12 evaluation."""

    def train_step(self):
        if self.step == 9:
            raise KeyboardInterrupt
        return super().train_step()


def test_a_kill_between_evaluations_keeps_the_losses_and_the_resume_repeats_none(tmp_path):
    config = tiny(steps=12, every=6)
    reference = train(config, tmp_path / "ref", device="cpu", progress=False, log_every=2)
    with pytest.raises(KeyboardInterrupt):
        KilledBetweenEvaluations(
            config, tmp_path / "killed", device="cpu", progress=False, log_every=2
        ).run_training()
    run = tmp_path / "killed" / config.run_name()
    assert _checkpoint_step(run / "last.pt") == 6
    ref_losses = _losses(reference.run_dir.path)
    # the intervals ending at steps 2-8, step 8's after the last checkpoint among them
    assert [row[0] for row in _losses(run)] == ["step", "2", "4", "6", "8"]
    assert _losses(run) == ref_losses[:5]
    train(config, tmp_path / "killed", device="cpu", progress=False, log_every=2)
    assert [row[0] for row in _losses(run)] == ["step", "2", "4", "6", "8", "10", "12"]
    assert_same_numbers(run, reference.run_dir.path)


def _checkpoint_step(path: Path) -> int:
    try:
        return load_state(path)["step"]
    except (CheckpointError, FileNotFoundError, RuntimeError):
        return -1


def test_truncated_and_foreign_checkpoints_are_refused(tmp_path):
    config = tiny(steps=12, every=6)
    run = Trainer(config, tmp_path, device="cpu", progress=False).run
    run.path.mkdir(parents=True)
    run.last.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="last.pt is truncated or corrupt"):
        train(config, tmp_path, device="cpu", progress=False)

    torch.save({"weights": torch.zeros(3)}, run.last)
    with pytest.raises(CheckpointError, match="not a countlib checkpoint"):
        train(config, tmp_path, device="cpu", progress=False)

    other = train(tiny(steps=12, every=6, seed=99), tmp_path, device="cpu", progress=False)
    run.last.write_bytes(other.run_dir.last.read_bytes())
    with pytest.raises(CheckpointError, match="belongs to run"):
        train(config, tmp_path, device="cpu", progress=False)


def test_truncated_best_weights_are_refused(tmp_path):
    result = train(tiny(), tmp_path, device="cpu", progress=False)
    data = result.run_dir.best_val.read_bytes()
    result.run_dir.best_val.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError):
        load_run_model(result.run_dir.path, "best_val")


def test_evaluate_run_reproduces_training_metrics(tmp_path, seed_data):
    result = train(tiny(steps=30, every=30), tmp_path, device="cpu", progress=False)
    report = evaluate_run(result.run_dir.path, checkpoint="last", device="cpu")
    assert report.results["ood"].extrapolation_acc == pytest.approx(result.summary["final"]["ood"])
    assert report.results["val"].acc == pytest.approx(result.summary["final"]["ind"])
    released = evaluate_run(
        result.run_dir.path,
        data=seed_data / "counting_samesymbol_shiftedstart3" / "ood_test.txt",
        device="cpu",
    )
    # The released OOD file holds the same multiset of lines as the generated split.
    assert released.results["ood_test"].extrapolation_acc == pytest.approx(
        result.summary["final"]["ood"]
    )
    assert report.table_path.exists()


def test_a_run_in_progress_is_locked_against_a_second_trainer(tmp_path):
    config = tiny()
    run = Trainer(config, tmp_path, device="cpu", progress=False).run
    with run.lock(), pytest.raises(RunLockedError, match="another process"):
        train(config, tmp_path, device="cpu", progress=False)
    assert train(config, tmp_path, device="cpu", progress=False).status == "complete"


def test_keep_weights_from_the_command_line_and_none_kept_by_default(tmp_path):
    from countlib.cli import main

    args = ["train", "--task", "mod10", "--model", "lstm", "--hidden", "8", "--steps", "3",
            "--eval-every", "2", "--device", "cpu", "--quiet"]  # fmt: skip
    assert main([*args, "--runs-dir", str(tmp_path / "kept"), "--keep-weights"]) == 0
    (kept,) = (tmp_path / "kept").iterdir()
    assert sorted(p.name for p in (kept / "evaluations").iterdir()) == [
        "step-0.safetensors", "step-2.safetensors", "step-3.safetensors",
    ]  # fmt: skip
    assert json.loads((kept / "config.json").read_text())["eval"]["keep_weights"] is True
    assert main([*args, "--runs-dir", str(tmp_path / "plain")]) == 0
    (plain,) = (tmp_path / "plain").iterdir()
    assert plain.name == kept.name and not (plain / "evaluations").exists()
    with pytest.raises(FileNotFoundError, match="kept none"):
        load_run_model(plain, "step-2")


def test_cached_evaluation_batches_are_what_each_evaluation_would_collate(tmp_path):
    """The trainer collates its evaluation batches once per run; under a random position
    scheme they must still be exactly the batches a fresh collation draws."""
    config = tiny(model="transformer", position_scheme="shift")
    config = dataclasses.replace(config, model_options={"hidden": 16, "heads": 2, "layers": 1})
    trainer = Trainer(config, tmp_path, device="cpu", progress=False)
    trainer.build()
    cached = trainer.evaluation_batches()
    eval_config = trainer.config.eval
    for name, examples in trainer.splits.items():
        fresh = evaluation_batches(
            trainer.task,
            examples,
            Collator(trainer.task, "shift", max_positions=trainer.collator.max_positions),
            eval_config.batch_size,
            shift_samples=eval_config.shift_samples,
            seed=eval_config.seed,
        )
        pairs = list(zip(cached[name], fresh, strict=True))
        assert pairs
        for kept, drawn in pairs:
            for field in dataclasses.fields(drawn):
                assert torch.equal(getattr(kept, field.name), getattr(drawn, field.name))
    assert trainer.evaluate_all() == trainer.evaluate_all()
