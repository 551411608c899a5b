"""Deterministic evaluation of a model on a task's splits."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext

import torch
from torch import nn

from countlib.batches import Batch, Collator, evaluation_batches
from countlib.metrics import EvalResult, Scores
from countlib.tasks import Example, Task


@torch.no_grad()
def evaluate_batches(
    model: nn.Module,
    task: Task,
    batches: Iterable[Batch],
    *,
    device: torch.device | str = "cpu",
    autocast: Callable[[], object] = nullcontext,
) -> EvalResult:
    """Score ``model`` on ``batches`` (`countlib.batches.evaluation_batches`), without autograd;
    the counts stay on ``device`` until the result is read, once."""
    was_training = model.training
    model.eval()
    scores = Scores(label_ids=len(task.vocab))
    for batch in batches:
        batch = batch.to(device)
        with autocast():
            logits = model(
                batch.input_ids,
                position_ids=batch.position_ids,
                attention_mask=batch.attention_mask,
            )
        scores.update(logits.argmax(dim=-1), batch)
    model.train(was_training)
    return scores.result(task.vocab)


def evaluate(
    model: nn.Module,
    task: Task,
    examples: list[Example],
    collator: Collator,
    *,
    batch_size: int = 64,
    shift_samples: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    autocast: Callable[[], object] = nullcontext,
) -> EvalResult:
    """Score ``model`` on ``examples``, collated by ``collator`` (`evaluate_batches`)."""
    batches = evaluation_batches(
        task, examples, collator, batch_size, shift_samples=shift_samples, seed=seed
    )
    return evaluate_batches(model, task, batches, device=device, autocast=autocast)
