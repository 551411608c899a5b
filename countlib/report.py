"""Building blocks of the family notebooks: train a set of seeds, tabulate, plot, record.

The notebooks stay thin so that every family page of the book is produced the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.results import aggregate, load_per_position, load_runs
from countlib.tasks import get_task
from countlib.train import train

SUCCESS_OOD = 0.95  # our threshold for "counts inductively"; the paper gives none


def train_seeds(
    task: str,
    model: str,
    model_options: dict[str, Any],
    *,
    steps: int,
    seeds: Sequence[int],
    runs_dir: str | Path,
    device: str = "cpu",
    lr: float | None = None,
    eval_every: int = 500,
    warmup: int | None = None,
) -> list[Path]:
    """Train (or reuse) one run per seed; returns the run directories."""
    paths = []
    for seed in seeds:
        config = RunConfig(
            task=task,
            model=model,
            model_options=dict(model_options),
            optim=OptimConfig(steps=steps, lr=lr, warmup_steps=warmup),
            eval=EvalConfig(every=min(eval_every, steps)),
            seed=seed,
        )
        result = train(config, runs_dir, device=device, progress=False)
        state = "reused" if result.skipped else result.status
        print(f"{state:>9}: {result.run_dir.path.name}")
        paths.append(result.run_dir.path)
    return paths


def summary_table(runs: Sequence[Path], by: Sequence[str], rule: str = "best_ood") -> pd.DataFrame:
    """Best-of-k and median-of-k IND/OOD with a success flag (OOD >= 95 %), always per model."""
    by = list(by) if "model" in by else ["model", *by]
    table = aggregate(load_runs(runs), by=by, rule=rule)
    table["success"] = table["best_ood"] >= SUCCESS_OOD
    return table


def plot_per_position(runs: Sequence[Path], task: str, *, hue: str = "run", title: str = ""):
    """Accuracy per position on the OOD split at the last evaluation, with the training edge."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    table = load_per_position(runs)
    ood = table[table["split"] == "ood"]
    labels = load_runs(runs).set_index("run")
    if hue != "run" and hue in labels.columns:
        ood = ood.assign(**{hue: ood["run"].map(labels[hue])})
    fig, ax = plt.subplots(figsize=(8, 3.5))
    sns.lineplot(data=ood, x="position", y="accuracy", hue=hue, ax=ax, errorbar=None)
    ax.axvline(get_task(task).max_train_length - 0.5, color="k", linestyle="--", linewidth=1)
    ax.set(
        xlabel="position (real tokens, 0-based); dashed: longest training sequence",
        ylabel="accuracy",
        ylim=(-0.02, 1.02),
        title=title,
    )
    fig.tight_layout()
    return fig


def save_headline(runs_dir: str | Path, name: str, row: dict[str, Any]) -> Path:
    """Store a notebook's headline numbers where the book and later sweeps can read them."""
    path = Path(runs_dir) / "headlines" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(row, indent=2, default=float))
    return path
