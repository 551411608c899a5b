import json
import os
import random
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml

import countlib.sweep.pool
import countlib.sweep.work
from countlib.batches import Collator
from countlib.cli import main
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.families import MODELS
from countlib.paper import PAPER_PES, PAPER_SEEDS
from countlib.profiles import get_profile
from countlib.sweep import (
    EVAL_FORWARD_SHARE,
    STEP_OVERHEAD_S,
    ExecutorUnavailableError,
    MeasuredStep,
    SpecError,
    StepTimes,
    expand,
    format_cpu_estimate,
    gpu_assignment,
    gpu_hours,
    load_cpu_step_times,
    load_spec,
    load_step_times,
    measured_seconds,
    measured_step_seconds,
    padded_length,
    run_sweep,
    select,
    step_seconds,
    tag_table,
)
from countlib.tasks import get_task
from countlib.train.placement import DeviceUnavailableError
from countlib.train.records import RunDir
from countlib.train.trainer import task_for

# Two configs on one task and one on another, each a few seconds of CPU at most.
TINY = {
    "name": "tiny",
    "steps": 4,
    "eval_every": 4,
    "batch_size": 4,
    "eval_batch_size": 256,
    "seeds": [1],
    "grid": [
        {"table": "t1", "task": "shifted_start", "model": ["rnn", "lstm"], "hidden": 8},
        {"table": "t2", "task": "mod10", "model": "lstm", "hidden": 8},
    ],
}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- grids ------------------------------------------------------------------------------------


def test_lists_expand_as_a_cartesian_product_seed_by_seed():
    spec = {
        "seeds": [1, 2],
        "steps": 7,
        "grid": [{"task": ["mod10", "selective"], "model": "lstm", "hidden": [8, 16]}],
    }
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 2
    combos = {(r.config.task, r.config.model_options["hidden"], r.config.seed) for r in runs}
    assert len(combos) == 8
    # every config of seed 1 comes before any of seed 2
    assert [r.config.seed for r in runs] == [1] * 4 + [2] * 4


def test_keys_go_to_run_optim_eval_or_model_options():
    spec = {
        "steps": 100,
        "lr": 1e-3,
        "grid": [
            {
                "task": "mod10",
                "model": "transformer",
                "pe": "rope",
                "layers": 2,
                "hidden": 32,
                "heads": 4,
                "weight_decay": 0.0,
                "warmup_steps": 5,
                "batch_size": 16,
                "eval_every": 50,
                "shift_samples": 2,
                "precision": "fp32",
                "position_scheme": "randomized",
                "seed": 9,
                "steps": 200,  # an entry overrides the spec's default
            }
        ],
    }
    (run,) = expand(spec)
    config = run.config
    assert config.model_options == {"pe": "rope", "layers": 2, "hidden": 32, "heads": 4}
    assert (config.optim.steps, config.optim.lr, config.optim.weight_decay) == (200, 1e-3, 0.0)
    assert (config.optim.warmup_steps, config.optim.batch_size) == (5, 16)
    assert (config.eval.every, config.eval.shift_samples) == (50, 2)
    assert (config.precision, config.position_scheme, config.seed) == ("fp32", "randomized", 9)


def test_runs_keep_their_tags_and_duplicates_merge():
    spec = {
        "grid": [
            {"table": "2", "task": ["mod10", "selective"], "model": "lstm", "hidden": 8},
            {"table": "A4", "task": ["mod10", "mod10_bos"], "model": "lstm", "hidden": 8},
            {"table": "A4", "task": "mod10", "model": "lstm", "hidden": 8, "family": "mine"},
        ]
    }
    runs = {r.config.task: r for r in expand(spec)}
    assert len(runs) == 3  # mod10 appears three times, one config
    assert runs["mod10"].tables == ("2", "A4")
    assert runs["selective"].tables == ("2",) and runs["mod10_bos"].tables == ("A4",)
    assert runs["mod10"].family == "lstm"  # the first occurrence's tags win
    tags = tag_table(runs.values())
    assert sorted(tags[tags.run == runs["mod10"].name].table) == ["2", "A4"]


def test_an_alias_and_its_canonical_name_are_one_run():
    spec = {"grid": [{"task": ["mod10", "counting_samesymbol_mod10"], "model": "lstm"}]}
    assert len(expand(spec)) == 1


def test_validation_errors_name_the_grid_entry():
    good = {"task": "mod10", "model": "lstm"}
    bad = {"table": "X", "task": "mod10", "model": "transformer", "heads": 4, "hidden": [32, 30]}
    with pytest.raises(SpecError, match=r"grid entry 1 \(table X\), run \{'hidden': 30\}: hidden"):
        expand({"grid": [good, bad]})
    with pytest.raises(SpecError, match="grid entry 0: unknown key 'pe'.*options of model 'lstm'"):
        expand({"grid": [{**good, "pe": "rope"}]})
    with pytest.raises(SpecError, match="grid entry 0: missing model"):
        expand({"grid": [{"task": "mod10"}]})
    with pytest.raises(SpecError, match="grid entry 0.*unknown task 'mod9'"):
        expand({"grid": [{"task": "mod9", "model": "lstm"}]})
    with pytest.raises(SpecError, match="grid entry 0.*steps"):
        expand({"steps": 0, "grid": [good]})
    with pytest.raises(SpecError, match="non-empty 'grid'"):
        expand({"name": "empty", "grid": []})


def test_a_yaml_spec_expands_like_the_dict(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    assert [r.name for r in expand(load_spec(path))] == [r.name for r in expand(TINY)]


# -- profiles and selection -------------------------------------------------------------------


def test_paper_profile_is_the_protocol_grid():
    runs = get_profile("paper")
    # 236 configs of the paper: Table 2 105, A1 90, A4 12 new (BOS), A5 10, A6 4, A7 10 new
    # (BOS), A8 5; and countlib's own H1, 18 rows x 13 columns, of which the LSTM, Mamba and
    # RWKV-6 columns (54) are A1's runs
    assert len(runs) == (236 + 180) * 5 == 2080
    per_table = Counter(t for r in runs for t in r.tables)
    assert per_table == {"2": 525, "A1": 450, "A4": 120, "A5": 50, "A6": 20, "A7": 100, "A8": 25,
                         "H1": 18 * 13 * 5}  # fmt: skip
    paper = [r for r in runs if set(r.tables) != {"H1"}]
    assert len(paper) == 1180
    a6 = [r.config.model_options for r in runs if "A6" in r.tables]
    assert {(o["hidden"], o["causal"], o["pe"]) for o in a6} == {
        (32, True, "nope"), (32, False, "nope"), (4, True, "nope"), (4, False, "nope")}  # fmt: skip
    assert {r.config.seed for r in runs} == set(PAPER_SEEDS)
    assert {(r.config.optim.steps, r.config.eval.every) for r in runs} == {(312_500, 30_000)}
    table2 = [r.config for r in runs if "2" in r.tables]
    assert {c.model_options["pe"] for c in table2} == set(PAPER_PES)
    assert {(c.model_options["hidden"], c.model_options["heads"]) for c in table2} == {(1024, 8)}
    assert {r.family for r in runs if "A1" in r.tables} == {"rnn", "lstm", "s4", "mamba", "rwkv6"}
    assert 2_000 < gpu_hours(paper) < 5_000
    negative = [
        r.config.model_options for r in runs if r.family == "mamba" and "A1" not in r.tables
    ]
    assert {o["negative_eigenvalues"] for o in negative} == {True}  # A1's column stays [0, 1]


def test_paper_lite_is_the_same_grid_for_one_gpu_day_and_its_hypothesis_table_for_another():
    paper, lite = get_profile("paper"), get_profile("paper-lite")
    assert len(lite) == len(paper) // 5
    assert {r.config.task for r in lite} == {r.config.task for r in paper}
    assert gpu_hours([r for r in lite if set(r.tables) != {"H1"}]) <= 24  # the paper's tables
    assert gpu_hours(lite) <= 48


def test_the_overnight_profile_trains_the_cells_no_claim_reads_tiny():
    """Every cell outside the profile's claims: 1 layer (A8: 4), width 32, 100 steps, one seed
    (tests/test_profiles.py checks the claims' cells and the layouts; the main job and the
    laptop train no such cell)."""
    filled = {"2", "A1", "A4", "A6", "A7", "A8", "H1"}  # A5: all for claim 14
    for profile in ("smoke", "laptop"):
        assert [r for r in get_profile(profile) if r.config.optim.steps == 100] == []
    tiny = [r for r in get_profile("overnight") if r.config.optim.steps == 100]
    assert {r.config.seed for r in tiny} == {PAPER_SEEDS[0]}
    assert all(r.config.model_options["hidden"] <= 32 for r in tiny)
    assert {r.config.model_options["layers"] for r in tiny if "A8" not in r.tables} == {1}
    tables = Counter(t for r in tiny for t in r.tables)
    assert set(tables) == filled


def test_select_filters_the_paper_profile():
    runs = get_profile("paper")
    assert len(select(runs, tables=["A8"])) == 25
    # Tables A2 and A3 report the runs of Tables 2 and A1 by the median
    assert select(runs, tables=["A2"]) == select(runs, tables=["2"])
    assert select(runs, tables=["a3"]) == select(runs, tables=["A1"])
    by_alias = select(runs, tasks=["counting_samesymbol_mod10"], families=["lstm"])
    assert len(by_alias) == 3 * 5 and {r.config.task for r in by_alias} == {"mod10"}
    mod10_a4 = select(runs, tasks=["mod10", "mod10_bos"], tables=["A4"])
    assert len(mod10_a4) == 2 * 3 * 2 * 5


def test_select_rejects_values_no_run_has():
    runs = expand(TINY)
    assert [r.config.model for r in select(runs, families=["rnn"])] == ["rnn"]
    assert len(select(runs, tables=["T1"])) == 2
    with pytest.raises(ValueError, match="no run has family gru"):
        select(runs, families=["gru"])
    with pytest.raises(ValueError, match="no run has table A8"):
        select(runs, tables=["A8"])


def test_unknown_profile_is_an_error():
    with pytest.raises(ValueError, match="smoke, laptop, overnight, paper, paper-lite"):
        get_profile("papr")


# -- running ----------------------------------------------------------------------------------


def test_dry_run_lists_every_run_with_totals(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert main(["sweep", "--spec", str(spec), "--runs-dir", str(tmp_path), "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    runs = expand(TINY)
    assert len(lines) == 1 + len(runs) + 2
    for line, run in zip(lines[1:], runs, strict=False):
        assert line.startswith("todo") and line.endswith(run.name)
        assert run.config.task in line and run.config.model in line and "hidden=8" in line
        assert "seed=1" in line and "steps=4" in line
    assert lines[-2].startswith("3 runs, 0 final, 3 to train; estimated")
    assert "GPU-hours" in lines[-2]
    assert lines[-1].startswith("CPU: about ") and "machine like the one measured" in lines[-1]
    assert not list(tmp_path.glob("*/"))  # a dry run trains nothing

    main(["sweep", "--spec", str(spec), "--table", "t2", "--dry-run"])
    assert capsys.readouterr().out.count("mod10") == 2  # its line and the run name


def test_a_sweep_trains_what_is_missing_and_skips_the_rest(tmp_path, capsys, one_thread):
    runs = expand(TINY)
    first = run_sweep(runs[:2], tmp_path, device="cpu")
    assert [o.status for o in first.outcomes] == ["completed", "completed"]
    assert all(RunDir(o.run_dir).is_complete() for o in first.outcomes)
    stamps = [RunDir(o.run_dir).summary.stat().st_mtime_ns for o in first.outcomes]

    second = run_sweep(runs, tmp_path, device="cpu")
    assert [o.status for o in second.outcomes] == ["skipped", "skipped", "completed"]
    assert second.ok and [o.run_status for o in second.outcomes] == ["complete"] * 3
    assert stamps == [RunDir(o.run_dir).summary.stat().st_mtime_ns for o in first.outcomes]

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert main(["sweep", "--spec", str(spec), "--runs-dir", str(tmp_path), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "3 runs: 0 completed, 3 skipped (already final)" in out


def test_a_failing_run_is_reported_and_the_sweep_goes_on(tmp_path, monkeypatch, one_thread):
    runs = expand(TINY)
    broken = runs[1]
    real_train = countlib.sweep.work.train

    def train(config: RunConfig, runs_dir, **kwargs):
        if config.run_name() == broken.name:
            raise RuntimeError("boom in the middle of training")
        return real_train(config, runs_dir, **kwargs)

    monkeypatch.setattr(countlib.sweep.work, "train", train)
    report = run_sweep(runs, tmp_path, device="cpu")
    assert [o.status for o in report.outcomes] == ["completed", "failed", "completed"]
    (failure,) = report.failed
    assert failure.run_dir == tmp_path / broken.name
    assert "RuntimeError: boom in the middle of training" in failure.error
    assert "Traceback" in failure.error
    assert not report.ok
    text = report.format()
    assert "1 failed" in text and f"failed: {failure.run_dir}" in text


def test_a_locked_run_is_waited_for_and_trained_if_its_holder_left_it(tmp_path, one_thread):
    runs = expand(TINY)[:2]
    held, release = threading.Event(), threading.Event()

    def hold() -> None:  # another process's lock: a lock file of its own
        with RunDir(tmp_path / runs[0].name).lock():
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    lines = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("waiting for"):
            release.set()  # the holder gives up without finishing the run

    report = run_sweep(runs, tmp_path, device="cpu", log=log)
    holder.join()
    assert f"waiting for {runs[0].name}: trained by pid {os.getpid()}" in lines[1]
    assert [o.status for o in report.outcomes] == ["completed", "completed"]
    assert report.ok


def test_the_pool_executor_trains_in_worker_processes(tmp_path):
    runs = expand(TINY)[:3]
    lines = []
    report = run_sweep(runs, tmp_path, executor="pool", device="cpu", workers=2, log=lines.append)
    assert [o.status for o in report.outcomes] == ["completed"] * 3
    assert len(lines) == 3 and all("completed" in line for line in lines)
    for outcome in report.outcomes:
        env = RunDir(outcome.run_dir).environment.read_text()
        assert '"torch_threads": 1' in env  # two workers share the cores, not oversubscribe them


def test_a_run_that_kills_its_pool_worker_fails_alone(tmp_path):
    killer, *others = expand(TINY)[:3]
    # stands in for a run that crashes its process (a segfault, the OOM killer)
    broken = countlib.sweep.SweepRun(killer.config)
    broken.config = _ExitOnUnpickle(killer.config)
    lines = []
    report = run_sweep(
        [broken, *others], tmp_path, executor="pool", device="cpu", workers=1, log=lines.append
    )
    assert [o.status for o in report.outcomes] == ["failed", "completed", "completed"]
    assert "worker process exited with code 3" in report.outcomes[0].error


class _ExitOnUnpickle:
    """Pickles fine; unpickling it in the worker ends the worker process at once. In the
    sweep's process it resolves as ``config`` (the live display reads each run's steps)."""

    def __init__(self, config):
        self.config = config

    def resolve(self):
        return self.config.resolve()

    def __reduce__(self):
        return (os._exit, (3,))


def test_pool_workers_get_one_gpu_each_or_a_core_each(monkeypatch):
    monkeypatch.setattr(countlib.sweep.pool, "resolve_device", lambda device: device)
    monkeypatch.setattr(countlib.sweep.pool, "available_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # else every slot takes its count
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    gpu_slots = countlib.sweep.pool._pool_slots("cuda", None)
    assert [(s.device, s.visible_gpu) for s in gpu_slots] == [("cuda", "3"), ("cuda", "5")]
    assert [s.visible_gpu for s in countlib.sweep.pool._pool_slots("cuda:1", 2)] == ["5", "5"]
    cpu_slots = countlib.sweep.pool._pool_slots("cpu", 2)
    assert [(s.device, s.visible_gpu, s.threads) for s in cpu_slots] == [("cpu", None, 1)] * 2
    assert len(countlib.sweep.pool._pool_slots("cpu", None)) == 8  # a worker per core


def test_unknown_executor_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="unknown executor 'dask'"):
        run_sweep(expand(TINY), tmp_path, executor="dask")


def test_missing_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(ExecutorUnavailableError, match="pip install ray"):
        run_sweep(expand(TINY)[:1], tmp_path, executor="ray", device="cpu")


@pytest.mark.slow
def test_the_ray_executor_on_a_local_cpu_instance(tmp_path):
    pytest.importorskip("ray", reason="ray is an optional dependency (pip install ray)")
    runs = expand(TINY)[:2]
    report = run_sweep(runs, tmp_path, executor="ray", device="cpu", workers=2)
    assert [o.status for o in report.outcomes] == ["completed", "completed"]
    assert all(RunDir(o.run_dir).is_complete() for o in report.outcomes)


@pytest.mark.parametrize("profile", ["smoke", "laptop", "paper"])
def test_every_profile_run_can_position_its_longest_sequence(profile):
    """A run whose OOD sequences need more position ids than its scheme has fails at its first
    evaluation; catch that for every (task, scheme) of a profile without training anything."""
    rng = random.Random(0)
    seen = set()
    for run in get_profile(profile):
        config = run.config.resolve()
        key = (config.task, config.position_scheme)
        if key in seen:
            continue
        seen.add(key)
        task = task_for(config)
        longest = max(
            [task.train_lengths[1], *(split.lengths[1] for split in task.splits.values())]
        )
        positions = config.model_options.get("max_positions")
        collator = Collator(task, config.position_scheme, max_positions=positions)
        assert len(collator.positions(longest, rng)) == longest + 1, key


# -- measured step times and workers per GPU ----------------------------------------------------

#: A hand-made benchmarks/train_throughput.py JSON: a Transformer and an LSTM, one row each.
THROUGHPUT = {
    "device": "cuda",
    "device_name": "NVIDIA Test GPU",
    "throughput": [
        {"config": "transformer:hidden=64,heads=4,layers=1,pe=rope", "fast_samples_s": 3200.0},
        {"config": "lstm:hidden=8,batch=4", "fast_samples_s": 800.0},
        {"config": "mamba:hidden=128", "error": "ImportError: no kernel"},
    ],
    "stacked": [],
}


def _step_times(tmp_path, data=THROUGHPUT):
    path = tmp_path / "throughput.json"
    path.write_text(json.dumps(data))
    return path


def _transformer(layers, hidden):
    options = {"hidden": hidden, "heads": 4, "layers": layers, "pe": "rope"}
    return RunConfig(
        task="shifted_start",
        model="transformer",
        model_options=options,
        optim=OptimConfig(steps=1000, batch_size=32),
        eval=EvalConfig(every=500),
    )


def _with_evaluation(train, config):
    """The stated evaluation share: 3 evaluations (0, 500, 1000) of every split's sequences."""
    sequences = sum(split.lines for split in get_task(config.task).splits.values())
    return train + countlib.sweep.EVAL_FORWARD_SHARE * train / 32 * sequences * 3 / 1000


def test_measured_step_times_match_scale_and_fall_back(tmp_path):
    times = load_step_times(_step_times(tmp_path))
    assert times.device == "NVIDIA Test GPU" and sorted(times.families) == ["lstm", "transformer"]
    assert times.errors == ("mamba:hidden=128",)
    # the measured config: 32 / 3200 samples/s = 10 ms a step, plus evaluation
    same = _transformer(1, 64)
    assert measured_step_seconds(same, times) == pytest.approx(_with_evaluation(0.010, same))
    # 3 layers of width 128: the fixed part as measured, the per-layer part x 3 x (128/64)^2
    fixed = 0.010 * STEP_OVERHEAD_S / step_seconds(_transformer(1, 64))
    other = _transformer(3, 128)
    train = fixed + (0.010 - fixed) * 3 * 4
    assert measured_step_seconds(other, times) == pytest.approx(_with_evaluation(train, other))
    assert measured_step_seconds(RunConfig(task="mod10", model="gru"), times) is None


def test_dry_run_with_step_times_names_the_device_and_counts(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    path = _step_times(tmp_path)
    args = ["sweep", "--spec", str(spec), "--runs-dir", str(tmp_path / "runs"), "--dry-run"]
    assert main([*args, "--step-times", str(path)]) == 0
    tail = capsys.readouterr().out.splitlines()[-4:-1]  # the CPU estimate last
    assert tail[0].startswith("3 runs, 0 final, 3 to train; estimated")
    assert "GPU-hours on NVIDIA Test GPU" in tail[0]
    assert "2 of the 3 runs to train measured, 1 by the constant model" in tail[0]
    assert tail[1].startswith("fallback: no measured row of rnn") and "V100" in tail[1]
    assert str(path) in tail[2] and "mamba:hidden=128" in tail[2]

    assert main(args) == 0  # without measurements: the constant model, said plainly
    assert "by the constant V100 model, not a measurement" in capsys.readouterr().out


def test_the_cpu_estimate_is_measured_step_times_times_steps_over_cores():
    lstm = MeasuredStep("lstm:hidden=32,layers=1", 1, 32, 32, seconds=0.010, fixed_s=0.002)
    times = StepTimes(Path("cpu.json"), "CPU (test)", {"lstm": [lstm]}, cores=2)
    run = countlib.sweep.SweepRun(
        RunConfig(task="mod10", model="lstm", model_options={"hidden": 64, "layers": 2},
                  optim=OptimConfig(steps=600, batch_size=32), eval=EvalConfig(every=600))
    )  # fmt: skip
    unmeasured = countlib.sweep.SweepRun(RunConfig(task="mod10", model="gru"))
    # per step: the fixed 2 ms and 8 ms a layer x 2 layers x (64 / 32)^2, times mod 10's batch
    # length over Shifted Start's (the row's task); evaluated at steps 0 and 600, each sequence
    # a third of a training sequence's share of the step
    length = padded_length("mod10", 32) / padded_length("shifted_start", 32)
    train = (0.002 + 0.008 * 2 * 4) * length
    sequences = sum(split.lines for split in get_task("mod10").splits.values())
    seconds = 600 * (train + EVAL_FORWARD_SHARE * train / 32 * sequences * 2 / 600)
    assert measured_seconds([run, unmeasured], times) == (pytest.approx(seconds), [unmeasured])
    line = format_cpu_estimate([run, unmeasured], [run], times)
    assert f"about {seconds / 60:.1f} CPU-minutes in all, {seconds / 60:.1f} left" in line
    assert f"about {seconds / 120:.1f} minutes on a 2-core machine like the one measured" in line
    assert line.endswith("1 runs (0 left) of gru not measured on CPU, not included")


def test_a_step_costs_more_on_a_task_of_longer_sequences():
    # Shifted Start's training sequences are a start and 50 `a`s; half of Helper Token's draws
    # count with helpers up to 100, so nearly every batch of 32 is padded to 100 tokens
    assert padded_length("shifted_start", 32) == 51
    assert padded_length("helper_token", 32) == pytest.approx(100, abs=1)
    row = MeasuredStep("lstm:hidden=32,layers=1", 1, 32, 32, seconds=0.010, fixed_s=0.002)
    times = StepTimes(Path("cpu.json"), "CPU (test)", {"lstm": [row]}, cores=2)
    steps = {task: measured_step_seconds(RunConfig(task=task, model="lstm",
                                                   model_options={"hidden": 32}), times)
             for task in ("shifted_start", "helper_token")}  # fmt: skip
    # the training step doubles; evaluation, on splits of other lengths, does not
    assert 1.8 < steps["helper_token"] / steps["shifted_start"] < 2.0


def test_the_shipped_cpu_step_times_measure_every_family_the_profiles_train():
    times = load_cpu_step_times()
    assert times.device.startswith("CPU") and times.cores and not times.errors
    trained = {run.config.model for name in ("smoke", "paper") for run in get_profile(name)}
    assert trained <= set(times.families) <= set(MODELS)
    assert all(row.hidden == 32 and row.layers == 1 for rows in times.families.values()
               for row in rows)  # fmt: skip


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file or directory"),
        ("{not json", "not valid JSON"),
        ('{"device_name": "x"}', 'no "throughput" list'),
        (
            '{"throughput": [{"config": "lstm:hidden=8"}]}',
            "throughput row 0: 'lstm:hidden=8': fast_samples_s must be a positive number",
        ),
    ],
)
def test_bad_step_times_files_are_clear_errors(tmp_path, capsys, content, message):
    path = tmp_path / "throughput.json"
    if content is not None:
        path.write_text(content)
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    argv = ["sweep", "--spec", str(spec), "--dry-run", "--step-times", str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(path) in err and message in err


def test_step_times_need_a_dry_run(tmp_path, capsys):
    argv = ["sweep", "--profile", "smoke", "--step-times", str(_step_times(tmp_path))]
    assert main(argv) == 2
    assert "add --dry-run" in capsys.readouterr().err


def test_workers_per_gpu_place_worker_i_on_gpu_i_div_k(monkeypatch):
    assert gpu_assignment(2, 3) == [0, 0, 0, 1, 1, 1]
    assert gpu_assignment(2) == [0, 1]
    with pytest.raises(ValueError, match="at least 1, got 0"):
        gpu_assignment(2, 0)
    monkeypatch.setattr(countlib.sweep.pool, "resolve_device", lambda device: device)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    slots = countlib.sweep.pool._pool_slots("cuda", None, 2)
    assert [s.visible_gpu for s in slots] == ["3", "3", "5", "5"]
    assert len(countlib.sweep.pool._pool_slots("cpu", 2, 3)) == 2  # CPU: unchanged


def test_workers_per_gpu_is_checked(tmp_path, monkeypatch, capsys):
    with pytest.raises(ValueError, match="at least 1, got 0"):
        run_sweep(expand(TINY), tmp_path, executor="pool", workers_per_gpu=0)
    with pytest.raises(ValueError, match="option of the pool executor"):
        run_sweep(expand(TINY), tmp_path, workers_per_gpu=2)
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "--profile", "smoke", "--executor", "pool", "--workers-per-gpu", "0"])
    assert exit_info.value.code == 2 and "must be at least 1, got 0" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceUnavailableError, match="CUDA is not available"):
        countlib.sweep.pool._pool_slots("cuda", None, 2)


# -- stacked sweeps ---------------------------------------------------------------------------


def _stack_case(seeds=(1, 2, 3)) -> list[RunConfig]:
    """Seeds of one LSTM shape, interleaved with runs that must not join them."""

    def lstm(seed: int, hidden: int = 8) -> RunConfig:
        return RunConfig(
            task="shifted_start",
            model="lstm",
            model_options={"hidden": hidden},
            optim=OptimConfig(steps=6, batch_size=4, lr=1e-2),
            eval=EvalConfig(every=3, batch_size=256),
            seed=seed,
        )

    others = [
        RunConfig(task="shifted_start", model="s4", model_options={"hidden": 8},
                  optim=OptimConfig(steps=6, batch_size=4)),  # not a stackable family
        lstm(1, hidden=16),  # another shape
    ]  # fmt: skip
    return [lstm(seeds[0]), *others, *(lstm(seed) for seed in seeds[1:])]


def test_work_units_stack_fresh_seeds_of_one_shape_and_leave_the_rest_alone(tmp_path):
    configs = _stack_case(seeds=(1, 2, 3, 4, 5))
    runs = [countlib.sweep.SweepRun(c) for c in configs]
    RunDir(tmp_path / runs[-1].name).last.parent.mkdir(parents=True)
    RunDir(tmp_path / runs[-1].name).last.write_bytes(b"a checkpoint")  # seed 5 resumes alone
    units = countlib.sweep.work_units(runs, tmp_path, "cpu", stack=3)
    seeds = [[run.config.seed for run in unit] for unit in units]
    assert seeds == [[1, 2, 3], [1234], [1], [4], [5]]
    assert [unit[0].config.model for unit in units[1:3]] == ["s4", "lstm"]
    assert countlib.sweep.work_units(runs, tmp_path, "cpu") == [[run] for run in runs]
    with pytest.raises(ValueError, match="at least 1"):
        countlib.sweep.work_units(runs, tmp_path, "cpu", stack=0)


def test_a_stacked_sweep_gives_the_records_of_separate_runs(tmp_path, one_thread):
    from tests.test_stacked import assert_same_records

    configs = _stack_case()
    alone = run_sweep(configs, tmp_path / "alone", device="cpu")
    stacked = run_sweep(configs, tmp_path / "stacked", device="cpu", stack=3)
    assert [o.status for o in stacked.outcomes] == ["completed"] * len(configs)
    for index in (0, 3, 4):  # the three LSTM seeds
        assert_same_records(
            RunDir(alone.outcomes[index].run_dir), RunDir(stacked.outcomes[index].run_dir)
        )
    for outcome in stacked.outcomes[1:3]:
        segments = RunDir(outcome.run_dir).read_environment()["segments"]
        assert [s["stacked_runs"] for s in segments] == [1]


def test_the_pool_executor_trains_a_stacked_unit_in_one_worker(tmp_path):
    configs = _stack_case()
    lines = []
    report = run_sweep(
        configs, tmp_path, executor="pool", device="cpu", workers=2, stack=3, log=lines.append
    )
    assert [o.status for o in report.outcomes] == ["completed"] * len(configs)
    assert len(lines) == len(configs)
    stacked = [RunDir(report.outcomes[i].run_dir).read_environment() for i in (0, 3, 4)]
    assert all(env["segments"][0]["stacked_runs"] == 3 for env in stacked)


def test_runs_training_in_fp16_are_not_stacked(tmp_path, monkeypatch):
    """On CUDA the LSTM trains in fp16 by default, whose loss scaling would skip a step of all
    K runs when one overflows: its seeds stay apart there, and stack on CPU (fp32)."""
    runs = [countlib.sweep.SweepRun(c) for c in _stack_case()]
    assert len(countlib.sweep.work_units(runs, tmp_path, "cpu", stack=3)) == 3
    monkeypatch.setattr(countlib.sweep.work, "resolve_device", lambda device: "cuda")
    assert countlib.sweep.work_units(runs, tmp_path, "cuda", stack=3) == [[run] for run in runs]


def test_dry_run_why_names_each_runs_claims_or_its_structural_check(tmp_path, capsys):
    """`--why`: per run, the claims it serves and the selection result behind its settings (a
    tiny filler's structural check: tests/test_profiles.py, in the overnight profile)."""
    args = ["sweep", "--profile", "smoke", "--runs-dir", str(tmp_path), "--dry-run", "--why"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    runs = get_profile("smoke")
    heads, settings = lines[0:-1:2], lines[1:-1:2]
    assert [line.split()[0] for line in heads] == [run.name for run in runs]
    for run, head, source in zip(runs, heads, settings, strict=True):
        serves = head.removeprefix(run.name).strip()
        assert source.startswith("    settings: ")
        assert serves.startswith("claim") and "experiments/" in source, run.name
    assert lines[-1] == "9 runs: 9 trained for claims, 0 structural checks"

    assert main([*args, "--table", "A2"]) == 0  # a selection explains its runs only
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "9 runs: 9 trained for claims, 0 structural checks"
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    assert main(["sweep", "--spec", str(spec), "--dry-run", "--why"]) == 2  # a spec has no claims
    assert "--why explains a profile's runs" in capsys.readouterr().err
