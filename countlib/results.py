"""Collect run directories into tables and aggregate over seeds as the paper reports them."""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from pandas.api.types import is_numeric_dtype

from countlib.plateau import PLATEAU_EVALS, PLATEAU_TOLERANCE, history_of, plateaued
from countlib.train.records import (
    RETRAIN_HINT,
    SET_ASIDE_MARK,
    TALLIES,
    RunDir,
    RunRecordError,
)

#: Which checkpoint's numbers a table reports.
CHECKPOINT_RULES = ("best_ood", "best_val", "final")
#: The checkpoint an analysis reads by default: the run's best validation (IND) accuracy, i.e.
#: the model as fitted. Whether it fits is then the tables' test (best validation IND), and a run
#: whose best-OOD checkpoint came before it fitted is still analysed as the model it became.
ANALYSED_CHECKPOINT = "best_val"
#: The status `load_runs` gives a finished run whose records fail their checks (`check_records`):
#: its row has no numbers, and a table cell of it says "damaged record".
DAMAGED = "damaged"
#: Bytes read from the end of a CSV record to find its last row (`_last_step`).
_TAIL_BYTES = 4096


class BrokenRunWarning(UserWarning):
    """A run left out of a table, or shown as damaged, because one of its records cannot be
    read or is not what the run recorded when it completed."""


def check_records(run: RunDir, summary: dict) -> None:
    """RunRecordError naming the file where a finished run's records are not as it left them:
    its checksums (`RunDir.verify`, weights by size only: a reader of weights hashes them), and,
    for a run older than checksums too, eval.csv and each tally ending with a whole row at the
    run's final evaluation (a file cut short ends earlier, or in the middle of a row)."""
    run.verify(weights=())
    final = (summary.get("final") or {}).get("step")
    for path in (run.eval_log, *map(run.tally, TALLIES)):
        if final is not None and path.exists() and _last_step(path) != final:
            raise RunRecordError(
                f"{path} is a damaged record: it ends at step {_last_step(path)}, but the run's "
                f"final evaluation is step {final} (cut short)"
            )


def check_run(run: RunDir) -> None:
    """Every check of a finished run: those of the sweep's skip of it (config and summary
    readable, every result file as recorded, weights hashed too) and of `check_records`, and
    eval.csv and each tally parsed whole (`countlib runs verify` and ``stamp``)."""
    check_records(run, run.read_final())
    for path in (run.eval_log, *map(run.tally, TALLIES)):
        if path.exists():
            read_csv_record(path, numeric=("step",))


def verify_runs(
    root: str | Path | Iterable[str | Path], *, stamp: bool = False
) -> dict[str, list[str]]:
    """The finished runs under ``root`` by what `check_run` finds: ``verified`` (they have
    checksums), ``unstamped`` (they completed before countlib wrote checksums; the other checks
    passed) and ``damaged`` (one line each: the file and what is wrong with it). ``stamp``
    gives each unstamped run its checksums.json, after those checks, and lists it ``stamped``."""
    found: dict[str, list[str]] = {"verified": [], "unstamped": [], "stamped": [], "damaged": []}
    for run in (run for run in find_runs(root) if run.is_complete()):
        try:
            check_run(run)
        except RunRecordError as err:
            found["damaged"].append(str(err))
            continue
        if run.checksums.exists():
            found["verified"].append(run.path.name)
        elif stamp:
            run.write_checksums()
            found["stamped"].append(run.path.name)
        else:
            found["unstamped"].append(run.path.name)
    return found


def _last_step(path: Path) -> int | None:
    """The step of a CSV record's last row; RunRecordError if the file ends inside a row or
    that row has no step; None for a header alone."""
    with path.open("rb") as handle:
        handle.seek(0, io.SEEK_END)
        handle.seek(max(0, handle.tell() - _TAIL_BYTES))
        tail = handle.read()
    if not tail.endswith(b"\n"):
        raise RunRecordError(f"{path} is a damaged record: it ends inside a row (truncated)")
    lines = tail.splitlines()
    if len(lines) < 2 and len(tail) < _TAIL_BYTES:
        return None  # the header alone
    first = lines[-1].split(b",", 1)[0]
    if not first.isdigit():
        raise RunRecordError(f"{path} is a damaged record: its last row has no step ({first!r})")
    return int(first)


def _warn(run: RunDir, what: str, err: RunRecordError) -> None:
    warnings.warn(f"run {run.path.name} {what}: {err}; {RETRAIN_HINT}", BrokenRunWarning,
                  stacklevel=3)  # fmt: skip


def _checked(run: RunDir, what: str) -> bool:
    """Whether the records of ``run`` may be read (`check_records`, where it is final); if
    not, a `BrokenRunWarning` naming the file says that it was ``what``."""
    if not run.is_complete():
        return True
    try:
        check_records(run, run.read_summary())
    except RunRecordError as err:
        _warn(run, what, err)
        return False
    return True


def read_csv_record(
    path: Path, numeric: Sequence[str], dtype: dict[str, type] | None = None
) -> pd.DataFrame:
    """A run's CSV record as a DataFrame whose ``numeric`` columns hold numbers; else
    RunRecordError naming the file (garbled, empty, not text, a column missing or a number
    that is not one), never pandas' own error."""
    try:
        table = pd.read_csv(path, dtype=dtype)
    except ValueError as err:  # pandas' ParserError and EmptyDataError, UnicodeDecodeError
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunRecordError(f"{path} is a damaged record: not a readable CSV ({reason})") from None
    bad = [col for col in numeric if col not in table or not is_numeric_dtype(table[col])]
    if bad:
        raise RunRecordError(f"{path} is a damaged record: column {', '.join(bad)} is not numbers")
    return table


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
    row["config_hash"] = summary["config_hash"]
    try:
        if run.is_complete():
            check_records(run, summary)
        stop = _read_stop(run, summary)
    except RunRecordError as err:
        _warn(run, "shown as a damaged record", err)
        return row | {"status": DAMAGED, "damage": str(err)}
    row |= {
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
    return row | stop


def _read_stop(run: RunDir, summary: dict) -> dict[str, object]:
    """`stop_record`, with an eval.csv it cannot parse reported as RunRecordError naming it."""
    try:
        return stop_record(run, summary)
    except (ValueError, KeyError) as err:
        raise RunRecordError(
            f"{run.eval_log} is a damaged record: cannot be read ({err})"
        ) from None


def stop_record(run: RunDir, summary: dict) -> dict[str, object]:
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

    A run whose config.json or summary.json cannot be read (a truncated or emptied file, a
    summary missing beside COMPLETE) is left out with a `BrokenRunWarning` naming the file, so
    that one bad record costs one run, not the table; a book counts it among the runs without
    results. A finished run whose other records fail their checks (`check_records`: a file
    edited, cut short or missing since it completed) is kept with status `DAMAGED`, the reason
    in ``damage`` and no numbers, with a `BrokenRunWarning` too: its table cell says so.
    """
    rows = []
    for run in find_runs(root):
        try:
            rows.append(_row(run))
        except RunRecordError as err:
            warnings.warn(f"run {run.path.name} left out: {err}", BrokenRunWarning, stacklevel=2)
    return pd.DataFrame(rows)


def load_eval_history(root: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """The tidy evaluation history (step, split, metric, value) of every run, with its name.

    A run whose records fail their checks (`check_records`) or whose eval.csv cannot be parsed
    is left out with a `BrokenRunWarning` naming the file."""
    frames = []
    for run in find_runs(root):
        if run.eval_log.exists() and _checked(run, "left out"):
            try:
                history = read_csv_record(run.eval_log, numeric=("step", "value"))
            except RunRecordError as err:
                _warn(run, "left out", err)
                continue
            frames.append(history.assign(run=run.path.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def load_tally(
    root: str | Path | Iterable[str | Path], kind: str = "position", *, step: str | int = "last"
) -> pd.DataFrame:
    """Accuracy by position, count or length (`countlib.train.records.TALLIES`) of every run
    at one evaluation step ("last", "all" or a step number), with an ``accuracy`` column.

    A run whose records fail their checks (`check_records`) or whose tally cannot be parsed is
    left out with a `BrokenRunWarning` naming the file."""
    frames = []
    for run in find_runs(root):
        path = run.tally(kind)
        if not path.exists() or not _checked(run, "left out"):
            continue
        try:
            table = read_csv_record(
                path, numeric=("step", "correct", "total"),
                dtype={kind: str} if kind == "count" else None,
            )  # fmt: skip
        except RunRecordError as err:
            _warn(run, "left out", err)
            continue
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
    left out and counted in ``incomplete``, damaged ones (`DAMAGED`) left out.
    """
    if rule not in CHECKPOINT_RULES:
        raise ValueError(f"unknown checkpoint rule {rule!r}; choose from {CHECKPOINT_RULES}")
    by = [col for col in by if col in runs.columns]
    unfinished = ("incomplete", DAMAGED)
    done = runs[~runs["status"].isin(unfinished)] if "status" in runs else runs.iloc[0:0]
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
