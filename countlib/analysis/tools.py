"""Each analysis as one call on a run directory: tidy tables, figures, the numbers that state
what the figures show, and a sentence saying it; `Analysis.save` writes them next to the run."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from countlib.analysis import WHAT
from countlib.analysis.attention import (
    attention_frame,
    first_layer_share,
    input_tokens,
    pair_sensitivity,
    plot_attention_maps,
    plot_pair_sensitivity,
    shift_sensitivity,
)
from countlib.analysis.patch import carrier, patching, plot_patching
from countlib.analysis.probe import best_layer, plot_probes, probe_layers
from countlib.analysis.projection import pca_frame, plot_pca
from countlib.analysis.runs import AnalysisRun, load_run
from countlib.analysis.states import capture, has_attention
from countlib.analysis.trajectory import development, plot_development
from countlib.batches import FLOAT_SCHEMES
from countlib.results import ANALYSED_CHECKPOINT

#: The count is read mod this in PCA colours and the mod probe (the paper's mod 10).
MODULUS = 10


@dataclass
class Analysis:
    """One analysis of one run at one checkpoint."""

    what: str
    run: str  # the run directory
    label: str
    checkpoint: str
    tables: dict[str, pd.DataFrame]
    figures: dict[str, Any]
    numbers: dict[str, Any]
    text: str  # what the figures show, with the numbers
    point: dict[str, Any] = field(default_factory=dict)  # step, IND, OOD of the checkpoint

    def save(self, out_dir: str | Path | None = None) -> list[Path]:
        """Write ``<what>-<checkpoint>-<table>.csv``, ``<what>-<checkpoint>.json`` (numbers,
        text, run) and ``<what>-<checkpoint>-<figure>.png`` to ``out_dir`` (default
        ``<run>/analysis``); returns the paths."""
        out = Path(out_dir) if out_dir is not None else Path(self.run) / "analysis"
        out.mkdir(parents=True, exist_ok=True)
        stem = f"{self.what}-{self.checkpoint}"
        written = []
        for name, table in self.tables.items():
            written.append(out / f"{stem}-{name}.csv")
            table.to_csv(written[-1], index=False)
        summary = {
            "what": self.what,
            "run": self.run,
            "label": self.label,
            "checkpoint": self.checkpoint,
            "point": self.point,
            "numbers": self.numbers,
            "text": self.text,
        }
        written.append(out / f"{stem}.json")
        written[-1].write_text(json.dumps(summary, indent=2, default=_plain) + "\n")
        for name, figure in self.figures.items():
            written.append(out / f"{stem}-{name}.png")
            figure.savefig(written[-1], dpi=120, bbox_inches="tight")
        return written

    def close(self) -> None:
        """Release the figures (matplotlib keeps every open one)."""
        import matplotlib.pyplot as plt

        for figure in self.figures.values():
            plt.close(figure)


def _plain(value: Any) -> Any:
    """numpy scalars as plain numbers in JSON."""
    return value.item() if hasattr(value, "item") else str(value)


def _pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:.1f} %"


def _captured(run: AnalysisRun, per_split: int, attention: bool = False):
    chosen = run.batch(per_split=per_split)
    return chosen, capture(
        run.model, chosen.batch, run.task, splits=chosen.splits, attention=attention
    )


def mod_probe(captured) -> pd.DataFrame:
    """The count mod `MODULUS` probe of every residual layer (what the PCA picture shows)."""
    return probe_layers(captured, target="count_mod", modulus=MODULUS, components=["residual"])


def cluster_number(run: AnalysisRun, per_split: int = 64) -> float:
    """Claim 16's number: the best layer's count mod 10 probe accuracy beyond the training
    length."""
    _, captured = _captured(run, per_split)
    return float(best_layer(mod_probe(captured), "OOD")["accuracy"])


def pair_cells(run: AnalysisRun, captured) -> pd.DataFrame:
    """`pair_sensitivity` over the input tokens of a capture, in the run's id range."""
    return pair_sensitivity(
        run.model,
        input_tokens(captured, run.task.vocab),
        id_range=run.collator.max_positions,
        floats=run.config.position_scheme in FLOAT_SCHEMES,
    )


def sensitivity_number(run: AnalysisRun, per_split: int = 64) -> float:
    """Claim 17's number: the first layer's position share of raw-score variance."""
    _, captured = _captured(run, per_split)
    return first_layer_share(pair_cells(run, captured))


def _pca(run: AnalysisRun, per_split: int) -> tuple:
    _, captured = _captured(run, per_split)
    points = pca_frame(captured, modulus=MODULUS)
    probes = mod_probe(captured)
    best = best_layer(probes, "OOD")
    ind = probes[(probes["where"] == "IND") & (probes["layer"] == best["layer"])]["accuracy"]
    numbers = {
        "probe_layer": int(best["layer"]),
        "probe_ind": float(ind.iloc[0]),
        "probe_ood": float(best["accuracy"]),
        "chance": float(best["baseline"]),
    }
    text = (
        f"A linear probe reads count mod {MODULUS} from the residual stream best at layer "
        f"{numbers['probe_layer']}: {_pct(numbers['probe_ind'])} at held-out in-distribution "
        f"positions and {_pct(numbers['probe_ood'])} beyond the training length (best constant "
        f"guess {_pct(numbers['chance'])}). Clusters by count mod {MODULUS} that persist beyond "
        "the training length show as a high OOD number."
    )
    figure = plot_pca(points, probes, title=f"{run.label}: PCA of the residual stream")
    return {"points": points, "probe": probes}, {"pca": figure}, numbers, text


def _attention(run: AnalysisRun, per_split: int) -> tuple:
    if not has_attention(run.model):
        others = ", ".join(w for w in WHAT if w != "attention")
        raise ValueError(
            f"analysis 'attention' needs a model with attention (a Transformer), but "
            f"{run.path.name} is a {run.family} model; for it choose from {others}"
        )
    chosen, captured = _captured(run, per_split, attention=True)
    val = [i for i, split in enumerate(chosen.splits) if split == "val"]
    sequence = val[-1] if val else 0  # the longest in-distribution sequence
    maps = attention_frame(captured, sequence)
    shifts = shift_sensitivity(run.model, chosen.batch, id_range=run.collator.max_positions)
    cells = pair_cells(run, captured)
    numbers = {
        "position_share": first_layer_share(cells),
        "shift_tv": float(shifts["tv"].mean()),
        "tokens": int(cells["query_token"].nunique()),
    }
    text = (
        f"In the first layer, position ids explain {numbers['position_share']:.2f} of the "
        f"variance of the raw attention score between two tokens ({numbers['tokens']} input "
        "tokens, each pair placed at many position pairs: the paper's Figure A6); moving every "
        f"id by {int(shifts['shift'].iloc[0])} changes the attention rows by a mean "
        f"total-variation distance of {numbers['shift_tv']:.3f} (absolute ids only; relative "
        "PEs such as RoPE do not move)."
    )
    figures = {
        "maps": plot_attention_maps(maps, title=f"{run.label}: attention of one sequence"),
        "sensitivity": plot_pair_sensitivity({run.label: cells}),
    }
    return {"maps": maps, "shift": shifts, "pairs": cells}, figures, numbers, text


def _probe(run: AnalysisRun, per_split: int) -> tuple:
    _, captured = _captured(run, per_split)
    table = pd.concat(
        [probe_layers(captured, target=t, modulus=MODULUS) for t in ("count_mod", "count")],
        ignore_index=True,
    )
    numbers = {}
    sentences = []
    for target, rows in table.groupby("target", sort=False):
        best = best_layer(rows, "OOD")
        ind = rows[
            (rows["where"] == "IND")
            & (rows["component"] == best["component"])
            & (rows["layer"] == best["layer"])
        ]["accuracy"].iloc[0]
        key = target.replace(" ", "_")
        numbers[key] = {
            "component": best["component"],
            "layer": int(best["layer"]),
            "ind": float(ind),
            "ood": float(best["accuracy"]),
        }
        sentences.append(
            f"the {target} is read best from {best['component']} layer {int(best['layer'])}, "
            f"{_pct(ind)} in distribution and {_pct(best['accuracy'])} beyond the training length"
        )
    text = "Linear probes trained on in-distribution positions: " + "; ".join(sentences) + "."
    figure = plot_probes(table, title=f"{run.label}: where the count can be read")
    return {"probe": table}, {"probe": figure}, numbers, text


def _patch(run: AnalysisRun, per_split: int) -> tuple:
    chosen = run.batch(per_split=per_split)
    table = patching(run.model, chosen.batch, run.task)
    figures = {
        "patching": plot_patching(table, title=f"{run.label}: which state carries the count")
    }
    pairs = int(table["pairs"].max())
    if not pairs:
        text = (
            "No position pairs to patch: a pair needs the clean model right at both positions, "
            "and this checkpoint is right at too few in-distribution positions."
        )
        return {"patching": table}, figures, {"pairs": 0, "carrier": None}, text
    found = carrier(table)
    best = table.loc[table["follows_source"].idxmax()]
    numbers = {
        "pairs": pairs,
        "carrier": None if found is None else f"{found['component']} {int(found['layer'])}",
        "best": f"{best['component']} {int(best['layer'])}",
        "best_follows_source": float(best["follows_source"]),
    }
    where = (
        f"the first that carries it (>= 90 % follow the source) is {numbers['carrier']}"
        if found is not None
        else "no patched component moves 90 % of the predictions"
    )
    text = (
        f"Patching {numbers['best']} moves {_pct(numbers['best_follows_source'])} of "
        f"predictions to the source's count ({pairs} pairs at most); {where}."
    )
    return {"patching": table}, figures, numbers, text


def _development(run: AnalysisRun, per_split: int) -> tuple:
    table = development(run.path, per_split=per_split, modulus=MODULUS)
    last = table[table["step"] == table["step"].max()]
    best = best_layer(last, "OOD")
    numbers = {
        "checkpoints": int(table["step"].nunique()),
        "last_step": int(best["step"]),
        "last_probe_ood": float(best["accuracy"]),
    }
    text = (
        f"Across the {numbers['checkpoints']} checkpoint(s) the run keeps, the count mod "
        f"{MODULUS} probe reaches {_pct(numbers['last_probe_ood'])} beyond the training length "
        f"at step {numbers['last_step']} (layer {int(best['layer'])})."
    )
    figure = plot_development(table, title=f"{run.label}: the counting state during training")
    return {"development": table}, {"development": figure}, numbers, text


ANALYSES: dict[str, Callable[[AnalysisRun, int], tuple]] = dict(
    zip(WHAT, (_pca, _attention, _probe, _patch, _development), strict=True)
)


def analyse(
    run_dir: str | Path, what: str, checkpoint: str = ANALYSED_CHECKPOINT, *, per_split: int = 64
) -> Analysis:
    """Analysis ``what`` (one of `WHAT`) of the run at ``run_dir`` at ``checkpoint``, on
    ``per_split`` sequences of each of its val and ood splits."""
    if what not in ANALYSES:
        raise ValueError(f"unknown analysis {what!r}; choose from {', '.join(WHAT)}")
    run = load_run(run_dir, checkpoint)
    tables, figures, numbers, text = ANALYSES[what](run, per_split)
    return Analysis(
        what, str(run.path), run.label, checkpoint, tables, figures, numbers, text, run.point
    )
