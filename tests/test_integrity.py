"""A finished run proves its own integrity (issue 27, item 1): it records the size and sha256 of
every result file in checksums.json before COMPLETE, and every reader (the sweep's skip, the
results tables, `countlib results`, the book's cells, the analysis tools) finds a record cut
short, garbled, deleted or edited since, names the run and the file, and says how to retrain it;
runs older than checksums are still read, checked as far as they can be, and can be stamped."""

import importlib.util
import json
import shutil
import warnings
from pathlib import Path

import pytest

from countlib.analysis.runs import load_run
from countlib.cli import main
from countlib.paper import PaperTable
from countlib.results import (
    DAMAGED,
    BrokenRunWarning,
    load_eval_history,
    load_runs,
    load_tally,
    verify_runs,
)
from countlib.sweep import expand, run_sweep
from countlib.tables import render_html, table_frame
from countlib.train import train
from countlib.train.records import RunDir, RunRecordError, file_digest

REPO = Path(__file__).resolve().parents[1]

#: One tiny LSTM run with three evaluations (steps 0, 2 and 4).
SPEC = {
    "name": "integrity",
    "steps": 4,
    "eval_every": 2,
    "batch_size": 4,
    "eval_batch_size": 256,
    "seeds": [1],
    "grid": [{"table": "t", "task": "shifted_start", "model": "lstm", "hidden": 8}],
}
#: A table of one cell holding the run.
TABLE = PaperTable("T0", "integrity", [("LSTM", {"model": "lstm"})], [("all", {})])


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    runs_dir = tmp_path_factory.mktemp("trained")
    report = run_sweep(expand(SPEC), runs_dir, device="cpu")
    assert [o.status for o in report.outcomes] == ["completed"]
    return runs_dir


@pytest.fixture
def runs_dir(trained, tmp_path) -> Path:
    copy = tmp_path / "runs"
    shutil.copytree(trained, copy)
    return copy


def _run(runs_dir: Path) -> RunDir:
    return RunDir(runs_dir / expand(SPEC)[0].name)


# -- the faults -----------------------------------------------------------------------------


def _truncate(path: Path) -> None:
    """Cut inside a row of the first evaluation's (step 0's)."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3].rstrip(b"\n") + b"0")


def _cut_at_a_line(path: Path) -> None:
    """Drop the rows of the last evaluation, keeping every other line whole."""
    lines = path.read_text().splitlines(keepends=True)
    last = lines[-1].split(",")[0]
    path.write_text("".join(line for line in lines if line.split(",")[0] != last))


def _garble(path: Path) -> None:
    """A row of too many fields in the middle, as a bad sector or a stray write leaves."""
    lines = path.read_text().splitlines(keepends=True)
    middle = len(lines) // 2
    path.write_text("".join([*lines[:middle], '1,"2,3,4,5,6,7\n', *lines[middle:]]))


def _edit_a_number(path: Path) -> None:
    """One digit changed, the size and the syntax kept."""
    text = path.read_text()
    at = max(i for i, char in enumerate(text) if char.isdigit())
    path.write_text(text[:at] + str((int(text[at]) + 1) % 10) + text[at + 1 :])


FAULTS = {
    "truncated tally": ("per_position.csv", _truncate),
    "eval.csv cut at a line": ("eval.csv", _cut_at_a_line),
    "garbled eval.csv": ("eval.csv", _garble),
    "deleted tally": ("per_count.csv", Path.unlink),
    "edited summary": ("summary.json", _edit_a_number),
    "edited tally": ("per_length.csv", _edit_a_number),
}


def _warning_text(record: pytest.WarningsRecorder) -> str:
    return "\n".join(str(w.message) for w in record if w.category is BrokenRunWarning)


# -- what a finished run records ------------------------------------------------------------


def test_a_finished_run_records_size_and_sha256_of_every_result_file(runs_dir):
    run = _run(runs_dir)
    recorded = json.loads(run.checksums.read_text())
    expected = {
        "config.json", "environment.json", "train.csv", "eval.csv", "per_position.csv",
        "per_count.csv", "per_length.csv", "summary.json", "last.pt", "best_val.safetensors",
        "best_ood.safetensors",
    }  # fmt: skip
    assert recorded["algorithm"] == "sha256" and set(recorded["files"]) == expected
    for name, digest in recorded["files"].items():
        assert digest == file_digest(run.path / name), name
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an intact run: no warning from any reader
        assert verify_runs(runs_dir)["verified"] == [run.path.name]
        assert load_runs(runs_dir)["status"].tolist() == ["complete"]
        assert len(load_tally(runs_dir)) and len(load_eval_history(runs_dir))


def test_a_kill_before_the_checksums_leaves_the_run_unfinished_never_complete_without_them(
    tmp_path, monkeypatch
):
    config = expand(SPEC)[0].config

    def killed(self):
        raise KeyboardInterrupt  # as a kill between summary.json and checksums.json

    with monkeypatch.context() as patch:
        patch.setattr(RunDir, "write_checksums", killed)
        with pytest.raises(KeyboardInterrupt):
            train(config, tmp_path, device="cpu", progress=False)
    run = _run(tmp_path)
    assert run.summary.exists() and not run.checksums.exists() and not run.is_complete()
    result = train(config, tmp_path, device="cpu", progress=False)  # resumes, finishes
    assert result.status == "complete" and not result.skipped
    run.verify()
    assert verify_runs(tmp_path)["verified"] == [run.path.name]


def test_identical_runs_record_identical_checksums_and_same_records_still_agrees(trained, tmp_path):
    again = tmp_path / "again"
    assert run_sweep(expand(SPEC), again, device="cpu").ok
    first, second = (json.loads(_run(d).checksums.read_text())["files"] for d in (trained, again))
    assert first.keys() == second.keys()
    for name in ("config.json", "eval.csv", "per_position.csv", "per_count.csv"):
        assert first[name] == second[name], name  # no time, nothing but the files' bytes
    spec = importlib.util.spec_from_file_location("same", REPO / "benchmarks/same_records.py")
    same = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(same)
    assert same.differences(trained, again) == []
    _edit_a_number(_run(again).eval_log)
    (checksums_of_eval,) = [
        line for line in same.differences(trained, again) if "eval.csv" in line
    ]  # the edited record differs; its checksum follows it only within checksums.json
    assert checksums_of_eval.endswith("eval.csv differs")


# -- each fault, each reader ----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_every_reader_finds_the_damage_and_names_the_run_and_the_file(case, runs_dir, capsys):
    name, damage = FAULTS[case]
    run = _run(runs_dir)
    damage(run.path / name)

    with pytest.warns(BrokenRunWarning) as record:
        table = load_runs(runs_dir)
    text = _warning_text(record)
    assert run.path.name in text and name in text and "--retrain-broken" in text
    (row,) = table.to_dict(orient="records")
    assert row["status"] == DAMAGED and name in row["damage"]
    assert row.get("best_ood_ood") is None or row["best_ood_ood"] != row["best_ood_ood"]  # NaN

    cell_html = render_html(table_frame(table, TABLE), TABLE)
    assert "damaged record" in cell_html and "cl-success" not in cell_html
    assert "cl-fail" not in cell_html and "%" not in cell_html.split("damaged record")[1][:60]

    for reader in (load_tally, load_eval_history):
        with pytest.warns(BrokenRunWarning, match=f"{run.path.name}.*{name}"):
            assert not len(reader(runs_dir))

    report = run_sweep(expand(SPEC), runs_dir, device="cpu")
    (outcome,) = report.outcomes
    assert outcome.status == "failed" and str(run.path / name) in outcome.error
    assert "--retrain-broken" in outcome.error and "Traceback" not in outcome.error

    assert main(["results", str(runs_dir)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: run ") and name in err[0]

    assert main(["runs", "verify", str(runs_dir)]) == 1
    out = capsys.readouterr().out
    assert f"damaged: {run.path / name}" in out and "1 damaged" in out

    with pytest.raises(RunRecordError, match=f"{name}.*--retrain-broken"):
        load_run(run.path)


def test_a_damaged_run_is_retrained_with_retrain_broken(runs_dir):
    run = _run(runs_dir)
    _truncate(run.tally("position"))
    report = run_sweep(expand(SPEC), runs_dir, device="cpu", retrain_broken=True)
    assert [o.status for o in report.outcomes] == ["completed"]
    assert len(list(runs_dir.glob(f"{run.path.name}.broken-*"))) == 1  # set aside, kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert verify_runs(runs_dir)["verified"] == [run.path.name]
        assert load_tally(runs_dir)["step"].unique().tolist() == [4]


def test_damaged_weights_are_found_by_the_readers_that_load_them(runs_dir):
    """Readers of numbers check the weights' sizes only (hashing every run's weights for a
    table would cost more than the table); the analysis tools and the sweep hash them."""
    run = _run(runs_dir)
    data = bytearray(run.best_val.read_bytes())
    data[-3] ^= 0xFF  # a flipped byte in a tensor: same size
    run.best_val.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_runs(runs_dir)["status"].tolist() == ["complete"]  # its numbers are intact
    with pytest.raises(RunRecordError, match="best_val.safetensors"):
        load_run(run.path, "best_val")
    load_run(run.path, "best_ood")  # the other weights load
    (outcome,) = run_sweep(expand(SPEC), runs_dir, device="cpu").outcomes
    assert outcome.status == "failed" and "best_val.safetensors" in outcome.error

    run.best_ood.write_bytes(run.best_ood.read_bytes()[:100])  # a size the tables see
    with pytest.warns(BrokenRunWarning, match="best_ood.safetensors"):
        assert load_runs(runs_dir)["status"].tolist() == [DAMAGED]


# -- runs older than checksums ---------------------------------------------------------------


def test_an_older_run_without_checksums_is_read_and_can_be_stamped(runs_dir, capsys):
    run = _run(runs_dir)
    run.checksums.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_runs(runs_dir)["status"].tolist() == ["complete"]
    assert main(["runs", "verify", str(runs_dir)]) == 0
    assert "1 without checksums" in capsys.readouterr().out

    assert main(["runs", "stamp", str(runs_dir)]) == 0
    assert "1 stamped now" in capsys.readouterr().out
    assert run.checksums.exists()
    _edit_a_number(run.eval_log)  # now found, as for a run that recorded its own
    with pytest.warns(BrokenRunWarning, match="eval.csv"):
        assert load_runs(runs_dir)["status"].tolist() == [DAMAGED]


#: The faults an older run's records show without checksums, and what the readers say.
UNSTAMPED_FAULTS = {
    "truncated tally": ("per_position.csv", _truncate, "ends inside a row"),
    "eval.csv cut at a line": ("eval.csv", _cut_at_a_line, "ends at step 2"),
    "garbled eval.csv": ("eval.csv", _garble, "not a readable CSV"),
}


@pytest.mark.parametrize("case", sorted(UNSTAMPED_FAULTS))
def test_an_older_run_is_checked_as_far_as_it_can_be_and_not_stamped_when_damaged(
    case, runs_dir, capsys
):
    name, damage, reason = UNSTAMPED_FAULTS[case]
    run = _run(runs_dir)
    run.checksums.unlink()
    damage(run.path / name)
    reader = load_eval_history if name == "eval.csv" else load_tally
    with pytest.warns(BrokenRunWarning, match=f"{run.path.name}.*{name}.*{reason}"):
        assert not len(reader(runs_dir))  # never the step-0 rows as the last step
    assert main(["runs", "stamp", str(runs_dir)]) == 1
    assert f"damaged: {run.path / name}" in capsys.readouterr().out
    assert not run.checksums.exists()


def test_learning_curves_are_not_drawn_from_a_damaged_run(runs_dir, capsys):
    pytest.importorskip("matplotlib", reason="learning curves need the book extra")
    from countlib.curves import plot_page_curves

    run = _run(runs_dir)
    _cut_at_a_line(run.eval_log)
    assert main(["curves", str(run.path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(run.eval_log) in err[0]
    with pytest.warns(BrokenRunWarning):
        table = load_runs(runs_dir)
    assert plot_page_curves(table) is None  # its only run is damaged: nothing to draw


def test_a_page_counts_a_damaged_run_apart_from_the_finished_ones(runs_dir):
    from countlib.book import manifest_for

    _truncate(_run(runs_dir).eval_log)
    manifest = manifest_for(expand(SPEC), scale="test", grid=SPEC)
    with pytest.warns(BrokenRunWarning):
        page = manifest.subset().load(runs_dir)
    line = page.scale_line("this page")
    assert "shows 0 finished run(s) of the 1 planned" in line
    assert "**1 run(s) have damaged records**" in line and "--retrain-broken" in line
    assert "have no results" not in line  # damaged is not missing: its cell says which
