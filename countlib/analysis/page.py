"""The book's analysis page: which of its runs each figure uses, and how each is shown. The
notebook (``notebooks/analysis.ipynb``) only calls these."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from countlib.analysis.claims import AnalysisFinding, judge_analysis_claims
from countlib.results import ANALYSED_CHECKPOINT
from countlib.tables import VERDICT_STYLE


@dataclass(frozen=True)
class Role:
    """Runs a section of the page shows: in the first of ``tasks`` that has any, one run per
    slot (a family and its PEs in order of preference; no PEs: any run of the family)."""

    tasks: tuple[str, ...]
    slots: tuple[tuple[str, tuple[str, ...]], ...]
    depth: int  # preferred number of layers
    needs: str  # what the section needs, in words


_ATTENTION_PES = ("sine", "ape", "rope", "nope", "spe")
ROLES = {
    # the paper's Figure A3: 2-layer SinePE, APE and SPE on mod 10
    "pca": Role(
        ("mod10",),
        (("transformer", ("sine",)), ("transformer", ("ape",)), ("transformer", ("spe",))),
        2,
        "mod 10 Transformers with SinePE, APE or SPE",
    ),
    # Figure A6 is on Selective + BOS; without those runs a task with shifted ids will do
    "attention": Role(
        ("selective_bos", "shifted_start", "mod10"),
        (("transformer", ("rope",)), ("transformer", ("ape",))),
        1,
        "RoPE or APE Transformers on selective_bos, shifted_start or mod10",
    ),
    # a recurrent and an attention model on the same counting task
    "probe": Role(
        ("mod10", "shifted_start"),
        (("lstm", ()), ("transformer", _ATTENTION_PES)),
        2,
        "an LSTM or a Transformer on mod10 or shifted_start",
    ),
}


def pick_runs(runs: pd.DataFrame, rule: str = ANALYSED_CHECKPOINT) -> dict[str, list[str]]:
    """Run directories for each of `ROLES`, from a page's finished runs (a
    `countlib.manifest.RunTable`'s ``runs``); per slot the run of the preferred depth (else the
    shallowest) that fits best (IND at the checkpoint ``rule``)."""
    done = runs[runs["status"] == "complete"] if len(runs) else runs
    return {name: _pick(done, role, rule) for name, role in ROLES.items()}


def _pick(runs: pd.DataFrame, role: Role, rule: str) -> list[str]:
    for task in role.tasks:
        chosen = [_fill(runs, task, family, pes, role.depth, rule) for family, pes in role.slots]
        if any(chosen):
            return [path for path in chosen if path]
    return []


def _fill(
    runs: pd.DataFrame, task: str, family: str, pes: Sequence[str], depth: int, rule: str
) -> str | None:
    if not len(runs):
        return None
    candidates = runs[(runs["task"] == task) & (runs["model"] == family)]
    for pe in pes:
        of_pe = candidates[candidates["pe"] == pe] if "pe" in candidates else candidates[:0]
        if len(of_pe):
            return _best(of_pe, depth, rule)
    return _best(candidates, depth, rule) if not pes and len(candidates) else None


def _best(runs: pd.DataFrame, depth: int, rule: str) -> str:
    order = runs.assign(
        _off=runs["layers"] != depth, _ind=-runs[f"{rule}_ind"].fillna(-1)
    ).sort_values(["_off", "layers", "_ind", "run"])
    return str(order["path"].iloc[0])


def runs_used(chosen: dict[str, list[str]]) -> str:
    """Markdown: the runs each section uses, or what a missing one would need."""
    lines = []
    for role, paths in chosen.items():
        names = ", ".join(f"`{path.rstrip('/').rsplit('/', 1)[-1]}`" for path in paths)
        lines.append(f"- **{role}**: {names or f'none (needs {ROLES[role].needs})'}")
    return "Runs used by this page:\n\n" + "\n".join(lines)


def show_analyses(
    paths: Sequence[str], what: str, *, checkpoint: str = ANALYSED_CHECKPOINT, per_split: int = 64
) -> None:
    """Each run's analysis ``what``: its sentence and its figures. For attention, one figure
    compares the runs' position sensitivity."""
    from IPython.display import Markdown, display

    from countlib.analysis.attention import plot_pair_sensitivity
    from countlib.analysis.tools import analyse
    from countlib.report import show_figure

    if not paths:
        display(Markdown("No suitable run in this book for this section."))
        return
    results = [analyse(path, what, checkpoint, per_split=per_split) for path in paths]
    for result in results:
        point = result.point
        display(
            Markdown(
                f"**{result.label}** (`{result.checkpoint}` checkpoint, step "
                f"{point.get('step', 'n/a')}, IND {_pct(point.get('ind'))}, OOD "
                f"{_pct(point.get('ood'))}): {result.text}"
            )
        )
        for name, figure in result.figures.items():
            if what == "attention" and name == "sensitivity":
                continue  # shown side by side below
            show_figure(figure)
        result.close()
    if what == "attention":
        tables = {result.label: result.tables["pairs"] for result in results}
        show_figure(plot_pair_sensitivity(tables))


def _pct(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{100 * value:.1f} %"


def judge_page(
    runs: pd.DataFrame, *, checkpoint: str = ANALYSED_CHECKPOINT, per_split: int = 64
) -> list[AnalysisFinding]:
    """Claims 16 and 17 on a page's finished runs."""
    done = runs[runs["status"] == "complete"] if len(runs) else runs
    paths = list(done["path"]) if len(done) else []
    return judge_analysis_claims(paths, checkpoint=checkpoint, per_split=per_split)


def findings_html(findings: Sequence[AnalysisFinding]) -> str:
    """The claims as a table: number, statement, rule, evidence, verdict."""
    rows = []
    for finding in findings:
        claim = finding.claim
        evidence = "".join(f"<li>{html.escape(line)}</li>" for line in finding.outcome.evidence)
        rows.append(
            f'<tr id="claim-{claim.number}"><td>{claim.number}</td>'
            f"<td>{html.escape(claim.statement)}<br><small>Rule: {html.escape(claim.rule)}."
            f"</small><details><summary>evidence</summary><ul>{evidence}</ul></details></td>"
            f'<td style="background-color:{VERDICT_STYLE[finding.verdict]}">'
            f"<b>{finding.verdict}</b></td></tr>"
        )
    head = "<tr><th>claim</th><th>statement, rule and evidence</th><th>verdict</th></tr>"
    return f'<table class="countlib-findings">{head}{"".join(rows)}</table>'
