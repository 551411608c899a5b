"""The paper's tables (`countlib.paper`) over run records, rendered for the book.

A table is rows x columns, each a filter on the run table of `countlib.results.load_runs`
(task, model, pe, layers, hidden, ...). A cell aggregates the seeds its filters select:
best-of-k or median-of-k of IND / OOD at the chosen checkpoint rule, in the metrics each task
declares (the first-token probes score the first position only). A cell without runs says
"missing", one with a run whose records fail their checks (`countlib.results.DAMAGED`) "damaged
record"; it never shows a number that was not produced.

Every cell also shows the paper's value for it (`countlib.paper_results`; Chang & Bisk, ICLR
2025) and whether the paper's OOD lies in the range of countlib's seeds: from the lowest to the
highest seed OOD at the cell's checkpoint rule, widened by `PAPER_TOLERANCE` (5 points) on each
side. The margin is one rule for any number of seeds: with one seed, "in range" means within 5
points of it; more seeds can only widen the range. It compares OOD only, and a paper value of
another scale (seeds, steps, width) is expected to differ: a cell out of range is a difference to
report, not an error. `agreement` counts the cells of a table that agree; `render_html` states
the count under the table.

A cell whose runs were all trained below the shortest budget any claim-deciding profile gives a
claim's cell (`structural_check`: the overnight profile's 100-step fillers) decides
nothing: it reads "structural check, N steps: not a result" in grey, keeps the paper's value
beside it, names the command that trains it at a deciding scale (`deciding_command`), and is
never shaded a success nor compared with the paper.

The Findings page shows the claims (`countlib.claims`) judged on these cells: `findings_html`,
`verdict_matrix_html` and `own_findings_html` render the verdicts.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.claims import FAILS, HOLDS, UNDECIDED, CellRef, Finding
from countlib.formatting import (
    FIT_IND,
    STRUCTURAL_STYLE,
    SUCCESS_STYLE,
    config_labels,
    generalised,
    percent,
)
from countlib.paper import PAPER_TABLES, TABLES, Filter, PaperTable, get_table
from countlib.paper_results import CITATION, PAPER_NOTES, paper_value
from countlib.profiles import DECIDING, claim_plan, seeded_profile
from countlib.results import DAMAGED, aggregate
from countlib.train.records import RETRAIN_HINT, precision_name

__all__ = [
    "PAPER_TABLES",
    "TABLES",
    "PaperTable",
    "agreement",
    "get_table",
    "table_frame",
    "table_runs",
]

#: How far (fraction, 0.05 = 5 points) the paper's OOD may lie outside the seeds' OOD range of a
#: cell and still count as in range.
PAPER_TOLERANCE = 0.05

#: The shortest budget (steps) with which a claim-deciding profile (`countlib.profiles.DECIDING`)
#: trains a cell that a claim reads, each budget chosen where selection saw cells fit (500 steps
#: today): a run planned shorter was never meant to fit, so its numbers decide nothing.
DECIDING_STEPS: int = min(rule.settings["steps"] for rules in DECIDING.values() for rule in rules)
#: The profile that trains every table cell past the fillers: a cell no CPU profile trains for a
#: claim is decided there (`countlib.profiles.deciding_profiles` points undecided claims to it).
WHOLE_GRID_PROFILE = "paper-lite"


def table_runs(runs: pd.DataFrame, spec: PaperTable) -> pd.DataFrame:
    """The runs behind a table's cells, each with its ``row`` and ``column`` label."""
    frames = [
        _select(runs, row, column).assign(row=row_label, column=col_label)
        for row_label, row in spec.rows
        for col_label, column in spec.columns
    ]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else runs.iloc[0:0]


def _select(runs: pd.DataFrame, *filters: Filter) -> pd.DataFrame:
    mask = pd.Series(True, index=runs.index)
    for key, value in {k: v for f in filters for k, v in f.items()}.items():
        if key not in runs.columns:
            return runs.iloc[0:0]
        mask &= runs[key] == value
    return runs[mask]


def structural_check(runs: pd.DataFrame) -> bool:
    """Whether runs decide nothing: each was planned for fewer steps than `DECIDING_STEPS`.

    The rule reads only the budget each run's config.json records (``steps_planned`` of
    `countlib.results.load_runs`), so it needs no profile and no manifest: a run is classed the
    same in any book, spec or runs directory, older records included, and a profile's filler
    budget (100 steps in ``countlib.profiles``) is not written here again. It agrees with the
    profiles' own account of each run (`countlib.profiles.explain`: every "structural check" of
    the CPU profiles is below the threshold, every run trained for a claim is not;
    tests/test_table_cells.py checks both). It is the budget as planned, not the steps trained:
    a run that diverged early is a result (a divergence), not a check. Runs without a recorded
    budget are never structural checks, nor is an empty set of runs.
    """
    if not len(runs) or "steps_planned" not in runs:
        return False
    steps = pd.to_numeric(runs["steps_planned"], errors="coerce")
    return bool(steps.notna().all() and (steps < DECIDING_STEPS).all())


@cache
def _deciding_profiles() -> dict[CellRef, str]:
    """Per table cell, the smallest claim-deciding profile that trains it for a claim."""
    found: dict[CellRef, str] = {}
    for name in reversed(DECIDING):  # DECIDING lists the smallest profile first: it wins
        for planned in claim_plan(DECIDING[name]):
            if planned.rule is not None:
                found |= dict.fromkeys(planned.cells, name)
    return found


def deciding_profile(spec: PaperTable, row: str, column: str) -> str:
    """The profile that trains a table cell at a scale meant to decide it: the smallest that
    trains the cell for a claim, else `WHOLE_GRID_PROFILE`."""
    return _deciding_profiles().get((spec.key, row, column), WHOLE_GRID_PROFILE)


def deciding_command(spec: PaperTable, row: str, column: str) -> str:
    """The command that trains a table cell with `deciding_profile`, restricted to the runs of
    the cell's table."""
    return f"countlib book --profile {deciding_profile(spec, row, column)} --table {spec.runs_of}"


def cell(runs: pd.DataFrame, spec: PaperTable, row: Filter, column: Filter, rule: str) -> dict:
    """IND / OOD of one cell with its seeds' OOD range, or {"missing": True} without runs (and
    ``damaged``, the names of its damaged runs, where one is: then no numbers at all);
    ``structural`` says whether its runs decide nothing (`structural_check`), and ``budget``
    then gives their planned steps."""
    chosen = _select(runs, row, column)
    damaged = list(chosen.loc[chosen["status"] == DAMAGED, "run"]) if len(chosen) else []
    if damaged:  # a cell with a damaged run shows no number: the others alone could mislead
        incomplete = int((chosen["status"] == "incomplete").sum())
        return {"missing": True, "damaged": damaged, "incomplete": incomplete}
    finished = chosen[chosen["status"] != "incomplete"] if len(chosen) else chosen
    if not len(finished):
        return {"missing": True, "incomplete": len(chosen)}
    agg = aggregate(finished, by=["task"], rule=rule).iloc[0]
    ood = finished[f"{rule}_ood"].astype(float)
    # whether a seed fitted its training data: its best validation IND over the whole run (the
    # checkpoint a rule such as best_ood picks may come before the run fitted)
    fitted = finished["best_val_ind"].astype(float).fillna(0)
    best_run = finished.loc[ood.fillna(-1).idxmax(), "run"]
    # the table's statistic over the seeds that fitted: what a verdict or a success reads (the
    # best-of-seeds OOD may come from a seed that never fitted: Table A5, SPE at d = 32, a seed
    # at 0 % IND all run read 100 % OOD)
    fitted_runs = finished[fitted >= FIT_IND]
    fit_ood = (
        float(aggregate(fitted_runs, by=["task"], rule=rule).iloc[0][f"{spec.statistic}_ood"])
        if len(fitted_runs)
        else float("nan")
    )
    structural = structural_check(finished)
    planned = finished["steps_planned"].max() if "steps_planned" in finished else float("nan")
    cap = int(planned) if pd.notna(planned) else None  # the longest budget its runs planned
    # seeds stopped while still improving (`countlib.results` ``plateaued``): a low value read
    # from them is a budget, not a finding (`countlib.claims`)
    improving = (
        ~finished["plateaued"].fillna(False).astype(bool) if "plateaued" in finished else None
    )
    return {
        "missing": False,
        "ind": agg[f"{spec.statistic}_ind"],
        "ood": agg[f"{spec.statistic}_ood"],
        "seeds": int(agg["seeds"]),
        "ood_min": ood.min(),  # NaN when no seed has an OOD value
        "ood_max": ood.max(),
        "runs": list(finished["run"]),
        "best_run": best_run,
        "fit_ind": float(fitted.max()),
        "fit_ood": fit_ood,  # NaN when no seed fitted
        # seeds that never fitted their training data: their OOD says nothing
        "unfit": int((fitted < FIT_IND).sum()),
        "incomplete": len(chosen) - len(finished),
        "structural": structural,
        "budget": cap if structural else None,
        "improving": None if improving is None else int(improving.sum()),
        "improving_fitted": None if improving is None else int(improving[fitted >= FIT_IND].sum()),
        "cap": cap,
    }


def table_frame(runs: pd.DataFrame, spec: PaperTable, rule: str = "best_ood") -> pd.DataFrame:
    """The table as a DataFrame of cell dicts (rows x columns labels)."""
    data = {
        col_label: [cell(runs, spec, row, col, rule) for _, row in spec.rows]
        for col_label, col in spec.columns
    }
    return pd.DataFrame(data, index=[label for label, _ in spec.rows])


def in_paper_range(c: dict, paper: tuple[float, float] | None) -> bool | None:
    """Whether the paper's OOD lies in the cell's seed range ± `PAPER_TOLERANCE`; None when
    the paper has no such cell, countlib has no OOD for it, or its runs decide nothing (a
    structural check is never compared with the paper)."""
    if paper is None or c["missing"] or c.get("structural") or pd.isna(c["ood_min"]):
        return None
    gap = max(c["ood_min"] - paper[1], paper[1] - c["ood_max"], 0.0)
    # rounded: a gap of exactly 5 points is in range; bool: numpy's would fail `is True`
    return bool(round(gap, 9) <= PAPER_TOLERANCE)


def _paper_html(c: dict, paper: tuple[float, float] | None) -> str:
    """The second line of a cell: the paper's IND / OOD and whether it is in range."""
    if paper is None:
        return '<small class="cl-paper">not in the paper</small>'
    text = f"paper {percent(paper[0])} / {percent(paper[1])}"
    verdict = in_paper_range(c, paper)
    if verdict is None:
        return f'<small class="cl-paper">{text}</small>'
    seeds = f"{percent(c['ood_min'])}-{percent(c['ood_max'])}"
    margin = percent(PAPER_TOLERANCE)
    title = f"paper OOD {percent(paper[1])}; countlib's seeds {seeds} ± {margin} points"
    word, cls = ("in range", "cl-paper-in") if verdict else ("out of range", "cl-paper-out")
    return f'<small class="cl-paper {cls}" title="{title}">{text}, {word}</small>'


def _structural_html(
    c: dict, paper: tuple[float, float] | None, run_link: str, command: str
) -> str:
    """A structural check: grey, its numbers only in the link's title (they decide nothing), the
    paper's value without a range verdict, and the command that would decide the cell."""
    numbers = f"IND {percent(c['ind'])} / OOD {percent(c['ood'])}"
    title = html.escape(f"{numbers} after {c['budget']:,} steps; runs: {', '.join(c['runs'])}")
    text = f"structural check, {c['budget']:,} steps: not a result"
    href = f"{run_link}{html.escape(c['best_run'])}"
    link = f'<a href="{href}" title="{title}" {STRUCTURAL_STYLE}>{text}</a>'
    decide = f"<small>to decide it: <code>{html.escape(command)}</code></small>"
    return (
        f'<td class="cl-structural" {STRUCTURAL_STYLE}>{link}<br>{_paper_html(c, paper)}'
        f"<br>{decide}</td>"
    )


def _cell_html(
    c: dict, paper: tuple[float, float] | None, run_link: str, command: str = "", profile: str = ""
) -> str:
    """A cell's HTML; ``command`` (`deciding_command`) is what a structural check names, and
    ``profile`` (`deciding_profile`) what a cell not trained here names."""
    if c.get("damaged"):
        title = html.escape(f"damaged: {', '.join(c['damaged'])}; {RETRAIN_HINT}")
        paper_line = _paper_html(c, paper)
        return f'<td class="cl-damaged" title="{title}">damaged record<br>{paper_line}</td>'
    if c["missing"]:
        # the profile alone, the whole command in its title: a table of empty cells stays short
        title = html.escape(command)
        where = f'<br><small title="{title}">in profile {profile}</small>' if profile else ""
        return f'<td class="cl-missing">not trained here<br>{_paper_html(c, paper)}{where}</td>'
    if c["structural"]:
        return _structural_html(c, paper, run_link, command)
    ok = generalised(c["fit_ind"], c["fit_ood"])
    runs = html.escape(", ".join(c["runs"]))
    text = f"{percent(c['ind'])} / {percent(c['ood'])}"
    link = f'<a href="{run_link}{html.escape(c["best_run"])}" title="{runs}">{text}</a>'
    style = f" {SUCCESS_STYLE}" if ok else ""
    cls = "cl-success" if ok else "cl-fail"
    seeds = f"<small>{c['seeds']} seed(s)</small>"
    if c.get("unfit"):
        flag = f"did not fit (IND &lt; {100 * FIT_IND:.0f} %)"
        if c["unfit"] < c["seeds"]:
            flag = f"{c['unfit']} {flag}; the others: OOD {percent(c['fit_ood'])}"
        seeds += f'<br><small class="cl-unfit">{flag}</small>'
    if c.get("improving"):
        still = f"{c['improving']} of {c['seeds']}" if c["seeds"] > 1 else "its run"
        seeds += f'<br><small class="cl-improving">{still} still improving at the cap</small>'
    return f'<td class="{cls}"{style}>{link}<br>{seeds}<br>{_paper_html(c, paper)}</td>'


def agreement(frame: pd.DataFrame, spec: PaperTable) -> dict[str, int]:
    """Counts of a table's cells: all, in the paper, compared (both values, not a structural
    check), in range, missing here, structural checks."""
    pairs = [
        (c, paper_value(spec.paper_key, row_label, col_label))
        for row_label, row in frame.iterrows()
        for col_label, c in row.items()
    ]
    verdicts = [in_paper_range(c, paper) for c, paper in pairs]
    return {
        "cells": len(pairs),
        "paper": sum(paper is not None for _, paper in pairs),
        "both": sum(v is not None for v in verdicts),
        "in_range": sum(v is True for v in verdicts),
        "missing": sum(bool(c["missing"]) for c, _ in pairs),
        "structural": sum(bool(c.get("structural")) for c, _ in pairs),
    }


def _agreement_html(counts: dict[str, int], spec: PaperTable) -> str:
    if not counts["paper"]:
        return '<p class="cl-agreement">The paper reports none of this table\'s cells.</p>'
    points = percent(PAPER_TOLERANCE)
    compared = (
        f"The paper's OOD lies in the range of countlib's seeds (± {points} points) in "
        f"{counts['in_range']} of the {counts['both']} cells that have both values"
        if counts["both"]
        else "No cell has both a countlib and a paper value"
    )
    structural = (
        "; structural checks, trained too briefly to decide anything and not compared: "
        f"{counts['structural']}"
        if counts["structural"]
        else ""
    )
    text = (
        f"{compared}. Of the {counts['cells']} cells, the paper reports {counts['paper']} and "
        f"countlib has no runs for {counts['missing']}{structural}. Paper values: {CITATION}, "
        f"Table {spec.paper_key}. {PAPER_NOTES.get(spec.paper_key, '')}"
    )
    return f'<p class="cl-agreement">{html.escape(text.strip())}</p>'


def _table_cell_html(c: dict, spec: PaperTable, row: str, column: str, run_link: str) -> str:
    """`_cell_html` of a table's cell: one that decides nothing or was not trained names the
    profile and command that train it at a deciding scale."""
    paper = paper_value(spec.paper_key, row, column)
    if not (c.get("structural") or c["missing"]):
        return _cell_html(c, paper, run_link)
    command, profile = deciding_command(spec, row, column), deciding_profile(spec, row, column)
    return _cell_html(c, paper, run_link, command, profile)


def render_html(frame: pd.DataFrame, spec: PaperTable, run_link: str = "provenance.html#") -> str:
    """HTML table: cells 'IND / OOD' in percent, shaded where OOD >= 95 %, linked to runs, each
    with the paper's value beside it (structural checks in grey, with the command that decides
    them); under the table, how many cells agree with the paper."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for label, row in frame.iterrows():
        tds = [_table_cell_html(c, spec, str(label), col, run_link) for col, c in row.items()]
        body.append(f"<tr><th>{html.escape(str(label))}</th>{''.join(tds)}</tr>")
    caption = html.escape(spec.title + (f" ({spec.note})" if spec.note else ""))
    return (
        f'<table class="countlib-table" id="{spec.page}"><caption>{caption}</caption>'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        + _agreement_html(agreement(frame, spec), spec)
    )


def seed_variance_plot(runs: pd.DataFrame, rule: str = "best_ood"):
    """OOD accuracy of every seed of every configuration, one row per task."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = runs.assign(config=config_labels(runs))
    fig, ax = plt.subplots(figsize=(9, 1 + 0.8 * data["task"].nunique()))
    sns.stripplot(data=data, y="task", x=f"{rule}_ood", hue="config", ax=ax, dodge=True)
    ax.set(xlabel="OOD accuracy", xlim=(-0.02, 1.02))
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5), fontsize=7)
    fig.tight_layout()
    return fig


def _hardware(env: dict[str, Any]) -> str:
    # records written before countlib recorded the processor lack "cpu"
    cpu = f"{env['cpu']}, {env['cpu_count']} cores" if "cpu" in env else "processor not recorded"
    gpu = env["device_name"] if env["device"].startswith("cuda") else None
    return f"{gpu} ({cpu})" if gpu else cpu


def provenance_html(runs: pd.DataFrame) -> str:
    """One row per run, anchored by its name, with the environment it ran in."""
    columns = ["run", "configuration", "status", "steps", "wall s", "hardware", "software"]
    labels = config_labels(runs, only_varying=False) if len(runs) else runs
    rows = []
    for index, run in runs.iterrows():
        env = json.loads((Path(run["path"]) / "environment.json").read_text())
        cells = [
            run["run"],
            f"{run['task']}: {labels[index]}, seed {run['seed']}",
            run["status"],
            run["steps"],
            run["wall_time_s"],
            _hardware(env),
            f"torch {env['torch']}, countlib {env['countlib']}, "
            f"{precision_name(env['precision'])}, "
            f"backends {env['backends']}",
        ]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f'<tr id="{html.escape(run["run"])}">{tds}</tr>')
    head = "".join(f"<th>{c}</th>" for c in columns)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>" if rows else "<p>No runs.</p>"


def _machine(env: Mapping[str, Any]) -> str:
    """A machine as the Findings page names it: the GPU (CUDA, driver) if any, the processor,
    torch and the libraries that set its arithmetic; "unknown" for what a record lacks (records
    written before countlib recorded the libraries, or where a probe failed)."""

    def known(key: str) -> str:
        return "unknown" if env.get(key) is None else str(env[key])

    cpu = f"{known('cpu_count')} x {env['cpu']}" if env.get("cpu") else "processor unknown"
    blas = " ".join(str(env[k]) for k in ("torch_blas", "torch_blas_version") if env.get(k))
    libraries = (
        f"CPU capability {known('cpu_capability')}, BLAS {blas or 'unknown'}, "
        f"oneDNN {known('onednn')}"
    )
    machine = f"{cpu}, torch {known('torch')} ({libraries})"
    if str(env.get("device", "")).startswith("cuda"):
        gpu = f"{known('device_name')} (CUDA {known('cuda')}, driver {known('cuda_driver')})"
        machine = f"{gpu} with {machine}"
    return machine


def machines_line(runs: pd.DataFrame) -> str:
    """One line naming the machine(s) ``runs`` (a run table with ``path``) were trained on, each
    with its number of runs, most first, from the runs' environment.json. A run resumed on
    another machine counts for the last one: environment.json describes its latest segment."""
    machines: Counter[str] = Counter()
    for path in runs["path"] if len(runs) else ():
        record = Path(path) / "environment.json"
        machines[_machine(json.loads(record.read_text()) if record.exists() else {})] += 1
    if not machines:
        return "Trained on: no finished runs."
    listed = "; ".join(
        f"{machine}, {n} run{'' if n == 1 else 's'}" for machine, n in machines.most_common()
    )
    return f"Trained on: {listed}."


# -- the claims' verdicts (the Findings page) ---------------------------------------------------

#: What a page says of countlib's own claims before showing them (HTML).
OWN_CLAIMS_TEXT = (
    "These are countlib's own claims, not the paper's: C1 is the paper's account (transitions "
    "in [0, 1] cannot count modularly), C2 and C3 the fix of Grazzi et al. and its price, C4 "
    "the nonlinear end. Each rule was fixed in <code>countlib/claims.py</code> before its runs "
    "and reads Table H1's cells at 1 layer (best of seeds); as for the paper's claims, a run "
    "that did not fit (best IND below 95 %) says nothing, and a claim judged at a small scale is "
    "a finding about that scale."
)

#: The shading of each verdict (inline, as `SUCCESS_STYLE`).
VERDICT_STYLE = {HOLDS: "#c8e6c9", FAILS: "#ffcdd2", UNDECIDED: "#eeeeee"}


#: The profiles from small to large: where a book's own profile was meant to decide a claim and
#: did not, the next one may.
SCALES = ("smoke", "laptop", "overnight", "paper-lite", "paper")


def _next_scale(meant: str, current: str | None) -> str:
    """The profile to point an undecided claim to: the one meant to decide it, or, where that is
    this book's own (its runs did not settle the claim), the next larger."""
    if current in SCALES and meant in SCALES and SCALES.index(meant) <= SCALES.index(current):
        return SCALES[min(SCALES.index(current) + 1, len(SCALES) - 1)]
    return meant


def findings_html(
    findings: Iterable[Finding],
    decided_by: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> str:
    """The Findings table: each claim, its verdict, its rule and the cells it was judged on.

    ``decided_by`` names, per claim key (`Claim.key`), the smallest profile that trains the
    claim's cells at a scale meant to decide it (`countlib.profiles.deciding_profiles`); an
    undecided claim points to it, or past it where it is the book's own ``profile``.
    """
    findings = list(findings)
    decided_by = decided_by or {}
    counts = {v: sum(f.verdict == v for f in findings) for v in (HOLDS, FAILS, UNDECIDED)}
    summary = ", ".join(f"{n} {verdict}" for verdict, n in counts.items())
    rows = []
    for finding in findings:
        claim, verdict = finding.claim, finding.verdict
        links = ", ".join(
            f'<a href="table_{key}.html">Table {html.escape(key)}</a>' for key in claim.tables
        )
        scale = _next_scale(decided_by.get(claim.key, "paper"), profile)
        if finding.outcome.needs_seeds:  # more seeds, not another scale, would decide it
            scale = seeded_profile(claim.key, profile)
        elif finding.outcome.trains_longer:  # a run still improving: a longer budget would
            scale = finding.outcome.trains_longer
        decide = f" Decidable with <code>--profile {scale}</code>." if (
            verdict == UNDECIDED
        ) else ""  # fmt: skip
        evidence = "".join(f"<li>{html.escape(line)}</li>" for line in finding.outcome.evidence)
        rows.append(
            f'<tr id="claim-{claim.key.replace(" ", "-")}"><td>{html.escape(claim.key)}</td>'
            f"<td>{html.escape(claim.statement)}<br><small>Rule: {html.escape(claim.rule)}; "
            f"cells of {links}.{decide}</small>"
            f"<details><summary>evidence</summary><ul>{evidence}</ul></details></td>"
            f'<td class="cl-verdict" style="background-color:{VERDICT_STYLE[verdict]}">'
            f"<b>{verdict}</b></td></tr>"
        )
    head = "<tr><th>claim</th><th>statement, rule and evidence</th><th>verdict</th></tr>"
    table = f'<table class="countlib-findings">{head}{"".join(rows)}</table>'
    return f"<p><b>{len(findings)} claims: {summary}.</b></p>{table}"


def verdict_matrix_html(findings: Iterable[Finding]) -> str:
    """The verdicts of claims made per family (`Claim.part`) as one row per family and one column
    per claim number, each linked to its row of the Findings table."""
    findings = [f for f in findings if f.claim.part]
    numbers = list(dict.fromkeys(str(f.claim.number) for f in findings))
    families = list(dict.fromkeys(f.claim.part for f in findings))
    by_cell = {(f.claim.part, str(f.claim.number)): f for f in findings}
    head = "".join(f"<th>claim {html.escape(n)}</th>" for n in numbers)
    rows = []
    for family in families:
        tds = []
        for number in numbers:
            found = by_cell.get((family, number))
            if found is None:
                tds.append('<td class="cl-none">-</td>')
                continue
            anchor = f"claim-{found.claim.key.replace(' ', '-')}"
            style = VERDICT_STYLE[found.verdict]
            tds.append(
                f'<td style="background-color:{style}"><a href="#{anchor}" '
                f'title="{html.escape(found.claim.statement)}">{found.verdict}</a></td>'
            )
        rows.append(f"<tr><th>{html.escape(family)}</th>{''.join(tds)}</tr>")
    return f'<table class="countlib-verdicts"><tr><th>family</th>{head}</tr>{"".join(rows)}</table>'


def own_findings_html(
    findings: Iterable[Finding],
    decided_by: Mapping[str, str] | None = None,
    profile: str | None = None,
) -> str:
    """countlib's own claims as every page shows them: what they are, the verdict per family,
    then the claims with their evidence (`findings_html`)."""
    findings = list(findings)
    return (
        f"<p>{OWN_CLAIMS_TEXT}</p>{verdict_matrix_html(findings)}"
        f"{findings_html(findings, decided_by, profile)}"
    )
