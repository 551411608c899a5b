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

Size: 416 distinct configs x 5 seeds = 2,080 runs (Table 2: 7 tasks x 3 depths x 5 PEs = 105;
A1: 6 tasks x 3 depths x 5 families = 90; A4: 12 new with BOS, the 12 without are Table 2's;
A5: 2 widths x 5 PEs = 10; A6: 2 widths x 2 masks = 4; A7: 10 new with BOS, the 10 without are
Table 2's; A8: 5; countlib's own Table H1: 180 new, 6 tasks x 3 depths x 10 columns, its LSTM,
Mamba and RWKV-6 columns are Table A1's runs). The paper's 1,180 runs are about 3,200 V100
GPU-hours by `countlib.sweep.step_seconds`, all 2,080 about 5,700; `countlib sweep --dry-run`
prints it.

``paper-lite``: the same grid, one seed (1234) and 10,000 steps with evaluation every 2,000:
about 36 V100 GPU-hours by the same model, 20.7 of them the paper's tables: a V100 day for
those and another half for Table H1 (a recent GPU should need well under that). It
trains 31 times shorter than the paper: a first look at the whole grid, not its numbers.

Table A5's budget is not stated anywhere; its runs get the same steps as the others.

``smoke`` (the README's main job) and ``laptop``: CPU profiles that *decide claims*. Each
lists, as `Deciding` objects, the claims of `countlib.claims` it trains for and the settings of
their cells (width, lr, budget, seeds); `claim_grid` trains every cell those claims read (controls
included, every depth) with them, and every other table cell once, tiny (1 layer, A8's 4; width
32; 100 steps at lr 1e-3; one seed), so that every table layout is filled and every family runs.
The settings were chosen on in-distribution accuracy only, never OOD and never a verdict, by the
rule of ``experiments/choose_lr.py`` (the lowest lr whose best IND reaches 95 %, else the highest
IND; the budget is the evaluation at which it first fitted); the candidates and results are in
``experiments/smoke_selection*.md`` and ``experiments/claims_selection*.md``, and each `Deciding`
below says which result it uses. A claim whose runs still do not fit stays *undecided* in the
book, which names the profile meant to decide it (`deciding_profiles`).

``smoke`` (the README's main job) aims at seven claims a 2-core CPU can decide in minutes: 3 (NoPE
and RoPE with BOS, Table A4, d = 32), 8 and 10 (mod 10 without BOS, Table 2: 1 layer at d = 128, 2
and 4 layers at d = 32), 15 (the causal mask marks the first token, Table A6 at d = 4, 3 seeds), 20
(the Elman RNN, Table A1, width 64-128), 21 and 24 for S4 (S4 on Table A1's tasks, width 32).
``laptop`` adds six: 4 (Table 2 on Helper Token, 2 and 4 layers), 12 (Table A7, d = 64), 14 (Table
A5, 3 seeds), 19 (the LSTM, Table A1, width 64-128) and 24 for Mamba (a task it fits at every
depth, width 32), and countlib's own claims C1-C3 (Table H1's 1-layer cells of mod 10,
Selective + mod 4 and Shifted Start, width 32; ``experiments/hypothesis_selection.md``). Both
keep the paper's batch size (32), with a Transformer warmup of 100 steps
(none for the probes). The claims they leave to ``paper-lite`` (1, 2, 5, 6, 7, 9, 11, 13, 22, 23,
24 for RWKV-6) had cells that did not fit at CPU budgets (``experiments/claims_selection.md``:
Vanilla + Succession and Shifted Start at 1,500 steps, SPE on mod 10; Selective, Selective + mod 4
and Table A8 under mod 10's settings in an earlier laptop book; RWKV-6 at 4 layers on mod 10) or
read every A1 task of a family too slow on CPU for all of them (Mamba, RWKV-6: 26-140 ms a step).
Wall times on the 2-core CPU, fresh clone, book included: README.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from countlib.claims import ALL_CLAIMS, OWN_CLAIMS, CellRef
from countlib.paper import NEGATIVE, PAPER_SEEDS, TABLES

if TYPE_CHECKING:
    from countlib.sweep import SweepRun


def paper_grid() -> list[dict[str, Any]]:
    """Every table's grid entries at the paper's scale, each tagged with its table."""
    return [{"table": table.key, **entry} for table in TABLES for entry in table.grid]


#: Keys of a paper-scale grid entry that the small profiles replace by their own settings.
_SMALL_DROPS = ("lr", "weight_decay", "dropout", "warmup_steps")
SMOKE_WIDTH, SMOKE_HEADS, SMOKE_RWKV_HEAD_SIZE = 32, 4, 16


def _smaller(value: Any, cap: int) -> Any:
    return [min(v, cap) for v in value] if isinstance(value, list) else min(value, cap)


def shrink(entry: dict[str, Any]) -> dict[str, Any]:
    """A paper-scale grid entry at smoke size: the first of several depths (a depth the table
    fixes stays: A8's 4 layers are cheap at width 32), width at most 32, at most 4 heads, and
    the profile's own optimiser settings."""
    small = {k: v for k, v in entry.items() if k not in _SMALL_DROPS}
    if isinstance(small.get("layers"), list):
        small["layers"] = small["layers"][0]
    small["hidden"] = _smaller(small.get("hidden", SMOKE_WIDTH), SMOKE_WIDTH)
    if "heads" in small:
        small["heads"] = _smaller(small["heads"], SMOKE_HEADS)
    if small["model"] == "rwkv6":  # RWKV's default head size (64) exceeds the width
        small["head_size"] = SMOKE_RWKV_HEAD_SIZE
    return small


# -- claim-deciding profiles ----------------------------------------------------------------------

#: Keys whose list value is one setting, not a sweep axis.
_PAIR_KEYS = ("betas",)


def single_configs(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A grid entry split into one entry per configuration (every list crossed out)."""
    axes = [k for k, v in entry.items() if isinstance(v, list) and k not in _PAIR_KEYS]
    return [
        {**entry, **dict(zip(axes, values, strict=True))}
        for values in itertools.product(*(entry[k] for k in axes))
    ]


def _matches(config: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    return all(key in config and config[key] == value for key, value in where.items())


def _identity(config: Mapping[str, Any]) -> tuple:
    """A configuration without its table tag: the same run may fill several tables."""
    return tuple(sorted((k, str(v)) for k, v in config.items() if k != "table"))


def cells_fed(config: Mapping[str, Any], tables: Iterable[str]) -> set[CellRef]:
    """The table cells a paper-scale configuration fills, given the tables whose grids hold it
    (Tables A2 and A3 report the runs of Tables 2 and A1)."""
    tables = set(tables)
    return {
        (table.key, row, column)
        for table in TABLES
        if table.runs_of in tables
        for row, row_filter in table.rows
        for column, column_filter in table.columns
        if _matches(config, {**row_filter, **column_filter})
    }


def claim_cells(keys: Iterable[str]) -> set[CellRef]:
    """Every cell read by the claims ``keys`` (`countlib.claims.Claim.key`: "19", "24 S4")."""
    keys = set(keys)
    return {ref for claim in ALL_CLAIMS if claim.key in keys for ref in claim.cells}


@dataclass(frozen=True)
class Deciding:
    """How a profile trains the runs of some claims: the settings (steps, lr, width, seeds ...)
    chosen for them on in-distribution accuracy (``experiments/``), for the configurations of
    the claims' cells that also match ``where``."""

    claims: tuple[str, ...]  # claim keys (`countlib.claims.Claim.key`)
    settings: Mapping[str, Any]
    where: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""  # the selection result the settings come from

    def covers(self, config: Mapping[str, Any], cells: set[CellRef]) -> bool:
        return _matches(config, self.where) and bool(cells & claim_cells(self.claims))


def claim_grid(deciding: Iterable[Deciding]) -> list[dict[str, Any]]:
    """The paper's grid at small scale: each configuration that fills a cell of a deciding
    claim, at every depth, with the settings of the first `Deciding` that covers it; every other
    table cell once, at its first depth, `shrink`-ed (so that every table layout is filled and
    every family runs); the rest left out."""
    deciding = list(deciding)
    entries = [(entry, config) for entry in paper_grid() for config in single_configs(entry)]
    tables_of: dict[tuple, set[str]] = {}
    for _, config in entries:
        tables_of.setdefault(_identity(config), set()).add(config["table"])
    grid = []
    for entry, config in entries:
        cells = cells_fed(config, tables_of[_identity(config)])
        rule = next((d for d in deciding if d.covers(config, cells)), None)
        if rule is not None:
            grid.append({**shrink(config), **rule.settings})
        elif not isinstance(entry.get("layers"), list) or config["layers"] == entry["layers"][0]:
            grid.append(shrink(config))
    return grid


def decided_claims(deciding: Iterable[Deciding]) -> set[str]:
    return {key for d in deciding for key in d.claims}


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
    "description": "the paper's grid and Table H1 with one seed and 10,000 steps: one GPU, "
    "about a day and a half",
    "steps": 10_000,
    "eval_every": 2_000,
    "seeds": [PAPER_SEEDS[0]],
}

#: The small profiles' own defaults: what a cell no claim reads trains with.
_FILLER = {"steps": 100, "eval_every": 100, "seeds": [PAPER_SEEDS[0]], "lr": 1e-3,
           "warmup_steps": 0}  # fmt: skip
_TRANSFORMER = {"model": "transformer"}


def _claims_profile(name: str, description: str, deciding: tuple[Deciding, ...]) -> dict:
    return {
        "name": name,
        "description": description,
        **_FILLER,
        "grid": claim_grid(deciding),
    }


def _transformer(layers: int, hidden: int, lr: float, steps: int, **where: Any) -> dict:
    """Settings of the Table 2 cells at one depth (4 heads, 100 warmup steps, 3 evaluations)."""
    settings = {"hidden": hidden, "heads": 4, "lr": lr, "steps": steps,
                "eval_every": steps // 3, "warmup_steps": 100}  # fmt: skip
    return {"settings": settings, "where": {**_TRANSFORMER, "layers": layers, **where}}


#: Mod 10 without BOS (claims 8 and 10): SinePE, the control of claim 10, fits at 1 layer only
#: at d = 128 (d = 32 and 64 did not within 1,500 and 3,000 steps), at 2 layers with lr 3e-3
#: and at 4 with lr 1e-3 (experiments/claims_selection.md). NoPE and RoPE, which claim 10 says
#: cannot fit, train with the lr of their row's control; APE (claim 8) with its own best-IND lr.
_MOD10_SETTINGS = {1: (128, 3e-3, 3000), 2: (32, 3e-3, 1500), 4: (32, 1e-3, 1500)}
_MOD10 = (
    Deciding(("8", "10"), **_transformer(2, 32, 1e-3, 1500, pe="ape")),
    *(Deciding(("8", "10"), **_transformer(n, *s)) for n, s in _MOD10_SETTINGS.items()),
)
#: Table A6 at d = 4 (claim 15): NoPE with the causal mask fits on one of three seeds within
#: 2,500 steps at lr 3e-3 (round 2 chose the lr); a cell is the best of its seeds.
_FIRST_TOKEN_HETEROGENEOUS = Deciding(
    ("15",),
    {"lr": 3e-3, "steps": 3000, "eval_every": 500, "seeds": list(PAPER_SEEDS[:3])},
    where={"task": "first_token_heterogeneous"},
)

#: Table A4's BOS rows (claim 3) at d = 32, lr 3e-3: RoPE fits both tasks at every depth within
#: 500 steps, the budget; NoPE fitted none within 1,500 and takes its row's budget, as on mod 10
#: (claims_selection.md).
_BOS = Deciding(
    ("3",),
    {"hidden": 32, "heads": 4, "lr": 3e-3, "steps": 500, "eval_every": 250, "warmup_steps": 100},
    where=_TRANSFORMER,
)
#: S4 at width 32 fits mod 10 at every depth within 500 steps (the budget) at lr 1e-3 (and 1e-2;
#: claims_selection.md): mod 10 is claim 24's task for S4, one per depth. Claim 21 reads S4 on
#: the other A1 tasks, which had no selection run: they take the settings chosen on mod 10.
_S4_SETTINGS = {"hidden": 32, "lr": 1e-3, "steps": 500, "eval_every": 250}
_S4 = (
    Deciding(("24 S4",), _S4_SETTINGS, where={"model": "s4", "task": "mod10"}),
    Deciding(("21",), _S4_SETTINGS, where={"model": "s4"}),
)

#: Table A1's recurrent baselines at 1 layer: width 64, lr 1e-2 fits Helper Token (+ Shifted
#: Start), Shifted Start and mod 10 within 4,000 steps (smoke_selection_2.md); ``hard`` gives the
#: tasks that needed width 128 (claims_selection.md).
_RECURRENT_EASY = {"hidden": 64, "lr": 1e-2, "steps": 4000, "eval_every": 1000}


def _recurrent(claim: str, model: str, hard: Mapping[str, Mapping[str, Any]]) -> tuple:
    width_128 = tuple(
        Deciding((claim,), {"hidden": 128, **settings}, where={"model": model, "task": task})
        for task, settings in hard.items()
    )
    return (*width_128, Deciding((claim,), _RECURRENT_EASY, where={"model": model}))


#: The Elman RNN (claim 20): on Selective + mod 4 the best was lr 3e-3 (49 % at 6,000 steps),
#: which does not fit: the claim stays undecided unless a fitted cell contradicts it.
_RNN = _recurrent("20", "rnn", {"selective_mod4": {"lr": 3e-3, "steps": 6000, "eval_every": 2000}})
SMOKE_DECIDING: tuple[Deciding, ...] = (*_MOD10, _FIRST_TOKEN_HETEROGENEOUS, _BOS, *_S4, *_RNN)

#: Table A7, Selective with BOS at 1 layer (claim 12): d = 64 and lr 3e-3 (round 2); NoPE, RoPE
#: and SPE fit by 2,000 steps, SinePE by 6,000, APE reached 94.9 % (claims_selection.md).
_SELECTIVE_BOS = Deciding(
    ("12",),
    {"hidden": 64, "heads": 4, "lr": 3e-3, "steps": 6000, "eval_every": 2000, "warmup_steps": 100},
    where=_TRANSFORMER,
)
#: The LSTM (claim 19): Selective fits at lr 1e-2 within 4,000 steps, Selective + mod 4 at lr
#: 3e-3 within 8,000 (claims_selection.md; its 12,000 steps were set before that run finished).
_LSTM = _recurrent(
    "19",
    "lstm",
    {
        "selective": {"lr": 1e-2, "steps": 4000, "eval_every": 1000},
        "selective_mod4": {"lr": 3e-3, "steps": 12000, "eval_every": 2000},
    },
)
#: Table 2 on Helper Token at 2 and 4 layers (claim 4) had no selection run of its own: it takes
#: the settings chosen on mod 10 at the same depth (SinePE's, the PE that fitted there). Claims 7,
#: 11 and 13 (Table A8, Selective, Selective + mod 4) trained that way in an earlier laptop book
#: and fitted no cell they read, so they cost a third of its time and decided nothing; they are
#: left to ``paper-lite``.
_HELPER_TOKEN = tuple(Deciding(("4",), **_transformer(n, *_MOD10_SETTINGS[n])) for n in (2, 4))
#: Claim 24 for Mamba reads, at each depth, any Table A1 task Mamba fits: mod 10 where it fitted
#: in selection, as for S4, else the tasks it fitted instead (claims_selection.md, round 4: at 1
#: layer mod 10 reached 70 % within 5,000 steps at width 32 and 77 % at 64; Helper Token and
#: Selective fitted). Width 32, each cell at its chosen lr and first fitting evaluation. RWKV-6's
#: 4-layer mod 10 reached 94 % within 4,000 steps (140 ms a step): its claim 24 is left to
#: ``paper-lite``.
_MAMBA_CELLS = {  # (layers, task): (lr, steps)
    (1, "helper_token"): (1e-2, 1000), (1, "selective"): (1e-2, 500),
    (2, "mod10"): (1e-2, 3500), (4, "mod10"): (1e-3, 2000),
}  # fmt: skip
_MAMBA = tuple(
    Deciding(
        ("24 Mamba",),
        {"hidden": 32, "lr": lr, "steps": steps, "eval_every": 250 if steps <= 1000 else 500},
        where={"model": "mamba", "task": task, "layers": layers},
    )
    for (layers, task), (lr, steps) in _MAMBA_CELLS.items()
)
#: Table A5, the homogeneous first-token probe (claim 14), 3 seeds: each PE that fitted at its
#: lowest fitting lr and first fitting evaluation (claims_selection.md, rounds 3 and 4: SinePE at
#: d = 4 needed lr 1e-2, SPE at d = 32 lr 1e-3; at 3e-3 it stayed at 0 % on 3 seeds). NoPE and
#: RoPE, which the claim says cannot fit, take lr 3e-3 (round 2's) and their row's longest budget.
_A5_SETTINGS = {  # (d, pe): (lr, steps)
    (4, "sine"): (1e-2, 3000), (4, "ape"): (3e-3, 500), (4, "spe"): (3e-3, 2000),
    (32, "sine"): (3e-3, 3000), (32, "ape"): (3e-3, 1500), (32, "spe"): (1e-3, 1000),
}  # fmt: skip


def _probe(lr: float, steps: int) -> dict[str, Any]:
    return {"lr": lr, "steps": steps, "eval_every": max(steps // 4, 250), "warmup_steps": 0,
            "seeds": list(PAPER_SEEDS[:3])}  # fmt: skip


_HOMOGENEOUS = {"task": "first_token_homogeneous"}
_A5 = (
    *(
        Deciding(("14",), _probe(lr, steps), where={**_HOMOGENEOUS, "hidden": d, "pe": pe})
        for (d, pe), (lr, steps) in _A5_SETTINGS.items()
    ),
    *(
        Deciding(
            ("14",),
            _probe(3e-3, max(s for (w, _), (_, s) in _A5_SETTINGS.items() if w == d)),
            where={**_HOMOGENEOUS, "hidden": d},
        )
        for d in (4, 32)
    ),
)
#: Table H1 at 1 layer (countlib's claims C1-C3), width 32, one seed: each cell at its lowest
#: fitting lr and first fitting evaluation, else at its highest-IND lr and the selection's 3,000
#: steps (experiments/hypothesis_selection.md). Within 3,000 steps only DeltaNet and Gated
#: DeltaNet with transitions in [-1, 1] fit mod 10 (1,500 steps; 94.7 % and 94.4 % IND in
#: [0, 1]), no cell fits Selective + mod 4 (37-71 %), and Mamba (both ranges) and Mamba-2 in
#: [-1, 1] fit Shifted Start. The sLSTM (claim C4), at about 80 ms a step, did not finish its
#: selection (Helper Token fitted at 1,500 steps) and is left to ``paper-lite``.
_HYPOTHESIS_CELLS = {  # (model, transitions in [-1, 1], task): (lr, steps)
    ("mamba", False, "mod10"): (1e-2, 3000), ("mamba", True, "mod10"): (1e-2, 3000),
    ("mamba", False, "selective_mod4"): (1e-2, 3000),
    ("mamba", True, "selective_mod4"): (1e-2, 3000),
    ("mamba", False, "shifted_start"): (1e-2, 3000),
    ("mamba", True, "shifted_start"): (1e-2, 3000),
    ("mamba2", False, "mod10"): (1e-2, 3000), ("mamba2", True, "mod10"): (1e-2, 3000),
    ("mamba2", False, "selective_mod4"): (1e-2, 3000),
    ("mamba2", True, "selective_mod4"): (1e-2, 3000),
    ("mamba2", False, "shifted_start"): (1e-2, 3000),
    ("mamba2", True, "shifted_start"): (1e-2, 2000),
    ("deltanet", False, "mod10"): (3e-3, 3000), ("deltanet", True, "mod10"): (3e-3, 1500),
    ("deltanet", False, "selective_mod4"): (1e-2, 3000),
    ("deltanet", True, "selective_mod4"): (3e-3, 3000),
    ("deltanet", False, "shifted_start"): (1e-2, 3000),
    ("deltanet", True, "shifted_start"): (1e-2, 3000),
    ("gated_deltanet", False, "mod10"): (3e-3, 3000),
    ("gated_deltanet", True, "mod10"): (3e-3, 1500),
    ("gated_deltanet", False, "selective_mod4"): (1e-2, 3000),
    ("gated_deltanet", True, "selective_mod4"): (3e-3, 3000),
    ("gated_deltanet", False, "shifted_start"): (1e-2, 3000),
    ("gated_deltanet", True, "shifted_start"): (1e-2, 3000),
    ("mingru", None, "mod10"): (1e-2, 3000), ("mingru", None, "selective_mod4"): (3e-3, 3000),
    ("minlstm", None, "mod10"): (1e-2, 3000), ("minlstm", None, "selective_mod4"): (3e-3, 3000),
}  # fmt: skip
_OWN_KEYS = tuple(claim.key for claim in OWN_CLAIMS if claim.number != "C4")


def _hypothesis_cell(model: str, negative: bool | None, task: str, lr: float, steps: int):
    option = {} if negative is None else {NEGATIVE: negative}
    where = {"model": model, "task": task, "layers": 1, **option}
    settings = {"hidden": 32, "lr": lr, "steps": steps, "eval_every": 500}
    return Deciding(_OWN_KEYS, settings, where=where)


_HYPOTHESIS = tuple(
    _hypothesis_cell(model, negative, task, *settings)
    for (model, negative, task), settings in _HYPOTHESIS_CELLS.items()
)
LAPTOP_DECIDING: tuple[Deciding, ...] = (
    *SMOKE_DECIDING,
    *_A5,
    _SELECTIVE_BOS,
    *_LSTM,
    *_HELPER_TOKEN,
    *_MAMBA,
    *_HYPOTHESIS,
)

SMOKE = _claims_profile(
    "smoke",
    "the structural claims at small size, every other cell tiny; CPU, minutes",
    SMOKE_DECIDING,
)

LAPTOP = _claims_profile(
    "laptop",
    "thirteen of the paper's claims and Table H1's 1-layer cells on a 2-core CPU in under an "
    "hour; every other cell tiny",
    LAPTOP_DECIDING,
)

PROFILES: dict[str, dict[str, Any]] = {
    spec["name"]: spec for spec in (SMOKE, LAPTOP, PAPER, PAPER_LITE)
}
#: What each claim-deciding profile trains for which claims, smallest first.
DECIDING: dict[str, tuple[Deciding, ...]] = {"smoke": SMOKE_DECIDING, "laptop": LAPTOP_DECIDING}


def deciding_profiles() -> dict[str, str]:
    """Per claim key, the smallest profile that trains its cells to decide it; the claims no
    CPU profile aims at need the whole grid at GPU scale (``paper-lite``, or ``paper`` where the
    short budget does not fit)."""
    decided = {claim.key: "paper-lite" for claim in ALL_CLAIMS}
    for name in reversed(DECIDING):  # the smallest profile first in DECIDING wins
        decided |= dict.fromkeys(decided_claims(DECIDING[name]), name)
    return decided


def get_profile(name: str) -> list[SweepRun]:
    """The expanded runs of the profile called ``name``."""
    from countlib.sweep import expand  # torch: only when runs are made

    try:
        spec = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
    return expand(spec)
