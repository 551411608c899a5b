"""Ready-made sweep specs (see `countlib.sweep`): ``smoke``, ``paper`` and ``paper-lite``.

Every profile derives from the tables of `countlib.paper` (each table's grid at the paper's
scale), so a table added there is trained by every profile.

``paper``: the protocol of ``protocol.md`` for Tables 2/A2, A1/A3 and A4-A8, five seeds
(1234, 12, 123, 42, 319), 312,500 steps, evaluation every 30,000 steps; meant for GPUs.
Where the paper is silent it trains what the original trained (each a recorded config field):

- Evaluation of shifted position ids: the original tester re-drew the shift and looped 10 times
  over each test set (seed-spec 4.2, ``tester.py --loop 10``); ``shift_samples: 10`` does the
  same. One draw per evaluation, followed by a best-of-evaluations choice, would bias best and
  median OOD upward on the small OOD sets (49-300 lines). Runs with a fixed scheme (NoPE, the
  recurrent families) resolve to one draw, which is all of them.
- S4 initialisation: ``b_imag_clip: 2.0`` clips Im(B) at +-2 as the original's DPLR set-up did
  (state-spaces/s4 ``nplr(B_clip=2.0)``; 11 of 32 entries at N = 64); ``null`` turns it off.
- RWKV-6 optimiser: AdamW betas (0.9, 0.99) and the L2Wrap logit regulariser at 1e-4
  (seed-spec 3.5); ``betas`` and ``l2wrap`` are settable in a spec like ``lr``.
- Mixed precision on GPU, per family (``precision: auto``): Mamba fp32 (seed-spec 3.4),
  RNN/LSTM/S4 fp16 (3.3), RWKV bf16 (3.1, 3.5); Transformers bf16, countlib's choice over the
  original's fp16, which diverged in 19 of 618 runs (seed-spec 7.17).
- ``frozen_tokens``: the ``<null>`` row of the ``*_nullseq`` tasks starts at zero and never
  trains, in every family (the original left it uninitialised: seed-spec 7.14).
- Best checkpoints: never the untrained model (step 0); a tie goes to the later step.

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
worker processes and builds the book: 5.0-5.5 minutes on a fresh clone on a 2-core CPU. It checks
that every piece runs end to end and fills every table layout; it does not train the models to the
paper's accuracy.
"""

from __future__ import annotations

from typing import Any

from countlib.paper import PAPER_SEEDS, PAPER_TABLES
from countlib.sweep import SweepRun, expand


def paper_grid() -> list[dict[str, Any]]:
    """Every table's grid entries at the paper's scale, each tagged with its table."""
    return [{"table": table.key, **entry} for table in PAPER_TABLES for entry in table.grid]


#: Keys of a paper-scale grid entry that the smoke profile replaces by its own settings.
_SMOKE_DROPS = ("lr", "weight_decay", "dropout", "warmup_steps")
SMOKE_WIDTH, SMOKE_HEADS, SMOKE_RWKV_HEAD_SIZE = 32, 4, 16


def _smaller(value: Any, cap: int) -> Any:
    return [min(v, cap) for v in value] if isinstance(value, list) else min(value, cap)


def shrink(entry: dict[str, Any]) -> dict[str, Any]:
    """A paper-scale grid entry at smoke size: the first of several depths (a depth the table
    fixes stays: A8's 4 layers are cheap at width 32), width at most 32, at most 4 heads, and
    the profile's own optimiser settings."""
    small = {k: v for k, v in entry.items() if k not in _SMOKE_DROPS}
    if isinstance(small.get("layers"), list):
        small["layers"] = small["layers"][0]
    small["hidden"] = _smaller(small.get("hidden", SMOKE_WIDTH), SMOKE_WIDTH)
    if "heads" in small:
        small["heads"] = _smaller(small["heads"], SMOKE_HEADS)
    if small["model"] == "rwkv6":  # RWKV's default head size (64) exceeds the width
        small["head_size"] = SMOKE_RWKV_HEAD_SIZE
    return small


PAPER: dict[str, Any] = {
    "name": "paper",
    "description": "the paper's protocol: Tables 2/A2, A1/A3, A4-A8; 5 seeds",
    "steps": 312_500,
    "eval_every": 30_000,
    "shift_samples": 10,
    "seeds": list(PAPER_SEEDS),
    "grid": paper_grid(),
}

PAPER_LITE: dict[str, Any] = {
    **PAPER,
    "name": "paper-lite",
    "description": "the paper's grid with one seed and 10,000 steps: one GPU in a day",
    "steps": 10_000,
    "eval_every": 2_000,
    "seeds": [PAPER_SEEDS[0]],
}

SMOKE: dict[str, Any] = {
    "name": "smoke",
    "description": "every family on the paper's tasks at tiny size, one seed; CPU, minutes",
    "steps": 300,
    "eval_every": 300,
    "seeds": [PAPER_SEEDS[0]],
    "lr": 1e-3,
    "warmup_steps": 0,
    "grid": [shrink(entry) for entry in paper_grid()],
}

PROFILES: dict[str, dict[str, Any]] = {spec["name"]: spec for spec in (SMOKE, PAPER, PAPER_LITE)}


def get_profile(name: str) -> list[SweepRun]:
    """The expanded runs of the profile called ``name``."""
    try:
        spec = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
    return expand(spec)
