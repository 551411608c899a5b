"""Learning curves (`countlib.curves`, ``countlib curves``): what each figure draws, read
back from the matplotlib objects, for a real tiny run and hand-written records."""

import csv
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from countlib.cli import main
from countlib.curves import plot_learning_curves, plot_page_curves, read_curves
from countlib.results import load_runs
from countlib.train.records import RunDir

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None,
    reason="matplotlib (the book extra) is not installed",
)


def fake_run(root: Path, name: str, *, seed: int, hidden: int, losses: str, evals: dict) -> Path:
    """A run directory as the trainer leaves it mid-training: config, train.csv (``losses``:
    its rows after the header), eval.csv from ``evals`` {step: (IND, OOD)}."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "task": "mod10_bos",
        "model": "lstm",
        "seed": seed,
        "position_scheme": None,
        "model_options": {"hidden": hidden, "layers": 1},
        "optim": {"lr": 0.01, "steps": 40},
    }
    (run / "config.json").write_text(json.dumps(config))
    (run / "train.csv").write_text("step,loss,lr,elapsed_s\n" + losses)
    with open(run / "eval.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "split", "metric", "value"])
        for step, (ind, ood) in evals.items():
            writer.writerows([[step, "val", "acc", ind], [step, "ood", "acc", 0.5],
                              [step, "ood", "extrapolation_acc", ood]])  # fmt: skip
    return run


@pytest.fixture
def fake_runs(tmp_path):
    evals = {0: (0.1, 0.0), 10: (0.6, 0.2), 20: (0.9, 0.25)}
    return [
        # the last row torn: being appended as it is read
        fake_run(tmp_path, "a-s1", seed=1, hidden=8, evals=evals,
                 losses="5,2.0,0.01,0.1\n10,1.0,0.01,0.2\n15,inf,0.01,0.3\n20,0.5,0.01,0.4\n25,0.4"),
        fake_run(tmp_path, "a-s2", seed=2, hidden=8, evals=evals,
                 losses="5,2.1,0.01,0.1\n10,1.1,0.01,0.2\n"),
        fake_run(tmp_path, "b-s1", seed=1, hidden=16, evals={0: (0.1, 0.0)},
                 losses="5,2.3,0.01,0.1\n"),
    ]  # fmt: skip


def test_curves_read_the_records_as_they_are_mid_training(fake_runs):
    curves = read_curves(RunDir(fake_runs[0]))
    assert list(curves.losses["step"]) == [5, 10, 15, 20]  # the torn row left for later
    assert list(curves.accuracy["ind"]) == [0.1, 0.6, 0.9]
    assert list(curves.accuracy["ood"]) == [0.0, 0.2, 0.25]  # the task's OOD, not ood/acc
    assert (curves.steps, curves.planned, curves.status) == (20, 40, "not finished")


@needs_matplotlib
def test_one_run_figure_has_a_log_loss_axis_and_accuracy_in_percent(fake_runs):
    figure = plot_learning_curves([fake_runs[0]])
    loss_axis, accuracy_axis = figure.axes
    assert loss_axis.get_yscale() == "log"
    assert loss_axis.get_xlabel() == accuracy_axis.get_xlabel() == "step"
    assert "loss" in loss_axis.get_ylabel() and accuracy_axis.get_ylabel() == "accuracy (%)"
    assert accuracy_axis.get_ylim() == (-2, 102)
    (loss,) = loss_axis.get_lines()
    assert list(loss.get_xdata()) == [5, 10, 20]  # the diverged interval's inf left out
    assert list(loss.get_ydata()) == [2.0, 1.0, 0.5]
    figure.draw_without_rendering()  # places and labels the ticks
    ticks = loss_axis.get_yticklabels() + loss_axis.get_yticklabels(minor=True)
    labels = {tick.get_text() for tick in ticks} - {""}
    assert {"0.6", "1", "2"} <= labels and all("e" not in label for label in labels)  # not 10^0
    ind, ood = accuracy_axis.get_lines()
    assert list(ind.get_ydata()) == pytest.approx([10, 60, 90])
    assert (ind.get_linestyle(), ood.get_linestyle()) == ("-", "--")
    assert list(ood.get_ydata()) == pytest.approx([0, 20, 25])
    legend = [text.get_text() for text in accuracy_axis.get_legend().get_texts()]
    assert legend == ["IND (val/acc)", "OOD (ood/extrapolation_acc)"]
    assert figure.get_suptitle() == "a-s1: step 20 of 40, not finished"
    assert not figure.legends  # one run: no colour key


@needs_matplotlib
def test_a_page_overlays_its_runs_a_colour_per_configuration(fake_runs):
    runs = load_runs(fake_runs[0].parent).sort_values("run", ignore_index=True)
    figure = plot_page_curves(runs)
    lines = figure.axes[0].get_lines()
    assert [line.get_label() for line in lines] == [
        "mod10_bos: hidden=8",
        "mod10_bos: hidden=8",
        "mod10_bos: hidden=16",
    ]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()  # seeds share
    (key,) = figure.legends
    assert [text.get_text() for text in key.get_texts()] == [
        "mod10_bos: hidden=8",
        "mod10_bos: hidden=16",
    ]
    assert figure.get_suptitle().splitlines() == [
        "a-s1: step 20 of 40, not finished",
        "a-s2: step 20 of 40, not finished",
        "b-s1: step 5 of 40, not finished",
    ]
    assert plot_page_curves(runs.iloc[0:0]) is None


@needs_matplotlib
def test_countlib_curves_draws_a_trained_run_beside_it(tmp_path, capsys):
    from countlib.config import EvalConfig, OptimConfig, RunConfig
    from countlib.train import train

    config = RunConfig(
        task="shifted_start",
        model="lstm",
        model_options={"hidden": 8},
        optim=OptimConfig(steps=12, batch_size=4, lr=1e-2),
        eval=EvalConfig(every=6, batch_size=256),
    )
    run = train(config, tmp_path, device="cpu", progress=False, log_every=3).run_dir.path
    assert main(["curves", str(run)]) == 0
    png = tmp_path / f"{run.name}.curves.png"
    assert capsys.readouterr().out.strip() == f"wrote {png}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    figure = plot_learning_curves([run])
    assert list(figure.axes[0].get_lines()[0].get_xdata()) == [3, 6, 9, 12]
    assert list(figure.axes[1].get_lines()[0].get_xdata()) == [0, 6, 12]
    assert figure.get_suptitle() == f"{run.name}: 12 steps, complete"

    out = tmp_path / "both.png"
    assert main(["curves", str(run), str(run), "--out", str(out)]) == 0 and out.exists()


def test_countlib_curves_without_a_run_says_so_in_one_line(tmp_path, capsys):
    assert main(["curves", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == f"error: no run under {tmp_path}: a run directory holds config.json"


def test_curves_import_without_torch():
    code = "import sys, countlib.curves; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
