"""A run owns its device, precision and kernels (issue 22): one process trains runs at several
precisions, records say where a run trained and on which kernels, checkpoints resume where
other GPUs are visible, and GPU-only faults are chosen around. The GPU halves are in
tests/test_gpu.py."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

import countlib.models.backends as backends_module
import countlib.train.trainer as trainer_module
from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import build_model, freeze_token_rows
from countlib.models.backends import BackendUnavailableError, gated_backward_fault
from countlib.models.deltanet import DeltaNetConfig, GatedDeltaNetConfig
from countlib.models.deltanet import resolve_backend as delta_rule_backend
from countlib.models.mamba2 import Mamba2Config
from countlib.models.mamba2 import resolve_backend as ssd_backend
from countlib.sweep import run_sweep
from countlib.tasks import get_task
from countlib.train import train
from countlib.train.placement import (
    DeviceUnavailableError,
    DistributedLaunchError,
    Placement,
    training_device,
)
from countlib.train.records import RunDir
from countlib.train.reload import evaluate_run
from countlib.train.stacked import StackedTrainer
from countlib.train.trainer import BackendChangedError, Trainer, _device_rng
from tests.conftest import REPO

CUDA = torch.device("cuda", 0)


def tiny_run(model: str, precision: str, seed: int, steps: int, **options) -> RunConfig:
    return RunConfig(
        task="mod10",
        model=model,
        model_options=options,
        optim=OptimConfig(steps=steps, batch_size=8, lr=1e-2),
        eval=EvalConfig(every=6, batch_size=64),
        seed=seed,
        precision=precision,
    )


def lstm(precision: str, seed: int = 1, steps: int = 12) -> RunConfig:
    return tiny_run("lstm", precision, seed, steps, hidden=16)


def transformer(precision: str, seed: int = 1, steps: int = 12) -> RunConfig:
    """A model whose bf16 autocast runs on any CPU (oneDNN's bf16 LSTM needs AVX-512 BF16)."""
    return tiny_run("transformer", precision, seed, steps, hidden=16, heads=2, layers=1, pe="rope")


def numbers(run: RunDir) -> tuple[list[list[str]], list[list[str]]]:
    """What a run recorded, less the wall times: its losses and learning rates, and every
    evaluation."""
    with open(run.train_log) as handle:
        losses = [row[:3] for row in csv.reader(handle)]
    with open(run.eval_log) as handle:
        evaluations = list(csv.reader(handle))
    return losses, evaluations


# -- 1. runs at several precisions in one process ------------------------------------------------


def train_alone(config: RunConfig, runs_dir) -> RunDir:
    """``config`` trained by ``countlib train`` in a process of its own."""
    spec = runs_dir / "spec.json"
    spec.write_text(json.dumps(config.to_dict()))
    code = (
        "import json, sys; from countlib.config import RunConfig; from countlib.train import train;"
        "config = RunConfig.from_dict(json.load(open(sys.argv[1])));"
        "train(config, sys.argv[2], device='cpu', progress=False)"
    )
    subprocess.run([sys.executable, "-c", code, spec, runs_dir], check=True, cwd=REPO)
    return RunDir(runs_dir / config.run_name())


@pytest.mark.parametrize("executor", ["sequential", "pool"])
def test_one_process_trains_fp32_bf16_fp32_with_the_numbers_of_each_alone(executor, tmp_path):
    """accelerate's one state per process refused the bf16 run after an fp32 one (and the
    pool's long-lived worker trains all three): each run now owns its autocast."""
    configs = [transformer("fp32", seed=1), transformer("bf16", seed=1), transformer("fp32", 2)]
    report = run_sweep(configs, tmp_path / "swept", executor=executor, device="cpu", workers=1)
    assert report.ok, report.format()
    for config in configs:
        alone_dir = tmp_path / f"alone-{config.precision}-{config.seed}"
        alone_dir.mkdir()
        alone = train_alone(config, alone_dir)
        swept = RunDir(tmp_path / "swept" / config.run_name())
        assert numbers(swept) == numbers(alone)
        environment = json.loads(swept.environment.read_text())
        assert environment["precision"] == config.precision
        assert environment["segments"][-1]["precision"] == config.precision


def test_a_bf16_run_trains_and_evaluates_under_autocast(tmp_path):
    trainer = Trainer(transformer("bf16"), tmp_path, device="cpu", progress=False)
    seen = []
    trainer.build()
    trainer.model.register_forward_hook(
        lambda *_: seen.append(
            torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
        )
    )
    trainer.train_step()
    trainer.evaluate_all()
    assert seen and set(seen) == {torch.bfloat16}


# -- 2. the device a run records is the one it trained on ---------------------------------------


def test_records_name_the_device_read_from_the_model(tmp_path):
    result = train(lstm("fp32", steps=6), tmp_path, device="cpu", progress=False)
    environment = json.loads(result.run_dir.environment.read_text())
    assert environment["device"] == "cpu" and environment["segments"][0]["device"] == "cpu"


@pytest.fixture
def two_gpus(monkeypatch):
    """A machine that says it has two GPUs, the first of them current (no CUDA call is made)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)


def test_cuda_n_is_the_device_a_run_is_placed_on(two_gpus):
    assert training_device("cuda:1") == torch.device("cuda", 1)
    assert training_device("cuda") == torch.device("cuda", 0)  # the current GPU, by index
    with pytest.raises(DeviceUnavailableError, match="sees 2 GPU.*cuda:0 to cuda:1"):
        training_device("cuda:2")
    with pytest.raises(ValueError, match="choose cpu, cuda, cuda:N or auto"):
        training_device("gpu")


def test_a_cpu_run_first_does_not_send_later_cuda_runs_to_the_cpu(two_gpus, tmp_path):
    """accelerate's first Accelerator(cpu=True) decided the device of every later run in the
    process; a placement is each run's own."""
    first = Trainer(lstm("fp32"), tmp_path, device="cpu", progress=False)
    later = Trainer(lstm("fp32", seed=2), tmp_path, device="cuda:1", progress=False)
    assert first.placement.device == torch.device("cpu")
    assert later.placement.device == torch.device("cuda", 1) and later.device == "cuda:1"
    assert later.placement.precision == "fp32"
    assert Trainer(lstm("auto"), tmp_path, device="cuda", progress=False).placement.precision == (
        "fp16"  # LSTM's GPU precision, with a loss scaler of its own
    )


# -- 3. a checkpoint's GPU rng is the training GPU's alone ---------------------------------------


def test_the_gpu_rng_is_saved_and_restored_for_the_training_gpu_only(two_gpus, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls.append(("get", device)))
    monkeypatch.setattr(
        torch.cuda, "set_rng_state", lambda state, device: calls.append(("set", device))
    )
    placement = Placement(torch.device("cuda", 1), "fp32")
    placement.set_rng_state(placement.rng_state() or torch.zeros(1))
    assert calls == [("get", torch.device("cuda", 1)), ("set", torch.device("cuda", 1))]
    cpu = Placement(torch.device("cpu"), "fp32")
    assert cpu.rng_state() is None


def test_an_old_checkpoint_of_every_gpu_resumes_where_fewer_are_visible():
    """Checkpoints kept every visible GPU's state and restored all of them: a pool worker that
    sees one GPU raised IndexError. Now: the training GPU's entry, if the old list has one."""
    states = [torch.full((4,), 1), torch.full((4,), 2)]
    assert torch.equal(_device_rng({"cuda_rng": states}, torch.device("cuda", 1)), states[1])
    assert _device_rng({"cuda_rng": states[:1]}, torch.device("cuda", 1)) is None
    assert _device_rng({"cuda_rng": []}, torch.device("cpu")) is None
    new = torch.full((4,), 3)
    assert _device_rng({"device_rng": new}, torch.device("cuda", 0)) is new


# -- 4. fla's gated backward on Hopper ----------------------------------------------------------


@pytest.mark.parametrize(
    ("capability", "triton", "faulty"),
    [
        ((9, 0), (3, 6, 0), True),  # H100 / H200 with the lent image's Triton
        ((9, 0), (3, 4), True),
        ((9, 0), (3, 7, 1), False),  # fixed
        ((9, 0), (3, 3, 1), False),  # before the fault
        ((8, 0), (3, 6, 0), False),  # A100
        ((10, 0), (3, 6, 0), False),
        ((9, 0), None, False),  # no Triton: no fla kernel either
    ],
)
def test_the_hopper_fault_covers_triton_3_4_to_3_7_1(capability, triton, faulty):
    why = gated_backward_fault(capability, triton)
    assert bool(why) == faulty
    if faulty:
        assert "Hopper" in why and ".".join(map(str, triton)) in why


@pytest.fixture
def fla_on_faulty_hopper(monkeypatch):
    """fla imports, on a GPU where its gated backward raises."""
    import countlib.models.deltanet as deltanet
    import countlib.models.mamba2 as mamba2

    monkeypatch.setattr(deltanet, "_import_fla", lambda: (len, len, ""))
    monkeypatch.setattr(mamba2, "_import_fla", lambda: (len, ""))
    fault = gated_backward_fault((9, 0), (3, 6, 0))
    monkeypatch.setattr(backends_module, "fla_gated_backward_fault", lambda device: fault)
    return fault


def test_auto_takes_countlibs_form_for_gated_kernels_on_a_faulty_hopper(fla_on_faulty_hopper):
    gated = delta_rule_backend(GatedDeltaNetConfig(vocab_size=5), CUDA)
    ssd = ssd_backend(Mamba2Config(vocab_size=5), CUDA)
    for choice in (gated, ssd):
        assert choice.name == "countlib-chunked"
        assert choice.why == f"auto: {fla_on_faulty_hopper}"
    # DeltaNet passes no gate: its kernel is not affected
    assert delta_rule_backend(DeltaNetConfig(vocab_size=5), CUDA) == ("fla-chunk", "")


def test_an_explicit_fla_is_refused_on_a_faulty_hopper_with_the_reason(fla_on_faulty_hopper):
    with pytest.raises(BackendUnavailableError, match="cannot train on this GPU.*Hopper"):
        delta_rule_backend(GatedDeltaNetConfig(vocab_size=5, backend="fla"), CUDA)
    with pytest.raises(BackendUnavailableError, match="cannot train on this GPU.*Triton 3.6.0"):
        ssd_backend(Mamba2Config(vocab_size=5, backend="fla"), CUDA)


# -- 5. backends recorded per segment; a switch is refused --------------------------------------


class StopsAfterFirstCheckpoint(Trainer):
    """Dies like a killed process after the evaluation at ``eval.every``."""

    def evaluate_and_checkpoint(self) -> None:
        super().evaluate_and_checkpoint()
        if self.step == self.config.eval.every:
            raise KeyboardInterrupt


def mamba2_run(steps: int = 4) -> RunConfig:
    return RunConfig(
        task="mod10",
        model="mamba2",
        model_options={"hidden": 16, "layers": 1, "head_dim": 8},
        optim=OptimConfig(steps=steps, batch_size=4),
        eval=EvalConfig(every=2, batch_size=32),
    )


def test_each_segment_records_its_backends_and_a_switch_is_refused(tmp_path, monkeypatch):
    config = mamba2_run()
    with pytest.raises(KeyboardInterrupt):
        StopsAfterFirstCheckpoint(config, tmp_path, device="cpu", progress=False).run_training()
    # the resumed process gets other kernels (fla imports here, not there, say)
    elsewhere = {"ssd": "fla-chunk"}
    monkeypatch.setattr(trainer_module, "backend_names", lambda model: elsewhere)
    with pytest.raises(BackendChangedError, match="countlib-chunked.*fla-chunk.*allow-backend"):
        train(config, tmp_path, device="cpu", progress=False)
    with pytest.warns(RuntimeWarning, match="resuming anyway"):
        result = train(config, tmp_path, device="cpu", progress=False, allow_backend_change=True)
    assert result.status == "complete"
    segments = json.loads(result.run_dir.environment.read_text())["segments"]
    assert [s["backends"] for s in segments] == [{"ssd": "countlib-chunked"}, elsewhere]


def test_a_fallback_of_auto_is_recorded_with_its_reason(tmp_path, monkeypatch):
    notes = {"ssd": "auto: fla cannot load (No module named 'fla')"}
    monkeypatch.setattr(trainer_module, "backend_notes", lambda model: notes)
    result = train(mamba2_run(), tmp_path, device="cpu", progress=False)
    environment = json.loads(result.run_dir.environment.read_text())
    assert environment["backend_notes"] == notes
    assert environment["segments"][0]["backend_notes"] == notes


def test_mamba_is_built_for_the_runs_device(tmp_path, monkeypatch):
    built_for = []
    original = build_model

    def spy(name, vocab_size, *, device="cpu", **options):
        built_for.append(torch.device(device))
        return original(name, vocab_size, device=device, **options)

    monkeypatch.setattr(trainer_module, "build_model", spy)
    config = RunConfig(task="mod10", model="mamba", model_options={"hidden": 8, "layers": 1})
    Trainer(config, tmp_path, device="cpu", progress=False).build()
    assert built_for == [torch.device("cpu")]


# -- 6. countlib eval scores at the run's precision ---------------------------------------------


def test_eval_scores_at_the_precision_the_run_trained_at(tmp_path, monkeypatch):
    result = train(transformer("bf16", steps=6), tmp_path, device="cpu", progress=False)
    import countlib.train.reload as reload

    dtypes = []
    evaluate = reload.evaluate

    def spy(*args, autocast, **kwargs):
        with autocast():
            dtypes.append(
                torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
            )
        return evaluate(*args, autocast=autocast, **kwargs)

    monkeypatch.setattr(reload, "evaluate", spy)
    report = evaluate_run(result.run_dir.path, splits=["val", "ood"], device="cpu")
    assert dtypes == [torch.bfloat16, torch.bfloat16]
    recorded, task = result.summary["final"], get_task("mod10")
    assert getattr(report.results["val"], task.ind_metric) == recorded["ind"]
    assert getattr(report.results["ood"], task.ood_metric) == recorded["ood"]
    evaluate_run(result.run_dir.path, splits=["val"], device="cpu", precision="fp32")
    assert dtypes[-1] is None


def test_eval_of_a_record_without_a_precision_resolves_the_configs(tmp_path):
    """A record that says no precision (written before there was one to say): the config's
    ``auto`` resolved for the device, not "auto" taken for a precision."""
    result = train(lstm("auto", steps=6), tmp_path, device="cpu", progress=False)
    environment = json.loads(result.run_dir.environment.read_text())
    del environment["precision"]
    result.run_dir.environment.write_text(json.dumps(environment))
    report = evaluate_run(result.run_dir.path, splits=["val"], device="cpu")
    assert report.results["val"].acc == result.summary["final"]["ind"]


def test_eval_of_an_fp16_run_on_cpu_says_how_to_get_its_numbers(tmp_path):
    result = train(lstm("fp32", steps=6), tmp_path, device="cpu", progress=False)
    environment = json.loads(result.run_dir.environment.read_text())
    environment |= {"precision": "fp16", "device": "cuda:0"}
    result.run_dir.environment.write_text(json.dumps(environment))
    with pytest.raises(ValueError, match="trained in fp16 on cuda:0.*--device cuda"):
        evaluate_run(result.run_dir.path, device="cpu")


# -- 7. no copies from the host in a step -------------------------------------------------------


@pytest.fixture
def no_tensor_to(monkeypatch):
    """Make every Tensor.to an error (each is a copy from the host on CUDA, and a wait)."""

    def refuse(*args, **kwargs):
        raise AssertionError("Tensor.to called in the step")

    return lambda: monkeypatch.setattr(torch.Tensor, "to", refuse)


def test_frozen_rows_are_zeroed_without_a_copy_per_step(no_tensor_to):
    torch.manual_seed(0)
    model = build_model("lstm", 6, hidden=8)
    zero_rows = freeze_token_rows(model, [0, 2])
    model(torch.tensor([[0, 1, 2]])).sum().backward()  # the first step may place the ids
    no_tensor_to()
    model(torch.tensor([[0, 1, 2]])).sum().backward()
    zero_rows()
    assert torch.all(model.token_embedding().weight[[0, 2]] == 0)


def test_the_stacked_step_indexes_no_boolean_mask(tmp_path, monkeypatch):
    """Indexing by a boolean mask counts it on the host: a wait for the GPU every step."""
    configs = [lstm("fp32", seed=seed) for seed in (1, 2)]
    stacked = StackedTrainer(configs, tmp_path, device="cpu", progress=False)
    members = stacked.members
    for member in members:
        member.start()
    stacked.build(members)
    getitem = torch.Tensor.__getitem__

    def no_masks(self, index):
        if isinstance(index, torch.Tensor) and index.dtype == torch.bool:
            raise AssertionError("boolean-mask index in the step")
        return getitem(self, index)

    monkeypatch.setattr(torch.Tensor, "__getitem__", no_masks)
    stacked.active[1] = False
    losses = stacked.train_step(members)
    assert losses.shape == (2,)
    for member in members:
        member.close_batches()


# -- 8. data-parallel launchers are refused -----------------------------------------------------


@pytest.mark.parametrize("variable", ["WORLD_SIZE", "LOCAL_WORLD_SIZE"])
def test_a_rank_of_a_data_parallel_launch_is_refused(variable, tmp_path, monkeypatch):
    monkeypatch.setenv(variable, "2")
    with pytest.raises(DistributedLaunchError, match="torchrun or accelerate launch.*pool"):
        Trainer(lstm("fp32"), tmp_path, device="cpu", progress=False)
    monkeypatch.setenv(variable, "1")  # a launcher's single process is a plain one
    Trainer(lstm("fp32"), tmp_path, device="cpu", progress=False)


def test_the_command_line_reports_a_launch_in_one_line(tmp_path, monkeypatch, capsys):
    from countlib.cli import main

    monkeypatch.setenv("WORLD_SIZE", "4")
    argv = ["train", "--task", "mod10", "--model", "lstm", "--steps", "2", "--quiet"]
    assert main([*argv, "--runs-dir", str(tmp_path), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: countlib was started as one of several ranks (WORLD_SIZE=4")
    assert len(error.splitlines()) == 1


# -- the GPU tests collect where the book's extras are not installed -----------------------------


def test_gpu_tests_collect_without_the_book_extras():
    """The lent GPU machines have no papermill, nbformat or sphinx extensions: a module that
    imports them at its top would abort `pytest -m gpu` before any test ran."""
    blocked = ("papermill", "nbformat", "sphinx_external_toc", "jupyter_book", "myst_nb")
    code = (
        "import sys, pytest\n"
        f"for name in {blocked!r}: sys.modules[name] = None  # import fails\n"
        "sys.exit(pytest.main(['-m', 'gpu', '--collect-only', '-q', '-p', 'no:cacheprovider']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    collected = {line.split("::")[0] for line in done.stdout.splitlines() if "::" in line}
    marking = {
        f"tests/{path.name}"
        for path in (REPO / "tests").glob("test_*.py")
        if "pytest.mark.gpu" in path.read_text() and path.name != "test_placement.py"
    }
    assert collected == marking
