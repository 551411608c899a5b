"""Why a model counts or fails: the paper's analyses as reusable tools on any run directory.

- `capture` (``countlib.analysis.states``): a batch of a task split through any family, with
  every layer's residual stream, the Transformer's attention scores, probabilities and q/k/v per
  head, and the recurrent states (LSTM hidden and cell, S4 and Mamba states), each with a tidy
  index of tokens, position ids, counts and labels;
- PCA of hidden states coloured by count mod k and position id (`pca_frame`, `plot_pca`);
- attention maps and the sensitivity of attention to position ids (`attention_frame`,
  `pair_sensitivity`, `shift_sensitivity`);
- linear probes that read the count from each layer in and beyond the training length
  (`probe_layers`);
- activation patching of the counting state (`patching`);
- the counting state across the checkpoints a run keeps (`development`);
- `analyse`: any of these as one call on a run directory, with tables, figures and numbers;
- claims 16 and 17 of the paper judged on those numbers (``countlib.analysis.claims``).

Names load on first use: the claims' verdict rules import without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "runs": ("AnalysisRun", "CHECKPOINTS", "RunBatch", "kept_checkpoints", "load_run"),
    "states": ("Capture", "UnsupportedModelError", "capture", "family_spec", "token_index"),
    "projection": ("pca", "pca_frame", "plot_pca"),
    "probe": ("Probe", "best_layer", "fit_probe", "plot_probes", "probe_layers"),
    "attention": (
        "attention_frame",
        "first_layer_share",
        "pair_sensitivity",
        "plot_attention_maps",
        "plot_pair_sensitivity",
        "position_share",
        "shift_sensitivity",
    ),
    "patch": ("carrier", "choose_pairs", "patching", "plot_patching"),
    "trajectory": ("development", "plot_development"),
    "tools": ("Analysis", "analyse", "cluster_number", "sensitivity_number"),
    "claims": ("ANALYSIS_CLAIMS", "CLAIM_16", "CLAIM_17", "Measure", "judge_analysis_claims"),
}
#: The analyses `analyse` runs (and ``countlib analyse --what`` offers), without loading torch.
WHAT = ("pca", "attention", "probe", "patch", "development")

_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted([*_MODULE_OF, "WHAT"])


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'countlib.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"countlib.analysis.{module}"), name)
