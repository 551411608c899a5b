"""Collect run directories into tables and aggregate over seeds as the paper reports them."""

from __future__ import annotations

import csv
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from countlib.plateau import PLATEAU_EVALS, PLATEAU_TOLERANCE, history_of, plateaued
from countlib.train.records import SET_ASIDE_MARK, RunDir, RunRecordError

#: Which checkpoint's numbers a table reports.
CHECKPOINT_RULES = ("best_ood", "best_val", "final")
#: The checkpoint an analysis reads by default: the run's best validation (IND) accuracy, i.e.
#: the model as fitted. Whether it fits is then the tables' test (best validation IND), and a run
#: whose best-OOD checkpoint came before it fitted is still analysed as the model it became.
ANALYSED_CHECKPOINT = "best_val"


class BrokenRunWarning(UserWarning):
    """A run left out of a table because one of its records cannot be read."""


def find_runs(root: str | Path | Iterable[str | Path]) -> list[RunDir]:
    """Run directories under ``root`` (or the given directories), complete or not; not those
    that ``countlib sweep --retrain-broken`` moved aside (``<name>.broken-<time>``)."""
    roots = [root] if isinstance(root, str | Path) else list(root)
    found = []
    for item in map(Path, roots):
        candidates = [item] if (item / "config.json").exists() else sorted(item.glob("*/"))
        found += [
            RunDir(c)
            for c in candidates
            if (c / "config.json").exists() and SET_ASIDE_MARK not in c.name
        ]
    return found


def _row(run: RunDir) -> dict[str, object]:
    config = run.read_config()
    row: dict[str, object] = {
        "run": run.path.name,
        "path": str(run.path),
        "task": config["task"],
        "model": config["model"],
        "seed": config["seed"],
        "lr": config["optim"]["lr"],
        "steps_planned": config["optim"]["steps"],
        "position_scheme": config["position_scheme"],
        **{k: v for k, v in config["model_options"].items()},
    }
    # a run being trained has no summary yet; a final one (COMPLETE) without one is broken
    if not run.summary.exists() and not run.is_complete():
        env = run.read_environment() if run.environment.exists() else {}
        return row | {"status": "incomplete", "config_hash": env.get("config_hash")}
    if run.environment.exists():
        run.read_environment()  # the provenance page reads it: broken, it would stop the book
    summary = run.read_summary()
    row |= {
        "config_hash": summary["config_hash"],
        "status": summary["status"],
        "steps": summary["steps"],
        "wall_time_s": summary["wall_time_s"],
        "parameters": summary["parameters"],
        "state_size": summary["state_size"],
    }
    for rule in CHECKPOINT_RULES:
        point = summary.get(rule) or {}
        row[f"{rule}_step"] = point.get("step")
        row[f"{rule}_ind"] = point.get("ind")
        row[f"{rule}_ood"] = point.get("ood")
    return row | _stop(run, summary)


def _stop(run: RunDir, summary: dict) -> dict[str, object]:
    """Why a run stopped (``plateau`` or ``cap`` under a plateau rule, else ``steps``) and
    whether it had stopped improving (`countlib.plateau`): a run with a rule recorded it; one
    trained to a fixed budget is judged on its evaluations by the profiles' rule, so that a low
    value read from a run still improving leaves a verdict undecided (`countlib.claims`)."""
    stop = summary.get("stop")
    if stop is not None:
        return {"stop_reason": stop["reason"], "plateaued": bool(stop["plateaued"])}
    if not run.eval_log.exists():
        return {"stop_reason": "steps", "plateaued": False}
    with run.eval_log.open(newline="") as handle:
        history = history_of(csv.DictReader(handle), summary["metrics"])
    return {
        "stop_reason": "steps",
        "plateaued": plateaued(history, PLATEAU_EVALS, PLATEAU_TOLERANCE),
    }


def load_runs(root: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """One row per run: its config, status, and IND/OOD under every checkpoint rule.

    A run with a record that cannot be read (a truncated or emptied file, a summary missing
    beside COMPLETE) is left out with a `BrokenRunWarning` naming the file, so that one bad
    record costs one run, not the table; a book counts it among the runs without results.
    """
    rows = []
    for run in find_runs(root):
        try:
            rows.append(_row(run))
        except RunRecordError as err:
            warnings.warn(f"run {run.path.name} left out: {err}", BrokenRunWarning, stacklevel=2)
    return pd.DataFrame(rows)


def load_eval_history(root: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """The tidy evaluation history (step, split, metric, value) of every run, with its name."""
    frames = []
    for run in find_runs(root):
        if run.eval_log.exists():
            frames.append(pd.read_csv(run.eval_log).assign(run=run.path.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_tally(
    root: str | Path | Iterable[str | Path], kind: str = "position", *, step: str | int = "last"
) -> pd.DataFrame:
    """Accuracy by position, count or length (`countlib.train.records.TALLIES`) of every run
    at one evaluation step ("last", "all" or a step number), with an ``accuracy`` column."""
    frames = []
    for run in find_runs(root):
        path = run.tally(kind)
        if not path.exists():
            continue
        table = pd.read_csv(path, dtype={kind: str} if kind == "count" else None)
        table = table.assign(run=run.path.name)
        if step != "all":
            table = table[table["step"] == (table["step"].max() if step == "last" else step)]
        frames.append(table.assign(accuracy=table["correct"] / table["total"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def aggregate(
    runs: pd.DataFrame,
    by: Sequence[str] = ("task", "model", "layers", "hidden"),
    *,
    rule: str = "best_ood",
) -> pd.DataFrame:
    """Best-of-k and median-of-k IND/OOD over seeds, at the checkpoint chosen by ``rule``.

    "Best" picks the seed with the highest OOD (its IND is reported beside it), as the paper's
    best-of-5 tables do. Diverged runs count with their recorded numbers; incomplete runs are
    left out and counted in ``incomplete``.
    """
    if rule not in CHECKPOINT_RULES:
        raise ValueError(f"unknown checkpoint rule {rule!r}; choose from {CHECKPOINT_RULES}")
    by = [col for col in by if col in runs.columns]
    done = runs[runs["status"] != "incomplete"] if "status" in runs else runs.iloc[0:0]
    rows = []
    for key, group in done.groupby(by, dropna=False):
        ind, ood = group[f"{rule}_ind"].astype(float), group[f"{rule}_ood"].astype(float)
        best = group.loc[ood.fillna(-1).idxmax()]
        rows.append(
            dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
            | {
                "seeds": len(group),
                "best_ind": float(best[f"{rule}_ind"]),
                "best_ood": float(best[f"{rule}_ood"]),
                "median_ind": float(ind.median()),
                "median_ood": float(ood.median()),
                "diverged": int((group["status"] == "diverged").sum()),
            }
        )
    result = pd.DataFrame(rows)
    incomplete = runs[runs["status"] == "incomplete"] if "status" in runs else runs.iloc[0:0]
    if len(result) and len(incomplete):
        counts = incomplete.groupby(by, dropna=False).size().rename("incomplete")
        result = result.merge(counts, left_on=by, right_index=True, how="left").fillna(
            {"incomplete": 0}
        )
    return result
