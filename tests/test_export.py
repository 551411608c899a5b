"""`countlib results` (countlib/export.py): one row per configuration with the numbers of the
book's table cells, the tidy evaluation export, and the three formats, on hand-made runs."""

import csv
import io
import json
import subprocess
import sys

import pytest

from countlib import export
from countlib.cli import main
from countlib.formatting import percent
from countlib.paper import get_table
from countlib.tables import DECIDING_STEPS, table_frame
from countlib.train.records import RunDir

#: The Helper Token, 1L x RNN cell of Tables A1 (best of seeds) and A3 (median).
CELL = ("Helper Token, 1L", "RNN")


def fake_run(root, name, *, seed, best_ood, best_val, hidden=32, status="complete", steps=5000):
    """A hand-made run record of an RNN on helper_token: (IND, OOD) at its best-OOD and
    best-validation checkpoints, and an eval.csv with the best-OOD values at step 10."""
    run = RunDir(root / name)
    run.path.mkdir(parents=True)
    config = {
        "task": "helper_token",
        "model": "rnn",
        "seed": seed,
        "optim": {"lr": 0.01, "steps": steps},
        "position_scheme": "none",
        "model_options": {"layers": 1, "hidden": hidden},
    }
    run.config.write_text(json.dumps(config))
    run.eval_log.write_text(
        f"step,split,metric,value\n10,val,acc,{best_ood[0]}\n10,ood,extrapolation_acc,{best_ood[1]}\n"
    )
    if status == "incomplete":
        return
    points = {"best_ood": best_ood, "best_val": best_val, "final": best_val}
    summary = {
        "status": status,
        "config_hash": f"hash-{name}",
        "steps": steps,
        "wall_time_s": 1.0,
        "parameters": 10,
        "state_size": 64,
        "metrics": {"ind": "val/acc", "ood": "ood/extrapolation_acc"},
    } | {rule: {"step": 10, "ind": ind, "ood": ood} for rule, (ind, ood) in points.items()}
    run.summary.write_text(json.dumps(summary))


@pytest.fixture
def runs_dir(tmp_path):
    fake_run(tmp_path, "a", seed=1, best_ood=(1.0, 0.50), best_val=(1.0, 0.40))
    fake_run(tmp_path, "b", seed=2, best_ood=(0.9, 0.97), best_val=(0.90, 0.10))  # never fits
    fake_run(tmp_path, "c", seed=3, best_ood=(0.8, 0.20), best_val=(0.96, 0.20))
    fake_run(tmp_path, "d", seed=4, best_ood=(0, 0), best_val=(0, 0), status="incomplete")
    fake_run(tmp_path, "wide", seed=1, best_ood=(1.0, 0.3), best_val=(1.0, 0.3), hidden=64)
    return tmp_path


def rows(runs_dir, rule="best_ood"):
    table = export.configurations(export.load_selected(runs_dir), rule)
    return {row["options"]: row for row in table.to_dict(orient="records")}


def test_one_row_per_configuration_with_known_numbers(runs_dir):
    found = rows(runs_dir)
    assert set(found) == {"layers=1 hidden=32", "layers=1 hidden=64"}
    row = found["layers=1 hidden=32"]
    assert (row["task"], row["model"], row["lr"], row["steps_planned"]) == (
        "helper_token", "rnn", 0.01, 5000,
    )  # fmt: skip
    assert (row["seeds"], row["incomplete"], row["diverged"]) == (3, 1, 0)
    # best of seeds: the highest OOD (seed b's) with its IND; median of the three
    assert (row["best_ood_pct"], row["best_ind_pct"]) == (97.0, 90.0)
    assert (row["median_ood_pct"], row["median_ind_pct"]) == (50.0, 90.0)
    assert (row["fitted_seeds"], row["fit_ind_pct"]) == (2, 100.0)  # b's best IND is 90 %
    assert row["best_run"] == "b" and row["runs"] == ["a", "b", "c"]
    assert row["checkpoint"] == "best_ood" and not row["structural_check"]


def test_runs_planned_too_short_to_decide_are_a_structural_check(tmp_path):
    fake_run(tmp_path, "short", seed=1, best_ood=(1, 1), best_val=(1, 1), steps=DECIDING_STEPS - 1)
    assert rows(tmp_path)["layers=1 hidden=32"]["structural_check"]


def markdown_rows(text):
    """The rows of a Markdown table as dicts by header."""
    header, _, *body = [line.strip("|").split(" | ") for line in text.strip().splitlines()]
    return [dict(zip([h.strip() for h in header], [c.strip() for c in row], strict=True))
            for row in body]  # fmt: skip


def test_a_rows_numbers_are_those_of_a_table_cell_of_its_runs(runs_dir):
    from countlib.results import load_runs

    runs = load_runs(runs_dir)
    runs = runs[runs["hidden"] == 32]  # the cell's runs: Tables A1 and A3 do not split by width
    for table in ("A1", "A3"):
        spec = get_table(table)
        for rule in ("best_ood", "best_val"):
            cell = table_frame(runs, spec, rule).loc[CELL]
            row = rows(runs_dir, rule)["layers=1 hidden=32"]
            assert row[f"{spec.statistic}_ood_pct"] == 100 * cell["ood"]
            assert row[f"{spec.statistic}_ind_pct"] == 100 * cell["ind"]
            assert row["fitted_seeds"] == cell["seeds"] - cell["unfit"]
            assert row["structural_check"] == cell["structural"]
            assert set(row["runs"]) == set(cell["runs"])
            text = io.StringIO()
            export.write(export.configurations(export.load_selected(runs_dir), rule), "markdown",
                         text)  # fmt: skip
            shown = markdown_rows(text.getvalue())[0]
            assert shown[f"{spec.statistic} OOD %"] == percent(cell["ood"])  # as the page shows


def test_csv_json_and_markdown_parse_with_percent_in_the_header(runs_dir, capsys):
    assert main(["results", str(runs_dir)]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["options"] for row in table] == ["layers=1 hidden=32", "layers=1 hidden=64"]
    assert float(table[0]["best_ood_pct"]) == 97.0 and table[0]["runs"] == "a b c"

    assert main(["results", str(runs_dir), "--format", "json", "--rule", "best_val"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert records[0]["checkpoint"] == "best_val" and records[0]["best_ood_pct"] == 40.0
    assert records[0]["runs"] == ["a", "b", "c"]

    assert main(["results", str(runs_dir), "--format", "markdown"]) == 0
    shown = markdown_rows(capsys.readouterr().out)
    assert shown[1]["best OOD %"] == "30.0" and shown[1]["family"] == "rnn"


def test_a_configuration_still_training_has_no_numbers(tmp_path, capsys):
    fake_run(tmp_path, "x", seed=1, best_ood=(0, 0), best_val=(0, 0), status="incomplete")
    assert main(["results", str(tmp_path), "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert (record["seeds"], record["incomplete"], record["best_ood_pct"]) == (0, 1, None)


def test_the_evaluation_export_is_tidy(runs_dir, capsys):
    assert main(["results", str(runs_dir), "--evaluations"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert list(table[0]) == list(export.EVALUATION_COLUMNS)
    b_ood = [r for r in table if r["run"] == "b" and r["split"] == "ood"]
    assert [(r["step"], r["metric"], float(r["value"])) for r in b_ood] == [
        ("10", "extrapolation_acc", 0.97)
    ]
    assert b_ood[0]["options"] == "layers=1 hidden=32" and b_ood[0]["task"] == "helper_token"


def test_a_spec_restricts_to_its_runs(tmp_path, capsys):
    from countlib.sweep import expand

    spec = {"name": "two", "steps": 5000, "lr": 0.01, "seeds": [1, 2],
            "grid": [{"task": "helper_token", "model": "rnn", "hidden": 32}]}  # fmt: skip
    names = [run.name for run in expand(spec)]
    for seed, name in enumerate(names, 1):
        fake_run(tmp_path / "runs", name, seed=seed, best_ood=(1, 0.5), best_val=(1, 0.5))
    fake_run(tmp_path / "runs", "not-in-the-spec", seed=9, best_ood=(1, 1), best_val=(1, 1))
    (tmp_path / "two.yaml").write_text(json.dumps(spec))  # JSON is YAML
    assert main(["results", str(tmp_path / "runs"), "--spec", str(tmp_path / "two.yaml")]) == 0
    (row,) = csv.DictReader(io.StringIO(capsys.readouterr().out))
    assert row["runs"] == " ".join(names) and row["seeds"] == "2"


def test_bad_input_is_one_line_naming_the_choices(tmp_path, capsys):
    assert main(["results", str(tmp_path / "nowhere")]) == 2
    assert "no such runs directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["results", str(tmp_path), "--format", "xml"])
    assert "choose from 'csv', 'json', 'markdown'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="best_ood, best_val, final"):
        export.configurations(export.load_selected(tmp_path), rule="last")


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path):
    fake_run(tmp_path, "a", seed=1, best_ood=(1, 1), best_val=(1, 1))
    rows = "".join(f"{step},val,acc,0.5\n" for step in range(20_000))  # beyond a pipe's buffer
    (tmp_path / "a" / "eval.csv").write_text("step,split,metric,value\n" + rows)
    command = f"{sys.executable} -m countlib results {tmp_path} --evaluations | head -1"
    done = subprocess.run(command, shell=True, capture_output=True, text=True)
    assert done.stdout == ",".join(export.EVALUATION_COLUMNS) + "\n"
    assert done.stderr == ""


def test_the_export_imports_no_torch():
    code = "import sys, countlib.export; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr
