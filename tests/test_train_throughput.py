"""The throughput benchmark and the GPU check script run, at tiny sizes on the CPU."""

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location(
        "train_throughput", REPO / "benchmarks" / "train_throughput.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_baseline_pads_to_max_seq_len_and_uses_explicit_attention(bench, tmp_path):
    config = bench.run_config("transformer:hidden=16,heads=2,layers=1,pe=rope,batch=4")
    baseline = bench.baseline_config(config, "cpu")
    assert baseline.model_options["attention"] == "explicit"
    trainer = bench.built(bench.OriginalStyle, baseline, str(tmp_path), "cpu")
    rng = trainer.data_rng
    batch = trainer.collator(trainer.task.sample_batch(rng, 4), rng)
    assert batch.seq_len == trainer.task.max_seq_len == 128
    assert not batch.attention_mask[:, 60:].any() and (batch.labels[:, 60:] == -1).all()


def test_rows_of_both_tables(bench):
    row = bench.throughput_row("lstm:hidden=8,batch=4", "cpu", rounds=1, per_round=1, peak=None)
    assert row["ratio"] > 0 and row["fast_mfu"] is None and row["precision"] == "fp32/fp32"
    stacked = bench.stacked_row("lstm:hidden=8,batch=4", 2, "cpu", rounds=1, per_round=1)
    assert stacked["ratio"] > 0 and stacked["fixed_share"] > 0 and stacked["ideal_ratio"] > 1


def test_model_flops_count_attention_for_the_transformer(bench):
    config = bench.run_config("transformer:hidden=16,heads=2,layers=1")
    model = torch.nn.Linear(10, 10)  # 110 dense parameters
    assert bench.model_flops(model, config, 4.0) == (6 * 110 + 6 * 1 * 4 * 16) * 4


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_check.sh")], check=True)


def test_the_gpu_smoke_writes_one_line_per_family_as_each_trains(tmp_path):
    """Two families of the registry in one process, the second failing: both lines are there,
    the failure's with its reason, in the file as on the screen."""
    out = tmp_path / "families.txt"
    command = [sys.executable, str(REPO / "benchmarks" / "gpu_smoke.py"), "--device", "cpu"]
    command += ["--tiny", "--steps", "2", "--families", "mamba2", "no_such_family"]
    done = subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    header, trained, failed, total = out.read_text().splitlines()
    assert header.split()[:4] == ["family", "result", "precision", "steps/s"]
    assert trained.split()[:3] == ["mamba2", "complete", "fp32"]
    assert "ssd=countlib-chunked" in trained
    assert failed.split()[:2] == ["no_such_family", "FAILED"] and "Valid models" in failed
    assert total.startswith("# 2 families") and done.stdout == out.read_text()


def test_benchmark_writes_its_json(tmp_path):
    out = tmp_path / "t.json"
    command = [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--configs"]
    command += ["lstm:hidden=8,batch=4", "--stacked", "0", "--steps", "1", "--rounds", "1"]
    subprocess.run([*command, "--out", str(out)], check=True, capture_output=True)
    record = json.loads(out.read_text())
    assert (
        record["device"] == "cpu" and record["throughput"][0]["config"] == "lstm:hidden=8,batch=4"
    )


def test_the_gpu_benchmark_measures_every_family_the_paper_profile_trains(bench):
    """The paper's dry-run estimate from the GPU benchmark's times falls back to the constant
    model for a family without a row; every family of the profile has one."""
    from countlib.profiles import get_profile

    trained = {run.config.model for run in get_profile("paper")}
    measured = {spec.partition(":")[0] for spec in bench.GPU_CONFIGS}
    assert trained <= measured, sorted(trained - measured)


def test_same_records_tells_identical_runs_from_changed_ones(tmp_path):
    from countlib.config import EvalConfig, OptimConfig, RunConfig
    from countlib.train import train

    config = RunConfig(
        task="mod10",
        model="lstm",
        model_options={"hidden": 8},
        optim=OptimConfig(steps=4, batch_size=4),
        eval=EvalConfig(every=2, batch_size=64),
    )
    for name in ("before", "after"):
        train(config, tmp_path / name, device="cpu", progress=False)
    compare = [sys.executable, str(REPO / "benchmarks" / "same_records.py")]
    compare += [tmp_path / "before", tmp_path / "after"]
    same = subprocess.run(compare, capture_output=True)
    assert same.returncode == 0 and b"1 runs: the same records" in same.stdout
    eval_log = tmp_path / "after" / config.run_name() / "eval.csv"
    eval_log.write_text(eval_log.read_text().replace("0.", "1.", 1))
    changed = subprocess.run(compare, capture_output=True)
    assert changed.returncode == 1 and b"eval.csv differs" in changed.stdout
