"""Learning curves: a run's training loss and its IND / OOD accuracy against the step, read
from its train.csv and eval.csv, for one run or several overlaid.

Reads records only (no torch), so a run can be watched while it trains: train.csv gains a row
at every log interval. matplotlib, of the book extra, loads when a figure is drawn.

    countlib curves runs/<run> [runs/<other run> ...] [--out FILE.png]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from countlib.formatting import config_labels
from countlib.results import DAMAGED, check_records, find_runs
from countlib.tasks import get_task
from countlib.train.records import RunDir

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.axis import Axis
    from matplotlib.figure import Figure

#: Runs named one by one in a figure's title; more are named in its legend only.
TITLED_RUNS = 3
#: Columns of the colour key under a figure of several runs (it grows a row per this many).
LEGEND_COLUMNS = 3


class PlottingUnavailableError(ImportError):
    """A figure was asked for where matplotlib is not installed."""


@dataclass(frozen=True)
class RunCurves:
    """What a learning-curve figure shows of one run."""

    name: str
    #: step, loss: the mean training loss of each log interval.
    losses: pd.DataFrame
    #: step, ind, ood: the task's headline accuracies (fractions) at each evaluation.
    accuracy: pd.DataFrame
    #: "split/metric" of IND and OOD (`countlib.tasks.Task.recorded_metrics`).
    metrics: dict[str, str]
    #: The last step recorded, and the steps the run is set to train.
    steps: int
    planned: int
    #: "complete" or "diverged" once final; "not finished" while training or after a kill.
    status: str


def read_curves(run: RunDir) -> RunCurves:
    """``run``'s curves as its records hold them now, complete or not; a complete run's
    records are checked first (`countlib.results.check_records`: RunRecordError if damaged)."""
    config = run.read_config()
    if run.is_complete():
        check_records(run, run.read_summary())
    metrics = get_task(config["task"]).recorded_metrics
    losses = _read_losses(run.train_log)
    accuracy = _read_accuracy(run.eval_log, metrics)
    last = [int(table["step"].max()) for table in (losses, accuracy) if len(table)]
    status = run.read_summary()["status"] if run.is_complete() else "not finished"
    return RunCurves(
        name=run.path.name,
        losses=losses,
        accuracy=accuracy,
        metrics=metrics,
        steps=max(last, default=0),
        planned=int(config["optim"]["steps"]),
        status=status,
    )


def _read_losses(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=["step", "loss"])
    table = pd.read_csv(path)
    # a row being appended as we read lacks its last column: left for the next look
    table = table.dropna(subset=["elapsed_s"])
    return table[["step", "loss"]].reset_index(drop=True)


def _read_accuracy(path: Path, metrics: dict[str, str]) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=["step", "ind", "ood"])
    table = pd.read_csv(path)
    recorded = table["split"] + "/" + table["metric"]
    columns = {}
    for name, metric in metrics.items():
        rows = table[recorded == metric]
        columns[name] = pd.to_numeric(rows["value"]).set_axis(rows["step"])
    return pd.DataFrame(columns).rename_axis("step").reset_index()


def plot_learning_curves(
    runs: Sequence[str | Path | RunDir], labels: Sequence[str] | None = None
) -> Figure:
    """One figure: training loss (log axis) on the left, IND (solid) and OOD (dashed) accuracy
    in percent on the right, against the step, a colour per run. ``labels``: a legend label
    per run (default its name); runs with the same label share a colour and an entry, as the
    seeds of one configuration do."""
    curves = [read_curves(run if isinstance(run, RunDir) else RunDir(run)) for run in runs]
    if not curves:
        raise ValueError("no run to draw learning curves of")
    labels = [curve.name for curve in curves] if labels is None else list(labels)
    if len(labels) != len(curves):
        raise ValueError(f"{len(labels)} labels for {len(curves)} runs")
    colours = {label: f"C{index % 10}" for index, label in enumerate(dict.fromkeys(labels))}
    key_rows = -(-len(colours) // LEGEND_COLUMNS) if len(colours) > 1 else 0
    figure = _figure(height=4.8 + 0.2 * key_rows)
    loss_axis, accuracy_axis = figure.subplots(1, 2)
    for curve, label in zip(curves, labels, strict=True):
        colour = colours[label]
        finite = curve.losses[curve.losses["loss"].map(_positive_finite)]
        loss_axis.plot(finite["step"], finite["loss"], color=colour, linewidth=1.2, label=label)
        for column, style in (("ind", "-"), ("ood", "--")):
            points = curve.accuracy.dropna(subset=[column])
            accuracy_axis.plot(
                points["step"], 100 * points[column], style, color=colour, marker=".",
                linewidth=1.2,
            )  # fmt: skip
    loss_axis.set(xlabel="step", ylabel="training loss (log scale)", yscale="log")
    _plain_numbers(loss_axis.yaxis)
    loss_axis.set_title("training loss, mean of each log interval", fontsize=10)
    accuracy_axis.set(xlabel="step", ylabel="accuracy (%)", ylim=(-2, 102))
    accuracy_axis.set_title("accuracy at each evaluation", fontsize=10)
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
    _legends(figure, loss_axis, accuracy_axis, curves, len(colours))
    figure.suptitle(_title(curves), fontsize=10)
    return figure


def _plain_numbers(axis: Axis) -> None:
    """Tick labels as 2.5 and 0.6 rather than 2.5 x 10^0 or 6e-01, at the ticks matplotlib
    labels: its minor ticks too where the loss falls by less than a decade or two."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    axis.set_major_formatter(PlainLogFormatter())
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def _positive_finite(loss: float) -> bool:
    """Drawable on a log axis: a diverged interval's inf or nan is left out."""
    return math.isfinite(loss) and loss > 0


def _legends(
    figure: Figure, loss_axis: Axes, accuracy_axis: Axes, curves: list[RunCurves], colours: int
) -> None:
    """Which line style is IND and which OOD (naming the metrics where all runs share them);
    which colour is which run, where there is more than one."""
    from matplotlib.lines import Line2D

    shared = {tuple(curve.metrics.values()) for curve in curves}
    named = next(iter(shared)) if len(shared) == 1 else None
    styles = [
        Line2D([], [], color="0.3", linestyle=style, marker=".", label=label)
        for style, label in (
            ("-", "IND" + (f" ({named[0]})" if named else "")),
            ("--", "OOD" + (f" ({named[1]})" if named else "")),
        )
    ]
    accuracy_axis.legend(handles=styles, fontsize=8, loc="best")
    if colours > 1:
        handles, labels = loss_axis.get_legend_handles_labels()
        unique = dict(zip(labels, handles, strict=True))
        figure.legend(
            unique.values(), unique.keys(), loc="outside lower center", fontsize=8,
            ncol=min(LEGEND_COLUMNS, len(unique)),
        )  # fmt: skip


def _title(curves: list[RunCurves]) -> str:
    if len(curves) > TITLED_RUNS:
        low = min(curve.steps for curve in curves)
        high = max(curve.steps for curve in curves)
        span = f"{low:,}" if low == high else f"{low:,}-{high:,}"
        return f"Learning curves of {len(curves)} runs, {span} steps each"
    return "\n".join(_run_line(curve) for curve in curves)


def _run_line(curve: RunCurves) -> str:
    if curve.status == "not finished":
        return f"{curve.name}: step {curve.steps:,} of {curve.planned:,}, not finished"
    return f"{curve.name}: {curve.steps:,} steps, {curve.status}"


def _figure(height: float) -> Figure:
    """A figure of its own, outside pyplot's state (no display needed; a notebook still shows
    it)."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise PlottingUnavailableError(
            'learning curves are drawn with matplotlib: pip install "countlib[book]"'
        ) from None
    return Figure(figsize=(12, height), layout="constrained")


def plot_page_curves(runs: pd.DataFrame) -> Figure | None:
    """The learning curves of a book page's runs (`countlib.results.load_runs` rows): a colour
    per task and configuration, each seed a line of it; None when there is no run. Damaged
    runs (`countlib.results.DAMAGED`) are left out: their records are no result to draw."""
    if len(runs):
        runs = runs[runs["status"] != DAMAGED]
    if not len(runs):
        return None
    configurations = zip(runs["task"], config_labels(runs), strict=True)
    labels = [f"{task}: {label}" for task, label in configurations]
    return plot_learning_curves(list(runs["path"]), labels=labels)


def default_output(runs: Sequence[Path]) -> Path:
    """Where `save_learning_curves` writes without ``out``: beside the run, named after it
    (``<run>.curves.png``); for several runs, ``curves-<N>-runs.png`` beside the first."""
    first = runs[0]
    name = f"{first.name}.curves.png" if len(runs) == 1 else f"curves-{len(runs)}-runs.png"
    return first.parent / name


def save_learning_curves(paths: Sequence[str | Path], out: str | Path | None = None) -> Path:
    """Draw the runs under ``paths`` (run directories, or directories of runs) into the PNG
    ``out`` (default: `default_output`); the path written."""
    runs = []
    for path in paths:
        found = find_runs(path)
        if not found:
            raise ValueError(f"no run under {path}: a run directory holds config.json")
        runs += found
    figure = plot_learning_curves(runs)
    target = Path(out) if out is not None else default_output([run.path for run in runs])
    figure.savefig(target, dpi=110)
    return target
