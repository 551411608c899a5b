"""Run records that survive what goes wrong (issue 11, items 2, 6, 7 and 8): a corrupt record
costs one run and names its file, exploded and overflowing runs end diverged, checkpoints and
configs are cross-checked by config hash, and a resume clears a killed writer's temporaries."""

import json
import shutil
import warnings
from pathlib import Path

import pytest
import yaml

from countlib.book import make_book, manifest_for
from countlib.cli import main
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.results import BrokenRunWarning, load_runs
from countlib.sweep import expand, run_sweep
from countlib.train import Trainer, train
from countlib.train.checkpoint import CheckpointError
from countlib.train.records import RunDir, RunRecordError
from countlib.train.reload import load_run_model

REPO = Path(__file__).resolve().parents[1]

#: Three tiny LSTM runs: the first two are trained by the fixture, the third by each test.
SPEC = {
    "name": "reliability",
    "steps": 4,
    "eval_every": 4,
    "batch_size": 4,
    "eval_batch_size": 256,
    "seeds": [1],
    "grid": [{"table": "t", "task": "shifted_start", "model": "lstm", "hidden": [8, 12, 16]}],
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A runs directory in which the spec's first two runs are complete."""
    runs_dir = tmp_path_factory.mktemp("trained")
    report = run_sweep(expand(SPEC)[:2], runs_dir, device="cpu")
    assert [o.status for o in report.outcomes] == ["completed", "completed"]
    return runs_dir


@pytest.fixture
def runs_dir(trained, tmp_path) -> Path:
    copy = tmp_path / "runs"
    shutil.copytree(trained, copy)
    return copy


def _truncate(path: Path) -> None:
    path.write_text(path.read_text()[:25])


#: Each way a record of a complete run breaks: (the file, how it breaks, the reason given).
CORRUPTIONS = {
    "truncated summary": ("summary.json", _truncate, "not valid JSON"),
    "empty summary": ("summary.json", lambda p: p.write_text("{}"), "lacks status"),
    "summary missing beside COMPLETE": ("summary.json", Path.unlink, "is missing"),
    "truncated config": ("config.json", _truncate, "not valid JSON"),
}


# -- item 2: one corrupt record costs one run ------------------------------------------------


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_broken_record_fails_its_run_names_the_file_and_the_sweep_goes_on(case, runs_dir):
    name, corrupt, reason = CORRUPTIONS[case]
    runs = expand(SPEC)
    broken = runs_dir / runs[0].name
    corrupt(broken / name)

    report = run_sweep(runs, runs_dir, device="cpu")
    assert [o.status for o in report.outcomes] == ["failed", "skipped", "completed"]
    error = report.outcomes[0].error
    assert str(broken / name) in error and reason in error and "--retrain-broken" in error
    assert "Traceback" not in error and not report.ok

    with pytest.warns(BrokenRunWarning, match=f"{runs[0].name} left out: .*{name}.*{reason}"):
        table = load_runs(runs_dir)
    assert list(table["run"]) == [run.name for run in runs[1:]]

    with pytest.raises(RunRecordError, match=name):  # `countlib train` of it names the file
        train(runs[0].config, runs_dir, device="cpu", progress=False)


def test_retrain_broken_moves_the_run_aside_and_trains_it_afresh(runs_dir, capsys):
    runs = expand(SPEC)[:2]
    broken = runs_dir / runs[0].name
    _truncate(broken / "summary.json")
    kept = (broken / "summary.json").read_text()
    spec = runs_dir.parent / "spec.yaml"
    spec.write_text(yaml.safe_dump(SPEC | {"grid": [SPEC["grid"][0] | {"hidden": [8, 12]}]}))
    command = ["sweep", "--spec", str(spec), "--runs-dir", str(runs_dir), "--device", "cpu"]

    assert main(command) == 1
    assert f"failed: {broken}" in capsys.readouterr().out

    assert main([*command, "--retrain-broken"]) == 0
    out = capsys.readouterr().out
    assert "1 completed, 1 skipped" in out and f"moved aside to {runs[0].name}.broken-" in out
    (aside,) = runs_dir.glob(f"{runs[0].name}.broken-*")
    assert (aside / "summary.json").read_text() == kept  # set aside, not deleted
    assert (aside / "last.pt").exists() and (aside / "best_val.safetensors").exists()
    assert RunDir(broken).read_final(runs[0].config.config_hash())["status"] == "complete"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the set-aside copy is not a run of the table
        assert sorted(load_runs(runs_dir)["run"]) == sorted(run.name for run in runs)


def test_a_book_page_counts_a_broken_run_as_missing(runs_dir):
    runs = expand(SPEC)[:2]
    _truncate(runs_dir / runs[0].name / "summary.json")
    manifest = manifest_for(runs, scale="test", grid=SPEC)
    with pytest.warns(BrokenRunWarning, match="summary.json"):
        page = manifest.subset().load(runs_dir)
    assert list(page.runs["run"]) == [runs[1].name]
    assert page.missing == 1 and page.ignored == 0
    assert "1 planned run(s) have no results" in page.scale_line("this page")


def test_countlib_book_goes_on_past_a_broken_run(runs_dir, tmp_path, monkeypatch):
    runs = expand(SPEC)[:2]
    _truncate(runs_dir / runs[0].name / "summary.json")
    shutil.copytree(REPO / "notebooks", tmp_path / "notebooks")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path)
    report = make_book(
        runs,
        grid=SPEC,
        scale="test",
        runs_dir=runs_dir,
        out=tmp_path,
        device="cpu",
        only=["provenance"],
        build=False,
        log=lambda line: None,
    )
    assert [o.status for o in report.outcomes] == ["failed", "skipped"]
    page = (tmp_path / "book" / "generated" / "provenance.ipynb").read_text()
    assert "1 planned run(s) have no results" in page
    assert f'id=\\"{runs[1].name}\\"' in page and f'id=\\"{runs[0].name}\\"' not in page


# -- item 7: checkpoints and configs are cross-checked by config hash ------------------------


def test_a_best_checkpoint_of_another_run_is_refused_naming_both_hashes(runs_dir):
    ours, theirs = expand(SPEC)[:2]
    target = runs_dir / ours.name / "best_val.safetensors"
    # same shape, other seed: the weights would load without complaint
    other = RunConfig.from_dict(ours.config.to_dict() | {"seed": 2})
    other_run = train(other, runs_dir, device="cpu", progress=False).run_dir
    shutil.copy(other_run.best_val, target)
    with pytest.raises(CheckpointError) as caught:
        load_run_model(runs_dir / ours.name, "best_val")
    assert other.config_hash() in str(caught.value) and ours.config.config_hash() in str(
        caught.value
    )
    assert theirs.name not in str(caught.value)


def test_eval_refuses_a_run_whose_config_was_edited(runs_dir, capsys):
    run = runs_dir / expand(SPEC)[0].name
    recorded = json.loads((run / "summary.json").read_text())["config_hash"]
    config = json.loads((run / "config.json").read_text())
    config["optim"]["lr"] = 0.5  # builds the same model: nothing else would notice
    (run / "config.json").write_text(json.dumps(config))
    command = ["eval", str(run), "--checkpoint", "best_val", "--device", "cpu"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json hashes to" in err and recorded in err
    assert not list(run.glob("eval_best_val_*.csv"))  # nothing was evaluated


# -- item 6: exploded and overflowing runs end diverged ---------------------------------------


def lstm(lr: float, steps: int = 20) -> RunConfig:
    return RunConfig(
        task="shifted_start",
        model="lstm",
        model_options={"hidden": 16},
        optim=OptimConfig(steps=steps, batch_size=8, lr=lr, warmup_steps=0),
        eval=EvalConfig(every=steps, batch_size=256),
    )


@pytest.mark.parametrize("lr", [1e3, 1e30])
def test_an_exploded_loss_ends_diverged_with_the_reason(lr, tmp_path):
    trainer = Trainer(lstm(lr), tmp_path, device="cpu", progress=False)
    trainer.log_every = 10
    result = trainer.run_training()
    assert result.status == "diverged" and result.summary["steps"] == 10
    reason = result.summary["reason"]
    assert "at step 10 exceeds 10 x log(vocabulary size" in reason
    assert result.run_dir.complete_marker.read_text().strip() == "diverged"


def test_a_healthy_run_stays_below_the_divergence_ceiling(tmp_path):
    assert train(lstm(1e-2), tmp_path, device="cpu", progress=False).status == "complete"


def test_float_overflow_ends_diverged_without_a_traceback_and_is_final(tmp_path):
    config = lstm(1e38, steps=4)
    first = run_sweep([config], tmp_path, device="cpu")
    (outcome,) = first.outcomes
    assert outcome.status == "diverged" and outcome.error is None
    summary = RunDir(outcome.run_dir).read_final(config.config_hash())
    assert summary["status"] == "diverged" and "float overflow in step 1" in summary["reason"]
    (again,) = run_sweep([config], tmp_path, device="cpu").outcomes
    assert (again.status, again.run_status) == ("skipped", "diverged")


# -- item 8: a resume clears what a killed writer left behind ---------------------------------


class KilledAfterFirstCheckpoint(Trainer):
    """Stops the way a kill does, after the step-6 checkpoint has landed."""

    def train_step(self):
        if self.step == 8:
            raise KeyboardInterrupt
        return super().train_step()


def test_a_resume_removes_stale_temp_files_and_nothing_else(tmp_path):
    config = RunConfig(
        task="shifted_start",
        model="lstm",
        model_options={"hidden": 8},
        optim=OptimConfig(steps=12, batch_size=4),
        eval=EvalConfig(every=6, batch_size=256),
    )
    with pytest.raises(KeyboardInterrupt):
        KilledAfterFirstCheckpoint(config, tmp_path, device="cpu", progress=False).run_training()
    run = RunDir(tmp_path / config.run_name())
    stale = [run.path / ".last.pt.k1ll3d_x.tmp", run.path / ".eval.csv.a8c7e9q2.tmp"]
    others = [
        run.path / "notes.tmp",  # not an atomic-write temporary
        run.path / ".last.pt.backup",
        run.path / ".eval_last_splits.csv.live0001.tmp",  # a `countlib eval` writing now
        run.path / "eval_last_splits.csv",
    ]
    for path in stale + others:
        path.write_text("x")
    assert train(config, tmp_path, device="cpu", progress=False).status == "complete"
    assert [path for path in stale if path.exists()] == []
    assert all(path.read_text() == "x" for path in others)
    assert run.last.exists() and run.summary.exists()
