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

``smoke`` (the README's main job), ``laptop`` and ``overnight``: CPU profiles that *decide claims*.
Each lists, as `Deciding` objects, the claims of `countlib.claims` it trains for and the settings
of their cells (width, lr, budget, seeds); `claim_plan` trains every cell those claims read
(controls included, every depth) with them, to a plateau with a cap of about twice the selection
budget (`to_plateau`, ``experiments/plateau_rule.md``). ``overnight`` also trains every other
table cell once, tiny (1 layer, A8's 4; width 32; 100 steps at lr 1e-3; one seed: a structural
check), so that every table layout is filled and every family runs; the main job and the laptop do
not (`FILLED`). Where several `Deciding` objects cover one configuration, the *first* in the
profile's tuple wins (`first_covering`): a narrower one is listed before the broader one it
refines.

The settings were chosen on in-distribution accuracy only, never OOD and never a verdict, by the
rule of ``experiments/choose_lr.py`` (the lowest lr whose best IND reaches 95 %, else the highest
IND; the budget is the evaluation at which it first fitted, and the cell's cap twice that); the
candidates and results are in ``experiments/smoke_selection*.md``,
``experiments/claims_selection.md`` and ``experiments/hypothesis_selection.md``. The chosen lr,
width and budget of every configuration a profile uses are data,
``experiments/chosen_settings.yaml`` (`countlib.selections`), each entry naming its record and
round, and ``choose_lr.py --write`` updates them from the selection runs; each `Deciding` holds the
entries it reads (``sources``) and says how its settings follow from them (``how``, `Deciding.why`).
`explain` (``countlib sweep --profile NAME --dry-run --why``, and the provenance page) says of every
run which claims it serves, or which table it fills as a structural check, and where its settings
come from. A claim whose runs still do not fit stays *undecided* in the book, which names the
profile meant to decide it (`deciding_profiles`).

``smoke`` (the README's main job) aims at claim 10 (mod 10 without BOS, Table 2: 1 layer at d =
128, 2 and 4 layers at d = 32), the claim a 2-core CPU trains to a plateau in its minutes and whose
verdict a second draw of seeds reproduced (`countlib.robustness`); its SinePE controls were chosen
to fit on each of two seeds (``experiments/seed_agreement_selection.md``). It trains one seed a
cell, so a verdict that rests on a cell doing badly, which needs two
(`countlib.claims.LOW_NEEDS_SEEDS`), is out of its reach: it shows claim 10's cells on one seed and
decides nothing. ``laptop`` and ``overnight`` train every deciding cell on two seeds
(`DECIDING_SEEDS`: 1234 and 42; three where a claim reads the best of three, Table A6 and A5).
``laptop`` trains, within its hour (``experiments/laptop_budget.md``), claim 10 (the main job's
cells), then the cheapest claims on two seeds: 15 (the causal mask marks the first token, Table A6
at d = 4, 3 seeds) and 20 (the Elman RNN, Table A1, width 64-128). ``overnight`` adds the claims
past the laptop's hour: 8 (SinePE and APE on mod 10), 3 (NoPE and RoPE with BOS, Table A4, d =
32), 21 and 24 for S4 (S4 on Table A1's tasks, width 32), 4 (Table 2 on Helper Token, 2 and 4
layers), 24 for Mamba (a task it fits at every depth, width 32),
19 (the LSTM, Table A1, width 64-128), 12 (Table A7, d = 64), 14 (Table A5, 3 seeds) and countlib's
own claims C1-C3 (Table H1's 1-layer cells of mod 10, Selective + mod 4 and Shifted Start, width 32;
``experiments/hypothesis_selection.md``): 1,082 CPU-minutes at the caps by the estimate, about
nine hours on two cores. All three keep the paper's batch size (32), with a Transformer warmup of
100 steps (none for the probes). The claims they leave to ``paper-lite`` (1, 2, 5, 6, 7, 9, 11,
13, 22, 23, 24 for RWKV-6) had cells that did not fit at CPU budgets
(``experiments/claims_selection.md``: Vanilla + Succession and Shifted Start at 1,500 steps, SPE on
mod 10; Selective, Selective + mod 4 and Table A8 under mod 10's settings in an earlier laptop book;
RWKV-6 at 4 layers on mod 10) or read every A1 task of a family too slow on CPU for all of them
(Mamba, RWKV-6: 26-140 ms a step). Wall times on the 2-core CPU, fresh clone, book included:
README.md."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import pandas as pd

from countlib.claims import ALL_CLAIMS, LOW_NEEDS_SEEDS, OWN_CLAIMS, SEEDED_PROFILE, CellRef
from countlib.families import get_family
from countlib.paper import LONGER_BUDGETS, NEGATIVE, PAPER_SEEDS, TABLES
from countlib.plateau import PLATEAU_EVALS, PLATEAU_TOLERANCE
from countlib.selections import Chosen, find_chosen, load_chosen, record_name

if TYPE_CHECKING:
    from countlib.sweep import SweepRun


def paper_grid() -> list[dict[str, Any]]:
    """Every table's grid entries at the paper's scale, each tagged with its table."""
    return [{"table": table.key, **entry} for table in TABLES for entry in table.grid]


#: Keys of a paper-scale grid entry that the small profiles replace by their own settings.
_SMALL_DROPS = ("lr", "weight_decay", "dropout", "warmup_steps")
SMOKE_WIDTH, SMOKE_HEADS = 32, 4


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
    # what a family needs at such a width (RWKV's default head size, 64, exceeds it); an entry
    # that lists several families (Table A1's) gets each one's once split (`single_configs`)
    if isinstance(small["model"], str):
        small |= get_family(small["model"]).narrow_options
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
    chosen for them on in-distribution accuracy, for the configurations of the claims' cells
    that also match ``where``. ``sources`` are the selection results the settings come from
    (entries of ``experiments/chosen_settings.yaml``); ``how`` says how they follow from them
    where the cells had no selection of their own, or several."""

    claims: tuple[str, ...]  # claim keys (`countlib.claims.Claim.key`)
    settings: Mapping[str, Any]
    where: Mapping[str, Any] = field(default_factory=dict)
    sources: tuple[Chosen, ...] = ()
    how: str = ""

    def covers(self, config: Mapping[str, Any], cells: set[CellRef]) -> bool:
        return _matches(config, self.where) and bool(cells & claim_cells(self.claims))

    @property
    def why(self) -> str:
        """Where the settings come from, in full: ``how``, then each source's record, round,
        configuration and outcome."""
        by_record: dict[str, list[str]] = {}
        for source in self.sources:
            by_record.setdefault(source.source, []).append(f"{source.label}: {source.outcome}")
        cited = "; ".join(f"{record}: {', '.join(s)}" for record, s in by_record.items())
        return f"{self.how} ({cited})" if self.how else cited

    @property
    def why_short(self) -> str:
        """`why` in one readable line: the settings, ``how``, and each record and round with its
        one configuration and outcome, or how many configurations it gave."""
        shown = {"lr": "lr", "steps": "cap", "hidden": "width", "seeds": "seeds"}
        values = [
            f"{name} {len(v) if key == 'seeds' else v}"
            for key, name in shown.items()
            if (v := self.settings.get(key)) is not None
        ]
        by_record: dict[str, list[Chosen]] = {}
        for source in self.sources:
            by_record.setdefault(source.source, []).append(source)
        cited = [
            f"{record}: {group[0].label} ({group[0].outcome})"
            if len(group) == 1
            else f"{record}: {len(group)} configurations, {_summary(group)}"
            for record, group in by_record.items()
        ]
        how = f"{self.how}; " if self.how else ""
        return f"{', '.join(values)}: {how}{'; '.join(cited)}"


def _summary(sources: list[Chosen]) -> str:
    """Several configurations in one label, each varying value once: ``mod10 s4 layers=1/2/4
    hidden=32``."""

    def once(values: Iterable[Any]) -> str:
        return "/".join(dict.fromkeys(str(v) for v in values))

    keys = dict.fromkeys(key for s in sources for key in s.config)
    options = " ".join(
        f"{k}={once(s.config.get(k, '-') for s in sources)}" for k in keys if k != "model"
    )
    return f"{once(s.task for s in sources)} {once(s.config['model'] for s in sources)} {options}"


def first_covering(
    deciding: Iterable[Deciding], config: Mapping[str, Any], cells: set[CellRef]
) -> Deciding | None:
    """The `Deciding` whose settings a configuration trains with: the *first* in ``deciding``
    that covers it, or None (the configuration is a filler).

    First match wins, so the order of a profile's tuple is part of its definition: a narrower
    `Deciding` comes before the broader one it refines (APE at 2 layers before every 2-layer
    Transformer of claims 8 and 10; the RNN on Selective + mod 4 before the RNN's other tasks),
    and a later one never changes a configuration an earlier one covers."""
    return next((d for d in deciding if d.covers(config, cells)), None)


def shadowed(deciding: Sequence[Deciding]) -> list[tuple[dict[str, Any], Deciding, Deciding]]:
    """Where the order of ``deciding`` decides: each paper-scale configuration covered by two
    `Deciding` objects with different settings, with the one that wins (the first) and the one
    it overrides."""
    found = []
    for _, config, cells in _paper_configs():
        covering = [d for d in deciding if d.covers(config, cells)]
        found += [
            (config, covering[0], d) for d in covering[1:] if d.settings != covering[0].settings
        ]
    return found


@dataclass(frozen=True)
class Planned:
    """One grid entry of a claim-deciding profile and why it is there."""

    entry: dict[str, Any]  # as trained: `shrink`-ed, with the settings of ``rule``
    cells: frozenset[CellRef]  # the table cells it fills
    rule: Deciding | None  # whose settings it trains with; None: a filler


def _paper_configs() -> list[tuple[dict[str, Any], dict[str, Any], set[CellRef]]]:
    """Each configuration of the paper's grid, with its grid entry and the cells it fills (a
    configuration in several tables' grids fills the cells of all of them)."""
    entries = [(entry, config) for entry in paper_grid() for config in single_configs(entry)]
    tables_of: dict[tuple, set[str]] = {}
    for _, config in entries:
        tables_of.setdefault(_identity(config), set()).add(config["table"])
    return [(e, c, cells_fed(c, tables_of[_identity(c)])) for e, c in entries]


def claim_plan(deciding: Iterable[Deciding], fillers: bool = True) -> list[Planned]:
    """The paper's grid at small scale: each configuration that fills a cell of a deciding
    claim, at every depth, with the settings of `first_covering`; with ``fillers``, every other
    table cell once, at its first depth, `shrink`-ed (so that every table layout is filled and
    every family runs); the rest left out."""
    deciding = list(deciding)
    plan = []
    for entry, config, cells in _paper_configs():
        rule = first_covering(deciding, config, cells)
        if rule is not None:
            plan.append(Planned({**shrink(config), **rule.settings}, frozenset(cells), rule))
        elif fillers and (
            not isinstance(entry.get("layers"), list) or config["layers"] == entry["layers"][0]
        ):
            plan.append(Planned(shrink(config), frozenset(cells), None))
    return plan


def decided_claims(deciding: Iterable[Deciding]) -> set[str]:
    return {key for d in deciding for key in d.claims}


PAPER: dict[str, Any] = {
    "name": "paper",
    "description": "the paper's protocol: Tables 2/A2, A1/A3, A4-A8; 5 seeds",
    "steps": dict(LONGER_BUDGETS)["paper"],
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
    "steps": dict(LONGER_BUDGETS)["paper-lite"],
    "eval_every": 2_000,
    "seeds": [PAPER_SEEDS[0]],
}

#: The small profiles' own defaults: what a cell no claim reads trains with.
_FILLER = {"steps": 100, "eval_every": 100, "seeds": [PAPER_SEEDS[0]], "lr": 1e-3,
           "warmup_steps": 0}  # fmt: skip
_TRANSFORMER = {"model": "transformer"}


def _claims_profile(name: str, description: str, deciding: tuple[Deciding, ...]) -> dict:
    plan = claim_plan(deciding, fillers=FILLED[name])
    return {"name": name, "description": description, **_FILLER,
            "grid": [planned.entry for planned in plan]}  # fmt: skip


#: Whether a claim-deciding profile also trains every other table cell once, tiny (a
#: structural check: it fills the table's layout and runs the family, and decides nothing).
#: The main job and the laptop do not: their minutes go to cells trained to a plateau (the
#: laptop's on two seeds), and the cells they leave empty say which profile trains them
#: (`countlib.tables.deciding_command`); every family runs in the tests all the same.
FILLED = {"smoke": False, "laptop": False, "overnight": True}


# -- the selection results each profile trains with -----------------------------------------------
# Every lr, width and budget below is read from experiments/chosen_settings.yaml (`CHOSEN`),
# named by its record and configuration; what stays in code is which claims and cells each
# result serves, and the profile's own conventions (evaluation intervals, warmup, seeds).

#: The selection sweeps' choices, read once: a profile is a module constant.
CHOSEN: tuple[Chosen, ...] = tuple(load_chosen())
_CLAIMS_SELECTION, _SMOKE_SELECTION_2 = "claims_selection", "smoke_selection_2"
_HYPOTHESIS_SELECTION = "hypothesis_selection"


def _chosen(record: str, task: str, **config: Any) -> Chosen:
    """The one entry of ``record`` (``experiments/<record>.md``) for ``task`` and ``config``."""
    return find_chosen(CHOSEN, record, task, **config)


def _common(sources: Iterable[Chosen], key: str) -> Any:
    """The value of ``key`` (``"lr"`` or an option of ``config``) that ``sources`` share: one
    `Deciding` trains them all alike, so a selection that chose differently must be split."""
    values = {s.lr if key == "lr" else s.config[key] for s in sources}
    if len(values) != 1:
        raise ValueError(f"the sources of one Deciding chose different {key}: {sorted(values)}")
    return values.pop()


def _budget(sources: Iterable[Chosen]) -> int:
    """The longest budget of ``sources``: every cell of a shared setting gets to fit."""
    return max(s.budget_steps for s in sources)


#: A deciding cell trains to a plateau (`countlib.plateau`), not to a step count: it evaluates
#: `EVALUATIONS_PER_BUDGET` times within its selection budget (the first evaluation at which it
#: fitted) and stops once neither IND nor OOD has risen by more than `PLATEAU_TOLERANCE` over
#: `PLATEAU_EVALS` evaluations, or at its cap, `CAP_EVALUATIONS` evaluations: about twice the
#: budget, so a run that fitted at its budget in selection has as many steps again to settle.
#: Fixed before any run under the rule, from the selection's budgets only
#: (``experiments/plateau_rule.md``); a run still improving at its cap decides no verdict that
#: rests on its doing badly (`countlib.claims`).
EVALUATIONS_PER_BUDGET, CAP_EVALUATIONS = 4, 8


def to_plateau(budget: int) -> dict[str, Any]:
    """The settings of a deciding cell whose selection budget is ``budget`` steps: evaluation
    every quarter of it (rounded up to 50 steps), the plateau rule, and the cap."""
    every = 50 * math.ceil(budget / EVALUATIONS_PER_BUDGET / 50)
    return {"steps": CAP_EVALUATIONS * every, "eval_every": every,
            "plateau_evals": PLATEAU_EVALS, "plateau_tolerance": PLATEAU_TOLERANCE}  # fmt: skip


def _transformer(source: Chosen, **where: Any) -> dict[str, Any]:
    """A Table 2 depth at one selection result's width, heads and lr, to a plateau from its
    budget (100 warmup steps), for the Transformers at that depth that also match ``where``."""
    settings = {"hidden": source.config["hidden"], "heads": source.config["heads"],
                "lr": source.lr, **to_plateau(source.budget_steps),
                "warmup_steps": 100}  # fmt: skip
    where = {**_TRANSFORMER, "layers": source.config["layers"], **where}
    return {"settings": settings, "where": where, "sources": (source,)}


_SEED_AGREEMENT_SELECTION = "seed_agreement_selection"


def _mod10(layers: int, hidden: int = 32, pe: str = "sine") -> Chosen:
    return _chosen(
        _CLAIMS_SELECTION, "mod10", model="transformer", pe=pe, layers=layers, hidden=hidden
    )


def _mod10_control(layers: int, hidden: int) -> Chosen:
    """SinePE on mod 10 at one depth, chosen to fit on each of two seeds by the verdict band
    (``experiments/seed_agreement_selection.md``): the control of claim 10."""
    return _chosen(
        _SEED_AGREEMENT_SELECTION, "mod10", model="transformer", pe="sine", layers=layers,
        hidden=hidden,
    )  # fmt: skip


#: Mod 10 without BOS (claims 8 and 10): SinePE, the control of claim 10, fits at 1 layer only
#: at d = 128 (d = 32 and 64 did not within 1,500 and 3,000 steps), and at 2 and 4 layers at
#: d = 32, each at the lr that fitted on both selection seeds. NoPE and RoPE, which claim 10 says
#: cannot fit, train with their row's control's settings; APE (claim 8) at 2 layers with its own
#: best-IND lr.
_MOD10_CHOSEN = {1: _mod10_control(1, 128), 2: _mod10_control(2, 32), 4: _mod10_control(4, 32)}


def _mod10_rows(claims: tuple[str, ...]) -> tuple[Deciding, ...]:
    return tuple(
        Deciding(claims, **_transformer(s), how="SinePE's, the row's control")
        for s in _MOD10_CHOSEN.values()
    )


_MOD10_APE = Deciding(
    ("8",), **_transformer(_mod10(2, pe="ape"), pe="ape"), how="APE at 2 layers, its own selection"
)
#: Table A6 at d = 4 (claim 15): NoPE with the causal mask fits on one of three seeds (round 2
#: chose the lr); a cell is the best of its seeds, so three seeds train.
_HETEROGENEOUS_CHOSEN = _chosen(_CLAIMS_SELECTION, "first_token_heterogeneous", pe="nope")
_FIRST_TOKEN_HETEROGENEOUS = Deciding(
    ("15",),
    {
        "lr": _HETEROGENEOUS_CHOSEN.lr,
        **to_plateau(_HETEROGENEOUS_CHOSEN.budget_steps),
        "seeds": list(PAPER_SEEDS[:3]),
    },
    where={"task": "first_token_heterogeneous"},
    sources=(_HETEROGENEOUS_CHOSEN,),
    how="chosen with the causal mask; without it (the claim's other column) it takes the same",
)


def _shared(
    claims: tuple[str, ...],
    sources: tuple[Chosen, ...],
    keys: tuple[str, ...],
    how: str,
    **where: Any,
) -> Deciding:
    """One setting for several selected cells: their common lr and ``keys`` (width, heads),
    to a plateau from the longest of their budgets."""
    settings = {**{key: _common(sources, key) for key in keys}, "lr": _common(sources, "lr"),
                **to_plateau(_budget(sources))}  # fmt: skip
    if "heads" in keys:  # a Transformer: the profiles' 100 warmup steps
        settings["warmup_steps"] = 100
    return Deciding(claims, settings, where=where, sources=sources, how=how)


#: Table A4's BOS rows (claim 3) at d = 32: RoPE fits both tasks at every depth; NoPE fitted
#: none within 1,500 steps and takes its row's settings, as on mod 10.
_BOS = _shared(
    ("3",),
    tuple(
        _chosen(_CLAIMS_SELECTION, task, pe="rope", layers=layers)
        for task in ("mod10_bos", "vanilla_succession_bos")
        for layers in (1, 2, 4)
    ),
    ("hidden", "heads"),
    "RoPE's on both BOS tasks, every depth (the latest first fit); NoPE takes them too",
    **_TRANSFORMER,
)
#: S4 fits mod 10 at every depth: mod 10 is claim 24's task for S4, one per depth. Claim 21
#: reads S4 on the other A1 tasks, which had no selection run: they take the same settings.
_S4_CHOSEN = tuple(_chosen(_CLAIMS_SELECTION, "mod10", model="s4", layers=n) for n in (1, 2, 4))
_S4 = (
    _shared(
        ("24 S4",),
        _S4_CHOSEN,
        ("hidden",),
        "S4 on mod 10, every depth",
        model="s4",
        task="mod10",
    ),
    _shared(
        ("21",),
        _S4_CHOSEN,
        ("hidden",),
        "chosen on mod 10: the other A1 tasks had no selection run",
        model="s4",
    ),
)

#: Table A1's recurrent baselines at 1 layer: the width, lr and budget at which each fitted
#: Helper Token (+ Shifted Start), Shifted Start and mod 10 (smoke_selection_2.md); ``hard``
#: names the tasks that needed their own selection (width 128, claims_selection.md).
_RECURRENT_EASY_TASKS = ("helper_token", "helper_token_shifted_start", "shifted_start", "mod10")


def _recurrent(claim: str, model: str, hard: Iterable[str]) -> tuple[Deciding, ...]:
    width_128 = []
    for task in hard:
        source = _chosen(_CLAIMS_SELECTION, task, model=model, hidden=128)
        settings = {"hidden": source.config["hidden"], "lr": source.lr,
                    **to_plateau(source.budget_steps)}  # fmt: skip
        where = {"model": model, "task": task}
        width_128.append(Deciding((claim,), settings, where=where, sources=(source,)))
    easy = tuple(_chosen(_SMOKE_SELECTION_2, t, model=model) for t in _RECURRENT_EASY_TASKS)
    settings = {"hidden": _common(easy, "hidden"), "lr": _common(easy, "lr"),
                **to_plateau(_budget(easy))}  # fmt: skip
    how = "the tasks it fitted at width 64; its other A1 tasks take the same settings"
    rest = Deciding((claim,), settings, where={"model": model}, sources=easy, how=how)
    return (*width_128, rest)


#: The Elman RNN (claim 20): on Selective + mod 4 its best lr does not fit, so the claim stays
#: undecided unless a fitted cell contradicts it.
_RNN = _recurrent("20", "rnn", ["selective_mod4"])
#: The main job: claim 10 (mod 10 without BOS), the one claim whose cells a 2-core CPU trains to a
#: plateau within its 15 minutes and whose verdict a second draw of seeds reproduced
#: (``experiments/plateau_rule.md``; claim 8 was left undecided by the second draw and needs the
#: APE cells besides: the overnight profile trains them). One seed a cell: the laptop trains two.
SMOKE_DECIDING: tuple[Deciding, ...] = _mod10_rows(("10",))

#: Table A7, Selective with BOS at 1 layer (claim 12): d = 64 (round 2); NoPE, RoPE and SPE fit
#: by 2,000 steps, SinePE by 6,000, APE did not.
_SELECTIVE_BOS = _shared(
    ("12",),
    tuple(
        _chosen(_CLAIMS_SELECTION, "selective_bos", pe=pe)
        for pe in ("nope", "sine", "ape", "rope", "spe")
    ),
    ("hidden", "heads"),
    "every PE's (the latest first fit)",
    **_TRANSFORMER,
)
#: The LSTM (claim 19): Selective and Selective + mod 4 each at its own lr and budget.
_LSTM = _recurrent("19", "lstm", ["selective", "selective_mod4"])
#: Table 2 on Helper Token at 2 and 4 layers (claim 4) had no selection run of its own: it takes
#: the settings chosen on mod 10 at the same depth (SinePE's, the PE that fitted there). Claims 7,
#: 11 and 13 (Table A8, Selective, Selective + mod 4) trained that way in an earlier laptop book
#: and fitted no cell they read, so they cost a third of its time and decided nothing; they are
#: left to ``paper-lite``.
_HELPER_TOKEN = tuple(
    Deciding(
        ("4",),
        **_transformer(_MOD10_CHOSEN[n]),
        how="chosen on mod 10 at the same depth: Helper Token had no selection run",
    )
    for n in (2, 4)
)
#: Claim 24 for Mamba reads, at each depth, any Table A1 task Mamba fits: mod 10 where it fitted
#: in selection, as for S4, else the tasks it fitted instead (at 1 layer mod 10 reached 70 %
#: within 5,000 steps at width 32 and 77 % at 64; Helper Token and Selective fitted). Each cell
#: at its chosen lr and first fitting evaluation. RWKV-6's 4-layer mod 10 reached 94 % within
#: 4,000 steps (140 ms a step): its claim 24 is left to ``paper-lite``.
_MAMBA_CELLS = ((1, "helper_token"), (1, "selective"), (2, "mod10"), (4, "mod10"))


def _mamba(layers: int, task: str) -> Deciding:
    source = _chosen(_CLAIMS_SELECTION, task, model="mamba", layers=layers, hidden=32)
    settings = {"hidden": source.config["hidden"], "lr": source.lr,
                **to_plateau(source.budget_steps)}  # fmt: skip
    where = {"model": "mamba", "task": task, "layers": layers}
    return Deciding(("24 Mamba",), settings, where=where, sources=(source,))


_MAMBA = tuple(_mamba(layers, task) for layers, task in _MAMBA_CELLS)
#: Table A5, the homogeneous first-token probe (claim 14), 3 seeds: each PE that fitted at its
#: lowest fitting lr and first fitting evaluation (SinePE at d = 4 needed lr 1e-2, SPE at d = 32
#: lr 1e-3; at 3e-3 it stayed at 0 % on 3 seeds). NoPE and RoPE, which the claim says cannot
#: fit, had no lr of their own (round 2: 0 % at every lr): they take 3e-3, the lr the probes'
#: selection ran at (claims_selection.yaml), and their row's longest budget.
_A5_CELLS = ((4, "sine"), (4, "ape"), (4, "spe"), (32, "sine"), (32, "ape"), (32, "spe"))
_UNSELECTED_PROBE_LR = 3e-3


def _probe(lr: float, steps: int) -> dict[str, Any]:
    return {"lr": lr, **to_plateau(steps), "warmup_steps": 0,
            "seeds": list(PAPER_SEEDS[:3])}  # fmt: skip


def _a5_chosen(hidden: int, pe: str) -> Chosen:
    return _chosen(_CLAIMS_SELECTION, "first_token_homogeneous", pe=pe, hidden=hidden)


_HOMOGENEOUS = {"task": "first_token_homogeneous"}
_A5 = (
    *(
        Deciding(
            ("14",),
            _probe(s.lr, s.budget_steps),
            where={**_HOMOGENEOUS, "hidden": d, "pe": pe},
            sources=(s,),
        )
        for d, pe in _A5_CELLS
        for s in (_a5_chosen(d, pe),)
    ),
    *(
        Deciding(
            ("14",),
            _probe(_UNSELECTED_PROBE_LR, _budget(row)),
            where={**_HOMOGENEOUS, "hidden": d},
            sources=row,
            how=f"NoPE and RoPE: lr {_UNSELECTED_PROBE_LR:g}, no selection of their own; the "
            "longest budget of their row's fitting PEs",
        )
        for d in (4, 32)
        for row in (tuple(_a5_chosen(d, pe) for w, pe in _A5_CELLS if w == d),)
    ),
)
#: Table H1 at 1 layer (countlib's claims C1-C3), width 32, one seed: every cell of the
#: hypothesis selection, at its lowest fitting lr and first fitting evaluation, else at its
#: highest-IND lr and the selection's 3,000 steps. Within 3,000 steps only DeltaNet and Gated
#: DeltaNet with transitions in [-1, 1] fit mod 10 (1,500 steps; 94.7 % and 94.4 % IND in
#: [0, 1]), no cell fits Selective + mod 4 (37-71 %), and Mamba (both ranges) and Mamba-2 in
#: [-1, 1] fit Shifted Start. The sLSTM (claim C4), at about 80 ms a step, did not finish its
#: selection (Helper Token fitted at 1,500 steps) and is left to ``paper-lite``.
_OWN_KEYS = tuple(claim.key for claim in OWN_CLAIMS if claim.number != "C4")


def _hypothesis_cell(source: Chosen) -> Deciding:
    config = source.config
    option = {NEGATIVE: config[NEGATIVE]} if NEGATIVE in config else {}
    where = {"model": config["model"], "task": source.task, "layers": config["layers"], **option}
    settings = {"hidden": config["hidden"], "lr": source.lr,
                **to_plateau(source.budget_steps)}  # fmt: skip
    return Deciding(_OWN_KEYS, settings, where=where, sources=(source,))


_HYPOTHESIS = tuple(
    _hypothesis_cell(source)
    for source in CHOSEN
    if record_name(source.record) == _HYPOTHESIS_SELECTION
)
#: The seeds of every deciding cell of the laptop and overnight profiles: the two that a verdict
#: resting on a cell doing badly needs (`countlib.claims.LOW_NEEDS_SEEDS`), so that either
#: verdict can be reached. 1234 and 42 are the seeds the main job's controls were chosen to fit
#: on (``experiments/seed_agreement_selection.md``), and neither is a seed of the second draw
#: (`countlib.robustness.SECOND_SEEDS`). A `Deciding` that sets more (the probes' three) keeps
#: them.
DECIDING_SEEDS = (PAPER_SEEDS[0], PAPER_SEEDS[3])


def _on_deciding_seeds(deciding: Iterable[Deciding]) -> tuple[Deciding, ...]:
    """``deciding`` with `DECIDING_SEEDS`, where a `Deciding` does not set more seeds."""
    return tuple(
        d if len(d.settings.get("seeds", ())) >= len(DECIDING_SEEDS)
        else replace(d, settings={**d.settings, "seeds": list(DECIDING_SEEDS)})
        for d in deciding
    )  # fmt: skip


#: The laptop: claim 10 (the main job's cells, on two seeds), then the claims of CPU selections
#: cheapest first (their deciding runs' CPU-minutes on two seeds, as measured on the 2-core CPU)
#: while the profile stays within its hour (``experiments/laptop_budget.md``): 15 and 20. Like
#: the main job it trains no structural checks (`FILLED`): its minutes go to second seeds.
LAPTOP_DECIDING: tuple[Deciding, ...] = _on_deciding_seeds(
    (*_mod10_rows(("10",)), _FIRST_TOKEN_HETEROGENEOUS, *_RNN)
)
#: Overnight: every claim a CPU selection fitted, the laptop's and those past its hour (8, 3, 21
#: and 24 for S4, 4, 24 for Mamba, 19, 12, 14 and countlib's own C1-C3), at the settings chosen
#: for them, on two seeds. APE at 2 layers comes before the mod 10 rows it refines.
OVERNIGHT_DECIDING: tuple[Deciding, ...] = _on_deciding_seeds(
    (
        _MOD10_APE,
        *_mod10_rows(("8", "10")),
        _FIRST_TOKEN_HETEROGENEOUS,
        *_RNN,
        _BOS,
        *_S4,
        *_HELPER_TOKEN,
        *_A5,
        _SELECTIVE_BOS,
        *_LSTM,
        *_MAMBA,
        *_HYPOTHESIS,
    )
)

SMOKE = _claims_profile(
    "smoke",
    "the structural claims at small size, every other cell tiny; CPU, minutes",
    SMOKE_DECIDING,
)

LAPTOP = _claims_profile(
    "laptop",
    "three of the paper's claims, each deciding cell on two seeds; a 2-core CPU, within an hour",
    LAPTOP_DECIDING,
)

OVERNIGHT = _claims_profile(
    "overnight",
    "every claim a CPU selection fitted, Table H1's 1-layer cells included, each deciding cell on "
    "two seeds; a 2-core CPU for hours; every other cell tiny",
    OVERNIGHT_DECIDING,
)

PROFILES: dict[str, dict[str, Any]] = {
    spec["name"]: spec for spec in (SMOKE, LAPTOP, OVERNIGHT, PAPER, PAPER_LITE)
}
#: What each claim-deciding profile trains for which claims, smallest first.
DECIDING: dict[str, tuple[Deciding, ...]] = {
    "smoke": SMOKE_DECIDING,
    "laptop": LAPTOP_DECIDING,
    "overnight": OVERNIGHT_DECIDING,
}


def deciding_profiles() -> dict[str, str]:
    """Per claim key, the smallest profile that trains its cells to decide it; the claims no
    CPU profile aims at need the whole grid at GPU scale (``paper-lite``, or ``paper`` where the
    short budget does not fit)."""
    decided = {claim.key: "paper-lite" for claim in ALL_CLAIMS}
    for name in reversed(DECIDING):  # the smallest profile first in DECIDING wins
        decided |= dict.fromkeys(decided_claims(DECIDING[name]), name)
    return decided


def seeded_profile(key: str, past: str | None = None) -> str:
    """The smallest claim-deciding profile after ``past`` that trains every cell it decides
    claim ``key`` with on `LOW_NEEDS_SEEDS` seeds or more: where a claim was left undecided for
    want of seeds, the profile that trains them; else `SEEDED_PROFILE`. ``past`` is the book's
    profile: after a GPU profile only `SEEDED_PROFILE`; None, or a spec of one's own, any."""
    names = list(DECIDING)  # smallest first
    if past in PROFILES and past not in names:
        return SEEDED_PROFILE
    for name in names[names.index(past) + 1 if past in names else 0 :]:
        rules = [d for d in DECIDING[name] if key in d.claims]
        seeds = [len(d.settings.get("seeds", PROFILES[name]["seeds"])) for d in rules]
        if seeds and min(seeds) >= LOW_NEEDS_SEEDS:
            return name
    return SEEDED_PROFILE


def get_profile(name: str) -> list[SweepRun]:
    """The expanded runs of the profile called ``name``."""
    from countlib.sweep import expand  # torch: only when runs are made

    try:
        spec = PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None
    return expand(spec)


# -- why each run is there ------------------------------------------------------------------------


@dataclass(frozen=True)
class RunWhy:
    """Why a profile trains a run: the claims that read the cells it fills, and where its
    settings come from."""

    run: str
    tables: tuple[str, ...]
    #: The claims the profile decides that read a cell of the run (the paper's profiles: every
    #: claim that does).
    claims: tuple[str, ...]
    #: Whose settings it trains with: None for a filler of a claim-deciding profile, and for
    #: every run of a paper-scale one.
    rule: Deciding | None
    profile: str

    @property
    def filler(self) -> bool:
        return self.profile in DECIDING and self.rule is None

    @property
    def serves(self) -> str:
        """``claims 8, 10``; for a filler ``structural check: fills tables 2, A4; ...``."""
        tables = f"table{'s' if len(self.tables) > 1 else ''} {', '.join(self.tables) or '-'}"
        read = ", ".join(self.claims)
        if not self.filler:
            plural = "s" if len(self.claims) > 1 else ""
            return f"claim{plural} {read}" if self.claims else f"fills {tables}; no claim reads it"
        if not self.claims:
            return f"structural check: fills {tables}; no claim of {self.profile} reads it"
        # a claim with alternatives (one fitted cell of several) may also list a filler's cell
        return f"structural check: fills {tables}; claim {read} reads it, not trained for it"

    @property
    def settings_from(self) -> str:
        if self.rule is not None:
            return self.rule.why_short
        if self.filler:
            return (
                f"the profile's filler settings: {_FILLER['steps']} steps at lr "
                f"{_FILLER['lr']:g}, one seed, the table's first depth at width <= {SMOKE_WIDTH}"
            )
        return f"the paper's protocol: each table's grid (countlib.paper), profile {self.profile}"


def explain(name: str, runs: Iterable[str] | None = None) -> list[RunWhy]:
    """Why profile ``name`` trains each of its runs (only those named in ``runs``, if given), in
    the profile's order: a claim-deciding profile's plan (`claim_plan`) expanded entry by entry,
    so each run keeps the claims and the `Deciding` of the grid entries that made it."""
    from countlib.sweep import expand  # torch: only when runs are made

    spec = PROFILES.get(name)
    if spec is None:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}")
    deciding = DECIDING.get(name)
    aimed = [c for c in ALL_CLAIMS if deciding is None or c.key in decided_claims(deciding)]
    if deciding is None:  # the paper's grid at the paper's settings: no rule to trace
        plan = [Planned(config, frozenset(cells), None) for _, config, cells in _paper_configs()]
    else:
        plan = claim_plan(deciding, fillers=FILLED[name])
    defaults = {k: v for k, v in spec.items() if k != "grid"}
    cells: dict[str, set[CellRef]] = {}
    rules: dict[str, Deciding | None] = {}
    for planned in plan:
        for run in expand({**defaults, "grid": [planned.entry]}):
            cells.setdefault(run.name, set()).update(planned.cells)
            rules[run.name] = rules.get(run.name) or planned.rule
    wanted = None if runs is None else set(runs)
    return [
        RunWhy(
            run.name,
            run.tables,
            tuple(c.key for c in aimed if c.cells & cells[run.name]),
            rules[run.name],
            name,
        )
        for run in get_profile(name)
        if wanted is None or run.name in wanted
    ]


def format_why(explained: Iterable[RunWhy]) -> str:
    """The ``countlib sweep --dry-run --why`` listing: per run, the claims it serves, then where
    its settings come from."""
    return "\n".join(
        f"{why.run}  {why.serves}\n    settings: {why.settings_from}" for why in explained
    )


def why_summary(explained: Sequence[RunWhy]) -> str:
    """The last line of the listing: how many runs serve claims, how many are fillers."""
    fillers = sum(why.filler for why in explained)
    serving = sum(bool(why.claims) and not why.filler for why in explained)
    if any(why.profile in DECIDING for why in explained):
        return f"{len(explained)} runs: {serving} trained for claims, {fillers} structural checks"
    return f"{len(explained)} runs at the paper's settings: {serving} fill a cell a claim reads"


def why_table(name: str, runs: Iterable[str] | None = None) -> pd.DataFrame:
    """`explain` as a table (the provenance page): run, tables, claims served, settings' source."""
    return pd.DataFrame(
        [
            {
                "run": why.run,
                "tables": ", ".join(why.tables),
                "serves": why.serves,
                "settings from": why.settings_from,
            }
            for why in explain(name, runs)
        ],
        columns=["run", "tables", "serves", "settings from"],
    )
