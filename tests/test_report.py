import pandas as pd
import pytest

from countlib import report
from countlib.results import load_runs
from countlib.train.records import RunDir
from tests.test_results import fake_run


def test_a_notebook_shows_its_families_runs_of_a_profile():
    rnn = report.notebook_runs(["rnn", "lstm", "gru"], profile="laptop")
    assert {r.family for r in rnn} == {"rnn"} and len(rnn) == 10  # claim 20: 5 cells, 2 seeds
    transformer = report.notebook_runs(["transformer"], profile="laptop")
    assert {r.config.task for r in transformer} == {"first_token_heterogeneous", "mod10"}
    overnight = report.notebook_runs(["rnn", "lstm", "gru"], profile="overnight")
    assert {r.family for r in overnight} == {"rnn", "lstm"}
    # the main job trains Transformers on mod 10 only
    assert report.notebook_runs(["rnn", "lstm", "gru"], profile="smoke") == []
    smoke = report.notebook_runs(["transformer"], profile="smoke")
    assert {r.config.task for r in smoke} == {"mod10"}


def test_a_grid_replaces_the_notebooks_own_defaults():
    own = {"steps": 10, "grid": [{"task": "mod10", "model": "lstm"}]}
    grid = {"steps": 10, "grid": [{"task": "selective", "model": ["lstm", "s4"]}]}
    assert [r.config.task for r in report.notebook_runs(["lstm"], default=own)] == ["mod10"]
    chosen = report.notebook_runs(["lstm"], grid=grid, default=own)
    assert [(r.config.task, r.family) for r in chosen] == [("selective", "lstm")]
    with pytest.raises(ValueError, match="either a profile or a grid"):
        report.notebook_runs(["lstm"], profile="smoke", grid=grid)


def test_curves_are_taken_at_the_checkpoint_the_tables_report(tmp_path):
    fake_run(tmp_path, "a", 1, best_ood=(1.0, 0.9), best_val=(1.0, 0.5))
    rows = [
        {"step": step, "split": split, "position": pos, "correct": step // 10, "total": 10}
        for step in (50, 80, 100)
        for split in ("val", "ood")
        for pos in (1, 2)
    ]
    pd.DataFrame(rows).to_csv(RunDir(tmp_path / "a").per_position, index=False)
    runs = load_runs(tmp_path)
    for rule, step in (("best_ood", 80), ("best_val", 50), ("final", 100)):
        table = report.tally_at(runs, "position", rule)
        assert set(table["step"]) == {step} and set(table["split"]) == {"ood"}
        assert list(table["position"]) == [1, 2] and set(table["task"]) == {"mod10"}
    with pytest.raises(ValueError, match="choose from"):
        report.tally_at(runs, "position", "best")


def test_incomplete_runs_have_no_curves(tmp_path):
    fake_run(tmp_path, "a", 1, best_ood=(1.0, 0.9), best_val=(1.0, 0.5), status="incomplete")
    assert report.tally_at(load_runs(tmp_path)).empty
    assert report.plot_accuracy_by(load_runs(tmp_path)) is None


def test_curves_show_each_seed_behind_the_mean(tmp_path):
    for name, seed, correct in (("a", 1, 2), ("b", 2, 8)):
        fake_run(tmp_path, name, seed, best_ood=(1.0, 0.9), best_val=(1.0, 0.5))
        rows = [
            {"step": 80, "split": "ood", "position": pos, "correct": correct, "total": 10}
            for pos in (50, 60, 70)
        ]
        pd.DataFrame(rows).to_csv(RunDir(tmp_path / name).per_position, index=False)
    fig = report.plot_accuracy_by(load_runs(tmp_path), "position")
    (ax,) = [ax for ax in fig.axes if ax.get_visible()]
    curves = [line.get_ydata() for line in ax.lines if len(line.get_xdata()) == 3]
    assert sorted(list(c) for c in curves) == [[0.2] * 3, [0.5] * 3, [0.8] * 3]  # seeds, mean
