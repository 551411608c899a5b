"""The paper's tables (`countlib.paper`) over run records, rendered for the book.

A table is rows x columns, each a filter on the run table of `countlib.results.load_runs`
(task, model, pe, layers, hidden, ...). A cell aggregates the seeds its filters select:
best-of-k or median-of-k of IND / OOD at the chosen checkpoint rule, in the metrics each task
declares (the first-token probes score the first position only). A cell without runs says
"missing"; it never shows a number that was not produced.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.paper import PAPER_TABLES, Filter, PaperTable, get_table
from countlib.report import SUCCESS_OOD, config_labels
from countlib.results import aggregate

__all__ = ["PAPER_TABLES", "PaperTable", "get_table", "table_frame", "table_runs"]


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


def cell(runs: pd.DataFrame, spec: PaperTable, row: Filter, column: Filter, rule: str) -> dict:
    """IND / OOD of one cell, or {"missing": True} when no finished run matches."""
    chosen = _select(runs, row, column)
    finished = chosen[chosen["status"] != "incomplete"] if len(chosen) else chosen
    if not len(finished):
        return {"missing": True, "incomplete": len(chosen)}
    agg = aggregate(finished, by=["task"], rule=rule).iloc[0]
    best_run = finished.loc[finished[f"{rule}_ood"].astype(float).fillna(-1).idxmax(), "run"]
    return {
        "missing": False,
        "ind": agg[f"{spec.statistic}_ind"],
        "ood": agg[f"{spec.statistic}_ood"],
        "seeds": int(agg["seeds"]),
        "runs": list(finished["run"]),
        "best_run": best_run,
        "incomplete": len(chosen) - len(finished),
    }


def table_frame(runs: pd.DataFrame, spec: PaperTable, rule: str = "best_ood") -> pd.DataFrame:
    """The table as a DataFrame of cell dicts (rows x columns labels)."""
    data = {
        col_label: [cell(runs, spec, row, col, rule) for _, row in spec.rows]
        for col_label, col in spec.columns
    }
    return pd.DataFrame(data, index=[label for label, _ in spec.rows])


def _fmt(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:.1f}"


def render_html(frame: pd.DataFrame, spec: PaperTable, run_link: str = "provenance.html#") -> str:
    """HTML table: cells 'IND / OOD' in percent, shaded where OOD >= 95 %, linked to runs."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = []
    for label, row in frame.iterrows():
        cells = []
        for c in row:
            if c["missing"]:
                cells.append('<td class="cl-missing">missing</td>')
                continue
            ok = not pd.isna(c["ood"]) and c["ood"] >= SUCCESS_OOD
            runs = html.escape(", ".join(c["runs"]))
            text = f"{_fmt(c['ind'])} / {_fmt(c['ood'])}"
            link = f'<a href="{run_link}{html.escape(c["best_run"])}" title="{runs}">{text}</a>'
            style = ' style="background-color:#c8e6c9"' if ok else ""
            cls = "cl-success" if ok else "cl-fail"
            cells.append(
                f'<td class="{cls}"{style}>{link}<br><small>{c["seeds"]} seed(s)</small></td>'
            )
        body.append(f"<tr><th>{html.escape(str(label))}</th>{''.join(cells)}</tr>")
    caption = html.escape(spec.title + (f" ({spec.note})" if spec.note else ""))
    return (
        f'<table class="countlib-table" id="{spec.page}"><caption>{caption}</caption>'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
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
            f"torch {env['torch']}, countlib {env['countlib']}, {env['precision']}, "
            f"backends {env['backends']}",
        ]
        tds = "".join(f"<td>{html.escape(str(c))}</td>" for c in cells)
        rows.append(f'<tr id="{html.escape(run["run"])}">{tds}</tr>')
    head = "".join(f"<th>{c}</th>" for c in columns)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>" if rows else "<p>No runs.</p>"
