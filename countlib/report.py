"""Building blocks of the notebooks: choose the runs, train or reuse them, tabulate, plot.

The notebooks stay thin so that every page of the book is produced the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.profiles import get_profile
from countlib.results import CHECKPOINT_RULES, aggregate, load_per_position
from countlib.sweep import SweepRun, expand, run_sweep
from countlib.tasks import get_task

SUCCESS_OOD = 0.95  # our threshold for "counts inductively"; the paper gives none
#: Run-table columns that tell configurations apart, in the order a label names them.
CONFIG_COLUMNS = ("model", "pe", "layers", "hidden", "heads", "causal", "head_size", "lr")


def notebook_runs(
    families: Sequence[str],
    *,
    profile: str | None = None,
    grid: Mapping[str, Any] | None = None,
    default: Mapping[str, Any] | None = None,
) -> list[SweepRun]:
    """The runs of ``families`` in a profile, in an explicit sweep spec, or else in ``default``
    (the notebook's own small grid). Giving both a profile and a grid is an error."""
    if profile and grid:
        raise ValueError("give either a profile or a grid, not both")
    if profile:
        planned = get_profile(profile)
    else:
        spec = grid or default
        if spec is None:
            raise ValueError("no profile, grid or default spec to take the runs from")
        planned = expand(spec)
    return [run for run in planned if run.family in families or run.config.model in families]


def run_all(
    runs: Sequence[SweepRun],
    runs_dir: str | Path,
    *,
    train: bool = True,
    device: str = "cpu",
    executor: str = "sequential",
    workers: int | None = None,
) -> list[Path]:
    """Train what is missing (complete runs are reused); returns every run directory.

    A failed run is an error here, unlike in a sweep: a page must not quietly show fewer runs
    than it planned. With ``train=False`` nothing trains: the directories that exist are
    returned, complete or not (the book trains first, then only reads).
    """
    if not train:
        return [path for run in runs if (path := Path(runs_dir) / run.name).exists()]
    outcome = run_sweep(
        runs, runs_dir, executor=executor, device=device, workers=workers, log=print
    )
    if not outcome.ok:
        raise RuntimeError(outcome.format())
    return [result.run_dir for result in outcome.outcomes]


def config_labels(runs: pd.DataFrame, *, only_varying: bool = True) -> pd.Series:
    """A short label per run: its model, PE, depth, width ... as far as they vary between the
    runs (or all of them, with ``only_varying=False``)."""
    present = [col for col in CONFIG_COLUMNS if col in runs]
    varying = [col for col in present if runs[col].astype(str).nunique() > 1]
    columns = (varying or ["model"]) if only_varying else present

    def label(row: pd.Series) -> str:
        parts = []
        for col in columns:
            value = row[col]
            if pd.isna(value):
                continue
            if col == "layers":
                parts.append(f"{int(value)}L")
            elif col == "causal":
                parts.append("causal" if value else "bidirectional")
            elif col in ("model", "pe"):
                parts.append(str(value))
            else:
                parts.append(f"{col}={value:g}" if isinstance(value, float) else f"{col}={value}")
        return " ".join(parts)

    return runs.apply(label, axis=1) if len(runs) else pd.Series([], dtype=str)


def summary_table(
    runs: pd.DataFrame, by: Sequence[str] = ("task", *CONFIG_COLUMNS), rule: str = "best_ood"
) -> pd.DataFrame:
    """Best-of-k and median-of-k IND/OOD with a success flag (OOD >= 95 %), one row per
    configuration (always per model) of the run table ``runs`` (`countlib.results.load_runs`);
    grouping columns no run sets are left out."""
    by = list(by) if "model" in by else ["model", *by]
    by = [col for col in by if col in runs and runs[col].notna().any()]
    table = aggregate(runs, by=by, rule=rule)
    table["success"] = table["best_ood"] >= SUCCESS_OOD
    return table


def per_position_at(runs: pd.DataFrame, rule: str = "best_ood", split: str = "ood") -> pd.DataFrame:
    """Per-position accuracy of every run at the checkpoint that ``rule`` picks (the one the
    tables report), with the run's configuration columns joined."""
    if rule not in CHECKPOINT_RULES:
        raise ValueError(f"unknown checkpoint rule {rule!r}; choose from {CHECKPOINT_RULES}")
    done = runs[runs["status"] != "incomplete"] if len(runs) else runs
    if not len(done):
        return pd.DataFrame()
    table = load_per_position(list(done["path"]), step="all")
    if not len(table):
        return table
    table = table[table["split"] == split]
    info = done.set_index("run")
    table = table[table["step"] == table["run"].map(info[f"{rule}_step"])]
    return table.join(info.drop(columns=[c for c in info if c in table]), on="run")


def plot_per_position(
    runs: pd.DataFrame,
    *,
    facet: str = "task",
    hue: str = "config",
    rule: str = "best_ood",
    title: str = "",
    col_wrap: int = 2,
):
    """OOD accuracy per position, one panel per ``facet`` value and a line per configuration
    (mean over seeds), at the checkpoint ``rule`` picks; a dashed line marks each panel's
    longest training sequence. Returns the figure, or None when no run has per-position data."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = per_position_at(runs.assign(config=config_labels(runs)), rule)
    if not len(table):
        return None
    panels = list(dict.fromkeys(table[facet]))
    cols = min(col_wrap, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 3 * rows), squeeze=False)
    for ax, panel in zip(axes.flat, panels, strict=False):
        data = table[table[facet] == panel]
        sns.lineplot(data=data, x="position", y="accuracy", hue=hue, ax=ax, errorbar=None)
        edges = {get_task(task).max_train_length for task in data["task"].unique()}
        for edge in edges:
            ax.axvline(edge - 0.5, color="k", linestyle="--", linewidth=1)
        ax.set(title=str(panel), xlabel="position (real tokens)", ylabel="OOD accuracy")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_headline(runs_dir: str | Path, name: str, row: dict[str, Any]) -> Path:
    """Store a notebook's headline numbers where the book and later sweeps can read them."""
    path = Path(runs_dir) / "headlines" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2, default=float))
    return path
