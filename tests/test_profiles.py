"""The claim-deciding profiles: they train every cell their claims read, fill every table layout,
and never give a cell two runs of one seed."""

from collections import Counter

import pytest

from countlib.claims import ALL_CLAIMS
from countlib.profiles import (
    _FILLER,
    DECIDING,
    cells_fed,
    deciding_profiles,
    get_profile,
    paper_grid,
    shrink,
    single_configs,
)


def run_cells(run) -> set:
    config = {"task": run.config.task, "model": run.config.model, **run.config.model_options}
    return cells_fed(config, run.tables)


def deciding_runs(name):
    """A profile's runs trained for its claims: longer than the filler (asserted below)."""
    return [r for r in get_profile(name) if r.config.optim.steps > _FILLER["steps"]]


@pytest.mark.parametrize("name", list(DECIDING))
def test_a_profile_trains_every_cell_its_claims_read(name):
    assert all(d.settings["steps"] > _FILLER["steps"] for d in DECIDING[name])
    trained = set().union(*(run_cells(run) for run in deciding_runs(name)))
    keys = {key for d in DECIDING[name] for key in d.claims}
    aimed = [claim for claim in ALL_CLAIMS if claim.key in keys]
    assert {claim.key for claim in aimed} == keys  # no Deciding names a claim that is not there
    for claim in aimed:
        assert claim.covered_by(trained), (name, claim.key, claim.cells - trained)


@pytest.mark.parametrize("name", list(DECIDING))
def test_a_profile_fills_every_table_layout_and_runs_every_family(name):
    runs = get_profile(name)
    tiny = [config for entry in paper_grid() for config in single_configs(shrink(entry))]
    every_layout = set().union(*(cells_fed(config, [config["table"]]) for config in tiny))
    assert every_layout <= set().union(*(run_cells(run) for run in runs))
    paper = {"rnn", "lstm", "s4", "mamba", "rwkv6", "transformer"}
    later = {"mamba2", "deltanet", "gated_deltanet", "mingru", "minlstm", "slstm"}
    assert {r.family for r in runs} == paper | later


@pytest.mark.parametrize("name", list(DECIDING))
def test_no_cell_gets_two_runs_of_one_seed(name):
    counts = Counter(
        (cell, run.config.seed) for run in get_profile(name) for cell in run_cells(run)
    )
    assert [key for key, n in counts.items() if n > 1] == []


def test_the_main_job_and_the_laptop_profile_aim_at_enough_claims():
    decided = deciding_profiles()
    smoke = {n for n, profile in decided.items() if profile == "smoke"}
    laptop = {n for n, profile in decided.items() if profile in ("smoke", "laptop")}
    assert len(smoke) >= 6 and len(laptop) >= 12
    assert set(decided) == {claim.key for claim in ALL_CLAIMS}
    assert set(decided.values()) <= {"smoke", "laptop", "paper-lite"}


def test_cells_fed_reads_the_tables_a_configuration_belongs_to():
    nope_mod10 = {"task": "mod10", "model": "transformer", "pe": "nope", "layers": 2}
    assert cells_fed(nope_mod10, ["2"]) == {
        ("2", "Modular (mod 10), 2L", "NoPE"),
        ("A2", "Modular (mod 10), 2L", "NoPE"),
    }
    assert ("A4", "Modular (mod 10), 2L", "NoPE") in cells_fed(nope_mod10, ["2", "A4"])
    assert cells_fed({**nope_mod10, "task": "mod10_bos"}, ["2"]) == set()
