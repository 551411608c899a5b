"""Examples of a task as HTML, for the book's task pages: inputs above their labels.

Positions whose label is ``-1`` are neither trained nor scored: they show as a grey dot.
Helper tokens are shaded. Long examples keep their first and last tokens around an ellipsis,
so that the rule is visible at both ends.
"""

from __future__ import annotations

import html
import random

from countlib.tasks.base import HELPER_TOKENS, UNSUPERVISED, Example, Task, real_length
from countlib.tasks.mixture import Mixture

HEAD, TAIL = 14, 6
#: Preferred length of a shown example: long enough for a modulus of 10 to wrap around.
READABLE = 16


def parts(task: Task) -> list[Task]:
    """The task itself, or the main task and every auxiliary of a mixture."""
    return list(task.components) if isinstance(task, Mixture) else [task]


def short_example(task: Task, seed: int = 0, tries: int = 200) -> Example:
    """The training draw (of ``tries``) whose real length is closest to READABLE tokens."""
    rng = random.Random(seed)
    draws = [task.sample(rng) for _ in range(tries)]
    return min(draws, key=lambda example: abs(real_length(example[0]) - READABLE))


def _cells(tokens: list[str], labels: list[str]) -> tuple[list[str], list[str]]:
    def cell(token: str, helper: bool) -> str:
        style = ' style="background:#eeeeee"' if helper else ""
        return f"<td{style}>{html.escape(token)}</td>"

    inputs = [cell(tok, tok in HELPER_TOKENS) for tok in tokens]
    outputs = [
        '<td style="color:#9e9e9e">·</td>' if lab == UNSUPERVISED else cell(lab, False)
        for lab in labels
    ]
    return inputs, outputs


def example_html(example: Example, caption: str = "") -> str:
    """One example as a two-row table: ``input`` and ``label``, truncated in the middle."""
    tokens, labels = example
    inputs, outputs = _cells(list(tokens), list(labels))
    if len(tokens) > HEAD + TAIL + 1:
        gap = f'<td title="{len(tokens) - HEAD - TAIL} positions left out">…</td>'
        inputs = [*inputs[:HEAD], gap, *inputs[-TAIL:]]
        outputs = [*outputs[:HEAD], gap, *outputs[-TAIL:]]
    head = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return (
        f'<div style="overflow-x:auto"><table class="countlib-example">{head}'
        f"<tr><th>input</th>{''.join(inputs)}</tr>"
        f"<tr><th>label</th>{''.join(outputs)}</tr></table></div>"
    )


def task_html(task: Task, seed: int = 0) -> str:
    """A short training example of the task, and of each auxiliary of a mixture, with the
    lengths the task trains and is tested on."""
    blocks = []
    for index, part in enumerate(parts(task)):
        example = short_example(part, seed)
        role = " (auxiliary)" if index else ""
        caption = f"{part.name}{role}: a training example of {len(example[0])} tokens"
        blocks.append(example_html(example, caption))
    ood = task.splits["ood"].lengths
    lengths = (
        f"<p>Training sequences: {task.train_lengths[0]}-{task.train_lengths[1]} real tokens; "
        f"OOD: {ood[0]}-{ood[1]}; scored as extrapolation from position "
        f"{task.max_train_length}.</p>"
    )
    return "".join(blocks) + lengths
