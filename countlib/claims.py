"""The paper's testable claims as declarative objects, judged on a book's own runs.

Each `Claim` restates one claim of the paper (numbered as in the reference list of
``shared/reference/paper-results.md``, section 3) and fixes, before any run, a verdict rule
over table cells (`countlib.paper` layouts, `countlib.tables.cell` values): conditions such as
"this cell generalises (OOD >= 95 %)" or "this cell fails to fit (IND <= 20 %)". A verdict is

* **holds**: every condition is met;
* **does not hold**: a condition is contradicted by runs that can speak to it;
* **undecided**: runs are missing, or they cannot speak at this scale: a run that did not fit
  its training data (its best validation IND over the run < `FIT_IND`) says nothing about
  generalisation, and a claim that
  a model *fails* to fit needs a control (another model on the same task) that fits, or a
  small budget would "confirm" it trivially.

Thresholds are ours where the paper gives none (it calls ~94 % OOD a success and 70-85 % not
one); each is written into its claim. Claims 16 and 17 (PCA clusters, attention sensitivity) are
figures, judged by the analysis tools; 18 and 25 summarise the others and are left out.

Torch-free: the Findings page imports it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from countlib.formatting import FIT_IND, SUCCESS_OOD, percent
from countlib.paper import (
    GATED_FAMILIES,
    LONGER_BUDGETS,
    NEGATIVE_FAMILIES,
    NEGATIVE_LABEL,
    NONLINEAR_FAMILIES,
)

HOLDS, FAILS, UNDECIDED = "holds", "does not hold", "undecided"

#: No verdict rests on a value this close to its bar, on either side: such a value leaves its
#: condition undecided, and so does a fit within it of `FIT_IND`. Three points of accuracy,
#: the same for every claim, fixed before any run is read. Why three: the smallest evaluation
#: splits hold 49 to 300 sequences, where one standard error at 95 % is 1.3 to 3.1 points; and
#: the same cell trained by the same code on two CPUs gave values that straddled the 95 % bar by
#: under one point (issue 26: controls at 94.2 and 94.5 %, fits at 95.6 to 95.8 %), which one
#: point's rounding of a trajectory already moves. Three points covers both with room.
VERDICT_BAND = 0.03

#: Seeds that a verdict resting on a low value (an OOD under its bar, a failure to fit) needs,
#: each of them low: the paper's tables take the best (or the median) of five seeds, so one
#: seed that fails leaves open whether another would succeed. A high value needs one seed: the
#: best of more seeds is only higher. Adopted after the laptop's second draw of seeds showed
#: it (the Elman RNN on Helper Token: seed 1234 reached 3.7 % OOD on a plateau, seed 319
#: 100 %), as the remedy issue 26 names: a claim decided only where each seed gives the
#: same verdict.
LOW_NEEDS_SEEDS = 2
#: The profile that trains every cell with several seeds (five), where no smaller one trains
#: a claim's cells with `LOW_NEEDS_SEEDS` (`countlib.profiles.seeded_profile`).
SEEDED_PROFILE = "paper"

#: A cell of a paper table: (table key, row label, column label).
CellRef = tuple[str, str, str]
Cells = Mapping[CellRef, Mapping[str, Any]]


@dataclass(frozen=True)
class Outcome:
    verdict: str
    #: One line per cell: what it reads and why it counts the way it does.
    evidence: tuple[str, ...] = ()
    #: Undecided for want of seeds (`LOW_NEEDS_SEEDS`): more seeds, not a longer budget or
    #: another scale, would decide it.
    needs_seeds: bool = False
    #: Undecided as a run it rests on was still improving at its cap: the profile that trains
    #: past that cap (`longer_profile`), or None.
    trains_longer: str | None = None


def _read(cells: Cells, ref: CellRef) -> Mapping[str, Any] | None:
    found = cells.get(ref)
    return None if found is None or found.get("missing", True) else found


def _usable(found: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """A control cell, unless it is a structural check (`countlib.tables`), which decides
    nothing, not even whether its task can be fitted at this scale."""
    return None if found is None or found.get("structural") else found


def _where(ref: CellRef) -> str:
    table, row, column = ref
    return f"Table {table}, {row}, {column}"


@dataclass(frozen=True)
class Condition:
    """What one cell must show. ``kind``:

    * ``generalises``: OOD >= ``threshold`` (the run must fit);
    * ``fails_ood``: OOD <= ``threshold`` (the run must fit: an untrained model fails too);
    * ``fits``: IND >= ``threshold`` (never contradicted: a run that has not fitted yet may
      fit with a longer budget, so it leaves the claim undecided);
    * ``fails_to_fit``: IND <= ``threshold``, decidable only when ``control`` (another cell of
      the same task) fits, i.e. when this scale can fit the task at all;
    * ``no_worse``: OOD >= the OOD of ``control`` minus ``threshold`` (both runs must fit): an
      option that costs nothing against the cell without it.
    """

    ref: CellRef
    kind: str
    threshold: float
    control: CellRef | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("generalises", "fails_ood", "fits", "fails_to_fit", "no_worse"):
            raise ValueError(f"unknown condition kind {self.kind!r}")
        if self.kind in ("fails_to_fit", "no_worse") and self.control is None:
            raise ValueError(f"{_where(self.ref)}: {self.kind} needs a control cell")

    def judge(self, cells: Cells) -> Outcome:
        """The cell's verdict; `VERDICT_BAND` either side of every bar leaves it undecided, and
        every evidence line gives the value, its bar and the margin between them."""
        where = _where(self.ref)
        found = _read(cells, self.ref)
        if found is None:
            return Outcome(UNDECIDED, (f"{where}: missing",))
        if found.get("structural"):  # trained only to check that it runs (`countlib.tables`)
            note = f"{where}: structural check, {found['budget']:,} steps: not a result"
            return Outcome(UNDECIDED, (note,))
        # fitting is the best validation IND of the cell's seeds (`countlib.tables.cell`
        # ``fit_ind``); OOD is the table's statistic over the seeds that fitted (``fit_ood``), as
        # a seed that never fitted says nothing, however high its OOD
        fit, ood, shown = found["fit_ind"], found["fit_ood"], found["ood"]
        reads = f"{where}: {percent(found['ind'])} / {percent(shown)}, best IND {percent(fit)}"
        if fit >= FIT_IND and ood != shown:
            reads += f"; OOD of the seeds that fitted {percent(ood)}"
        if self.kind == "fits":
            # not fitting within a budget refutes nothing: a longer one may fit
            verdict, note = against("best IND", fit, ">=", self.threshold)
            return Outcome(UNDECIDED if verdict == FAILS else verdict, (f"{reads} ({note})",))
        if self.kind == "fails_to_fit":
            return self._judge_fails_to_fit(cells, found, reads)
        fitted, note = against("best IND", fit, ">=", FIT_IND)
        if fitted != HOLDS:
            why = "did not fit" if fitted == FAILS else "its fit is too close to call"
            return Outcome(UNDECIDED, (f"{reads}: {why} ({note})",))
        if math.isnan(ood):
            return Outcome(UNDECIDED, (f"{reads}: no OOD value",))
        if self.kind == "no_worse":
            return self._judge_no_worse(cells, found, reads)
        sign = ">=" if self.kind == "generalises" else "<="
        verdict, note = against("OOD", ood, sign, self.threshold)
        low = verdict == (FAILS if self.kind == "generalises" else HOLDS)
        return _unless_unsettled(Outcome(verdict, (f"{reads} ({note})",)), low, found, fitted=True)

    def _judge_fails_to_fit(self, cells: Cells, found: Mapping[str, Any], reads: str) -> Outcome:
        assert self.control is not None
        control = _usable(_read(cells, self.control))
        if control is None or against("", control["fit_ind"], ">=", FIT_IND)[0] != HOLDS:
            why = "missing" if control is None else f"best IND {percent(control['fit_ind'])}"
            note = f"{reads}: control {_where(self.control)} does not fit clearly ({why})"
            return Outcome(UNDECIDED, (note,))
        verdict, note = against("best IND", found["fit_ind"], "<=", self.threshold)
        outcome = Outcome(verdict, (f"{reads} ({note})",))
        return _unless_unsettled(outcome, verdict == HOLDS, found, fitted=False)

    def _judge_no_worse(self, cells: Cells, found: Mapping[str, Any], reads: str) -> Outcome:
        assert self.control is not None
        control = _usable(_read(cells, self.control))
        fitted = None if control is None else against("", control["fit_ind"], ">=", FIT_IND)[0]
        if control is None or fitted != HOLDS or math.isnan(control["fit_ood"]):
            why = "missing" if control is None else f"best IND {percent(control['fit_ind'])}"
            note = f"{reads}: control {_where(self.control)} did not fit clearly ({why})"
            return Outcome(UNDECIDED, (note,))
        floor = control["fit_ood"] - self.threshold
        verdict, reading = against("OOD", found["fit_ood"], ">=", floor)
        note = (
            f"{reads} ({reading}, the bar {percent(self.threshold)} points under "
            f"{_where(self.control)}'s {percent(control['fit_ood'])})"
        )
        # holding rests on the control's OOD not rising further, failing on this cell's
        outcome = Outcome(verdict, (note,))
        if verdict == HOLDS:
            return _unless_unsettled(outcome, True, control, fitted=True, whose="control")
        return _unless_unsettled(outcome, verdict == FAILS, found, fitted=True)


def _unless_unsettled(
    outcome: Outcome, low: bool, found: Mapping[str, Any], *, fitted: bool, whose: str = "cell"
) -> Outcome:
    """``outcome``, unless it rests on a value being ``low`` (an OOD under its bar, a failure
    to fit) read from fewer than `LOW_NEEDS_SEEDS` seeds, or from seeds stopped while still
    improving (``improving``/``improving_fitted`` of `countlib.tables.cell`; ``fitted``: only
    the seeds the value is read from, those that fitted): then undecided, naming a profile that
    trains more seeds or trains longer. A low value from one seed leaves the others open, and
    from a run still rising it is its budget, not a finding; a high one only rises further."""
    if not low or outcome.verdict == UNDECIDED:
        return outcome
    seeds = found.get("seeds", 1) - (found.get("unfit", 0) if fitted else 0)
    improving = found.get("improving_fitted" if fitted else "improving") or 0
    if seeds < LOW_NEEDS_SEEDS:
        note = too_few_seeds(f"{seeds} {'seed that fitted' if fitted else 'seed'} of the {whose}")
        wants: dict[str, Any] = {"needs_seeds": True}
    elif improving:
        cap = found.get("cap")
        note = (
            f"undecided: the {whose}'s {improving} of {found['seeds']} seeds still improving at "
            f"the cap ({'' if cap is None else f'{cap:,} steps; '}{longer_budget(cap)})"
        )
        wants = {"trains_longer": longer_profile(cap)}
    else:
        return outcome
    evidence = (*outcome.evidence[:-1], f"{outcome.evidence[-1]}; {note}")
    return Outcome(UNDECIDED, evidence, **wants)


def too_few_seeds(read: str) -> str:
    """Why a low value ``read`` from (e.g. "1 seed of the cell") decides nothing without
    `LOW_NEEDS_SEEDS` seeds; the Findings page names the profile that trains them
    (`countlib.profiles.seeded_profile`)."""
    return (
        f"undecided: a low value from {read}; it needs {LOW_NEEDS_SEEDS}, each low, as another "
        "seed may succeed"
    )


def longer_profile(cap: int | None) -> str | None:
    """The first GPU profile whose budget is longer than ``cap`` steps
    (`countlib.paper.LONGER_BUDGETS`), or None."""
    return next((p for p, steps in LONGER_BUDGETS if cap is None or steps > cap), None)


def longer_budget(cap: int | None) -> str:
    """The command that trains a cell past ``cap`` steps (`longer_profile`)."""
    profile = longer_profile(cap)
    if profile is None:
        return "a spec file with a longer `steps` trains past it"
    return f"`countlib book --profile {profile}` trains {dict(LONGER_BUDGETS)[profile]:,}"


def against(name: str, value: float, sign: str, bar: float) -> tuple[str, str]:
    """``value`` against ``bar`` (``sign`` ">=" or "<="): HOLDS or FAILS clear of the bar by
    `VERDICT_BAND`, else UNDECIDED; and how it reads, e.g. "OOD 97.1 % against >= 95.0 %:
    +2.1, within the 3-point band"."""
    margin = value - bar if sign == ">=" else bar - value
    margin = round(margin, 9)  # a value exactly at a bar is at it, whatever the rounding
    if margin >= VERDICT_BAND:
        verdict = HOLDS
    elif margin <= -VERDICT_BAND:
        verdict = FAILS
    else:
        verdict = UNDECIDED
    band = f", within the {100 * VERDICT_BAND:g}-point band" if verdict == UNDECIDED else ""
    text = f"{name} {percent(value)} % against {sign} {percent(bar)} %: {100 * margin:+.1f}{band}"
    return verdict, text.strip()


def _combine(outcomes: Iterable[Outcome], decisive: str, otherwise: str) -> Outcome:
    """``decisive`` if any outcome is, else undecided if any is, else ``otherwise``."""
    outcomes = list(outcomes)
    evidence = tuple(line for o in outcomes for line in o.evidence)
    verdicts = {o.verdict for o in outcomes}
    verdict = (
        decisive if decisive in verdicts else UNDECIDED if UNDECIDED in verdicts else otherwise
    )
    if verdict != UNDECIDED:
        return Outcome(verdict, evidence)
    longer = next((o.trains_longer for o in outcomes if o.trains_longer), None)
    return Outcome(verdict, evidence, any(o.needs_seeds for o in outcomes), longer)


def combine_all(outcomes: Iterable[Outcome]) -> Outcome:
    """All conditions: contradicted by any, undecided if any cannot speak, else holds."""
    return _combine(outcomes, FAILS, HOLDS)


def combine_any(outcomes: Iterable[Outcome]) -> Outcome:
    """At least one condition: met by any, undecided if any cannot speak, else contradicted."""
    return _combine(outcomes, HOLDS, FAILS)


@dataclass(frozen=True)
class Claim:
    #: The paper's claims as numbered in paper-results.md, section 3; countlib's own "C1" ...
    number: int | str
    statement: str
    #: Every group must hold; within a group, all conditions (``any_of`` False) or one of them.
    groups: tuple[tuple[Condition, ...], ...]
    any_of: bool = False
    rule: str = ""  # the verdict rule in words
    #: Which of several claims under one number (claim 24 is one per family), if any.
    part: str = ""

    @property
    def key(self) -> str:
        """The claim's name across countlib: ``"19"``, or ``"24 S4"`` for a part."""
        return f"{self.number} {self.part}" if self.part else str(self.number)

    @property
    def conditions(self) -> list[Condition]:
        return [c for group in self.groups for c in group]

    @property
    def cells(self) -> set[CellRef]:
        """Every cell the verdict reads, controls included."""
        refs = {c.ref for c in self.conditions}
        return refs | {c.control for c in self.conditions if c.control is not None}

    def judge(self, cells: Cells) -> Outcome:
        combine = combine_any if self.any_of else combine_all
        return combine_all(combine(c.judge(cells) for c in group) for group in self.groups)

    def covered_by(self, trained: set[CellRef]) -> bool:
        """Whether runs of the cells ``trained`` are enough to decide the claim: every condition
        of an all-of group, one condition of an any-of group, each with its control."""

        def covered(condition: Condition) -> bool:
            return condition.ref in trained and condition.control in (None, *trained)

        test = any if self.any_of else all
        return all(test(covered(c) for c in group) for group in self.groups)

    @property
    def tables(self) -> list[str]:
        return sorted({ref[0] for ref in self.cells})


# -- the claims ---------------------------------------------------------------------------------

PES = ("NoPE", "SinePE", "APE", "RoPE", "SPE")


def _refs(table: str, rows: Iterable[str], columns: Iterable[str]) -> list[CellRef]:
    columns = list(columns)
    return [(table, row, column) for row in rows for column in columns]


def _layers(task: str, depths: Iterable[int]) -> list[str]:
    return [f"{task}, {n}L" for n in depths]


def _layers_each(tasks: Iterable[str], depth: int) -> list[str]:
    return [f"{task}, {depth}L" for task in tasks]


def _all(kind: str, threshold: float, refs: Iterable[CellRef]) -> tuple[Condition, ...]:
    return tuple(Condition(ref, kind, threshold) for ref in refs)


def _fails_to_fit(refs: Iterable[CellRef], control_column: str, threshold: float):
    return tuple(
        Condition(ref, "fails_to_fit", threshold, (ref[0], ref[1], control_column)) for ref in refs
    )


SS, MOD, SEL, SELMOD = (
    "Shifted Start",
    "Modular (mod 10)",
    "Selective",
    "Selective + Modular (mod 4)",
)
HT, HTSS, VS = "Helper Token", "Helper Token + Shifted Start", "Vanilla + Succession"
A1_TASKS = (HT, HTSS, SS, MOD, SEL, SELMOD)
S = SUCCESS_OOD
#: (column label without, with the option of Grazzi et al.) of Table H1.
_NEGATIVE_COLUMNS = [(label, NEGATIVE_LABEL.format(label)) for label, _ in NEGATIVE_FAMILIES]

CLAIMS: tuple[Claim, ...] = (
    Claim(
        1,
        "The succession sequence does not help counting: SinePE, APE and SPE Transformers recite "
        "it but reach about 0 % OOD on Vanilla + Succession (2 and 4 layers).",
        (_all("fails_ood", 0.05, _refs("2", _layers(VS, (2, 4)), ("SinePE", "APE", "SPE"))),),
        rule="each cell fits and has OOD <= 5 %",
    ),
    Claim(
        2,
        "Without BOS, NoPE and RoPE cannot even fit Vanilla + Succession (about 2 % IND) or mod 10 "
        "(about 12 % IND).",
        (
            _fails_to_fit(_refs("2", _layers(VS, (2, 4)), ("NoPE", "RoPE")), "SinePE", 0.2),
            _fails_to_fit(_refs("2", _layers(MOD, (1, 2, 4)), ("NoPE", "RoPE")), "SinePE", 0.2),
        ),
        rule="IND <= 20 % in each cell, while SinePE fits the same row",
    ),
    Claim(
        3,
        "A BOS token lets NoPE and RoPE fit both tasks, but OOD stays about 0 % on Vanilla + "
        "Succession and at most about 42 % on mod 10 (Table A4).",
        (
            _all("fits", FIT_IND, _refs("A4", _layers(f"{VS}, BOS", (1, 2, 4)), ("NoPE", "RoPE"))),
            _all("fits", FIT_IND, _refs("A4", _layers(f"{MOD}, BOS", (1, 2, 4)), ("NoPE", "RoPE"))),
            _all(
                "fails_ood", 0.05, _refs("A4", _layers(f"{VS}, BOS", (1, 2, 4)), ("NoPE", "RoPE"))
            ),
            _all(
                "fails_ood", 0.5, _refs("A4", _layers(f"{MOD}, BOS", (1, 2, 4)), ("NoPE", "RoPE"))
            ),
        ),
        rule="IND >= 95 %; OOD <= 5 % (succession) and <= 50 % (mod 10)",
    ),
    Claim(
        4,
        "With a helper token, NoPE and RoPE Transformers (2 and 4 layers) count OOD.",
        (_all("generalises", S, _refs("2", _layers(HT, (2, 4)), ("NoPE", "RoPE"))),),
        rule="best OOD >= 95 % in each cell",
    ),
    Claim(
        5,
        "On Shifted Start only the 4-layer RoPE Transformer generalises; every other PE and depth "
        "stays below success.",
        (
            _all("generalises", S, [("2", f"{SS}, 4L", "RoPE")]),
            _all(
                "fails_ood",
                0.94,
                [
                    r
                    for r in _refs("2", _layers(SS, (1, 2, 4)), PES)
                    if r != ("2", f"{SS}, 4L", "RoPE")
                ],
            ),
        ),
        rule="RoPE 4L best OOD >= 95 %; every other cell fits with OOD <= 94 %",
    ),
    Claim(
        6,
        "1- and 2-layer Transformers fail Shifted Start with every PE.",
        (_all("fails_ood", 0.94, _refs("2", _layers(SS, (1, 2)), PES)),),
        rule="each cell fits with best OOD <= 94 %",
    ),
    Claim(
        7,
        "RoPE 4L's Shifted Start success is fragile: at OOD/train length ratios of 4-8x it falls "
        "to about 11-31 % OOD (Table A8).",
        (_all("fails_ood", 0.5, _refs("A8", ["RoPE 4L"], ("25 / 100", "50 / 200", "25 / 200"))),),
        rule="each 4x and 8x cell fits with OOD <= 50 %",
    ),
    Claim(
        8,
        "On mod 10, SinePE (1-4 layers) and APE (2-4 layers) Transformers generalise.",
        (
            _all("generalises", S, _refs("2", _layers(MOD, (1, 2, 4)), ["SinePE"])),
            _all("generalises", S, _refs("2", _layers(MOD, (2, 4)), ["APE"])),
        ),
        rule="best OOD >= 95 % in each cell",
    ),
    Claim(
        9,
        "On mod 10, SPE fits in distribution but is near chance OOD.",
        (_all("fails_ood", 0.15, _refs("2", _layers(MOD, (1, 2, 4)), ["SPE"])),),
        rule="each cell fits with OOD <= 15 %",
    ),
    Claim(
        10,
        "On mod 10, NoPE and RoPE are near chance even in distribution.",
        (_fails_to_fit(_refs("2", _layers(MOD, (1, 2, 4)), ("NoPE", "RoPE")), "SinePE", 0.2),),
        rule="IND <= 20 % in each cell, while SinePE fits the same row",
    ),
    Claim(
        11,
        "On Selective, NoPE generalises from 2 layers, SinePE, APE and SPE need 4 layers, and RoPE "
        "never exceeds about 53 % OOD.",
        (
            _all("generalises", 0.9, [("2", f"{SEL}, 2L", "NoPE")]),
            _all("generalises", S, _refs("2", [f"{SEL}, 4L"], ("NoPE", "SinePE", "APE", "SPE"))),
            _all("fails_ood", 0.6, _refs("2", _layers(SEL, (1, 2, 4)), ["RoPE"])),
        ),
        rule="NoPE 2L OOD >= 90 %; 4L NoPE, SinePE, APE, SPE >= 95 %; RoPE fits with <= 60 %",
    ),
    Claim(
        12,
        "A BOS token lets 1-layer NoPE, SinePE, APE and SPE generalise on Selective; RoPE stays "
        "at or below about 68 % (Table A7).",
        (
            _all(
                "generalises",
                S,
                _refs("A7", ["Selective, BOS, 1L"], ("NoPE", "SinePE", "APE", "SPE")),
            ),
            _all("fails_ood", 0.75, [("A7", "Selective, BOS, 1L", "RoPE")]),
        ),
        rule="OOD >= 95 % for the four PEs; RoPE fits with OOD <= 75 %",
    ),
    Claim(
        13,
        "On Selective + mod 4, only SinePE and APE (4 layers) generalise; SPE and RoPE stay at "
        "or below about 55 %.",
        (
            _all("generalises", S, _refs("2", [f"{SELMOD}, 4L"], ("SinePE", "APE"))),
            _all("fails_ood", 0.6, _refs("2", [f"{SELMOD}, 4L"], ("SPE", "RoPE"))),
        ),
        rule="SinePE, APE 4L OOD >= 95 %; SPE, RoPE 4L fit with OOD <= 60 %",
    ),
    Claim(
        14,
        "Only PEs added to the residual (SinePE, APE, SPE), not NoPE or RoPE, let a 1-layer, "
        "1-head Transformer mark the first token of a homogeneous sequence, at length 128 too.",
        (
            _all("generalises", S, _refs("A5", ("d = 32", "d = 4"), ("SinePE", "APE", "SPE"))),
            _fails_to_fit(_refs("A5", ("d = 32", "d = 4"), ("NoPE", "RoPE")), "APE", 0.05),
        ),
        rule="first-token OOD >= 95 % for SinePE, APE, SPE; first-token IND <= 5 % for NoPE "
        "and RoPE while APE fits",
    ),
    Claim(
        15,
        "A causal mask alone (NoPE) marks the first token of a heterogeneous sequence; without "
        "the mask accuracy is about 0 % (Table A6, d = 4).",
        (
            _all("generalises", S, [("A6", "d = 4", "with causal mask")]),
            _fails_to_fit([("A6", "d = 4", "without causal mask")], "with causal mask", 0.1),
        ),
        rule="with mask first-token OOD >= 95 %; without it first-token IND <= 10 %",
    ),
    Claim(
        19,
        "A 1-layer LSTM counts inductively on all six tasks of Table A1.",
        (_all("generalises", S, _refs("A1", _layers_each(A1_TASKS, 1), ["LSTM"])),),
        rule="best OOD >= 95 % on each task",
    ),
    Claim(
        20,
        "A 1-layer Elman RNN counts inductively on every task but Selective.",
        (
            _all(
                "generalises", S, _refs("A1", _layers_each((HT, HTSS, SS, MOD, SELMOD), 1), ["RNN"])
            ),
        ),
        rule="best OOD >= 95 % on the five tasks",
    ),
    Claim(
        21,
        "S4 generalises on Helper Token, Helper Token + Shifted Start, Shifted Start and mod 10, "
        "but fails Selective and Selective + mod 4.",
        (
            _all("generalises", S, _refs("A1", _layers_each((HT, HTSS, SS, MOD), 1), ["S4"])),
            _all("fails_ood", 0.8, _refs("A1", _layers(SEL, (1, 2, 4)), ["S4"])),
            _all("fails_ood", 0.5, _refs("A1", _layers(SELMOD, (1, 2, 4)), ["S4"])),
        ),
        rule="1L OOD >= 95 % on the first four; fits with OOD <= 80 % (Selective) and <= 50 % "
        "(Selective + mod 4) at every depth",
    ),
    Claim(
        22,
        "Mamba fails mod 10 and Selective + mod 4 OOD and Helper Token at 1-2 layers, but "
        "succeeds on Selective and on Shifted Start at 2-4 layers.",
        (
            _all("fails_ood", 0.2, _refs("A1", _layers(MOD, (1, 2, 4)), ["Mamba"])),
            _all("fails_ood", 0.7, _refs("A1", _layers(SELMOD, (1, 2, 4)), ["Mamba"])),
            _all("fails_ood", 0.2, _refs("A1", _layers(HT, (1, 2)), ["Mamba"])),
            _all("generalises", S, _refs("A1", _layers(SEL, (1, 2, 4)), ["Mamba"])),
            _all("generalises", S, _refs("A1", _layers(SS, (2, 4)), ["Mamba"])),
        ),
        rule="fits with OOD <= 20 % (mod 10, Helper Token 1-2L) and <= 70 % (Selective + mod 4); "
        "OOD >= 95 % on Selective and Shifted Start 2-4L",
    ),
    Claim(
        23,
        "RWKV-6 fails mod 10 and Selective + mod 4 OOD, but reaches 100 % on Selective and, best "
        "of seeds, on Helper Token.",
        (
            _all("fails_ood", 0.15, _refs("A1", _layers(MOD, (1, 2, 4)), ["RWKV-6"])),
            _all("fails_ood", 0.9, _refs("A1", _layers(SELMOD, (1, 2, 4)), ["RWKV-6"])),
            _all("generalises", S, _refs("A1", _layers(SEL, (1, 2, 4)), ["RWKV-6"])),
            _all("generalises", S, _refs("A1", _layers(HT, (1, 2, 4)), ["RWKV-6"])),
        ),
        rule="fits with OOD <= 15 % (mod 10) and <= 90 % (Selective + mod 4); OOD >= 95 % on "
        "Selective and Helper Token",
    ),
    *(
        Claim(
            24,
            f"No modern RNN generalises on all six tasks at any depth: {family} fails at least "
            "one of them at each depth.",
            tuple(
                tuple(
                    Condition(("A1", f"{task}, {n}L", family), "fails_ood", 0.94)
                    for task in A1_TASKS
                )
                for n in (1, 2, 4)
            ),
            any_of=True,
            rule="at each depth, some task fits with OOD <= 94 %",
            part=family,
        )
        for family in ("S4", "Mamba", "RWKV-6")
    ),
)

#: countlib's own claims, beyond the paper: the hypothesis of Table H1 (`countlib.paper`), each
#: rule fixed before its runs. Judged on Table H1's cells at 1 layer, where the theory's
#: constructions work (Grazzi et al.: one layer with transitions in [-1, 1] does parity) and
#: where a laptop can train them.
H1 = "H1"


def _one_layer(task: str) -> str:
    return f"{task}, 1L"


OWN_CLAIMS: tuple[Claim, ...] = (
    *(
        Claim(
            "C1",
            f"With transitions in [0, 1], {family} fails mod 10 or Selective + mod 4 at 1 layer, "
            "as the paper's account (no nonlinear state transition, no modular counting) "
            "predicts.",
            (_all("fails_ood", 0.94, _refs(H1, (_one_layer(MOD), _one_layer(SELMOD)), [family])),),
            any_of=True,
            rule="one of the two cells fits with OOD <= 94 %",
            part=family,
        )
        for family, _ in NEGATIVE_FAMILIES + GATED_FAMILIES
    ),
    *(
        Claim(
            "C2",
            f"With transitions in [-1, 1] (negative eigenvalues), {family} counts mod 10 and "
            "Selective + mod 4 inductively at 1 layer.",
            (_all("generalises", S, _refs(H1, (_one_layer(MOD), _one_layer(SELMOD)), [negative])),),
            rule="both cells fit with OOD >= 95 %",
            part=family,
        )
        for family, negative in _NEGATIVE_COLUMNS
    ),
    *(
        Claim(
            "C3",
            f"Transitions in [-1, 1] cost {family} nothing on Shifted Start at 1 layer.",
            (
                (
                    Condition(
                        (H1, _one_layer(SS), negative),
                        "no_worse",
                        0.05,
                        (H1, _one_layer(SS), family),
                    ),
                ),
            ),
            rule="both fit, and the OOD with the option is at most 5 points under the OOD "
            "without it",
            part=family,
        )
        for family, negative in _NEGATIVE_COLUMNS
    ),
    *(
        Claim(
            "C4",
            f"The nonlinear {family} counts inductively on all six tasks of Table A1 at 1 layer, "
            "as the LSTM does in the paper (claim 19).",
            (_all("generalises", S, _refs(H1, _layers_each(A1_TASKS, 1), [family])),),
            rule="best OOD >= 95 % on each task",
            part=family,
        )
        for family, _ in NONLINEAR_FAMILIES
    ),
)
#: The paper's claims, then countlib's own.
ALL_CLAIMS: tuple[Claim, ...] = CLAIMS + OWN_CLAIMS


@dataclass(frozen=True)
class Finding:
    claim: Claim
    outcome: Outcome

    @property
    def verdict(self) -> str:
        return self.outcome.verdict


def judge_all(cells: Cells, claims: Iterable[Claim] = CLAIMS) -> list[Finding]:
    """Every claim's verdict on ``cells`` (keyed by `CellRef`)."""
    return [Finding(claim, claim.judge(cells)) for claim in claims]


def needed_tables(claims: Iterable[Claim] = ALL_CLAIMS) -> list[str]:
    """The tables whose cells the claims read."""
    return sorted({table for claim in claims for table in claim.tables})


def cells_of(frames: Mapping[str, Any]) -> dict[CellRef, Mapping[str, Any]]:
    """Cells keyed by `CellRef` from table frames (`countlib.tables.table_frame`) by table key."""
    return {
        (key, str(row), str(column)): frame.loc[row, column]
        for key, frame in frames.items()
        for row in frame.index
        for column in frame.columns
    }
