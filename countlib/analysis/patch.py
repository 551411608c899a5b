"""Activation patching of the counting state: which layer or state component carries the count.

Pairs of positions with different counts are drawn, one in a target sequence and one in a
source sequence of the same batch. One component of one layer at the target position is set to
its value at the source position (from the clean run), and the patched model's prediction is
read: it *follows the source* when it names the source's count there, it *keeps the target*
when it names the target's. Where the count lives, patching moves the prediction to the
source's count.

- The stream (``residual``, patched by a forward hook): the prediction at the patched position
  itself is read; the last layer carries the count trivially (the head reads it), the first
  layer at which patching moves the prediction is where the count has been computed.
- States (``hidden``, ``cell``, ``state``, ``conv_state``, patched in the model's step form):
  the state a position hands on is replaced, so the prediction at the next position is read.

Only positions within the training length where the clean model is right, in source and
target, are paired, and the token at the read position is the same in both: the pair differs
in the count alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor, nn

from countlib.analysis.states import (
    Capture,
    Patch,
    capture,
    family_spec,
    forward,
    hooked,
    step_through,
)
from countlib.batches import IGNORE, Batch
from countlib.tasks import Task

#: Positions between the patched one and the one read: the stream acts at once, a state on the
#: next step.
STREAM_OFFSET, STATE_OFFSET = 0, 1


@dataclass(frozen=True)
class Pairs:
    """Patched (target) and patching (source) positions; predictions are read ``offset``
    positions after the patch."""

    target_rows: Tensor
    target_positions: Tensor
    source_rows: Tensor
    source_positions: Tensor
    offset: int

    def __len__(self) -> int:
        return len(self.target_rows)


def choose_pairs(clean: Capture, batch: Batch, offset: int, seed: int = 0) -> Pairs:
    """One pair per target sequence where one exists: its source is another sequence of the
    batch; both read positions are right in the clean run, within the training length, hold the
    same token and have different labels."""
    labels, tokens = batch.labels, batch.input_ids
    right = (labels != IGNORE) & (clean.predictions == labels)
    right &= ~batch.extrapolation & (batch.real_index >= 0)
    B, T = labels.shape
    # readable[b, t]: the position read after patching t is usable
    readable = torch.zeros_like(right)
    readable[:, : T - offset] = right[:, offset:]
    read_labels, read_tokens = labels.roll(-offset, 1), tokens.roll(-offset, 1)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(B, generator=generator)
    chosen = []
    for target, source in zip(order.tolist(), order.roll(1).tolist(), strict=True):
        at_target, at_source = readable[target].nonzero()[:, 0], readable[source].nonzero()[:, 0]
        differ = read_labels[target, at_target][:, None] != read_labels[source, at_source][None]
        same = read_tokens[target, at_target][:, None] == read_tokens[source, at_source][None]
        options = (differ & same).nonzero()
        if len(options) and target != source:
            i, j = options[torch.randint(len(options), (1,), generator=generator)].tolist()[0]
            chosen.append((target, at_target[i].item(), source, at_source[j].item()))
    columns = torch.tensor(chosen, dtype=torch.long).reshape(-1, 4).T
    return Pairs(*columns, offset=offset)


def _outcome(
    component: str, layer: int, logits: Tensor, batch: Batch, pairs: Pairs
) -> dict[str, object]:
    offset = pairs.offset
    predicted = logits.argmax(-1)[pairs.target_rows, pairs.target_positions + offset]
    source = batch.labels[pairs.source_rows, pairs.source_positions + offset]
    target = batch.labels[pairs.target_rows, pairs.target_positions + offset]
    follows = (predicted == source).float().mean().item() if len(pairs) else float("nan")
    keeps = (predicted == target).float().mean().item() if len(pairs) else float("nan")
    return {
        "component": component,
        "layer": layer,
        "read": "same position" if offset == STREAM_OFFSET else "next position",
        "pairs": len(pairs),
        "follows_source": follows,
        "keeps_target": keeps,
        "other": 1 - follows - keeps,
    }


@torch.no_grad()
def patching(model: nn.Module, batch: Batch, task: Task, *, seed: int = 0) -> pd.DataFrame:
    """Patch every stream point and every state component of every layer in turn; one row
    each: component, layer, read (same / next position), pairs, follows_source, keeps_target,
    other (fractions of the pairs)."""
    spec = family_spec(model)
    model.eval()
    clean = capture(model, batch, task, attention=False)
    rows = []
    pairs = choose_pairs(clean, batch, STREAM_OFFSET, seed)
    for layer, point in enumerate(spec.stream(model)):
        values = clean.tensors["residual"][layer][pairs.source_rows, pairs.source_positions]

        def patch(value, point=point, values=values):
            return point.patched(value, pairs.target_rows, pairs.target_positions, values)

        with hooked([point], [patch]):
            logits = forward(model, batch)
        rows.append(_outcome("residual", layer, logits, batch, pairs))
    if spec.steps is not None:
        stepper = spec.steps(model)
        pairs = choose_pairs(clean, batch, STATE_OFFSET, seed)
        for component in stepper.components:
            for layer in range(stepper.layers):
                values = clean.tensors[component][layer][pairs.source_rows, pairs.source_positions]
                patch = Patch(component, layer, pairs.target_rows, pairs.target_positions, values)
                logits, _ = step_through(stepper, batch.input_ids, patch, record=False)
                rows.append(_outcome(component, layer, logits, batch, pairs))
    return pd.DataFrame(rows)


def carrier(table: pd.DataFrame, threshold: float = 0.9) -> pd.Series | None:
    """The first (component, layer), in the table's order, whose patch makes at least
    ``threshold`` of the predictions follow the source; None if none does."""
    hits = table[table["follows_source"] >= threshold]
    return None if hits.empty else hits.iloc[0]


def plot_patching(table: pd.DataFrame, title: str = ""):
    """Per patched (component, layer): the share of predictions that follow the source count
    and the share that keep the target's."""
    import matplotlib.pyplot as plt
    import numpy as np

    names = [f"{c} {layer}" for c, layer in zip(table["component"], table["layer"], strict=True)]
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.8 * len(table) + 2), 3.4))
    ax.bar(x - 0.2, table["follows_source"], 0.4, label="follows source count")
    ax.bar(x + 0.2, table["keeps_target"], 0.4, label="keeps target count")
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set(ylim=(0, 1.02), ylabel="share of patched pairs", title=title or "activation patching")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
