"""Ready-made sweep specs (see `countlib.sweep`): ``smoke``, ``paper`` and ``paper-lite``.

``paper``: the protocol of ``protocol.md`` for Tables 2/A2, A1/A3 and A4-A8, five seeds
(1234, 12, 123, 42, 319), 312,500 steps, evaluation every 30,000 steps; meant for GPUs.

- Transformers: d = 1024, 8 heads, the family's optimiser (AdamW 1e-4, weight decay 0.01,
  3,000 warmup steps); every PE but NoPE trains with shifted position ids (the PE's default).
- Recurrent families (Table A1): the paper picked each family's hyper-parameters from a search
  (lr {5e-5, 1e-4, 1e-3, 1e-2}, weight decay {0, 0.01, 0.001}, hidden {32, 128, 1024}, dropout
  {0, 0.1}) whose winners were never published. The profile uses the original code's defaults,
  all inside that space (seed-spec 2.2-2.4, 3.3-3.5): hidden 128 everywhere; RNN, LSTM and S4
  with lr 1e-2, weight decay 0.01, dropout 0.1; Mamba and RWKV-6 with lr 1e-4, no weight decay.
  A spec file with lists for these keys runs the search itself.
- The paper states budgets of 312,500 or 625,000 steps without saying which runs had the
  longer one; every run here gets 312,500 (set ``steps`` in a spec file for the other).
- Table A6: NoPE on ``first_token_heterogeneous`` with and without the causal mask
  (``causal: false``), at d = 32 and d = 4.

Size: 236 distinct configs x 5 seeds = 1,180 runs (Table 2: 7 tasks x 3 depths x 5 PEs = 105;
A1: 6 tasks x 3 depths x 5 families = 90; A4: 12 new with BOS, the 12 without are Table 2's;
A5: 2 widths x 5 PEs = 10; A6: 2 widths x 2 masks = 4; A7: 10 new with BOS, the 10 without are
Table 2's; A8: 5). About 3,200 V100 GPU-hours by `countlib.sweep.step_seconds`;
`countlib sweep --dry-run` prints it.

``paper-lite``: the same grid, one seed (1234) and 10,000 steps with evaluation every 2,000:
about 20.7 V100 GPU-hours, one GPU in a day (a recent GPU should need well under that). It
trains 31 times shorter than the paper: a first look at the whole grid, not its numbers.

Table A5's budget is not stated anywhere; its runs get the same steps as the others.

``smoke``: the README's main job. Every family (RNN, LSTM, S4, Mamba, RWKV-6, and the Transformer
with each of the five PEs) on the paper's tasks (Transformers on tasks 2-8, recurrent families on
A1's tasks 3-8), plus every appendix table's configurations (A4's BOS tasks, A5 and A6's
first-token probes at d = 32 and 4, A7's Selective with BOS, A8's train/OOD ratios with a 4-layer
RoPE model): 1 layer (A8: 4), width 32, 300 steps at lr 1e-3 without warmup, one seed, evaluation
at the start and the end; 93 runs. `countlib book --profile smoke` trains them two at a time in
worker processes and builds the book: 10.5-11.5 minutes on a fresh clone on a 2-core CPU. It checks
that every piece runs end to end and fills every table layout; it does not train the models to the
paper's accuracy.
"""

from __future__ import annotations

from typing import Any

from countlib.config import PAPER_SEEDS
from countlib.sweep import SweepRun, expand

#: Paper tasks 2-8 (Figure 1), in order: Table 2's rows.
PAPER_TASKS = [
    "vanilla_succession",
    "helper_token",
    "helper_token_shifted_start",
    "shifted_start",
    "mod10",
    "selective",
    "selective_mod4",
]
#: Table A1's rows: tasks 3-8.
RECURRENT_TASKS = PAPER_TASKS[1:]
PAPER_PES = ["nope", "sine", "ape", "rope", "spe"]
DEPTHS = [1, 2, 4]
PAPER_TRANSFORMER = {"model": "transformer", "hidden": 1024, "heads": 8}
#: Table A8: train / OOD maximum lengths 25/50, 50/100, 25/100, 50/200, 25/200.
RATIO_TASKS = [
    "shifted_start_tr25_te50",
    "shifted_start_tr50_te100",
    "shifted_start_tr25_te100",
    "shifted_start_tr50_te200",
    "shifted_start_tr25_te200",
]

_PROBE = {"model": "transformer", "layers": 1, "heads": 1, "hidden": [32, 4]}
#: Tables A5 and A6: tiny already at the paper's size, so the smoke profile runs them as they are.
FIRST_TOKEN_PROBES = [
    {"table": "A5", "task": "first_token_homogeneous", **_PROBE, "pe": PAPER_PES},
    {
        "table": "A6",
        "task": "first_token_heterogeneous",
        **_PROBE,
        "pe": "nope",
        "causal": [True, False],
    },
]

PAPER: dict[str, Any] = {
    "name": "paper",
    "description": "the paper's protocol: Tables 2/A2, A1/A3, A4-A8; 5 seeds",
    "steps": 312_500,
    "eval_every": 30_000,
    "seeds": list(PAPER_SEEDS),
    "grid": [
        {"table": "2", "task": PAPER_TASKS, **PAPER_TRANSFORMER, "pe": PAPER_PES, "layers": DEPTHS},
        {
            "table": "A1",
            "task": RECURRENT_TASKS,
            "model": ["rnn", "lstm", "s4"],
            "layers": DEPTHS,
            "hidden": 128,
            "dropout": 0.1,
            "lr": 1e-2,
            "weight_decay": 0.01,
        },
        {
            "table": "A1",
            "task": RECURRENT_TASKS,
            "model": "mamba",
            "layers": DEPTHS,
            "hidden": 128,
            "lr": 1e-4,
            "weight_decay": 0.0,
        },
        {
            "table": "A1",
            "task": RECURRENT_TASKS,
            "model": "rwkv6",
            "layers": DEPTHS,
            "hidden": 128,
            "dropout": 0.1,
            "lr": 1e-4,
            "weight_decay": 0.0,
        },
        {
            "table": "A4",
            "task": ["vanilla_succession", "vanilla_succession_bos", "mod10", "mod10_bos"],
            **PAPER_TRANSFORMER,
            "pe": ["nope", "rope"],
            "layers": DEPTHS,
        },
        *FIRST_TOKEN_PROBES,
        {
            "table": "A7",
            "task": ["selective", "selective_bos"],
            **PAPER_TRANSFORMER,
            "pe": PAPER_PES,
            "layers": [1, 2],
        },
        {"table": "A8", "task": RATIO_TASKS, **PAPER_TRANSFORMER, "pe": "rope", "layers": 4},
    ],
}

PAPER_LITE: dict[str, Any] = {
    **PAPER,
    "name": "paper-lite",
    "description": "the paper's grid with one seed and 10,000 steps: one GPU in a day",
    "steps": 10_000,
    "eval_every": 2_000,
    "seeds": [PAPER_SEEDS[0]],
}

_TINY = {"layers": 1, "hidden": 32}

SMOKE: dict[str, Any] = {
    "name": "smoke",
    "description": "every family on the paper's tasks at tiny size, one seed; CPU, minutes",
    "steps": 300,
    "eval_every": 300,
    "seeds": [PAPER_SEEDS[0]],
    "lr": 1e-3,
    "warmup_steps": 0,
    "grid": [
        {
            "table": "2",
            "task": PAPER_TASKS,
            "model": "transformer",
            **_TINY,
            "heads": 4,
            "pe": PAPER_PES,
        },
        {"table": "A1", "task": RECURRENT_TASKS, "model": ["rnn", "lstm", "s4", "mamba"], **_TINY},
        # RWKV's default head size (64) exceeds hidden 32
        {"table": "A1", "task": RECURRENT_TASKS, "model": "rwkv6", **_TINY, "head_size": 16},
        {
            "table": "A4",
            "task": ["vanilla_succession_bos", "mod10_bos"],
            "model": "transformer",
            **_TINY,
            "heads": 4,
            "pe": ["nope", "rope"],
        },
        *FIRST_TOKEN_PROBES,
        {
            "table": "A7",
            "task": "selective_bos",
            "model": "transformer",
            **_TINY,
            "heads": 4,
            "pe": PAPER_PES,
        },
        # Table A8's rows are 4-layer RoPE models; 4 layers at width 32 stay cheap
        {
            "table": "A8",
            "task": RATIO_TASKS,
            "model": "transformer",
            "layers": 4,
            "hidden": 32,
            "heads": 4,
            "pe": "rope",
        },
    ],
}

PROFILES: dict[str, dict[str, Any]] = {spec["name"]: spec for spec in (SMOKE, PAPER, PAPER_LITE)}


def get_profile(name: str) -> list[SweepRun]:
    """The expanded runs of the profile called ``name``."""
    try:
        spec = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
    return expand(spec)
