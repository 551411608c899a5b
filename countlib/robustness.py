"""Whether a claim-deciding profile's verdicts survive a second draw.

`second_draw` is the part of a profile that decides claims, to train again: with another set
of seeds (`SECOND_SEEDS`, one for each seed the profile trains, in order), or with the same
seeds under another torch thread count (another rounding of the same arithmetic); `agreement`
compares the verdicts of the two draws. ``benchmarks/verdict_robustness.py`` trains and judges
both and prints how many decided verdicts agree. A verdict that flips is a draw, not a finding:
the README reports the count for each profile, and a disagreement calls for a rule that leaves
such a claim undecided, never for other seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from countlib.claims import FAILS, HOLDS
from countlib.paper import PAPER_SEEDS
from countlib.profiles import DECIDING, PROFILES, claim_plan, decided_claims
from countlib.verdicts import claim_key

#: The second draw: seeds no CPU profile trains and no selection chose settings on (the
#: selections ran on 1234, on 1234, 12 and 123 for the probes, and on 1234 and 42 for the main
#: job's controls): the paper's last seed, then two of our own.
SECOND_SEEDS = (PAPER_SEEDS[4], 7, 8)


def _other_seeds(seeds: Sequence[int]) -> list[int]:
    if len(seeds) > len(SECOND_SEEDS):
        raise ValueError(f"{len(seeds)} seeds; the second draw has {len(SECOND_SEEDS)}")
    return list(SECOND_SEEDS[: len(seeds)])


def second_draw(
    profile: str, claims: Iterable[str] | None = None, *, same_seeds: bool = False
) -> dict[str, Any]:
    """A sweep spec of ``profile``'s cells that decide ``claims`` (default: every claim the
    profile aims at), each with the settings it has in the profile and `SECOND_SEEDS`; with
    ``same_seeds``, the profile's own seeds (to train again under another thread count, in
    another runs directory, since the runs keep their names)."""
    if profile not in DECIDING:
        raise ValueError(f"{profile!r} decides no claims; choose from {', '.join(DECIDING)}")
    seeds = list if same_seeds else _other_seeds
    wanted = set(decided_claims(DECIDING[profile]) if claims is None else claims)
    spec = PROFILES[profile]
    grid = [
        {**planned.entry, "seeds": seeds(planned.entry.get("seeds", spec["seeds"]))}
        for planned in claim_plan(DECIDING[profile])
        if planned.rule is not None and wanted & set(planned.rule.claims)
    ]
    defaults = {k: v for k, v in spec.items() if k not in ("grid", "name", "description")}
    which = "its own seeds" if same_seeds else f"seeds {', '.join(map(str, SECOND_SEEDS))}"
    return {
        **defaults,
        "name": f"{profile}-{'same' if same_seeds else 'second'}-seeds",
        "description": f"{profile}'s deciding cells with {which}",
        "seeds": seeds(spec["seeds"]),
        "grid": grid,
    }


@dataclass(frozen=True)
class Agreement:
    claim: str
    first: str
    second: str

    @property
    def agrees(self) -> bool:
        return self.first == self.second


def agreement(first: Iterable[Any], second: Iterable[Any]) -> list[Agreement]:
    """For each claim that the findings ``first`` decide (holds or does not hold), its verdict
    in ``second``; claims ``first`` leaves undecided are not compared. Findings as
    `countlib.verdicts.book_findings` gives them."""
    again: Mapping[str, str] = {claim_key(f): f.verdict for f in second}
    return [
        Agreement(claim_key(f), f.verdict, again.get(claim_key(f), "missing"))
        for f in first
        if f.verdict in (HOLDS, FAILS)
    ]


def agreement_line(found: Sequence[Agreement], draw: str = "on the second seeds") -> str:
    """``5 of 5 decided verdicts agree on the second seeds`` (``draw`` says how the second
    draw differs) and, where some do not, which and how."""
    agreed = sum(a.agrees for a in found)
    line = f"{agreed} of {len(found)} decided verdicts agree {draw}"
    flips = [f"{a.claim}: {a.first} -> {a.second}" for a in found if not a.agrees]
    return line + (f" (differ: {'; '.join(flips)})" if flips else "")
