"""The second draw of seeds: the same deciding cells, other seeds, verdicts compared."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from countlib.claims import FAILS, HOLDS, UNDECIDED
from countlib.profiles import DECIDING, explain, get_profile
from countlib.robustness import SECOND_SEEDS, agreement, agreement_line, second_draw
from countlib.sweep import expand


def _without_seed(run) -> tuple:
    """A run's configuration apart from its seed."""
    config = run.config.to_dict() if hasattr(run.config, "to_dict") else vars(run.config)
    return tuple(sorted((k, str(v)) for k, v in config.items() if k != "seed"))


@pytest.mark.parametrize("profile", list(DECIDING))
def test_the_second_draw_trains_each_deciding_cell_alike_with_other_seeds(profile):
    first = get_profile(profile)
    deciding = {why.run for why in explain(profile) if not why.filler}
    second = expand(second_draw(profile))
    firsts = [run for run in first if run.name in deciding]
    # as many runs, seed for seed: the profile's seeds in order map onto SECOND_SEEDS
    assert len(second) == len(firsts)
    assert {run.config.seed for run in second} <= set(SECOND_SEEDS)
    assert not {run.name for run in second} & {run.name for run in first}
    settings = sorted(_without_seed(run) for run in firsts)
    assert sorted(_without_seed(run) for run in second) == settings


def test_a_draw_under_another_thread_count_trains_the_very_runs_of_the_first():
    deciding = {why.run for why in explain("smoke") if not why.filler}
    assert {run.name for run in expand(second_draw("smoke", same_seeds=True))} == deciding
    found = agreement([_finding("10", HOLDS)], [_finding("10", HOLDS)])
    assert agreement_line(found, "with 2 torch threads a run") == (
        "1 of 1 decided verdicts agree with 2 torch threads a run"
    )


def _finding(key, verdict):
    return SimpleNamespace(claim=SimpleNamespace(key=key), verdict=verdict)


def _seeds_in(value) -> set[int]:
    """Every seed a sweep spec (parsed YAML) names, at any level of its grid."""
    if isinstance(value, dict):
        found = {int(s) for s in value.get("seeds", [])}
        return found.union(*(_seeds_in(v) for k, v in value.items() if k != "seeds"))
    if isinstance(value, list):
        return set().union(*(_seeds_in(v) for v in value))
    return set()


def test_the_second_draw_shares_no_seed_with_a_profile_or_a_selection():
    """A seed the settings were chosen on, or that the book already trains, is no second draw."""
    selection_specs = (Path(__file__).parents[1] / "experiments").glob("*selection*.yaml")
    chosen_on = set().union(*(_seeds_in(yaml.safe_load(p.read_text())) for p in selection_specs))
    trained = {run.config.seed for name in DECIDING for run in get_profile(name)}
    assert {1234, 42} <= chosen_on  # the specs were read
    assert not set(SECOND_SEEDS) & (chosen_on | trained)


def test_only_decided_verdicts_are_compared_and_a_flip_is_named():
    def finding(key, verdict):
        return SimpleNamespace(claim=SimpleNamespace(key=key), verdict=verdict)

    first = [finding("8", FAILS), finding("10", UNDECIDED), finding("24 S4", HOLDS)]
    same = agreement(first, [finding("8", FAILS), finding("10", HOLDS), finding("24 S4", HOLDS)])
    assert [a.claim for a in same] == ["8", "24 S4"] and all(a.agrees for a in same)
    assert agreement_line(same) == "2 of 2 decided verdicts agree on the second seeds"
    flipped = agreement(first, [finding("8", UNDECIDED)])
    assert agreement_line(flipped) == (
        "0 of 2 decided verdicts agree on the second seeds "
        "(differ: 8: does not hold -> undecided; 24 S4: holds -> missing)"
    )


def test_a_profile_that_decides_nothing_has_no_second_draw():
    with pytest.raises(ValueError, match="choose from smoke, laptop, overnight"):
        second_draw("paper-lite")
