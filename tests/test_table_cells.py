"""Table cells from the right runs, the right checkpoint and the right metric (issue 10)."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch
from torch import nn

import countlib.train.trainer as trainer_module
from countlib import formatting, report, tables
from countlib.book import manifest_for
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.manifest import RunManifest
from countlib.metrics import EvalResult
from countlib.profiles import explain, get_profile
from countlib.results import load_runs, load_tally
from countlib.sweep import select
from countlib.tasks import get_task
from countlib.train import train
from countlib.train.records import RunDir


class AlwaysAnswers(nn.Module):
    """A model that predicts one token everywhere, whatever the input."""

    def __init__(self, vocab_size: int, token_id: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(vocab_size))  # something for the optimizer
        self.token_id = token_id

    def forward(self, input_ids, position_ids=None, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, self.bias.numel())
        logits[..., self.token_id] = 10.0
        return logits + 0 * self.bias


def probe_config(**options) -> RunConfig:
    return RunConfig(
        task="first_token_homogeneous",
        model="transformer",
        model_options={"layers": 1, "heads": 1, "hidden": 4, "pe": "ape", **options},
        optim=OptimConfig(steps=2, batch_size=2, warmup_steps=0),
        eval=EvalConfig(every=1),
    )


@pytest.fixture
def always_f(monkeypatch):
    """Every model the trainer builds answers `F` at every position."""
    task = get_task("first_token_homogeneous")
    answer = task.vocab.tokens.index("F")
    monkeypatch.setattr(
        trainer_module, "build_model", lambda name, vocab, **_: AlwaysAnswers(vocab, answer)
    )


def test_an_always_f_probe_model_reads_zero_in_table_a5(tmp_path, always_f):
    result = train(probe_config(), tmp_path, device="cpu", progress=False)
    assert result.summary["metrics"] == {"ind": "val/first_acc", "ood": "ood/first_acc"}
    runs = load_runs(tmp_path)
    frame = tables.table_frame(runs, tables.get_table("A5"))
    cell = frame.loc["d = 4", "APE"]
    assert (cell["ind"], cell["ood"], cell["seeds"]) == (0.0, 0.0, 1)
    # over all positions it would have read 98 / 99 %: the metric that must not be reported
    history = pd.read_csv(RunDir(result.run_dir.path).eval_log)
    acc = history[(history["metric"] == "acc") & (history["split"] == "val")]["value"]
    assert acc.iloc[-1] == pytest.approx(49 / 50)


def test_per_count_and_per_length_tallies_are_written_and_hand_checked(tmp_path, always_f):
    """The homogeneous probe: 10 val lines of length 50, 10 OOD lines of length 128; `T` only
    at position 0. A model that always says `F` is right at every position but the first."""
    run = train(probe_config(), tmp_path, device="cpu", progress=False).run_dir
    for kind in ("position", "count", "length"):
        assert run.tally(kind).exists()
    last = {kind: load_tally(run.path, kind) for kind in ("position", "count", "length")}
    by_count = last["count"].set_index(["split", "count"])
    assert tuple(by_count.loc[("val", "T"), ["correct", "total"]]) == (0, 10)
    assert tuple(by_count.loc[("val", "F"), ["correct", "total"]]) == (490, 490)
    assert tuple(by_count.loc[("ood", "F"), ["correct", "total"]]) == (1270, 1270)
    by_length = last["length"].set_index(["split", "length"])
    assert tuple(by_length.loc[("val", 50), ["correct", "total"]]) == (490, 500)
    assert tuple(by_length.loc[("ood", 128), ["correct", "total"]]) == (1270, 1280)
    by_position = last["position"].set_index(["split", "position"])
    assert tuple(by_position.loc[("ood", 0), ["correct", "total"]]) == (0, 10)
    steps = sorted(load_tally(run.path, "length", step="all")["step"].unique())
    assert steps == [0, 1, 2]  # every evaluation, the untrained one included


def _results(ind: float, ood: float) -> dict[str, EvalResult]:
    def result(acc: float, extrapolation: float | None) -> EvalResult:
        return EvalResult(acc, extrapolation, -1.0, acc, acc, acc, acc, 10, 10, 1, {}, {}, {})

    return {"val": result(ind, None), "ood": result(ind, ood)}


def test_the_untrained_model_is_never_the_best_checkpoint_and_ties_go_later(tmp_path, monkeypatch):
    """OOD is 0 at every evaluation; the untrained model has IND 1 %, the trained one 100 %."""

    def evaluate_all(self):
        return _results(0.01, 0.0) if self.step == 0 else _results(1.0, 0.0)

    monkeypatch.setattr(trainer_module.Trainer, "evaluate_all", evaluate_all)
    config = RunConfig(
        task="shifted_start",
        model="lstm",
        model_options={"hidden": 4},
        optim=OptimConfig(steps=4, batch_size=2),
        eval=EvalConfig(every=2),
    )
    summary = train(config, tmp_path, device="cpu", progress=False).summary
    assert summary["best_ood"] == {"step": 4, "ind": 1.0, "ood": 0.0}  # the later of a tie
    assert summary["best_val"]["step"] == 4
    assert "step > 0" in summary["note"] and "later step" in summary["note"]
    history = pd.read_csv(RunDir(tmp_path / config.run_name()).eval_log)
    assert 0 in set(history["step"])  # step 0 stays in the history


# -- a runs directory shared by several profiles -----------------------------------------------


def fake_record(runs_dir, run, seed_ood: float, config_hash: str | None = None) -> None:
    """A finished run record under the run's own name (and hash, unless another is given)."""
    path = RunDir(runs_dir / run.name)
    path.path.mkdir(parents=True)
    config = run.config.resolve().to_dict()
    path.config.write_text(json.dumps(config))
    hash_ = config_hash or run.config.config_hash()
    env = {"config_hash": hash_, "device": "cpu", "cpu": "test", "cpu_count": 2}
    env |= {"torch": "x", "countlib": "x", "precision": "no", "backends": {}}
    path.environment.write_text(json.dumps(env))
    point = {"step": 10, "ind": 1.0, "ood": seed_ood}
    summary = {"status": "complete", "config_hash": hash_, "steps": 10, "wall_time_s": 1.0}
    summary |= {"parameters": 1, "state_size": None, "final": point, "best_val": point}
    path.summary.write_text(json.dumps(summary | {"best_ood": point}))
    path.complete_marker.write_text("complete\n")


def one_cell(profile: str):
    """A profile's run of Table 2's cell Shifted Start, 1 layer, RoPE."""
    chosen = select(get_profile(profile), tasks=["shifted_start"], tables=["2"])
    return next(
        r for r in chosen if r.config.model_options == r.config.model_options | {"pe": "rope"}
        and r.config.model_options.get("layers") == 1 and r.config.seed == 1234
    )  # fmt: skip


def test_each_profiles_book_reads_only_its_own_runs(tmp_path):
    overnight, lite = one_cell("overnight"), one_cell("paper-lite")
    assert overnight.name != lite.name
    fake_record(tmp_path, overnight, seed_ood=0.10)
    fake_record(tmp_path, lite, seed_ood=0.90)
    spec = tables.get_table("2")
    for profile, run, ood in (("overnight", overnight, 0.10), ("paper-lite", lite, 0.90)):
        page = report.page_runs(tmp_path, profile=profile, table=spec.runs_of)
        assert list(page.runs["run"]) == [run.name]
        assert page.ignored == 1  # the other profile's run
        assert "1 other run(s) in" in page.scale_line("Table 2")
        cell = tables.table_frame(page.runs, spec).loc["Shifted Start, 1L", "RoPE"]
        assert (cell["seeds"], cell["ood"]) == (1, ood)
        provenance = tables.provenance_html(report.page_runs(tmp_path, profile=profile).runs)
        assert provenance.count("<tr id=") == 1 and f'id="{run.name}"' in provenance


def test_a_directory_with_the_right_name_but_another_config_is_not_the_run(tmp_path):
    run = one_cell("overnight")
    fake_record(tmp_path, run, seed_ood=0.5, config_hash="0123456789ab")
    page = report.page_runs(tmp_path, profile="overnight", table="2")
    assert len(page.runs) == 0 and page.ignored == 1


def test_restricted_books_show_only_what_the_command_selected(tmp_path):
    lstm_runs = select(get_profile("overnight"), families=["lstm"])
    for run in lstm_runs:
        fake_record(tmp_path, run, seed_ood=0.5)
    manifest = manifest_for(
        lstm_runs, scale="overnight", profile="overnight", selection={"family": ["lstm"]}
    )
    path = manifest.save(tmp_path / "runs.json")
    loaded = RunManifest.load(path)
    lstm = loaded.subset(families=["rnn", "lstm", "gru"]).load(tmp_path)
    assert len(lstm.runs) == len(lstm_runs) == 12 and lstm.missing == 0  # 6 cells, 2 seeds
    line = lstm.scale_line("this page")
    assert "have no results" not in line and "restricted to family lstm" in line
    transformer = loaded.subset(families=["transformer"]).load(tmp_path)
    line = transformer.scale_line("this page")
    assert "have no results" not in line and "has no runs for this page" in line


def test_a_corrupt_manifest_names_its_file(tmp_path):
    bad = tmp_path / "runs.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="runs.json is not a run manifest"):
        RunManifest.load(bad)


def test_reporting_imports_without_torch():
    """A page that only reads runs starts without loading torch."""
    modules = ", ".join(
        f"countlib.{name}"
        for name in (
            "formatting",
            "paper",
            "results",
            "manifest",
            "tables",
            "report",
            "claims",
            "profiles",
        )
    )
    code = f"import sys; import {modules}; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_a_book_view_hands_each_table_its_own_runs(tmp_path):
    """One load of the book's runs serves every table (the Findings page reads them so)."""
    a5 = select(get_profile("overnight"), tables=["A5"])
    a6 = select(get_profile("overnight"), tables=["A6"])
    for run in a5 + a6:
        fake_record(tmp_path, run, seed_ood=0.5)
    page = report.page_runs(tmp_path, profile="overnight")
    assert set(page.of_table("A5")["run"]) == {run.name for run in a5}
    assert set(page.of_table("A6")["run"]) == {run.name for run in a6}
    assert set(page.of_table("A6")["run"]) == set(
        report.page_runs(tmp_path, profile="overnight", table="A6").runs["run"]
    )


# -- cells that decide nothing ------------------------------------------------------------------


def helper_token(family: str):
    """The overnight profile's run of Table A1's cell Helper Token, 1 layer, of ``family``: a
    100-step filler for RWKV-6, trained for claim 19 for the LSTM."""
    chosen = select(get_profile("overnight"), tasks=["helper_token"], families=[family])
    return next(r for r in chosen if r.config.model_options["layers"] == 1)


def helper_token_html(runs_dir, column: str) -> tuple[dict, str]:
    """The cell of `helper_token` in the overnight book: its dict and its rendering."""
    spec = tables.get_table("A1")
    runs = report.page_runs(runs_dir, profile="overnight", table="A1").runs
    frame = tables.table_frame(runs, spec).loc[["Helper Token, 1L"], [column]]
    return frame.iloc[0, 0], tables.render_html(frame, spec)


def test_a_tiny_cell_is_a_structural_check_beside_the_paper_and_a_deciding_one_is_compared(
    tmp_path,
):
    """OOD 0 % against the paper's 100 %: out of range where the overnight profile trained the
    cell for a claim (the LSTM's), not compared where it filled one at its tiny budget."""
    tiny_run, lstm = helper_token("rwkv6"), helper_token("lstm")
    assert tiny_run.config.optim.steps < tables.DECIDING_STEPS <= lstm.config.optim.steps
    for run in (tiny_run, lstm):
        fake_record(tmp_path, run, seed_ood=0.0)

    tiny, page = helper_token_html(tmp_path, "RWKV-6")
    assert tiny["structural"] and tiny["budget"] == tiny_run.config.optim.steps
    steps = tiny_run.config.optim.steps
    assert (
        f'<td class="cl-structural" {formatting.STRUCTURAL_STYLE}><a href="provenance.html#'
        f'{tiny_run.name}" title="IND 100.0 / OOD 0.0 after {steps} steps; runs: '
        f'{tiny_run.name}" {formatting.STRUCTURAL_STYLE}>structural check, {steps} steps: not a '
        'result</a><br><small class="cl-paper">paper 100.0 / 100.0</small><br><small>to decide '
        "it: <code>countlib book --profile paper-lite --table A1</code></small></td>"
    ) in page
    assert "out of range" not in page and ", in range" not in page
    assert "cl-paper-out" not in page and "cl-success" not in page
    assert formatting.SUCCESS_STYLE not in page and "did not fit" not in page
    assert "No cell has both a countlib and a paper value" in page  # nothing compared

    deciding, page = helper_token_html(tmp_path, "LSTM")
    assert not deciding["structural"]
    assert f'<td class="cl-fail"><a href="provenance.html#{lstm.name}"' in page
    assert '<small class="cl-paper cl-paper-out"' in page
    assert "paper 100.0 / 100.0, out of range" in page and "structural check" not in page
    assert "in 0 of the 1 cells that have both values" in page


def test_a_structural_check_names_the_smallest_profile_that_decides_it():
    a1, a2, a6 = (tables.get_table(key) for key in ("A1", "A2", "A6"))
    command = "countlib book --profile {} --table {}"
    assert tables.deciding_command(a6, "d = 4", "with causal mask") == command.format(
        "laptop", "A6"
    )
    mod10 = tables.get_table("2")
    assert tables.deciding_command(mod10, "Modular (mod 10), 2L", "NoPE") == command.format(
        "smoke", "2"
    )
    lstm = tables.deciding_command(a1, "Helper Token, 1L", "LSTM")
    assert lstm == command.format("overnight", "A1")  # past the laptop's hour
    # no CPU profile trains RWKV-6 for a claim on Helper Token, nor Vanilla + Succession
    rwkv = tables.deciding_command(a1, "Helper Token, 1L", "RWKV-6")
    assert rwkv == command.format("paper-lite", "A1")
    vanilla = tables.deciding_command(a2, "Vanilla + Succession, 1L", "NoPE")
    assert vanilla == command.format("paper-lite", "2")  # Table A2 reports Table 2's runs


@pytest.mark.parametrize("profile", ["smoke", "laptop", "overnight"])
def test_the_structural_rule_agrees_with_what_the_profile_says_of_each_run(profile):
    """`tables.structural_check` reads budgets only; the profile knows why each run is there:
    every structural check of the profile is below the deciding budget, no run for a claim is."""
    budgets = {run.name: run.config.optim.steps for run in get_profile(profile)}
    for why in explain(profile):
        assert (budgets[why.run] < tables.DECIDING_STEPS) == why.filler, why.serves
