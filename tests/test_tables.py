import json

import pandas as pd

from countlib import formatting, tables


def runs_frame(rows):
    base = {"status": "complete", "hidden": 64, "path": "/nowhere"}
    frame = pd.DataFrame([base | row for row in rows])
    for rule in ("best_ood", "best_val", "final"):
        frame[f"{rule}_ind"] = frame.get(f"{rule}_ind", frame["best_ood_ind"])
        frame[f"{rule}_ood"] = frame.get(f"{rule}_ood", frame["best_ood_ood"])
    return frame


ROWS = [
    {"run": "r1", "task": "mod10", "model": "transformer", "pe": "rope", "layers": 1, "seed": 1,
     "best_ood_ind": 1.0, "best_ood_ood": 0.97},
    {"run": "r2", "task": "mod10", "model": "transformer", "pe": "rope", "layers": 1, "seed": 2,
     "best_ood_ind": 0.9, "best_ood_ood": 0.10},
    {"run": "r3", "task": "mod10", "model": "transformer", "pe": "rope", "layers": 1, "seed": 3,
     "best_ood_ind": 0.8, "best_ood_ood": 0.20},
    {"run": "r4", "task": "mod10", "model": "transformer", "pe": "nope", "layers": 1, "seed": 1,
     "best_ood_ind": 0.5, "best_ood_ood": 0.5},
]  # fmt: skip


def test_paper_table_layouts():
    specs = {spec.key: spec for spec in tables.PAPER_TABLES}
    assert list(specs) == ["2", "A2", "A1", "A3", "A4", "A5", "A6", "A7", "A8"]
    assert len(specs["2"].rows) == 21 and len(specs["2"].columns) == 5
    assert len(specs["A1"].rows) == 18  # tasks 3-8 x 3 depths
    assert [label for label, _ in specs["A1"].columns] == [
        "RNN", "LSTM", "S4", "Mamba", "RWKV-6"]  # fmt: skip
    assert specs["A2"].statistic == "median"
    assert (specs["A2"].runs_of, specs["A3"].runs_of, specs["A5"].runs_of) == ("2", "A1", "A5")


def test_the_hypothesis_tables_keep_each_option_in_its_own_column():
    h1 = tables.get_table("H1")
    assert [t.key for t in tables.TABLES][-2:] == ["H1", "H2"] and h1.paper_key == "A1"
    assert h1.rows == tables.get_table("A1").rows and len(h1.columns) == 13
    rows = [
        {"run": f"m{i}", "task": "mod10", "model": "mamba", "layers": 1, "seed": 1,
         "negative_eigenvalues": negative, "best_ood_ind": 1.0, "best_ood_ood": ood}
        for i, (negative, ood) in enumerate([(False, 0.1), (True, 0.9)])
    ]  # fmt: skip
    runs = runs_frame(rows)
    row = "Modular (mod 10), 1L"
    assert tables.table_frame(runs, tables.get_table("A1")).loc[row, "Mamba"]["runs"] == ["m0"]
    frame = tables.table_frame(runs, h1)
    assert frame.loc[row, "Mamba"]["runs"] == ["m0"]
    assert frame.loc[row, "Mamba, [-1, 1]"]["runs"] == ["m1"]
    page = tables.render_html(frame, h1)
    assert "paper 100.0 / 100.0" in page  # the LSTM's printed Table A1 value beside its cell
    assert "Table A1" in page  # the agreement line names the table the values come from


def test_every_table_trains_its_own_grid_or_reports_another_tables_runs():
    for spec in tables.TABLES:
        assert bool(spec.grid) != bool(spec.same_runs_as), spec.key
        if spec.same_runs_as:
            assert tables.get_table(spec.same_runs_as).grid


def test_cells_aggregate_seeds_and_say_missing():
    runs = runs_frame(ROWS)
    spec = tables.PaperTable(
        "t", "T", [("mod10 1L", {"task": "mod10", "layers": 1})],
        [("RoPE", {"model": "transformer", "pe": "rope"}), ("APE", {"pe": "ape"})],
    )  # fmt: skip
    frame = tables.table_frame(runs, spec)
    rope = frame.loc["mod10 1L", "RoPE"]
    assert (rope["ind"], rope["ood"], rope["seeds"], rope["best_run"]) == (1.0, 0.97, 3, "r1")
    assert frame.loc["mod10 1L", "APE"]["missing"]
    median_spec = tables.PaperTable("m", "M", spec.rows, spec.columns, statistic="median")
    median = tables.table_frame(runs, median_spec)
    assert median.loc["mod10 1L", "RoPE"]["ood"] == 0.2

    page = tables.render_html(frame, spec)
    assert 'class="cl-success"' in page and "97.0" in page and "100.0 / 97.0" in page
    assert 'href="provenance.html#r1"' in page
    # an empty cell says it was not trained here and which command trains it
    missing = '<td class="cl-missing">not trained here<br><small class="cl-paper">not in the paper'
    assert missing in page
    command = "countlib book --profile paper-lite --table t"
    assert f'<small title="{command}">in profile paper-lite</small>' in page
    assert (rope["ood_min"], rope["ood_max"]) == (0.10, 0.97)  # the seeds' range, for the paper


def test_unfinished_runs_are_not_shown_as_numbers():
    runs = runs_frame([ROWS[0] | {"status": "incomplete"}])
    spec = tables.PaperTable("t", "T", [("r", {"task": "mod10"})], [("c", {"pe": "rope"})])
    assert tables.table_frame(runs, spec).iloc[0, 0]["missing"]


def test_config_labels_name_what_varies():
    labels = formatting.config_labels(runs_frame(ROWS))
    assert list(labels) == ["rope", "rope", "rope", "nope"]
    mixed = runs_frame([ROWS[0], ROWS[3] | {"layers": 2, "causal": False}])
    mixed.loc[0, "causal"] = True
    assert list(formatting.config_labels(mixed)) == ["rope 1L causal", "nope 2L bidirectional"]
    assert list(formatting.config_labels(runs_frame(ROWS[:1]))) == ["transformer"]


def test_tables_are_found_by_their_printed_number():
    assert tables.get_table("A6").key == "A6"
    assert tables.get_table("table2").key == "2"
    assert tables.get_table("table_A1").page == "table_A1"
    try:
        tables.get_table("A9")
    except ValueError as err:
        assert "choose from 2, A2, A1, A3, A4, A5, A6, A7, A8" in str(err)
    else:
        raise AssertionError("an unknown table must be an error")


def test_table_a6_separates_runs_by_causal_mask():
    spec = tables.get_table("A6")
    rows = [
        {"run": f"m{d}{c}", "task": "first_token_heterogeneous", "model": "transformer",
         "pe": "nope", "layers": 1, "hidden": d, "causal": c, "seed": 1,
         "best_ood_ind": 1.0, "best_ood_ood": 0.99 if c else 0.4}
        for d in (32, 4) for c in (True, False)
    ]  # fmt: skip
    runs = runs_frame(rows)
    frame = tables.table_frame(runs, spec)
    assert frame.loc["d = 4", "with causal mask"]["best_run"] == "m4True"
    assert frame.loc["d = 32", "without causal mask"]["ood"] == 0.4
    placed = tables.table_runs(runs, spec).set_index("run")
    assert placed.loc["m32False", "column"] == "without causal mask"
    assert placed.loc["m32False", "row"] == "d = 32"
    assert len(placed) == 4


def a8_runs(oods: dict[str, list[float]]):
    """Table A8 runs (RoPE, 4 layers): per task, one run per OOD value."""
    return runs_frame([
        {"run": f"{task}-{i}", "task": task, "model": "transformer", "pe": "rope", "layers": 4,
         "seed": i, "best_ood_ind": 1.0, "best_ood_ood": ood}
        for task, values in oods.items() for i, ood in enumerate(values)
    ])  # fmt: skip


def test_cells_show_the_paper_and_whether_it_lies_in_the_seeds_range():
    """The paper's A8: 84.3, 98.9, 30.9, 22.1, 11.4; in range is within 5 points of the seeds."""
    spec = tables.get_table("A8")
    runs = a8_runs({
        "shifted_start_tr25_te50": [0.70, 0.80],  # 70-80: 84.3 is 4.3 above, in range
        "shifted_start_tr50_te100": [0.90],  # one seed: 98.9 is 8.9 above, out of range
        "shifted_start_tr25_te200": [0.164],  # 11.4 is exactly 5 points below, in range
    })  # fmt: skip
    frame = tables.table_frame(runs, spec)
    assert tables.agreement(frame, spec) == {
        "cells": 5, "paper": 5, "both": 3, "in_range": 2, "missing": 2, "structural": 0,
    }  # fmt: skip
    page = tables.render_html(frame, spec)
    assert "paper 100.0 / 84.3, in range" in page
    assert 'class="cl-paper cl-paper-out"' in page and "paper 100.0 / 98.9, out of range" in page
    assert 'not trained here<br><small class="cl-paper">paper 100.0 / 30.9</small>' in page
    assert "in 2 of the 3 cells that have both values" in page
    assert "the paper reports 5 and countlib has no runs for 2" in page
    assert "arXiv 2405.20131" in page and "best of 2 seeds" in page  # cited, with its caveat


def test_a_cell_the_paper_lacks_is_never_compared():
    spec = tables.get_table("2")
    runs = runs_frame([ROWS[0] | {"task": "vanilla_succession"}])  # 1-layer RoPE: not in Table 2
    frame = tables.table_frame(runs, spec)
    counts = tables.agreement(frame, spec)
    assert counts == {
        "cells": 105, "paper": 90, "both": 0, "in_range": 0, "missing": 104, "structural": 0,
    }  # fmt: skip
    page = tables.render_html(frame, spec)
    assert "No cell has both a countlib and a paper value" in page


def test_cells_flag_seeds_that_never_fitted_their_training_data():
    runs = runs_frame(ROWS[:3] + [ROWS[1] | {"run": "r5", "seed": 5, "best_ood_ind": 0.3}])
    spec = tables.PaperTable(
        "t", "T", [("mod10 1L", {"task": "mod10"})], [("RoPE", {"pe": "rope"})]
    )
    frame = tables.table_frame(runs, spec)
    assert frame.iloc[0, 0]["unfit"] == 3  # IND 0.9, 0.8 and 0.3 are below 95 %
    assert "3 did not fit (IND &lt; 95 %); the others: OOD 97.0" in tables.render_html(frame, spec)
    fitted = tables.table_frame(runs_frame(ROWS[:1]), spec)
    assert "did not fit" not in tables.render_html(fitted, spec)


def test_a_run_that_did_not_fit_is_never_shaded_a_success():
    """OOD 97 % from a model whose best validation IND is 50 % is not counting inductively:
    flagged, not green."""
    runs = runs_frame([ROWS[0] | {"best_ood_ind": 0.5}])
    spec = tables.PaperTable("t", "T", [("r", {"task": "mod10"})], [("c", {"pe": "rope"})])
    page = tables.render_html(tables.table_frame(runs, spec), spec)
    assert 'class="cl-fail"' in page and "cl-success" not in page and "did not fit" in page


def test_a_cell_fits_by_its_seeds_best_validation_accuracy():
    """The best-OOD checkpoint may predate fitting: fit is the run's best validation IND."""
    early = ROWS[0] | {"best_ood_ind": 0.58, "best_ood_ood": 0.03, "best_val_ind": 1.0}
    spec = tables.PaperTable("t", "T", [("r", {"task": "mod10"})], [("c", {"pe": "rope"})])
    c = tables.table_frame(runs_frame([early]), spec).iloc[0, 0]
    assert (c["ind"], c["fit_ind"], c["unfit"]) == (0.58, 1.0, 0)


def test_a_seed_that_never_fitted_does_not_make_its_cell_a_success():
    """Found on the laptop book (Table A5, SPE at d = 32): the best-of-seeds OOD came from a seed
    whose IND stayed at 0 % while another seed fitted; the cell reads the fitted seeds."""
    never = ROWS[0] | {"best_ood_ind": 0.0, "best_ood_ood": 1.0, "best_val_ind": 0.0}
    fitted = ROWS[1] | {"pe": "rope", "best_ood_ind": 1.0, "best_ood_ood": 0.5, "best_val_ind": 1.0}
    spec = tables.PaperTable("t", "T", [("r", {"task": "mod10"})], [("c", {"pe": "rope"})])
    c = tables.table_frame(runs_frame([never, fitted]), spec).iloc[0, 0]
    assert (c["ood"], c["fit_ind"], c["fit_ood"], c["unfit"]) == (1.0, 1.0, 0.5, 1)
    shown = tables._cell_html(c, None, "")
    assert (
        'class="cl-fail"' in shown
        and "1 did not fit (IND &lt; 95 %); the others: OOD 50.0" in shown
    )
    alone = tables.table_frame(runs_frame([never]), spec).iloc[0, 0]
    assert pd.isna(alone["fit_ood"]) and alone["unfit"] == 1


def test_a_structural_check_is_never_compared_with_the_paper():
    """Table A8 as in `a8_runs`: one cell planned below the deciding budget, one above it."""
    spec = tables.get_table("A8")
    runs = a8_runs({"shifted_start_tr25_te50": [0.0], "shifted_start_tr50_te100": [0.0]})
    short = tables.DECIDING_STEPS - 1
    runs["steps_planned"] = [short, tables.DECIDING_STEPS]
    frame = tables.table_frame(runs, spec)
    tiny, deciding = frame.loc["RoPE 4L", "25 / 50"], frame.loc["RoPE 4L", "50 / 100"]
    assert (tiny["structural"], tiny["budget"]) == (True, short)
    assert (deciding["structural"], deciding["budget"]) == (False, None)
    assert tables.in_paper_range(tiny, (1.0, 0.843)) is None  # 84.3 is far from 0: not asked
    assert tables.agreement(frame, spec) == {
        "cells": 5, "paper": 5, "both": 1, "in_range": 0, "missing": 3, "structural": 1,
    }  # fmt: skip
    page = tables.render_html(frame, spec)
    assert page.count("out of range") == 1  # the deciding cell's only
    assert (
        "no runs for 3; structural checks, trained too briefly to decide anything and "
        "not compared: 1." in page
    )


def test_runs_without_a_recorded_budget_are_not_structural_checks():
    runs = runs_frame(ROWS[:1])
    assert not tables.structural_check(runs)
    assert not tables.structural_check(runs.assign(steps_planned=[None]))
    assert not tables.structural_check(runs.iloc[0:0].assign(steps_planned=[]))
    assert tables.structural_check(runs.assign(steps_planned=[tables.DECIDING_STEPS - 1]))


def environment(root, name: str, **env) -> str:
    """A run directory holding only environment.json; its path, as a run table has it."""
    path = root / name
    path.mkdir()
    (path / "environment.json").write_text(json.dumps(env))
    return str(path)


def test_the_findings_line_names_each_machine_with_its_runs(tmp_path):
    cpu = {"device": "cpu", "device_name": "cpu", "cpu": "Intel(R) Xeon(R) Gold 6248",
           "cpu_count": 2, "torch": "2.13.0", "cpu_capability": "AVX2", "torch_blas": "mkl",
           "torch_blas_version": "2024.2", "onednn": "3.12.0"}  # fmt: skip
    gpu = {"device": "cuda:0", "device_name": "NVIDIA H100 80GB HBM3", "cpu": "AMD EPYC 9454",
           "cpu_count": 16, "torch": "2.13.0", "cpu_capability": "AVX512",
           "torch_blas": "mkl", "torch_blas_version": "2024.2", "onednn": "3.12.0",
           "cuda": "12.8", "cuda_driver": None}  # fmt: skip
    paths = [environment(tmp_path, f"cpu{i}", **cpu) for i in range(3)]
    paths.append(environment(tmp_path, "gpu", **gpu))
    line = tables.machines_line(pd.DataFrame({"path": paths}))
    assert line == (
        "Trained on: 2 x Intel(R) Xeon(R) Gold 6248, torch 2.13.0 (CPU capability AVX2, "
        "BLAS mkl 2024.2, oneDNN 3.12.0), 3 runs; NVIDIA H100 80GB HBM3 (CUDA 12.8, driver "
        "unknown) with 16 x AMD EPYC 9454, torch 2.13.0 (CPU capability AVX512, BLAS mkl "
        "2024.2, oneDNN 3.12.0), 1 run."
    )


def test_an_older_environment_record_reads_as_unknown(tmp_path):
    old = {"device": "cpu", "device_name": "cpu", "torch": "2.5.1"}  # before "cpu" was recorded
    line = tables.machines_line(pd.DataFrame({"path": [environment(tmp_path, "old", **old)]}))
    assert line == (
        "Trained on: processor unknown, torch 2.5.1 (CPU capability unknown, BLAS unknown, "
        "oneDNN unknown), 1 run."
    )
    assert tables.machines_line(pd.DataFrame()) == "Trained on: no finished runs."


def test_a_cell_counts_its_seeds_still_improving_fitted_or_not():
    """What a verdict resting on a low value checks (`countlib.claims`): how many of the cell's
    seeds, and of those that fitted, stopped while still improving; and the cap they had."""
    spec = tables.PaperTable("t", "T", [("r", {"task": "mod10"})], [("c", {"pe": "rope"})])
    rows = [
        ROWS[0] | {"best_val_ind": 1.0, "plateaued": False, "steps_planned": 1500},
        ROWS[1] | {"best_val_ind": 0.5, "plateaued": False, "steps_planned": 1500},
        ROWS[2] | {"best_val_ind": 1.0, "plateaued": True, "steps_planned": 1500},
    ]
    c = tables.table_frame(runs_frame(rows), spec).iloc[0, 0]
    assert (c["improving"], c["improving_fitted"], c["cap"]) == (2, 1, 1500)
    assert "2 of 3 still improving at the cap" in tables._cell_html(c, None, "")
