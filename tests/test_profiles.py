"""The claim-deciding profiles: they train every cell their claims read, fill every table layout,
and never give a cell two runs of one seed."""

import importlib.util
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from countlib.claims import ALL_CLAIMS, LOW_NEEDS_SEEDS
from countlib.profiles import (
    _FILLER,
    CHOSEN,
    DECIDING,
    DECIDING_SEEDS,
    FILLED,
    PROFILES,
    SMOKE_DECIDING,
    Deciding,
    _identity,
    cells_fed,
    claim_plan,
    deciding_profiles,
    explain,
    get_profile,
    paper_grid,
    shadowed,
    shrink,
    single_configs,
    to_plateau,
    why_table,
)
from countlib.selections import (
    CHOSEN_SETTINGS,
    Chosen,
    find_chosen,
    format_chosen,
    load_chosen,
)

REPO = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("name", [name for name in DECIDING if FILLED[name]])
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


def test_the_cpu_profiles_aim_at_the_claims_their_budgets_allow():
    decided = deciding_profiles()
    by_profile = {name: {n for n, p in decided.items() if p == name} for name in DECIDING}
    # the main job: what trains to a plateau in its 15 minutes (experiments/plateau_rule.md);
    # the laptop: the cheapest claims within its hour (experiments/laptop_budget.md)
    assert by_profile["smoke"] == {"10"}
    assert by_profile["laptop"] == {"20", "15"}
    assert {"8", "3", "21", "24 S4", "4", "19", "12", "14", "24 Mamba", "C1 Mamba"} <= by_profile[
        "overnight"
    ]
    assert set(decided) == {claim.key for claim in ALL_CLAIMS}
    assert set(decided.values()) <= {*DECIDING, "paper-lite"}
    # each larger profile trains the smaller one's deciding cells, alike
    names = list(DECIDING)
    for small, large in itertools.pairwise(names):
        larger = _by_setting(large)
        smaller = _by_setting(small)
        assert smaller and all(
            entry in larger and set(seeds) <= set(larger[entry]) for entry, seeds in smaller.items()
        ), (small, large)


def _by_setting(profile: str) -> dict[tuple, list[int]]:
    """A profile's deciding grid entries without their seeds, each with the seeds it trains."""
    found = {}
    for planned in claim_plan(DECIDING[profile], fillers=False):
        entry = {k: v for k, v in planned.entry.items() if k != "seeds"}
        seeds = planned.entry.get("seeds", PROFILES[profile]["seeds"])
        found[_identity(entry)] = seeds
    return found


def test_the_laptop_and_overnight_train_every_deciding_cell_on_the_seeds_a_low_value_needs():
    assert len(DECIDING_SEEDS) == LOW_NEEDS_SEEDS
    for name in ("laptop", "overnight"):
        for planned in claim_plan(DECIDING[name], fillers=False):
            assert len(planned.entry["seeds"]) >= LOW_NEEDS_SEEDS, planned.entry
    # the main job's 15 minutes hold one seed a cell: it decides nothing that rests on a low value
    assert PROFILES["smoke"]["seeds"] == [1234]
    assert all("seeds" not in d.settings for d in DECIDING["smoke"])


def test_cells_fed_reads_the_tables_a_configuration_belongs_to():
    nope_mod10 = {"task": "mod10", "model": "transformer", "pe": "nope", "layers": 2}
    assert cells_fed(nope_mod10, ["2"]) == {
        ("2", "Modular (mod 10), 2L", "NoPE"),
        ("A2", "Modular (mod 10), 2L", "NoPE"),
    }
    assert ("A4", "Modular (mod 10), 2L", "NoPE") in cells_fed(nope_mod10, ["2", "A4"])
    assert cells_fed({**nope_mod10, "task": "mod10_bos"}, ["2"]) == set()


# -- the selection results as data (experiments/chosen_settings.yaml) ---------------------------


def test_the_chosen_settings_load_and_every_entry_is_used():
    entries = load_chosen()
    assert len(entries) == len(CHOSEN) == 68
    used = {source.key for name in DECIDING for d in DECIDING[name] for source in d.sources}
    assert used == {entry.key for entry in entries}  # no entry a profile does not read
    assert all(d.sources for name in DECIDING for d in DECIDING[name])


def test_the_file_is_what_choose_lr_writes():
    """`format_chosen` writes the file in one canonical form, so `choose_lr.py --write` rewrites
    only what changed."""
    assert format_chosen(load_chosen()) == CHOSEN_SETTINGS.read_text()


def test_every_entry_is_a_row_of_its_record():
    """Each entry names the record (and spec) it comes from, and that record's table has a row
    with its task, budget, chosen lr and outcome."""
    for entry in load_chosen():
        record = REPO / entry.record
        assert (REPO / entry.spec).exists(), entry.spec
        rows = [
            [cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in record.read_text().splitlines()
            if line.startswith(f"| {entry.task} |")
        ]
        fits = "yes" if entry.fits else "no"
        first = "-" if entry.first_fit is None else str(entry.first_fit)
        assert any(
            row[2] == str(entry.steps)
            and row[4:6] == [f"{entry.lr:g}", fits]
            and (len(row) == 6 or row[6] == first)  # round 2's table has no first fit
            for row in rows
        ), (entry.record, entry.label)


def test_a_profile_reads_the_numbers_of_its_entries():
    """Spot values: what the profiles train is what the file says: a budget of 2,250 steps
    becomes evaluations every 600 steps, the plateau rule and a cap of 4,800."""
    sine_2l = find_chosen(CHOSEN, "seed_agreement_selection", "mod10", pe="sine", layers=2)
    assert (sine_2l.lr, sine_2l.first_fit, sine_2l.budget_steps) == (1e-3, 2250, 2250)
    mod10 = [d for d in SMOKE_DECIDING if d.sources == (sine_2l,)]
    assert [dict(d.settings) for d in mod10] == [
        {"hidden": 32, "heads": 4, "lr": 1e-3, "steps": 4800, "eval_every": 600,
         "plateau_evals": 3, "plateau_tolerance": 0.01, "warmup_steps": 100}
    ]  # fmt: skip
    deltanet = find_chosen(
        CHOSEN, "hypothesis_selection", "mod10", model="deltanet", negative_eigenvalues=True
    )
    assert (deltanet.lr, deltanet.budget_steps) == (3e-3, 1500)  # its first fit
    rnn = find_chosen(CHOSEN, "claims_selection", "selective_mod4", model="rnn")
    assert (rnn.lr, rnn.fits, rnn.budget_steps) == (3e-3, False, 6000)  # the whole budget
    with pytest.raises(ValueError, match="one entry for seed_agreement_selection: mod10"):
        find_chosen(CHOSEN, "seed_agreement_selection", "mod10", model="transformer")  # several


def test_a_broken_chosen_settings_file_is_refused_naming_the_entry(tmp_path):
    path = tmp_path / "chosen.yaml"
    good = format_chosen(load_chosen()[:2])
    path.write_text(good.replace("lr: 0.003", "lr: fast", 1))
    with pytest.raises(ValueError, match="entry 0: lr = 'fast'"):
        load_chosen(path)
    path.write_text(good + good.split("selections:\n")[1])  # every entry twice
    with pytest.raises(ValueError, match="entries 0 and 2 are both"):
        load_chosen(path)
    with pytest.raises(FileNotFoundError, match="experiments/"):
        load_chosen(tmp_path / "missing.yaml")


# -- which Deciding wins: the first that covers a configuration ---------------------------------


def test_the_first_deciding_that_covers_a_configuration_wins():
    """Two Deciding objects over the same cells with different settings: the first's settings
    train, whatever the second says, and `shadowed` reports each configuration it decided."""
    two_layers = {"model": "transformer", "layers": 2}
    first = Deciding(("10",), {"lr": 1e-3, "steps": 700}, where=two_layers)
    second = Deciding(("10",), {"lr": 3e-3, "steps": 900}, where=two_layers)

    def trained(order):
        return [p.entry for p in claim_plan(order) if p.rule is not None]

    assert trained([first, second]) and {e["steps"] for e in trained([first, second])} == {700}
    assert {e["steps"] for e in trained([second, first])} == {900}
    reported = shadowed([first, second])
    assert reported and all(w is first and lost is second for _, w, lost in reported)
    assert {(c["task"], c["pe"]) for c, _, _ in reported} == {
        (e["task"], e["pe"]) for e in trained([first, second])
    }
    assert shadowed([first, Deciding(("10",), dict(first.settings), where=two_layers)]) == []


@pytest.mark.parametrize("name", list(DECIDING))
def test_in_a_profile_a_narrower_deciding_comes_first_and_every_one_wins_somewhere(name):
    for _, winner, overridden in shadowed(DECIDING[name]):
        assert dict(overridden.where).items() <= dict(winner.where).items(), (winner, overridden)
    won = {id(planned.rule) for planned in claim_plan(DECIDING[name])}
    assert [d.where for d in DECIDING[name] if id(d) not in won] == []


# -- the runs stay the runs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, runs, spot",
    [
        ("smoke", 9, ["mod10-transformer-L2-H32-sine-s1234-0d6f28d52083",
                       "mod10-transformer-L1-H128-nope-s1234-cc1b7ff94bd1"]),
        ("laptop", 34, ["selective_mod4-rnn-L1-H128-s1234-f6de6710cb0d",
                        "mod10-transformer-L2-H32-nope-s42-b1855400e64a",
                        "first_token_heterogeneous-transformer-L1-H4-nope-s123-fb9a27b7350f"]),
        ("overnight", 292, ["selective_mod4-lstm-L1-H128-s1234-143510ce7ef5",
                            "selective_mod4-rnn-L1-H128-s1234-f6de6710cb0d",
                            "first_token_heterogeneous-transformer-L1-H4-nope-s123-fb9a27b7350f",
                            "first_token_homogeneous-transformer-L1-H4-sine-s1234-e78e494644e6",
                            "mod10-mamba-L2-H32-s1234-3d1046c0a31a"]),
        ("paper-lite", 416, []),
    ],
)  # fmt: skip
def test_the_profiles_train_the_runs_they_trained_before_the_file(name, runs, spot):
    """Run names encode the config hash: the same names are the same configurations."""
    names = [run.name for run in get_profile(name)]
    assert len(names) == runs and set(spot) <= set(names)


@pytest.mark.parametrize("name", list(DECIDING))
def test_why_names_a_claim_for_every_deciding_run_and_a_structural_check_for_each_filler(name):
    explained = explain(name)
    assert [why.run for why in explained] == [run.name for run in get_profile(name)]
    steps = {run.name: run.config.optim.steps for run in get_profile(name)}
    fillers = [why for why in explained if why.filler]
    # the main job and the laptop train no structural checks; overnight fills every table layout
    assert bool(fillers) == FILLED[name]
    assert all(steps[w.run] == _FILLER["steps"] for w in fillers)
    assert all(w.serves.startswith("structural check: fills table") for w in fillers)
    for why in explained:
        if not why.filler:
            assert why.claims and why.serves.startswith("claim"), why.run
            assert "experiments/" in why.settings_from and " round " in why.settings_from
    sine = next(w for w in explained if w.run.startswith("mod10-transformer-L2-H32-sine"))
    serves = "claims 8, 10" if name == "overnight" else "claim 10"
    assert sine.serves == serves
    table = why_table(name, [sine.run])
    assert table.to_dict("records") == [
        {"run": sine.run, "tables": "2", "serves": serves,
         "settings from": sine.settings_from}
    ]  # fmt: skip


def test_the_provenance_page_shows_the_why_table():
    notebook = json.loads((REPO / "notebooks" / "provenance.ipynb").read_text())
    code = "".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    assert "profiles.why_table(" in code


# -- choose_lr.py --write: from selection runs to the file, mechanically --------------------------


def _choose_lr():
    spec = importlib.util.spec_from_file_location(
        "choose_lr", REPO / "experiments" / "choose_lr.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _selection_run(root: Path, run, ind_by_step: dict[int, float]) -> None:
    """A finished selection run's record, as far as `choose_lr.py` reads it."""
    path = root / run.name
    path.mkdir(parents=True)
    config = run.config
    (path / "config.json").write_text(json.dumps({
        "task": config.task, "model": config.model, "seed": config.seed,
        "position_scheme": "none", "model_options": dict(config.model_options),
        "optim": {"lr": config.optim.lr, "steps": config.optim.steps},
    }))  # fmt: skip
    best = max(ind_by_step.values())
    (path / "summary.json").write_text(json.dumps({
        "status": "complete", "config_hash": run.name, "steps": config.optim.steps,
        "wall_time_s": 1.0, "parameters": 1, "state_size": 1, "metrics": {"ind": "val/acc"},
        "best_val": {"step": 0, "ind": best, "ood": 0.0},
    }))  # fmt: skip
    rows = [f"{step},val,acc,{value}" for step, value in ind_by_step.items()]
    (path / "eval.csv").write_text("step,split,metric,value\n" + "\n".join(rows) + "\n")


def test_choose_lr_writes_the_chosen_settings_keeping_what_was_set_by_hand(tmp_path, capsys):
    from countlib.sweep import expand

    spec = {"name": "sel", "steps": 400, "eval_every": 200, "seeds": [1234], "grid": [
        {"task": ["mod10", "selective"], "model": "lstm", "layers": 1, "hidden": 16,
         "lr": [0.001, 0.01]},
    ]}  # fmt: skip
    spec_path = tmp_path / "sel.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    # mod10 fits at lr 0.001 (at step 400) and 0.01 (at 200); Selective never, best at lr 0.01
    for run in expand(spec):
        fitted, fast = run.config.task == "mod10", run.config.optim.lr == 0.01
        early = 0.96 if fitted and fast else 0.5
        late = 0.97 if fitted else 0.7 if fast else 0.6
        _selection_run(tmp_path / "runs", run, {200: early, 400: late})
    held = Chosen("experiments/sel.md", 1, "old.yaml", "mod10", {"model": "lstm", "layers": 1,
                  "hidden": 16}, 99, 0.5, False, None, budget=1234, note="by hand")  # fmt: skip
    out = tmp_path / "chosen.yaml"
    out.write_text(format_chosen([held]))
    args = [str(tmp_path / "runs"), "--write", str(out), "--record", "experiments/sel.md",
            "--round", "2", "--spec", str(spec_path)]  # fmt: skip
    _choose_lr().main(args)
    (entry,) = load_chosen(out)  # selective is not in the file: listed, not added
    assert (entry.round, entry.spec, entry.steps, entry.lr) == (2, str(spec_path), 400, 0.001)
    assert (entry.fits, entry.first_fit) == (True, 400)  # the lowest fitting lr, its first fit
    assert (entry.budget, entry.note) == (1234, "by hand")
    err = capsys.readouterr().err
    assert "changed: experiments/sel.md round 2: mod10 lstm" in err
    assert "not in the file (--add adds them): experiments/sel.md round 2: selective" in err
    _choose_lr().main([*args, "--add"])
    added = next(e for e in load_chosen(out) if e.task == "selective")
    assert (added.lr, added.fits, added.first_fit, added.budget_steps) == (0.01, False, None, 400)


def test_choose_lr_every_seed_needs_each_seed_to_fit_by_the_band(tmp_path, capsys):
    """``--every-seed``: lr 0.01 fits on one seed only and lr 0.001 reaches 96 % on both (a fit,
    but inside the verdict band): neither fits; lr 0.003 clears 98 % on both, the second seed
    at step 400, which is its budget."""
    from countlib.sweep import expand

    spec = {"name": "sel", "steps": 400, "eval_every": 200, "seeds": [1234, 42], "grid": [
        {"task": "mod10", "model": "lstm", "layers": 1, "hidden": 16,
         "lr": [0.001, 0.003, 0.01]},
    ]}  # fmt: skip
    curves = {
        (0.001, 1234): {200: 0.9, 400: 0.96}, (0.001, 42): {200: 0.96, 400: 0.9},
        (0.003, 1234): {200: 0.99, 400: 0.99}, (0.003, 42): {200: 0.97, 400: 0.98},
        (0.01, 1234): {200: 1.0, 400: 1.0}, (0.01, 42): {200: 0.5, 400: 0.6},
    }  # fmt: skip
    for run in expand(spec):
        _selection_run(tmp_path / "runs", run, curves[(run.config.optim.lr, run.config.seed)])
    module = _choose_lr()
    (group,) = module.selections(str(tmp_path / "runs"), every_seed=True)
    pick = group["pick"]
    assert (pick["lr"], pick["fits"], pick["fit_step"]) == (0.003, True, 400)
    (plain,) = module.selections(str(tmp_path / "runs"))  # one seed fitting is enough there
    assert (plain["pick"]["lr"], plain["pick"]["fit_step"]) == (0.001, 200)
    # none fits on every seed: the lr whose worst seed is best, though another's best seed ties
    late = {**curves, (0.003, 42): {200: 0.9, 400: 0.97}}  # worst seeds: 96, 97 and 60 %
    for run in expand(spec):
        _selection_run(tmp_path / "late", run, late[(run.config.optim.lr, run.config.seed)])
    (fallback,) = module.selections(str(tmp_path / "late"), every_seed=True)
    assert (fallback["pick"]["lr"], bool(fallback["pick"]["fits"])) == (0.003, False)


@pytest.mark.parametrize("name", list(DECIDING))
def test_every_deciding_cell_trains_to_a_plateau_with_room_above_its_budget(name):
    """No three-evaluation runs: each cell evaluates at least 4 times within the budget its
    selection needed to fit, stops on the plateau rule, and may train about twice that long."""
    for deciding in DECIDING[name]:
        settings = deciding.settings
        budget = max(source.budget_steps for source in deciding.sources)
        assert settings["plateau_evals"] == 3 and settings["plateau_tolerance"] == 0.01
        assert settings["eval_every"] <= budget / 4 + 50, deciding.where
        assert settings["steps"] >= 2 * budget and settings["steps"] % settings["eval_every"] == 0
    assert to_plateau(500) == {"steps": 1200, "eval_every": 150, "plateau_evals": 3,
                               "plateau_tolerance": 0.01}  # fmt: skip
