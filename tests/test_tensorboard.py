"""TensorBoard event files of a run (`countlib.train.tensorboard_log`): what they hold, that
they change neither the run's name nor its numbers, a resume shows no step twice, and a clear
error where the package is missing."""

import csv
import importlib.util
from pathlib import Path

import pytest

from countlib.cli import main
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.sweep import expand
from countlib.train import Trainer, train
from countlib.train.tensorboard_log import TensorBoardUnavailableError

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="the tensorboard extra is not installed (pip install countlib[tensorboard])",
)


def tiny(tensorboard: bool, steps: int = 12) -> RunConfig:
    return RunConfig(
        task="shifted_start",
        model="lstm",
        model_options={"hidden": 8},
        optim=OptimConfig(steps=steps, batch_size=4, lr=1e-2),
        eval=EvalConfig(every=6, batch_size=256, tensorboard=tensorboard),
    )


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar under ``folder`` as TensorBoard shows it: tag -> [(step, value)]."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_tensorboard_is_outside_the_run_identity_and_its_records():
    with_board, without = tiny(True), tiny(False)
    assert with_board.config_hash() == without.config_hash()
    assert with_board.run_name() == without.run_name()
    assert "tensorboard" not in without.to_dict()["eval"]  # earlier runs' config.json unchanged
    assert with_board.to_dict()["eval"]["tensorboard"] is True


@needs_tensorboard
def test_event_files_hold_the_recorded_losses_and_accuracies_and_change_no_number(tmp_path):
    plain = train(tiny(False), tmp_path / "plain", device="cpu", progress=False, log_every=3)
    boarded = train(tiny(True), tmp_path / "board", device="cpu", progress=False, log_every=3)
    run = boarded.run_dir
    assert run.path.name == plain.run_dir.path.name
    assert list(run.tensorboard.glob("events.out.tfevents.*"))
    assert not plain.run_dir.tensorboard.exists()
    for name in ("eval.csv", "per_position.csv"):
        assert (run.path / name).read_text() == (plain.run_dir.path / name).read_text()
    losses = [(r["step"], r["loss"]) for r in csv_rows(run.train_log)]
    assert losses == [(r["step"], r["loss"]) for r in csv_rows(plain.run_dir.train_log)]

    found = scalars(run.tensorboard)
    assert {"train/loss", "train/lr", "accuracy/ind", "accuracy/ood"} <= set(found)
    assert {"val/acc", "ood/acc", "ood/extrapolation_acc"} <= set(found)
    assert [step for step, _ in found["train/loss"]] == [3, 6, 9, 12]
    for (step, value), (csv_step, csv_loss) in zip(found["train/loss"], losses, strict=True):
        assert step == int(csv_step) and value == pytest.approx(float(csv_loss), rel=1e-6)
    evaluations = {(r["step"], r["split"], r["metric"]): r["value"] for r in csv_rows(run.eval_log)}
    assert [step for step, _ in found["accuracy/ood"]] == [0, 6, 12]
    for step, value in found["accuracy/ood"]:
        assert value == pytest.approx(float(evaluations[(str(step), "ood", "extrapolation_acc")]))
    for step, value in found["accuracy/ind"]:
        assert value == pytest.approx(float(evaluations[(str(step), "val", "acc")]))


class KilledAtStep8(Trainer):
    """Stops the way a kill does, after the step-6 checkpoint and step 7's log interval."""

    def train_step(self):
        if self.step == 8:
            raise KeyboardInterrupt
        return super().train_step()


@needs_tensorboard
def test_a_resumed_run_shows_each_step_once(tmp_path):
    config = tiny(True)
    with pytest.raises(KeyboardInterrupt):
        KilledAtStep8(config, tmp_path, device="cpu", progress=False, log_every=1).run_training()
    result = train(config, tmp_path, device="cpu", progress=False, log_every=1)
    found = scalars(result.run_dir.tensorboard)
    assert len(list(result.run_dir.tensorboard.glob("events.out.tfevents.*"))) == 2
    # step 7 was logged by the killed segment and again after the resume from step 6
    assert [step for step, _ in found["train/loss"]] == list(range(1, 13))
    resumed_losses = [float(r["loss"]) for r in csv_rows(result.run_dir.train_log)]
    assert [value for _, value in found["train/loss"]] == pytest.approx(resumed_losses)


def test_spec_key_and_cli_flag_ask_for_event_files(tmp_path, monkeypatch, capsys):
    grid = {"grid": [{"task": "shifted_start", "model": "lstm", "tensorboard": [True, False]}]}
    (run,) = expand(grid)  # one run: the key is not part of its identity
    assert run.config.eval.tensorboard is True  # an entry that asks for it is enough

    # where tensorboard is missing: one line naming the extra, exit 2, nothing trained
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *args: None if name == "tensorboard" else real_find_spec(name, *args),
    )
    with pytest.raises(TensorBoardUnavailableError, match=r"countlib\[tensorboard\]"):
        Trainer(tiny(True), tmp_path, device="cpu")
    argv = ["train", "--task", "shifted_start", "--model", "lstm", "--hidden", "8", "--steps",
            "2", "--runs-dir", str(tmp_path), "--quiet", "--tensorboard"]  # fmt: skip
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "countlib[tensorboard]" in line
    assert not any(tmp_path.iterdir())
