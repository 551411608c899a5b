"""Attention maps per head, and how much attention depends on position ids.

Two sensitivities, each one number per model and free of the scale of the logits, so that
models with different PEs compare:

- `pair_sensitivity` (the paper's Figure A6, the one claim 17 is judged on): a key token b at
  position id p_t and a query token a at p_s >= p_t, alone in a two-token sequence, for many
  position pairs and every pair of the task's input tokens; the first layer's raw score from a
  to b varies with the positions and with the tokens. The number is the positions' share of that
  variance, mean over (a, b) of the variance over position pairs divided by the total variance
  (0: positions do not matter, 1: only positions matter). With a single input token (mod 10's
  ``a``) the tokens cannot vary and the share is 1 for any PE that reads positions.
- `shift_sensitivity`: every position id of a real batch moved by one constant; the number is
  the mean total-variation distance between the attention rows before and after. It measures
  dependence on *absolute* ids only: RoPE, ALiBi and T5 scores depend on id differences and
  do not move at all (up to float rounding), NoPE never moves.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from countlib.analysis.states import Capture, has_attention
from countlib.batches import Batch
from countlib.models.transformer import Transformer
from countlib.tasks import HELPER_TOKENS
from countlib.vocab import Vocab

#: The paper's colour bins of score standard deviations (Figure A6).
STD_BINS = (0, 0.05, 0.2, 0.5, 1, 2, 5)


def require_attention(model: torch.nn.Module, what: str = "attention analyses") -> Transformer:
    if not has_attention(model):
        raise ValueError(
            f"{what} need a model with attention (a Transformer); this is a {type(model).__name__}"
        )
    assert isinstance(model, Transformer)
    return model


def attention_frame(capture: Capture, sequence: int = 0) -> pd.DataFrame:
    """Scores and probabilities between one sequence's real positions, tidy: layer, head,
    query, key, query_token, key_token, score, prob (a masked pair has probability 0)."""
    if "probs" not in capture.tensors:
        raise ValueError("this capture has no attention (capture a Transformer with attention)")
    rows = capture.index[capture.index["sequence"] == sequence]
    length = int((~rows["padding"]).sum())
    tokens = rows["token"].to_numpy()[:length]
    query, key = (grid.ravel() for grid in np.indices((length, length)))
    frames = []
    for layer, (scores, probs) in enumerate(
        zip(capture.tensors["scores"], capture.tensors["probs"], strict=True)
    ):
        for head in range(scores.shape[1]):
            frames.append(
                pd.DataFrame(
                    {
                        "layer": layer,
                        "head": head,
                        "query": query,
                        "key": key,
                        "query_token": tokens[query],
                        "key_token": tokens[key],
                        "score": scores[sequence, head, query, key].numpy(),
                        "prob": probs[sequence, head, query, key].numpy(),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def plot_attention_maps(frame: pd.DataFrame, title: str = ""):
    """Post-softmax attention of one sequence, one panel per (layer, head): rows are queries,
    columns keys."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import PowerNorm

    layers, heads = frame["layer"].max() + 1, frame["head"].max() + 1
    length = frame["query"].max() + 1
    fig, axes = plt.subplots(
        layers, heads, figsize=(2.6 * heads, 2.6 * layers), squeeze=False, sharex=True, sharey=True
    )
    for (layer, head), data in frame.groupby(["layer", "head"]):
        image = np.full((length, length), np.nan)
        image[data["query"], data["key"]] = data["prob"]
        ax = axes[layer, head]
        # a square-root scale: spread-out attention stays visible beside peaked rows
        ax.imshow(image, cmap="magma", norm=PowerNorm(0.5, 0, 1), interpolation="nearest")
        ax.set_title(f"layer {layer}, head {head}", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("key position")
    for ax in axes[:, 0]:
        ax.set_ylabel("query position")
    fig.suptitle(title or "attention probabilities")
    fig.tight_layout()
    return fig


# -- sensitivity to absolute ids -------------------------------------------------------------


def _shifted(ids: Tensor, real: Tensor, shift: float, limit: float) -> Tensor:
    """Each sequence's ids at real positions moved by +shift, or by -shift where that would
    leave the range [0, limit) (padding keeps its ids); ValueError if neither fits."""
    high = torch.where(real, ids, ids.new_full((), -limit)).amax(1)
    low = torch.where(real, ids, ids.new_full((), 2 * limit)).amin(1)
    up, down = high + shift < limit, low - shift >= 0
    if not (up | down).all():
        raise ValueError(f"a shift of {shift} takes some position ids out of [0, {limit})")
    delta = torch.where(up, shift, -shift).to(ids.dtype)[:, None]
    return torch.where(real, ids + delta, ids)


def _probs(model: Transformer, batch: Batch, position_ids: Tensor) -> list[Tensor]:
    maps = model.attention_maps(
        batch.input_ids, position_ids=position_ids, attention_mask=batch.attention_mask
    )
    return [m.probs for m in maps]


@torch.no_grad()
def shift_sensitivity(
    model: torch.nn.Module, batch: Batch, *, shift: int = 8, id_range: int = 128
) -> pd.DataFrame:
    """Mean total-variation distance between every real query's attention row before and after
    moving all of a sequence's position ids by ``shift`` (within [0, ``id_range``); float ids
    of the scalar PE move by shift / id_range within [0, 1)); rows layer, head, tv."""
    model = require_attention(model, "shift sensitivity")
    ids, real = batch.position_ids, batch.real_index >= 0
    if ids.is_floating_point():
        moved = _shifted(ids, real, shift / id_range, 1.0)
    else:
        limit = model.config.max_positions if _has_table(model) else id_range
        moved = _shifted(ids, real, shift, limit)
    queries = real[:, None, :]  # [B, 1, T]
    rows = []
    pairs = zip(_probs(model, batch, ids), _probs(model, batch, moved), strict=True)
    for layer, (before, after) in enumerate(pairs):
        tv = 0.5 * (before - after).abs().sum(-1)  # [B, H, T]
        per_head = (tv * queries).sum((0, 2)) / queries.sum()
        rows += [{"layer": layer, "head": h, "tv": v} for h, v in enumerate(per_head.tolist())]
    return pd.DataFrame(rows).assign(shift=shift)


def _has_table(model: Transformer) -> bool:
    """Whether the model looks ids up in a table, so that shifted ids must stay below its
    max_positions rather than within the analysis's id range."""
    return any(scheme.table for scheme in model.schemes)


# -- sensitivity to position pairs (Figure A6) -----------------------------------------------


@torch.no_grad()
def pair_sensitivity(
    model: torch.nn.Module,
    tokens: Mapping[str, int],
    *,
    id_range: int = 128,
    floats: bool = False,
    pairs: int = 256,
    seed: int = 0,
    chunk: int = 8192,
) -> pd.DataFrame:
    """Raw scores of every (query token a, key token b) of ``tokens`` (name -> id) in a
    two-token sequence ``b a`` at position ids (p_t, p_s), p_t <= p_s < ``id_range``, for
    ``pairs`` position pairs drawn at random (all of them if there are fewer); ``floats``:
    the scalar PE's values p / id_range. Rows layer, head, query_token, key_token, score_mean,
    score_std (population std over the position pairs)."""
    model = require_attention(model, "pair sensitivity")
    positions = _position_pairs(id_range, pairs, seed)  # [I, 2]
    names, ids = list(tokens), torch.tensor(list(tokens.values()))
    grid = torch.tensor(list(itertools.product(range(len(ids)), repeat=2)))  # (a, b)
    n_tok, n_pos = len(grid), len(positions)
    input_ids = torch.stack((ids[grid[:, 1]], ids[grid[:, 0]]), 1).repeat_interleave(n_pos, 0)
    position_ids = positions.repeat(n_tok, 1)
    if floats:
        position_ids = position_ids.float() / id_range
    scores = []  # per chunk: [layers, N, H], the score from the query (second) to the key
    for start in range(0, len(input_ids), chunk):
        maps = model.attention_maps(
            input_ids[start : start + chunk], position_ids=position_ids[start : start + chunk]
        )
        scores.append(torch.stack([m.scores[:, :, 1, 0] for m in maps]))
    table = torch.cat(scores, 1)
    table = table.view(table.shape[0], n_tok, n_pos, -1)  # [L, A*B, I, H]
    mean, std = table.mean(2), table.std(2, unbiased=False)  # [L, A*B, H]
    rows = []
    for layer, cell, head in itertools.product(
        range(table.shape[0]), range(n_tok), range(table.shape[3])
    ):
        a, b = grid[cell].tolist()
        rows.append(
            {
                "layer": layer,
                "head": head,
                "query_token": names[a],
                "key_token": names[b],
                "score_mean": mean[layer, cell, head].item(),
                "score_std": std[layer, cell, head].item(),
            }
        )
    return pd.DataFrame(rows)


def _position_pairs(id_range: int, pairs: int, seed: int) -> Tensor:
    every = torch.tensor([(t, s) for s in range(id_range) for t in range(s + 1)])
    if len(every) <= pairs:
        return every
    generator = torch.Generator().manual_seed(seed)
    return every[torch.randperm(len(every), generator=generator)[:pairs]]


def position_share(cells: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, head) of a `pair_sensitivity` table: the share of the raw score's variance
    that the position pairs explain, V_pos / (V_pos + V_tok) with V_pos the mean over token
    pairs of the variance over positions and V_tok the variance over token pairs of the mean
    (together the total variance, equal groups)."""

    def share(group: pd.DataFrame) -> float:
        within = (group["score_std"] ** 2).mean()
        between = group["score_mean"].var(ddof=0)
        total = within + between
        return float(within / total) if total > 0 else 0.0

    shares = cells.groupby(["layer", "head"])[["score_mean", "score_std"]].apply(share)
    return shares.rename("position_share").reset_index()


def first_layer_share(cells: pd.DataFrame) -> float:
    """The model's number: the first layer's position share, mean over heads."""
    shares = position_share(cells)
    return float(shares[shares["layer"] == 0]["position_share"].mean())


def input_tokens(capture: Capture, vocab: Vocab, limit: int = 12) -> dict[str, int]:
    """The commonest input tokens of a capture's real positions, helpers left out, at most
    ``limit`` (name -> id)."""
    index = capture.index
    real = index[~index["padding"] & ~index["token"].isin(HELPER_TOKENS)]
    common = real["token"].value_counts().index[:limit]
    return {token: vocab.id(token) for token in sorted(common, key=str)}


def plot_pair_sensitivity(tables: Mapping[str, pd.DataFrame], layer: int = 0):
    """Per model (a row each, keyed by label) and head: the standard deviation over position
    pairs of the raw score of each (query token, key token), in the paper's colour bins."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm

    heads = max(int(t["head"].max()) + 1 for t in tables.values())
    fig = plt.figure(figsize=(2.6 * heads + 1.5, 3.2 * len(tables)), layout="constrained")
    norm = BoundaryNorm(STD_BINS, 256, extend="max")
    for subfigure, (label, cells) in zip(
        fig.subfigures(len(tables), 1, squeeze=False)[:, 0], tables.items(), strict=True
    ):
        data = cells[cells["layer"] == layer]
        shares = position_share(data)
        subfigure.suptitle(
            f"{label}, layer {layer}: position share {shares['position_share'].mean():.2f}",
            fontsize=9,
        )
        axes = subfigure.subplots(1, heads, squeeze=False)[0]
        for head, ax in enumerate(axes):
            grid = data[data["head"] == head].pivot(
                index="query_token", columns="key_token", values="score_std"
            )
            image = ax.imshow(grid.to_numpy(), cmap="viridis", norm=norm)
            ax.set_xticks(range(len(grid.columns)), grid.columns, fontsize=6, rotation=90)
            ax.set_yticks(range(len(grid.index)), grid.index, fontsize=6)
            ax.set(title=f"head {head}", xlabel="key token")
            ax.title.set_fontsize(8)
        axes[0].set_ylabel("query token")
        subfigure.colorbar(image, ax=axes, shrink=0.9, label="std over position pairs")
    return fig
