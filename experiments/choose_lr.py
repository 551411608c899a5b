"""Pick each configuration's learning rate and budget from a selection sweep, on IND only.

Rule (fixed before the sweeps ran): within a group of runs that differ only in ``lr`` (and
seed), take the candidates whose best validation (IND) accuracy reaches 95 % on at least one
seed, and of those the lowest lr; if none reaches it, the one with the highest IND. The budget
column is the first evaluation step at which a seed of the chosen lr reached 95 % IND. OOD
numbers are never read.

    python experiments/choose_lr.py runs/selection > experiments/smoke_selection.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from countlib.report import FIT_IND, config_labels
from countlib.results import load_runs

GROUP = ["task", "model", "pe", "layers", "hidden", "heads", "causal", "negative_eigenvalues"]


def first_fit_step(run_path: str) -> float:
    """The first trained evaluation whose IND metric reaches `FIT_IND` (NaN if none)."""
    path = Path(run_path)
    split, metric = json.loads((path / "summary.json").read_text())["metrics"]["ind"].split("/")
    history = pd.read_csv(path / "eval.csv")
    ind = history[(history["split"] == split) & (history["metric"] == metric)]
    fitted = ind[(ind["step"] > 0) & (ind["value"] >= FIT_IND)]
    return float(fitted["step"].min()) if len(fitted) else float("nan")


def per_lr(group: pd.DataFrame) -> pd.DataFrame:
    """One row per lr: the best IND over seeds, each seed's IND and the first fitting step."""
    rows = []
    for lr, runs in group.groupby("lr"):
        steps = [first_fit_step(p) for p in runs["path"]]
        rows.append(
            {
                "lr": lr,
                "ind": runs["best_val_ind"].max(),
                "seeds": " / ".join(f"{100 * v:.0f}" for v in runs["best_val_ind"]),
                "fit_step": min((s for s in steps if s == s), default=float("nan")),  # NaN: none
                "steps": int(runs["steps"].max()),
            }
        )
    return pd.DataFrame(rows)


def choose(candidates: pd.DataFrame) -> pd.Series:
    fitted = candidates[candidates["ind"] >= FIT_IND]
    if len(fitted):
        return fitted.sort_values("lr").iloc[0]
    return candidates.sort_values("ind", ascending=False).iloc[0]


def main(runs_dir: str) -> None:
    runs = load_runs(runs_dir)
    runs = runs[runs["status"] != "incomplete"]
    by = [c for c in GROUP if c in runs and runs[c].notna().any()]
    runs = runs.assign(config=config_labels(runs))
    print(
        "| task | configuration | steps | lr: best IND (each seed's, %) | chosen lr "
        "| fits | first fitting step |"
    )
    print("|---|---|---|---|---|---|---|")
    for _, group in runs.groupby(by, dropna=False):
        candidates = per_lr(group)
        pick = choose(candidates)
        tried = ", ".join(
            f"{c.lr:g}: {100 * c.ind:.1f} % ({c.seeds})" for c in candidates.itertuples()
        )
        first = group.iloc[0]
        label = first["config"].replace(f"lr={first['lr']:g}", "").strip()
        if first.get("negative_eigenvalues") is True:  # not among config_labels' columns
            label += ", transitions in [-1, 1]"
        fits = "yes" if pick["ind"] >= FIT_IND else "no"
        step = "-" if pd.isna(pick["fit_step"]) else f"{int(pick['fit_step'])}"
        print(
            f"| {first['task']} | {label} | {pick['steps']} | {tried} | {pick['lr']:g} "
            f"| {fits} | {step} |"
        )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/selection")
