"""On a GPU, runs train: every family at its own precision, several precisions in one process,
a resume, a named GPU, the pool executor with one run per GPU, and no host synchronisation in
a step (issue 22). The CPU halves of these checks are in tests/test_placement.py.

    pytest -m gpu                                   # on a CUDA machine
    COUNTLIB_GPU_CHECK=1 pytest -m gpu              # a kernel package that fails to import fails
"""

from __future__ import annotations

import json
import linecache
import warnings
from collections.abc import Callable

import pytest
import torch

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import MODELS, backend_names
from countlib.sweep import run_sweep
from countlib.train import train
from countlib.train.placement import resolve_precision
from countlib.train.records import RunDir
from countlib.train.stacked import StackedTrainer
from countlib.train.trainer import Trainer
from tests.conftest import GPU_CHECK, gpu_kernels
from tests.test_fidelity import OPTIONS
from tests.test_placement import StopsAfterFirstCheckpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

#: The kernel package each family runs on a GPU where it is installed.
KERNELS = {
    "mamba": "mamba_ssm",
    "rwkv6": "fla.ops.rwkv6",
    "rwkv5": "fla.ops.rwkv6",
    "deltanet": "fla.ops.delta_rule",
    "gated_deltanet": "fla.ops.gated_delta_rule",
    "mamba2": "fla.ops.simple_gla",
}


def run(model: str, *, seed: int = 1, steps: int = 8, precision: str = "auto") -> RunConfig:
    return RunConfig(
        task="helper_token_null",  # a frozen <null> row: its ids must stay on the device
        model=model,
        model_options=OPTIONS[model],
        optim=OptimConfig(steps=steps, batch_size=16),
        eval=EvalConfig(every=steps // 2, batch_size=64),
        seed=seed,
        precision=precision,
    )


def environment(result) -> dict:
    return json.loads(result.run_dir.environment.read_text())


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_family_trains_at_its_own_precision(model, tmp_path):
    result = train(run(model), tmp_path, device="cuda", progress=False)
    assert result.status == "complete"
    recorded = environment(result)
    assert recorded["device"] == f"cuda:{torch.cuda.current_device()}"
    assert recorded["precision"] == resolve_precision("auto", "cuda", model)
    kernel = KERNELS.get(model)
    if kernel is not None and GPU_CHECK:
        # the kernels were installed: "auto" must have taken them, or said why not
        backends = recorded["backends"]
        notes = recorded.get("backend_notes", {})
        assert all("countlib" not in name for name in backends.values()) or notes, backends


@pytest.mark.parametrize("module", sorted(set(KERNELS.values())))
def test_the_kernel_packages_import(module):
    gpu_kernels(module)


def test_families_of_three_precisions_train_in_one_process(tmp_path):
    """transformer bf16, lstm fp16 (a loss scaler), mamba fp32, then bf16 again."""
    configs = [run("transformer"), run("lstm"), run("mamba"), run("transformer", seed=2)]
    report = run_sweep(configs, tmp_path, executor="sequential", device="cuda")
    assert report.ok, report.format()
    precisions = [
        json.loads(RunDir(tmp_path / c.run_name()).environment.read_text())["precision"]
        for c in configs
    ]
    assert precisions == ["bf16", "fp16", "fp32", "bf16"]


@pytest.mark.parametrize("model", ["lstm", "transformer"])  # fp16 with its scaler, and bf16
def test_a_killed_run_resumes_on_the_gpu(model, tmp_path):
    config = run(model, steps=12)
    whole = train(config, tmp_path / "whole", device="cuda", progress=False)
    with pytest.raises(KeyboardInterrupt):
        StopsAfterFirstCheckpoint(
            config, tmp_path / "cut", device="cuda", progress=False
        ).run_training()
    resumed = train(config, tmp_path / "cut", device="cuda", progress=False)
    assert [s["started_at_step"] for s in environment(resumed)["segments"]] == [0, 6]
    for rule in ("final", "best_val"):
        # up to GPU kernels' run-to-run differences (atomics in the embedding's backward)
        assert resumed.summary[rule]["ind"] == pytest.approx(whole.summary[rule]["ind"], abs=0.02)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two visible GPUs")
def test_a_named_gpu_is_where_the_run_trains_and_what_it_records(tmp_path):
    trainer = Trainer(run("gated_deltanet"), tmp_path, device="cuda:1", progress=False)
    result = trainer.run_training()
    assert next(trainer.model.parameters()).device == torch.device("cuda", 1)
    assert environment(result)["device"] == "cuda:1"
    # and a CPU run before it in this process changed nothing
    train(run("lstm", seed=3), tmp_path, device="cpu", progress=False)
    later = train(run("lstm", seed=4), tmp_path, device="cuda:1", progress=False)
    assert environment(later)["device"] == "cuda:1"


def test_the_pool_trains_one_run_per_gpu(tmp_path):
    gpus = torch.cuda.device_count()
    configs = [run("transformer", seed=seed) for seed in range(1, gpus + 2)]
    report = run_sweep(configs, tmp_path, executor="pool", device="cuda")
    assert report.ok, report.format()
    for config in configs:
        recorded = json.loads(RunDir(tmp_path / config.run_name()).environment.read_text())
        # each worker sees its one GPU as cuda:0
        assert recorded["device"] == "cuda:0" and recorded["cuda_visible_devices"] is not None


def syncs_outside_the_backward(step: Callable[[], object]) -> list[str]:
    """Where ``step`` made the host wait for the GPU, other than inside autograd's backward
    (torch's own kernels there, such as the embedding's, are not countlib's to change)."""
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    places = []
    for warning in caught:
        if "synchroniz" not in str(warning.message):
            continue
        line = linecache.getline(warning.filename, warning.lineno)
        if "backward(" not in line:
            places.append(f"{warning.filename}:{warning.lineno}: {line.strip()}")
    return places


def test_a_training_step_never_waits_for_the_gpu(tmp_path):
    """bf16: fp16's loss scaler reads whether gradients overflowed, by design."""
    trainer = Trainer(run("lstm", precision="bf16"), tmp_path, device="cuda", progress=False)
    trainer.build()
    trainer.train_step()  # the first step places the frozen row's ids and warms up
    try:
        assert syncs_outside_the_backward(trainer.train_step) == []
    finally:
        trainer.close_batches()


def test_a_stacked_step_never_waits_for_the_gpu(tmp_path):
    configs = [run("lstm", seed=seed, precision="bf16") for seed in (1, 2)]
    stacked = StackedTrainer(configs, tmp_path, device="cuda", progress=False)
    members = stacked.members
    for member in members:
        member.start()
    stacked.build(members)
    stacked.train_step(members)
    try:
        assert syncs_outside_the_backward(lambda: stacked.train_step(members)) == []
    finally:
        for member in members:
            member.close_batches()


def test_records_name_the_kernels_of_each_family(tmp_path):
    for model in KERNELS:
        trainer = Trainer(run(model), tmp_path, device="cuda", progress=False)
        trainer.build()
        assert backend_names(trainer.model), model
