"""Training to a plateau (issue 26, item 1): a run with ``eval.plateau_evals`` stops at the
evaluation where neither IND nor OOD has risen by more than the tolerance over the last K
evaluations; ``optim.steps`` is then a cap. The rule is part of the run's identity when set and
absent from its records when not."""

from __future__ import annotations

import csv
import json

import pytest

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.plateau import plateaued
from countlib.train import train
from countlib.train.stacked import train_stacked
from countlib.train.trainer import Trainer


@pytest.mark.parametrize(
    ("history", "evaluations", "tolerance", "expected"),
    [
        ([(0.5, 0.1), (0.6, 0.1)], 2, 0.01, False),  # not enough evaluations yet
        ([(0.5, 0.1), (0.5, 0.1), (0.505, 0.1)], 2, 0.01, True),  # rose by less than 1 point
        ([(0.5, 0.1), (0.5, 0.1), (0.52, 0.1)], 2, 0.01, False),  # IND still rising
        ([(0.99, 0.1), (0.99, 0.1), (0.99, 0.2)], 2, 0.01, False),  # OOD still rising
        ([(0.99, 0.3), (0.98, 0.1), (0.97, 0.2)], 2, 0.01, True),  # falling is no rise
        ([(0.02, 0.0), (0.02, 0.0), (0.02, 0.0)], 2, 0.01, True),  # a plateau below the bar
        ([(0.5, None), (0.5, None), (0.5, None)], 2, 0.01, True),  # a metric a task lacks
    ],
)
def test_the_plateau_rule(history, evaluations, tolerance, expected):
    assert plateaued(history, evaluations, tolerance) is expected


def lstm(seed: int = 1, steps: int = 60, **rule) -> RunConfig:
    return RunConfig(
        task="mod10",
        model="lstm",
        model_options={"hidden": 16},
        optim=OptimConfig(steps=steps, batch_size=8, lr=1e-2),
        eval=EvalConfig(every=5, batch_size=64, **rule),
        seed=seed,
    )


def rows(path):
    with open(path) as handle:
        return [row[:3] for row in csv.reader(handle)]  # without the wall time


def test_a_run_stops_on_its_plateau_and_says_so(tmp_path):
    """A tolerance no evaluation can beat: the run stops at its second trained evaluation,
    with the very numbers of a run without the rule up to there."""
    rule = {"plateau_evals": 1, "plateau_tolerance": 0.999}
    stopped = train(lstm(**rule), tmp_path / "rule", device="cpu", progress=False)
    assert stopped.status == "complete"
    assert stopped.summary["steps"] == 10
    assert stopped.summary["stop"] == {"reason": "plateau", "step": 10, "plateaued": True}
    whole = train(lstm(), tmp_path / "no_rule", device="cpu", progress=False)
    assert "stop" not in whole.summary and whole.summary["steps"] == 60
    assert rows(stopped.run_dir.train_log) == rows(whole.run_dir.train_log)[:3]
    config = json.loads(stopped.run_dir.config.read_text())
    assert config["eval"]["plateau_evals"] == 1


def test_a_run_that_never_plateaus_stops_at_its_cap_and_says_whether_it_was_improving(tmp_path):
    result = train(lstm(steps=10, plateau_evals=5), tmp_path, device="cpu", progress=False)
    assert result.summary["stop"] == {"reason": "cap", "step": 10, "plateaued": False}


def test_without_a_rule_records_and_names_are_those_of_runs_before_it(tmp_path):
    config = lstm()
    recorded = config.to_dict()
    assert "plateau_evals" not in recorded["eval"] and "plateau_tolerance" not in recorded["eval"]
    assert RunConfig.from_dict(recorded).config_hash() == config.config_hash()
    assert lstm(plateau_evals=2).config_hash() != config.config_hash()
    # the default tolerance is part of the identity, made explicit
    assert lstm(plateau_evals=2).resolve().eval.plateau_tolerance == 0.01
    assert (
        lstm(plateau_evals=2, plateau_tolerance=0.01).run_name() == lstm(plateau_evals=2).run_name()
    )


def test_rule_settings_are_checked():
    with pytest.raises(ValueError, match="plateau_evals must be at least 1"):
        EvalConfig(plateau_evals=0)
    with pytest.raises(ValueError, match="plateau_tolerance needs plateau_evals"):
        EvalConfig(plateau_tolerance=0.01)
    with pytest.raises(ValueError, match=r"accuracy in \[0, 1\)"):
        EvalConfig(plateau_evals=2, plateau_tolerance=2.0)


class StopsAfterItsPlateauEvaluation(Trainer):
    """Dies like a killed process right after the evaluation that meets the rule."""

    def evaluate_and_checkpoint(self) -> None:
        super().evaluate_and_checkpoint()
        if self.step == 10:
            raise KeyboardInterrupt


def test_a_run_killed_after_its_plateau_evaluation_stops_there_on_resume(tmp_path):
    config = lstm(plateau_evals=1, plateau_tolerance=0.999)
    with pytest.raises(KeyboardInterrupt):
        StopsAfterItsPlateauEvaluation(
            config, tmp_path, device="cpu", progress=False
        ).run_training()
    resumed = train(config, tmp_path, device="cpu", progress=False)
    assert resumed.summary["stop"]["reason"] == "plateau" and resumed.summary["steps"] == 10


def test_a_stacked_run_stops_on_its_plateau_alone(tmp_path):
    rule = {"plateau_evals": 1, "plateau_tolerance": 0.999}
    results = train_stacked([lstm(1, **rule), lstm(2, **rule)], tmp_path, progress=False)
    assert [r.summary["stop"]["step"] for r in results] == [10, 10]
    assert all(r.summary["stop"]["reason"] == "plateau" for r in results)
