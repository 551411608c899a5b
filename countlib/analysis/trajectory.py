"""How the counting state develops during training: the layer probes of
`countlib.analysis.probe` at every checkpoint a run keeps, on the same batch.

A run keeps its best-val, best-OOD and final weights (`countlib.train.records.RunDir`), so the
trajectory has at most three points; a run trained with ``eval.keep_weights`` (``countlib train
--keep-weights``, ``keep_weights: true`` in a sweep spec) also keeps each evaluation's weights,
and the trajectory has a point at every evaluation.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from countlib.analysis.probe import probe_layers
from countlib.analysis.runs import DEFAULT_SPLITS, kept_checkpoints, load_run
from countlib.analysis.states import capture


def development(
    run_dir: str | Path,
    *,
    splits: tuple[str, ...] = DEFAULT_SPLITS,
    per_split: int = 64,
    target: str = "count_mod",
    modulus: int = 10,
    component: str = "residual",
) -> pd.DataFrame:
    """`probe_layers` of ``component`` at each kept checkpoint, with columns checkpoint, step,
    and the run's own IND and OOD accuracy there (``run_ind``, ``run_ood``)."""
    frames = []
    for checkpoint, step in kept_checkpoints(run_dir):
        run = load_run(run_dir, checkpoint)
        chosen = run.batch(splits, per_split)
        captured = capture(run.model, chosen.batch, run.task, splits=chosen.splits, attention=False)
        table = probe_layers(captured, target=target, modulus=modulus, components=[component])
        frames.append(
            table.assign(
                checkpoint=checkpoint,
                step=step,
                run_ind=run.point.get("ind"),
                run_ood=run.point.get("ood"),
            )
        )
    if not frames:
        raise ValueError(f"{run_dir} has no checkpoint with a recorded step")
    return pd.concat(frames, ignore_index=True)


def plot_development(table: pd.DataFrame, title: str = ""):
    """Probe accuracy against training step, a line per layer, IND and OOD side by side; the
    run's own accuracy in black."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), sharey=True)
    own = table.drop_duplicates("step")
    for ax, where in zip(axes, ("IND", "OOD"), strict=True):
        data = table[table["where"] == where]
        sns.lineplot(data=data, x="step", y="accuracy", hue="layer", marker="o", ax=ax,
                     palette="crest")  # fmt: skip
        ax.plot(own["step"], own[f"run_{where.lower()}"], "k--", marker="s", label="run accuracy")
        ax.set(title=f"probe: {table['target'].iloc[0]}, {where} positions", ylim=(-0.02, 1.02))
        ax.legend(fontsize=7, title="layer", title_fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
