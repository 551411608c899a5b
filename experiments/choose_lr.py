"""Pick each configuration's learning rate and budget from a selection sweep, on IND only.

Rule (fixed before the sweeps ran): within a group of runs that differ only in ``lr`` (and
seed), take the candidates whose best validation (IND) accuracy reaches 95 % on at least one
seed, and of those the lowest lr; if none reaches it, the one with the highest IND. The budget
column is the first evaluation step at which a seed of the chosen lr reached 95 % IND. OOD
numbers are never read.

With ``--every-seed`` (round 5, issue 26; fixed before its sweep ran), a candidate fits only
where *each* seed's best IND clears the fit bar by the verdict band (95 % + 3 points, the margin
a control needs in the book: `countlib.claims.VERDICT_BAND`), and its budget is the step at
which the *last* seed first did: a setting that fits on one seed only would decide a claim on
that seed's luck. Where no candidate fits, the one whose worst seed has the highest IND (the
same reading of "every seed"; written down when round 5's 4-layer group, where the best seed of
both lrs read 100 %, first needed it).

    python experiments/choose_lr.py runs/selection > experiments/smoke_selection.md

With ``--write`` it also updates the chosen settings the claim-deciding profiles train with
(``experiments/chosen_settings.yaml``, `countlib.selections`): each configuration that the
``--spec`` files trained, under the record and round given, in place of the file's entry for it
(its hand-set ``budget`` and ``note`` kept); a configuration the file does not hold yet is only
listed, or added with ``--add`` (a profile must then name it: tests/test_profiles.py checks that
every entry is used). Nothing is trained::

    python experiments/choose_lr.py runs/selection3 --write experiments/chosen_settings.yaml \\
        --record experiments/claims_selection.md --round 4 \\
        --spec experiments/claims_selection_round4.yaml \\
        --spec experiments/claims_selection_round4b.yaml
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.claims import VERDICT_BAND
from countlib.formatting import FIT_IND, config_labels
from countlib.results import load_runs
from countlib.selections import Chosen, format_chosen, load_chosen, merge_chosen

GROUP = ["task", "model", "pe", "layers", "hidden", "heads", "causal", "negative_eigenvalues"]


#: The bar each seed must clear under ``--every-seed``.
SURE_FIT = FIT_IND + VERDICT_BAND


def first_fit_step(run_path: str, bar: float = FIT_IND) -> float:
    """The first trained evaluation whose IND metric reaches ``bar`` (NaN if none)."""
    path = Path(run_path)
    split, metric = json.loads((path / "summary.json").read_text())["metrics"]["ind"].split("/")
    history = pd.read_csv(path / "eval.csv")
    ind = history[(history["split"] == split) & (history["metric"] == metric)]
    fitted = ind[(ind["step"] > 0) & (ind["value"] >= bar - 1e-12)]
    return float(fitted["step"].min()) if len(fitted) else float("nan")


def per_lr(group: pd.DataFrame, every_seed: bool = False) -> pd.DataFrame:
    """One row per lr: the best IND over seeds, each seed's IND, whether it fits and the first
    fitting step (the module's rule; ``every_seed``: every seed by `SURE_FIT`, the last one's)."""
    rows = []
    for lr, runs in group.groupby("lr"):
        if every_seed:
            steps = [first_fit_step(p, SURE_FIT) for p in runs["path"]]
            fits = bool(runs["best_val_ind"].min() >= SURE_FIT - 1e-12)
            fit_step = max(steps) if fits else float("nan")
            rank = runs["best_val_ind"].min()
        else:
            steps = [first_fit_step(p) for p in runs["path"]]
            fits = bool(runs["best_val_ind"].max() >= FIT_IND)
            fit_step = min((s for s in steps if s == s), default=float("nan"))  # NaN: none
            rank = runs["best_val_ind"].max()
        rows.append(
            {
                "lr": lr,
                "ind": runs["best_val_ind"].max(),
                "seeds": " / ".join(f"{100 * v:.0f}" for v in runs["best_val_ind"]),
                "fits": fits,
                "rank": rank,  # what ranks the candidates when none fits
                "fit_step": fit_step,
                "steps": int(runs["steps"].max()),
            }
        )
    return pd.DataFrame(rows)


def choose(candidates: pd.DataFrame) -> pd.Series:
    fitted = candidates[candidates["fits"]]
    if len(fitted):
        return fitted.sort_values("lr").iloc[0]
    return candidates.sort_values("rank", ascending=False, kind="stable").iloc[0]


def selections(runs_dir: str, every_seed: bool = False) -> list[dict[str, Any]]:
    """Per configuration group: its runs, label, candidates and pick (the rule above)."""
    runs = load_runs(runs_dir)
    runs = runs[runs["status"] != "incomplete"]
    by = [c for c in GROUP if c in runs and runs[c].notna().any()]
    runs = runs.assign(config=config_labels(runs))
    groups = []
    for _, group in runs.groupby(by, dropna=False):
        first = group.iloc[0]
        label = first["config"].replace(f"lr={first['lr']:g}", "").strip()
        if first.get("negative_eigenvalues") is True:  # not among config_labels' columns
            label += ", transitions in [-1, 1]"
        candidates = per_lr(group, every_seed)
        groups.append(
            {"runs": group, "label": label, "candidates": candidates, "pick": choose(candidates)}
        )
    return groups


def markdown(groups: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| task | configuration | steps | lr: best IND (each seed's, %) | chosen lr "
        "| fits | first fitting step |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        pick, first = group["pick"], group["runs"].iloc[0]
        tried = ", ".join(
            f"{c.lr:g}: {100 * c.ind:.1f} % ({c.seeds})" for c in group["candidates"].itertuples()
        )
        fits = "yes" if pick["fits"] else "no"
        step = "-" if pd.isna(pick["fit_step"]) else f"{int(pick['fit_step'])}"
        lines.append(
            f"| {first['task']} | {group['label']} | {pick['steps']} | {tried} | {pick['lr']:g} "
            f"| {fits} | {step} |"
        )
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """A pandas cell as YAML writes it: 4.0 (a column with gaps is float) as 4, numpy as Python."""
    value = value.item() if hasattr(value, "item") else value
    return int(value) if isinstance(value, float) and value.is_integer() else value


def chosen_entries(
    groups: Sequence[dict[str, Any]], record: str, round_: int, specs: Sequence[str]
) -> list[Chosen]:
    """The groups whose chosen runs one of ``specs`` trained, as entries of ``record``'s round
    ``round_``; each names the spec that trained its chosen lr's longest run."""
    from countlib.sweep import expand, load_spec  # torch: only to name the specs' runs

    spec_of = {run.name: spec for spec in specs for run in expand(load_spec(spec))}
    entries = []
    for group in groups:
        pick, runs = group["pick"], group["runs"]
        chosen = runs[runs["lr"] == pick["lr"]]
        longest = chosen[chosen["steps"] == chosen["steps"].max()]["run"]
        spec = next((spec_of[name] for name in longest if name in spec_of), None)
        if spec is None:  # another round trained the runs its budget comes from
            continue
        first = runs.iloc[0]
        config = {k: _plain(first[k]) for k in GROUP[1:] if k in runs and pd.notna(first[k])}
        fit = pick["fit_step"]
        entries.append(
            Chosen(
                record,
                round_,
                spec,
                str(first["task"]),
                config,
                int(pick["steps"]),
                float(pick["lr"]),
                bool(pick["fits"]),
                None if pd.isna(fit) else int(fit),
            )
        )
    return entries


def write(groups: Sequence[dict[str, Any]], args: argparse.Namespace) -> None:
    path = Path(args.write)
    fresh = chosen_entries(groups, args.record, args.round, args.spec)
    merge = merge_chosen(load_chosen(path) if path.exists() else [], fresh, add=args.add)
    path.write_text(format_chosen(merge.entries))
    report = [
        ("changed", merge.changed),
        ("added", merge.added),
        ("not in the file (--add adds them)", merge.not_in_file),
    ]
    print(
        f"{path}: {len(fresh)} configurations of {args.record} round {args.round}", file=sys.stderr
    )
    for what, lines in report:
        for line in lines:
            print(f"  {what}: {line}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs_dir", nargs="?", default="runs/selection")
    parser.add_argument("--write", metavar="FILE.yaml", help="update this chosen-settings file")
    parser.add_argument("--record", help="with --write: the experiments/*.md reporting them")
    parser.add_argument("--round", type=int, help="with --write: the record's round")
    parser.add_argument(
        "--spec",
        action="append",
        default=[],
        help="with --write: a spec of this round (repeatable)",
    )
    parser.add_argument("--add", action="store_true", help="with --write: add new entries too")
    parser.add_argument(
        "--every-seed",
        action="store_true",
        help="fit on every seed by the verdict band; budget: the last seed's first fit",
    )
    args = parser.parse_args(argv)
    if args.write and not (args.record and args.round is not None and args.spec):
        parser.error("--write needs --record, --round and at least one --spec")
    groups = selections(args.runs_dir, args.every_seed)
    print(markdown(groups))
    if args.write:
        write(groups, args)


if __name__ == "__main__":
    main()
