"""Claims as code: every claim reads cells that exist, and verdicts follow their stated rules."""

import pandas as pd
import pytest

from countlib import claims, tables
from countlib.claims import FAILS, HOLDS, UNDECIDED, Condition, judge_all
from countlib.paper import get_table
from tests.test_tables import runs_frame


def cell(
    ind: float,
    ood: float,
    best_ind: float | None = None,
    fit_ood: float | None = None,
    seeds: int = 2,
) -> dict:
    """A table cell of ``seeds`` seeds, each of which fitted where it fits (a low value needs
    two, `claims.LOW_NEEDS_SEEDS`); ``best_ind``: the best validation IND of its seeds (default
    ``ind``); ``fit_ood``: the OOD of the seeds that fitted (default ``ood``)."""
    fit_ind = ind if best_ind is None else best_ind
    return {
        "missing": False,
        "ind": ind,
        "ood": ood,
        "fit_ind": fit_ind,
        "fit_ood": ood if fit_ood is None else fit_ood,
        "seeds": seeds,
        "unfit": 0 if fit_ind >= claims.FIT_IND else seeds,
    }


def test_every_claim_reads_cells_of_the_paper_tables():
    for claim in claims.ALL_CLAIMS:
        for group in claim.groups:
            for condition in group:
                for ref in (condition.ref, condition.control):
                    if ref is None:
                        continue
                    table, row, column = ref
                    spec = get_table(table)
                    assert row in [label for label, _ in spec.rows], (claim.number, ref)
                    assert column in [label for label, _ in spec.columns], (claim.number, ref)
    numbers = [claim.number for claim in claims.CLAIMS]
    assert set(numbers) == set(range(1, 16)) | set(range(19, 25))
    # countlib's own claims read only its own table, and their keys never collide
    assert all(claim.tables == ["H1"] for claim in claims.OWN_CLAIMS)
    keys = [claim.key for claim in claims.ALL_CLAIMS]
    assert len(keys) == len(set(keys))


def test_an_option_costs_nothing_when_its_ood_stays_within_the_margin():
    option, plain = (
        ("H1", "Shifted Start, 1L", "Mamba, [-1, 1]"),
        ("H1", "Shifted Start, 1L", "Mamba"),
    )
    condition = Condition(option, "no_worse", 0.05, plain)
    assert condition.judge({option: cell(1.0, 0.94), plain: cell(1.0, 0.95)}).verdict == HOLDS
    at_floor = condition.judge({option: cell(1.0, 0.90), plain: cell(1.0, 0.95)})
    assert at_floor.verdict == UNDECIDED and "band" in at_floor.evidence[0]
    assert condition.judge({option: cell(1.0, 0.99), plain: cell(1.0, 0.50)}).verdict == HOLDS
    costly = condition.judge({option: cell(1.0, 0.80), plain: cell(1.0, 0.95)})
    assert costly.verdict == FAILS and "90.0" in costly.evidence[0]  # the floor it missed
    # either run unfitted says nothing
    assert condition.judge({option: cell(0.5, 0.0), plain: cell(1.0, 0.95)}).verdict == UNDECIDED
    unfit_plain = condition.judge({option: cell(1.0, 0.9), plain: cell(0.5, 0.95)})
    assert unfit_plain.verdict == UNDECIDED and "did not fit" in unfit_plain.evidence[0]
    with pytest.raises(ValueError, match="needs a control"):
        Condition(option, "no_worse", 0.05)


def test_the_hypothesis_claims_follow_their_rules():
    own = {claim.key: claim for claim in claims.OWN_CLAIMS}
    mod, selmod = "Modular (mod 10), 1L", "Selective + Modular (mod 4), 1L"
    # C1: the [0, 1] family fails one of the two tasks
    c1 = own["C1 Mamba"]
    fails_mod = {("H1", mod, "Mamba"): cell(1.0, 0.1), ("H1", selmod, "Mamba"): cell(1.0, 1.0)}
    assert c1.judge(fails_mod).verdict == HOLDS
    both = {ref: cell(1.0, 1.0) for ref in fails_mod}
    assert c1.judge(both).verdict == FAILS
    # C2: with transitions in [-1, 1], both generalise
    c2 = own["C2 DeltaNet"]
    refs = [("H1", mod, "DeltaNet, [-1, 1]"), ("H1", selmod, "DeltaNet, [-1, 1]")]
    assert c2.judge({ref: cell(1.0, 0.99) for ref in refs}).verdict == HOLDS
    assert c2.judge({refs[0]: cell(1.0, 0.99), refs[1]: cell(1.0, 0.4)}).verdict == FAILS
    assert c2.judge({refs[0]: cell(1.0, 0.99)}).verdict == UNDECIDED  # one cell missing
    # a per-family matrix shows each family once, linked to its claims
    found = claims.judge_all({}, claims.OWN_CLAIMS)
    matrix = tables.verdict_matrix_html(found)
    assert matrix.count("<tr>") == 1 + 7  # header, 4 option families, minGRU, minLSTM, sLSTM
    assert 'href="#claim-C4-sLSTM"' in matrix and "claim C3" in matrix


@pytest.mark.parametrize(
    ("kind", "best_ind", "ood", "expected"),
    [
        ("generalises", 1.0, 0.981, HOLDS),  # 3.1 points over the bar
        ("generalises", 1.0, 0.979, UNDECIDED),  # 2.9 points: inside the band
        ("generalises", 1.0, 0.921, UNDECIDED),  # 2.9 points under it: inside too
        ("generalises", 1.0, 0.919, FAILS),
        ("fails_ood", 1.0, 0.919, HOLDS),
        ("fails_ood", 1.0, 0.94, UNDECIDED),
        ("generalises", 0.958, 1.0, UNDECIDED),  # fits by under 3 points: too close to call
        ("generalises", 0.942, 1.0, UNDECIDED),
        ("fits", 0.96, 0.0, UNDECIDED),
        ("fits", 0.99, 0.0, HOLDS),
    ],
)
def test_no_verdict_rests_on_a_value_within_the_band_of_its_bar(kind, best_ind, ood, expected):
    ref = ("A1", "Shifted Start, 1L", "LSTM")
    outcome = Condition(ref, kind, 0.95).judge({ref: cell(best_ind, ood)})
    assert outcome.verdict == expected
    if expected == UNDECIDED:
        assert "band" in outcome.evidence[0] or "too close" in outcome.evidence[0]


def test_a_structural_check_decides_nothing():
    ref = ("A1", "Shifted Start, 1L", "LSTM")
    tiny = cell(1.0, 0.2) | {"structural": True, "budget": 100}
    outcome = Condition(ref, "fails_ood", 0.5).judge({ref: tiny})
    assert outcome.verdict == UNDECIDED
    assert "structural check, 100 steps: not a result" in outcome.evidence[0]


def test_every_verdict_line_shows_its_margin():
    ref = ("A1", "Shifted Start, 1L", "LSTM")
    outcome = Condition(ref, "generalises", 0.95).judge({ref: cell(1.0, 0.971 + 0.02)})
    assert "OOD 99.1 % against >= 95.0 %: +4.1" in outcome.evidence[0]


def test_a_verdict_reads_the_ood_of_the_seeds_that_fitted():
    ref = ("A5", "d = 32", "SPE")
    condition = Condition(ref, "generalises", 0.95)
    outcome = condition.judge({ref: cell(0.0, 1.0, best_ind=1.0, fit_ood=0.5)})
    assert outcome.verdict == FAILS
    assert "OOD of the seeds that fitted 50.0" in outcome.evidence[0]


def test_a_generalisation_claim_needs_a_run_that_fits():
    ref = ("A1", "Shifted Start, 1L", "LSTM")
    condition = Condition(ref, "generalises", 0.95)
    assert condition.judge({ref: cell(1.0, 0.99)}).verdict == HOLDS
    assert condition.judge({ref: cell(1.0, 0.50)}).verdict == FAILS
    assert condition.judge({ref: cell(0.30, 0.0)}).verdict == UNDECIDED  # did not train
    assert condition.judge({}).verdict == UNDECIDED
    assert "did not fit" in condition.judge({ref: cell(0.30, 0.0)}).evidence[0]
    # fitting is judged over the whole run: a run that fitted (best validation IND 100 %) but
    # whose best-OOD checkpoint came earlier does not generalise, it is not "untrained"
    assert condition.judge({ref: cell(0.58, 0.035, best_ind=1.0)}).verdict == FAILS


def test_a_failure_to_fit_is_judged_only_where_a_control_fits():
    ref, control = ("2", "Modular (mod 10), 1L", "NoPE"), ("2", "Modular (mod 10), 1L", "SinePE")
    condition = Condition(ref, "fails_to_fit", 0.2, control)
    assert condition.judge({ref: cell(0.12, 0.12), control: cell(1.0, 1.0)}).verdict == HOLDS
    assert condition.judge({ref: cell(0.99, 0.10), control: cell(1.0, 1.0)}).verdict == FAILS
    # a budget too small to fit anything would "confirm" the claim: it cannot speak
    assert condition.judge({ref: cell(0.12, 0.1), control: cell(0.3, 0.1)}).verdict == UNDECIDED
    with pytest.raises(ValueError, match="control"):
        Condition(ref, "fails_to_fit", 0.2)


def test_claim_24_holds_when_each_depth_has_a_failed_task():
    s4 = next(c for c in claims.CLAIMS if c.number == 24 and "S4 fails" in c.statement)
    fails_mod10 = {("A1", f"Modular (mod 10), {n}L", "S4"): cell(1.0, 0.1) for n in (1, 2, 4)}
    assert s4.judge(fails_mod10).verdict == HOLDS
    counts_everything = {
        ("A1", f"{task}, {n}L", "S4"): cell(1.0, 1.0) for task in claims.A1_TASKS for n in (1, 2, 4)
    }
    assert s4.judge(counts_everything).verdict == FAILS
    assert s4.judge({}).verdict == UNDECIDED


def test_verdicts_from_hand_made_run_records():
    """Claim 19 (1-layer LSTM counts on all six tasks) from run records with known answers."""
    spec = get_table("A1")
    rows = [
        {"run": f"lstm-{task}", "task": task, "model": "lstm", "layers": 1, "seed": 1,
         "best_ood_ind": 1.0, "best_ood_ood": ood}
        for (_, task), ood in zip(
            [(label, f["task"]) for label, f in spec.rows if f["layers"] == 1],
            [1.0, 1.0, 0.99, 1.0, 0.985, 1.0],
            strict=True,
        )
    ]  # fmt: skip
    lstm = next(c for c in claims.CLAIMS if c.number == 19)

    def verdict(records: list[dict]) -> str:
        frame = tables.table_frame(runs_frame(records), spec)
        return judge_all(claims.cells_of({"A1": frame}), [lstm])[0].verdict

    assert verdict(rows) == HOLDS
    low = rows[4] | {"best_ood_ood": 0.40}
    # one seed that fails leaves open whether another succeeds; two that fail decide
    assert verdict([*rows[:4], low, rows[5]]) == UNDECIDED
    again = low | {"run": "lstm-again", "seed": 2, "best_ood_ood": 0.30}
    assert verdict([*rows[:4], low, again, rows[5]]) == FAILS
    # and the best of the seeds is the table's: a second seed that succeeds carries the cell
    assert verdict([*rows[:4], low, again | {"best_ood_ood": 0.99}, rows[5]]) == HOLDS
    assert verdict(rows[:5]) == UNDECIDED  # Selective + mod 4 never ran
    assert verdict([r | {"best_ood_ind": 0.2} for r in rows]) == UNDECIDED  # did not train


def test_needed_tables_are_real_tables():
    for key in claims.needed_tables():
        assert isinstance(get_table(key).title, str)
    frame = pd.DataFrame({"NoPE": [cell(0.1, 0.1)]}, index=["Modular (mod 10), 1L"])
    assert claims.cells_of({"2": frame}) == {("2", "Modular (mod 10), 1L", "NoPE"): cell(0.1, 0.1)}


def test_an_undecided_claim_points_past_the_book_that_was_meant_to_decide_it():
    finding = claims.Finding(claims.CLAIMS[2], claims.Outcome(UNDECIDED))
    meant = {finding.claim.key: "smoke"}
    assert "--profile paper</code>" in tables.findings_html([finding], meant, profile="paper-lite")
    assert "--profile smoke</code>" in tables.findings_html([finding], meant, profile=None)
    assert "--profile laptop</code>" in tables.findings_html([finding], meant, profile="smoke")
    assert "--profile paper</code>" in tables.findings_html([finding], meant, profile="paper")
    # undecided for want of seeds: the profile that trains more seeds, whatever the scale
    ref = ("2", "Modular (mod 10), 1L", "NoPE")
    one_seed = Condition(ref, "fails_ood", 0.5).judge({ref: cell(1.0, 0.2, seeds=1)})
    assert one_seed.needs_seeds
    wanting = claims.combine_all([one_seed, claims.Outcome(HOLDS, ("another cell",))])
    assert wanting.verdict == UNDECIDED and wanting.needs_seeds
    # the smallest profile past the book's that trains each of the claim's cells on two seeds
    for number, profile, seeded in (
        (3, "smoke", "overnight"),  # past the laptop's hour
        (10, "smoke", "laptop"),
        (10, "laptop", "overnight"),
        (10, "paper-lite", "paper"),
        (2, "smoke", "paper"),  # no CPU profile trains it
    ):
        claim = next(c for c in claims.CLAIMS if c.number == number)
        html = tables.findings_html([claims.Finding(claim, wanting)], meant, profile=profile)
        assert f"--profile {seeded}</code>" in html, (number, profile)
        assert html.count("--profile ") == 1
    # a claim another cell decides does not wait for seeds
    assert not claims.combine_all([one_seed, claims.Outcome(FAILS, ("x",))]).needs_seeds
    # undecided as a run was still improving at its cap: the profile that trains past the cap,
    # not a CPU profile with the same caps (the laptop book's claim 8 pointed to overnight)
    rising = Condition(ref, "fails_ood", 0.5).judge({ref: _improving(cell(1.0, 0.2), 2, 1)})
    assert rising.trains_longer == "paper-lite" and not rising.needs_seeds
    waiting = claims.combine_all([rising, claims.Outcome(HOLDS, ("another cell",))])
    assert waiting.verdict == UNDECIDED and waiting.trains_longer == "paper-lite"
    html = tables.findings_html([claims.Finding(finding.claim, waiting)], meant, profile="laptop")
    assert "--profile paper-lite</code>" in html and "--profile overnight" not in html
    decided = claims.combine_all([rising, claims.Outcome(FAILS, ("x",))])
    assert decided.verdict == FAILS and decided.trains_longer is None


def _improving(found: dict, seeds: int, improving: int, cap: int = 1500) -> dict:
    """``found`` trained ``seeds`` seeds, ``improving`` of them (all fitted) still improving at
    a cap of ``cap`` steps."""
    return found | {
        "seeds": seeds,
        "improving": improving,
        "improving_fitted": improving,
        "cap": cap,
    }


def test_a_low_value_from_runs_still_improving_at_their_cap_decides_nothing():
    ref = ("2", "Modular (mod 10), 1L", "NoPE")
    fails, generalises = Condition(ref, "fails_ood", 0.5), Condition(ref, "generalises", 0.95)
    low = cell(1.0, 0.2)
    assert fails.judge({ref: _improving(low, 2, 0)}).verdict == HOLDS
    assert generalises.judge({ref: _improving(low, 2, 0)}).verdict == FAILS
    for condition in (fails, generalises):
        outcome = condition.judge({ref: _improving(low, 3, 2)})
        assert outcome.verdict == UNDECIDED
        line = outcome.evidence[-1]
        assert "2 of 3 seeds still improving at the cap (1,500 steps" in line
        assert "OOD 20.0 % against" in line  # the value and its margin stay in the line
        assert "countlib book --profile paper-lite" in line
    # a high value only rises further: its verdict stands while the runs improve
    high = _improving(cell(1.0, 0.99), 1, 1)
    assert fails.judge({ref: high}).verdict == FAILS
    assert generalises.judge({ref: high}).verdict == HOLDS
    # past paper-lite's budget, the paper's profile is the one that trains longer
    beyond = fails.judge({ref: _improving(low, 2, 1, cap=20_000)})
    assert "countlib book --profile paper" in beyond.evidence[-1]
    assert "paper-lite" not in beyond.evidence[-1]


def test_a_low_value_from_one_seed_decides_nothing_and_a_high_one_does():
    ref = ("A1", "Helper Token, 1L", "RNN")
    fails, generalises = Condition(ref, "fails_ood", 0.5), Condition(ref, "generalises", 0.95)
    one_low, one_high = cell(1.0, 0.037, seeds=1), cell(1.0, 1.0, seeds=1)
    for condition in (fails, generalises):
        outcome = condition.judge({ref: one_low})
        assert outcome.verdict == UNDECIDED
        line = outcome.evidence[-1]
        assert "OOD 3.7 % against" in line  # the value and its margin stay in the line
        assert "a low value from 1 seed that fitted of the cell; it needs 2" in line
        assert "--profile" not in line  # the Findings page names the profile (seeded_profile)
    # the best of more seeds is only higher: one seed that generalises decides
    assert generalises.judge({ref: one_high}).verdict == HOLDS
    assert fails.judge({ref: one_high}).verdict == FAILS
    # two seeds that fitted, both low: decided; two seeds of which one never fitted: one read
    assert fails.judge({ref: cell(1.0, 0.037)}).verdict == HOLDS
    assert fails.judge({ref: cell(1.0, 0.037) | {"unfit": 1}}).verdict == UNDECIDED
    # a failure to fit reads every seed, fitted or not
    control = ("A1", "Helper Token, 1L", "LSTM")
    unfit = Condition(ref, "fails_to_fit", 0.2, control)
    cells = {control: cell(1.0, 1.0, seeds=1)}
    assert unfit.judge(cells | {ref: cell(0.05, 0.0, seeds=1)}).verdict == UNDECIDED
    assert unfit.judge(cells | {ref: cell(0.05, 0.0)}).verdict == HOLDS


def test_a_failure_to_fit_needs_every_seed_to_have_stopped_improving():
    ref, control = ("A5", "4", "NoPE"), ("A5", "4", "APE")
    condition = Condition(ref, "fails_to_fit", 0.2, control)
    unfitted = cell(0.05, 0.0)
    # the seeds read for a failure to fit are all of them, fitted or not
    still = unfitted | {"seeds": 3, "improving": 1, "improving_fitted": 0, "cap": 3000}
    cells = {control: cell(1.0, 1.0)}
    assert condition.judge(cells | {ref: still}).verdict == UNDECIDED
    assert condition.judge(cells | {ref: still | {"improving": 0}}).verdict == HOLDS


def test_an_option_costs_nothing_only_once_its_control_has_stopped_improving():
    option, plain = (
        ("H1", "Shifted Start, 1L", "Mamba, [-1, 1]"),
        ("H1", "Shifted Start, 1L", "Mamba"),
    )
    condition = Condition(option, "no_worse", 0.05, plain)
    # holding rests on the control's OOD: a control still rising may leave the option behind
    rising = condition.judge({option: cell(1.0, 0.94), plain: _improving(cell(1.0, 0.95), 2, 1)})
    assert rising.verdict == UNDECIDED
    assert "the control's 1 of 2 seeds still improving" in rising.evidence[0]
    # failing rests on the option's own OOD
    costly = {option: _improving(cell(1.0, 0.80), 1, 1), plain: cell(1.0, 0.95)}
    assert condition.judge(costly).verdict == UNDECIDED
    assert condition.judge(costly | {option: cell(1.0, 0.80)}).verdict == FAILS
