"""Pick each configuration's learning rate from a selection sweep, on in-distribution accuracy only.

Rule (fixed before the sweep ran): within a group of runs that differ only in ``lr``, take the
candidates whose best validation (IND) accuracy reaches 95 %, and of those the lowest lr; if none
reaches it, the one with the highest IND. OOD numbers are never read.

    python experiments/choose_lr.py runs/selection > experiments/smoke_selection.md
"""

from __future__ import annotations

import sys

import pandas as pd

from countlib.report import FIT_IND, config_labels
from countlib.results import load_runs

GROUP = ["task", "model", "pe", "layers", "hidden", "heads", "causal"]


def choose(group: pd.DataFrame) -> pd.Series:
    fitted = group[group["best_val_ind"] >= FIT_IND]
    if len(fitted):
        return fitted.sort_values("lr").iloc[0]
    return group.sort_values("best_val_ind", ascending=False).iloc[0]


def main(runs_dir: str) -> None:
    runs = load_runs(runs_dir)
    runs = runs[runs["status"] != "incomplete"]
    by = [c for c in GROUP if c in runs and runs[c].notna().any()]
    runs = runs.assign(config=config_labels(runs))
    print("| task | configuration | steps | lr candidates: best IND | chosen lr | fits |")
    print("|---|---|---|---|---|---|")
    for _, group in runs.groupby(by, dropna=False):
        pick = choose(group)
        tried = ", ".join(
            f"{lr:g}: {100 * ind:.1f} %"
            for lr, ind in group.sort_values("lr")[["lr", "best_val_ind"]].itertuples(index=False)
        )
        label = pick["config"].replace(f"lr={pick['lr']:g}", "").strip()
        fits = "yes" if pick["best_val_ind"] >= FIT_IND else "no"
        print(
            f"| {pick['task']} | {label} | {int(pick['steps'])} | {tried} | {pick['lr']:g} "
            f"| {fits} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/selection")
