"""Linear probes: how well a linear readout recovers the count from one layer's vectors.

A probe trains on in-distribution positions of half the sequences and is scored on the
in-distribution positions of the other half ("IND") and on every position at or beyond the
longest training sequence ("OOD"), which no probe ever trains on. Where the counting state lives
the IND score is high; where it breaks the OOD score drops.

Two readouts (`TARGETS`):

- ``count_mod``: the count mod k, by multinomial logistic regression: a count kept on a circle
  (a periodic code, as a modular counter needs) is read linearly mod k;
- ``count``: the count itself, by ridge regression, right where the rounded prediction is the
  count: the one readout that can name counts never trained on, if the count lies on a line.

Plain torch (full-batch L-BFGS, a closed-form ridge solve), deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from countlib.analysis.states import Capture

TARGETS = ("count_mod", "count")
#: Where a probe is scored: held-out in-distribution positions, extrapolation positions.
WHERE = ("IND", "OOD")


@dataclass(frozen=True)
class Probe:
    """A fitted linear readout on standardised features."""

    kind: str  # "classify" or "regress"
    mean: Tensor
    scale: Tensor
    weight: Tensor  # [D, classes] or [D]
    bias: Tensor
    classes: Tensor | None = None

    def predict(self, features: Tensor) -> Tensor:
        z = (features.float() - self.mean) / self.scale
        if self.kind == "classify":
            assert self.classes is not None
            return self.classes[(z @ self.weight + self.bias).argmax(-1)]
        return (z @ self.weight + self.bias).round()

    def accuracy(self, features: Tensor, targets: Tensor) -> float:
        if not len(targets):
            return float("nan")
        return (self.predict(features) == targets.float()).float().mean().item()


def _standardise(x: Tensor) -> tuple[Tensor, Tensor]:
    mean = x.mean(0)
    scale = x.std(0, unbiased=False)
    # a constant feature carries nothing: leave it unscaled rather than divide by zero
    return mean, torch.where(scale > 1e-6, scale, torch.ones_like(scale))


def fit_probe(
    features: Tensor,
    targets: Tensor,
    kind: str = "classify",
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 100,
) -> Probe:
    """A probe from ``features`` [N, D] to ``targets`` [N] (class labels or numbers).

    ``weight_decay`` is the L2 penalty on standardised weights (per row for the ridge): light,
    since a readout of a clean code needs large weights to be confident, and a linear map has
    few parameters to overfit with."""
    if kind not in ("classify", "regress"):
        raise ValueError(f"unknown probe kind {kind!r}; choose classify or regress")
    if not len(targets):
        raise ValueError("a probe needs at least one training row")
    x = features.float()
    mean, scale = _standardise(x)
    z = (x - mean) / scale
    y = targets.float()
    if kind == "regress":
        # ridge on centred data: the bias is the mean, the penalty scales with the rows
        gram = z.T @ z + weight_decay * len(y) * torch.eye(z.shape[1])
        weight = torch.linalg.solve(gram, z.T @ (y - y.mean()))
        return Probe(kind, mean, scale, weight, y.mean())
    classes, index = torch.unique(y, return_inverse=True)
    weight = torch.zeros(z.shape[1], len(classes), requires_grad=True)
    bias = torch.zeros(len(classes), requires_grad=True)
    optimiser = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def loss() -> Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(z @ weight + bias, index)
        value = value + weight_decay * weight.pow(2).sum()
        value.backward()
        return value

    with torch.enable_grad():
        optimiser.step(loss)
    return Probe(kind, mean, scale, weight.detach(), bias.detach(), classes)


def target_values(index: pd.DataFrame, target: str, modulus: int) -> np.ndarray:
    """The count or the count mod ``modulus`` of every row (NaN where there is no count)."""
    if target not in TARGETS:
        raise ValueError(f"unknown probe target {target!r}; choose from {', '.join(TARGETS)}")
    count = index["count"].to_numpy(dtype=float)
    return np.mod(count, modulus) if target == "count_mod" else count


def probe_masks(index: pd.DataFrame, seed: int = 0) -> dict[str, np.ndarray]:
    """Rows to train on ("train") and to score ("IND", "OOD"): counted positions only; IND
    rows come from the sequences held out of training."""
    counted = index["supervised"].to_numpy() & index["count"].notna().to_numpy()
    sequences = index["sequence"].unique()
    held_out = np.random.default_rng(seed).permutation(sequences)[: len(sequences) // 2]
    in_held_out = index["sequence"].isin(held_out).to_numpy()
    beyond = index["extrapolation"].to_numpy()
    return {
        "train": counted & ~beyond & ~in_held_out,
        "IND": counted & ~beyond & in_held_out,
        "OOD": counted & beyond,
    }


def baseline(train: np.ndarray, scored: np.ndarray, target: str) -> float:
    """The accuracy of the best constant readout: the commonest training class, or the
    rounded training mean."""
    if not len(scored) or not len(train):
        return float("nan")
    if target == "count":
        guess = np.round(train.mean())
    else:
        values, counts = np.unique(train, return_counts=True)
        guess = values[counts.argmax()]
    return float((scored == guess).mean())


def probe_layers(
    capture: Capture,
    *,
    target: str = "count_mod",
    modulus: int = 10,
    components: Sequence[str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """One probe per (component, layer); rows component, layer, target, where (IND / OOD),
    accuracy, n (rows scored), baseline (best constant readout)."""
    y_all = target_values(capture.index, target, modulus)
    masks = probe_masks(capture.index, seed)
    y = {name: torch.from_numpy(y_all[mask]) for name, mask in masks.items()}
    rows_of = {name: torch.tensor(mask) for name, mask in masks.items()}
    kind = "regress" if target == "count" else "classify"
    rows = []
    for component in components or capture.position_components:
        for layer in range(capture.layers(component)):
            x = capture.features(component, layer)
            probe = fit_probe(x[rows_of["train"]], y["train"], kind)
            for where in WHERE:
                rows.append(
                    {
                        "component": component,
                        "layer": layer,
                        "target": _target_name(target, modulus),
                        "where": where,
                        "accuracy": probe.accuracy(x[rows_of[where]], y[where]),
                        "n": int(masks[where].sum()),
                        "baseline": baseline(y["train"].numpy(), y[where].numpy(), target),
                    }
                )
    return pd.DataFrame(rows)


def _target_name(target: str, modulus: int) -> str:
    return f"count mod {modulus}" if target == "count_mod" else "count"


def best_layer(table: pd.DataFrame, where: str = "OOD") -> pd.Series:
    """The row of the best-scoring (component, layer) at ``where`` (first of ties)."""
    scored = table[table["where"] == where].dropna(subset=["accuracy"])
    if not len(scored):
        raise ValueError(f"no probe was scored at {where} positions")
    return scored.loc[scored["accuracy"].idxmax()]


def plot_probes(table: pd.DataFrame, title: str = ""):
    """Accuracy per layer, a line per component, solid IND and dashed OOD, one panel per
    target; the grey band is the best constant readout."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    targets = list(dict.fromkeys(table["target"]))
    fig, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.4), squeeze=False)
    for ax, target in zip(axes.flat, targets, strict=True):
        data = table[table["target"] == target]
        sns.lineplot(
            data=data, x="layer", y="accuracy", hue="component", style="where",
            style_order=list(WHERE), markers=True, ax=ax,
        )  # fmt: skip
        ax.axhline(data["baseline"].max(), color="0.6", linestyle=":", linewidth=1)
        ax.set(title=f"probe: {target}", ylim=(-0.02, 1.02), xlabel="layer (0 = input)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7, loc="lower left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
