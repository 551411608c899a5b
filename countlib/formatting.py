"""The thresholds every page judges results by, and how a page writes them.

What counts as a run that fits its training data (`FIT_IND`) and as a success (`SUCCESS_OOD`,
`generalised`), the shading of a success, an accuracy in percent, a configuration's label.

The bottom layer of the reporting code: the claims (`countlib.claims`), the tables
(`countlib.tables`) and the notebooks' building blocks (`countlib.report`) all read it, and it
imports nothing from countlib.
"""

from __future__ import annotations

import pandas as pd

SUCCESS_OOD = 0.95  # our threshold for "counts inductively"; the paper gives none
#: Best IND at or above which a run fits its training data; below, it says nothing about OOD.
FIT_IND = 0.95


def generalised(ind: float, ood: float) -> bool:
    """A success: OOD reaches `SUCCESS_OOD` on a run that fits (a run that does not fit the
    training data is never shaded a success, whatever its OOD)."""
    return not (pd.isna(ind) or pd.isna(ood)) and ind >= FIT_IND and ood >= SUCCESS_OOD


#: The shading of a result that is `generalised` (inline: notebook outputs keep no CSS).
SUCCESS_STYLE = 'style="background-color:#c8e6c9"'
#: The grey of a cell that decides nothing (a structural check, `countlib.tables`): inline too.
STRUCTURAL_STYLE = 'style="color:#757575"'
#: Run-table columns that tell configurations apart, in the order a label names them.
#: The hf family's architecture (`countlib.models.hf`) is one: its runs differ by it alone.
CONFIG_COLUMNS = (
    "model",
    "hf_config",
    "pe",
    "layers",
    "hidden",
    "heads",
    "causal",
    "head_size",
    "lr",
)


def percent(value: float) -> str:
    """An accuracy (a fraction) in percent with one decimal, as every page shows it."""
    return "n/a" if pd.isna(value) else f"{100 * value:.1f}"


def config_labels(runs: pd.DataFrame, *, only_varying: bool = True) -> pd.Series:
    """A short label per run: its model, PE, depth, width ... as far as they vary between the
    runs (or all of them, with ``only_varying=False``)."""
    present = [col for col in CONFIG_COLUMNS if col in runs]
    varying = [col for col in present if runs[col].astype(str).nunique() > 1]
    columns = (varying or ["model"]) if only_varying else present

    def label(row: pd.Series) -> str:
        parts = []
        for col in columns:
            value = row[col]
            if pd.isna(value):
                continue
            if col == "layers":
                parts.append(f"{int(value)}L")
            elif col == "causal":
                parts.append("causal" if value else "bidirectional")
            elif col in ("model", "pe"):
                parts.append(str(value))
            else:
                parts.append(f"{col}={value:g}" if isinstance(value, float) else f"{col}={value}")
        return " ".join(parts)

    return runs.apply(label, axis=1) if len(runs) else pd.Series([], dtype=str)
