"""Make the README's figure, docs/images/readme_figure.png, from real countlib runs.

Tiny CPU runs, not the paper's scale: on mod 10 with a BOS token (`mod10_bos`: train on up to
50 tokens, test on 51-100), an LSTM (1 layer, width 64, 600 steps, lr 1e-2) and a 1-layer RoPE
Transformer (width 32, 4 heads, 1,500 steps, lr 3e-3, no warmup), seeds 1-3 each. The figure
shows each run's accuracy at every position of the OOD split, at its best-validation checkpoint
(chosen on in-distribution accuracy only). About three minutes on one core of a busy 2-core CPU::

    .venv/bin/python docs/images/make_readme_figure.py            # runs land in runs/readme_figure

Finished runs are reused: a second call only redraws the figure.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.report import tally_at
from countlib.results import load_runs
from countlib.tasks import get_task
from countlib.train import train

HERE = Path(__file__).resolve().parent
TASK = "mod10_bos"
SEEDS = (1, 2, 3)
#: label -> (family, options, steps, lr)
MODELS = {
    "LSTM (1 layer, width 64, 600 steps)": ("lstm", {"layers": 1, "hidden": 64}, 600, 1e-2),
    "Transformer, RoPE (1 layer, width 32, 4 heads, 1,500 steps)": (
        "transformer",
        {"layers": 1, "hidden": 32, "heads": 4, "pe": "rope"},
        1500,
        3e-3,
    ),
}


def configs() -> list[tuple[str, RunConfig]]:
    return [
        (
            label,
            RunConfig(
                task=TASK,
                model=family,
                model_options=dict(options),
                optim=OptimConfig(steps=steps, lr=lr, warmup_steps=0),
                eval=EvalConfig(every=250),
                seed=seed,
            ),
        )
        for label, (family, options, steps, lr) in MODELS.items()
        for seed in SEEDS
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-dir", default="runs/readme_figure")
    parser.add_argument("--out", default=str(HERE / "readme_figure.png"))
    args = parser.parse_args()

    start = time.perf_counter()
    labels = {}
    for label, config in configs():
        result = train(config, args.runs_dir, device="cpu")
        labels[result.run_dir.path.name] = label
    runs = load_runs(args.runs_dir)
    runs = runs[runs["run"].isin(labels)].assign(label=lambda r: r["run"].map(labels))
    for row in runs.sort_values(["label", "seed"]).itertuples():
        print(
            f"{row.label}, seed {row.seed}: best-val step {row.best_val_step}, "
            f"IND {row.best_val_ind:.1%}, OOD {row.best_val_ood:.1%}"
        )
    table = tally_at(runs, "position", rule="best_val", split="ood")
    plot(table, args.out)
    print(f"wrote {args.out} in {time.perf_counter() - start:.0f} s")


def plot(table, out: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    edge = get_task(TASK).max_train_length  # positions at or beyond it are extrapolation
    fig, ax = plt.subplots(figsize=(7.5, 4))
    beyond = "positions beyond the longest training sequence"
    ax.axvspan(edge - 0.5, table["position"].max() + 1, color="0.9", zorder=0, label=beyond)
    ax.axvline(edge - 0.5, color="k", linestyle="--", linewidth=1)
    ax.text(
        edge / 2, 50, "training lengths\n(up to 50 tokens)", fontsize=9, ha="center", va="center"
    )
    for label, color in zip(MODELS, ["C0", "C3"], strict=True):
        data = table[table["label"] == label]
        for _, seed in data.groupby("seed"):
            ax.plot(seed["position"], 100 * seed["accuracy"], color=color, alpha=0.3, lw=0.8)
        mean = data.groupby("position")["accuracy"].mean()
        ax.plot(
            mean.index,
            100 * mean.values,
            color=color,
            lw=2,
            label=f"{label}: mean of seeds 1-3, each seed faint",
        )
    ax.set_xlabel("position in the sequence (tokens after BOS)")
    ax.set_ylabel("accuracy at the position")
    ax.yaxis.set_major_formatter(PercentFormatter())
    ax.set_ylim(-3, 103)
    ax.set_xlim(0, table["position"].max() + 1)
    ax.set_title("Counting mod 10 beyond the training length (tiny CPU runs)", fontsize=11)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
