"""PCA of hidden states per layer, coloured by count mod k and by position id (the paper's
Figure A3: SinePE and APE models trained on mod 10 cluster by count mod 10, SPE models do not).

The principal axes are fitted on in-distribution positions only and every position is projected
onto them, so the picture shows whether states beyond the training length fall into the same
clusters. What the picture shows is put in a number by `countlib.analysis.probe`: a linear
probe's accuracy at reading count mod k from each layer, in and beyond the training length.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from countlib.analysis.states import Capture

#: Points drawn per panel at most (a random subset; the PCA itself uses every position).
MAX_POINTS = 3000


def pca(features: Tensor, k: int = 2, fit: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """The first ``k`` principal components of ``features`` [N, D] ([N, k]) and the share of
    the fitted rows' variance each explains; the axes come from the rows ``fit`` (bool [N],
    default all)."""
    x = features.double()
    basis = x if fit is None else x[fit]
    mean = basis.mean(0)
    _, singular, vh = torch.linalg.svd(basis - mean, full_matrices=False)
    k = min(k, vh.shape[0])
    explained = singular.pow(2) / singular.pow(2).sum().clamp(min=1e-30)
    return ((x - mean) @ vh[:k].T).float(), explained[:k].float()


def pca_frame(
    capture: Capture, *, component: str = "residual", modulus: int = 10, k: int = 2
) -> pd.DataFrame:
    """Tidy PCA coordinates of every counted position at every layer of ``component``:
    layer, sequence, position, position_id, count, count_mod, where (IND / OOD), pc1..pck and
    explained1..explainedk (the variance share of each axis)."""
    index = capture.index
    counted = (index["supervised"] & index["count"].notna()).to_numpy()
    rows = index[counted]
    fit = torch.tensor(~rows["extrapolation"].to_numpy())
    frames = []
    for layer in range(capture.layers(component)):
        x = capture.features(component, layer)[torch.tensor(counted)]
        scores, explained = pca(x, k, fit)
        frame = pd.DataFrame(
            {
                "layer": layer,
                "sequence": rows["sequence"].to_numpy(),
                "position": rows["real_index"].to_numpy(),
                "position_id": rows["position_id"].to_numpy(),
                "count": rows["count"].to_numpy(),
                "count_mod": np.mod(rows["count"].to_numpy(), modulus).astype(int),
                "where": np.where(rows["extrapolation"].to_numpy(), "OOD", "IND"),
            }
        )
        for i in range(scores.shape[1]):
            frame[f"pc{i + 1}"] = scores[:, i].numpy()
            frame[f"explained{i + 1}"] = explained[i].item()
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def plot_pca(frame: pd.DataFrame, probes: pd.DataFrame | None = None, title: str = ""):
    """One row per layer: PC1 against PC2 coloured by count mod k (left) and by position id
    (right); crosses are positions beyond the training length. With ``probes`` (a
    `countlib.analysis.probe.probe_layers` table of the same layers), each row's title gives
    the probe's IND and OOD accuracy."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    layers = sorted(frame["layer"].unique())
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 3.6 * len(layers)), squeeze=False)
    modulus = int(frame["count_mod"].max()) + 1
    for row, layer in zip(axes, layers, strict=True):
        data = frame[frame["layer"] == layer]
        if len(data) > MAX_POINTS:
            data = data.sample(MAX_POINTS, random_state=0)
        share = data["explained1"].iloc[0] + data["explained2"].iloc[0]
        for ax, hue, palette in (
            (row[0], "count_mod", sns.color_palette("tab10" if modulus <= 10 else "husl", modulus)),
            (row[1], "position_id", "viridis"),
        ):
            sns.scatterplot(
                data=data, x="pc1", y="pc2", hue=hue, style="where", style_order=["IND", "OOD"],
                markers={"IND": "o", "OOD": "X"}, palette=palette, s=14, linewidth=0, ax=ax,
            )  # fmt: skip
            ax.legend(fontsize=6, loc="best", ncol=2)
            ax.set(xlabel="PC1", ylabel="PC2")
        heading = f"layer {layer} (PC1+PC2: {100 * share:.0f} % of IND variance)"
        if probes is not None:
            heading += _probe_note(probes, layer)
        row[0].set_title(f"{heading}\ncoloured by count mod {modulus}", fontsize=9)
        row[1].set_title("coloured by position id", fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _probe_note(probes: pd.DataFrame, layer: int) -> str:
    at = probes[probes["layer"] == layer].set_index("where")["accuracy"]
    return f"\nprobe: IND {_pct(at.get('IND'))}, OOD {_pct(at.get('OOD'))}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None or np.isnan(value) else f"{100 * value:.0f} %"
