"""K runs stacked into one batched model give the records of K separate runs."""

import csv
import json

import pytest
import torch

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import build_model
from countlib.tasks import get_task
from countlib.train import train
from countlib.train.checkpoint import load_state
from countlib.train.records import TALLIES, RunDir
from countlib.train.stacked import (
    STACKABLE,
    StackedTrainer,
    check_stackable,
    clip_per_run,
    stack_models,
    train_stacked,
)

SEEDS = (1, 2, 3)
#: A random position scheme (RoPE trains with shifted ids) and a task with a frozen row.
CASES = {
    "transformer": ("shifted_start", {"hidden": 16, "heads": 2, "layers": 1, "pe": "rope"}),
    "lstm": ("helper_token_null", {"hidden": 16}),
}


def config(model: str, seed: int, precision: str = "auto", **optim) -> RunConfig:
    task, options = CASES[model]
    return RunConfig(
        precision=precision,
        task=task,
        model=model,
        model_options=options,
        optim=OptimConfig(**{"steps": 20, "batch_size": 8, "lr": 1e-2, "warmup_steps": 5, **optim}),
        eval=EvalConfig(every=10, batch_size=256),
        seed=seed,
    )


def rows(path):
    with open(path) as handle:
        return list(csv.reader(handle))


def assert_same_records(alone: RunDir, stacked: RunDir, loss_tol=1e-5, metric_tol=2e-3) -> None:
    """The same files and fields; numbers equal to float tolerance (losses) or within an
    argmax flip or two (accuracies)."""
    assert sorted(p.name for p in alone.path.iterdir()) == sorted(
        p.name for p in stacked.path.iterdir()
    )
    train_a, train_s = rows(alone.train_log), rows(stacked.train_log)
    assert [r[0] for r in train_a] == [r[0] for r in train_s]  # header and steps
    for a, s in zip(train_a[1:], train_s[1:], strict=True):
        assert float(s[1]) == pytest.approx(float(a[1]), rel=loss_tol)  # loss
        assert float(s[2]) == float(a[2])  # learning rate
    eval_a, eval_s = rows(alone.eval_log), rows(stacked.eval_log)
    assert [r[:3] for r in eval_a] == [r[:3] for r in eval_s]
    for a, s in zip(eval_a[1:], eval_s[1:], strict=True):
        assert (a[3] == "") == (s[3] == "")
        if a[3]:
            assert float(s[3]) == pytest.approx(float(a[3]), abs=metric_tol)
    for kind in TALLIES:  # the same keys and totals at every step
        tally_a, tally_s = rows(alone.tally(kind)), rows(stacked.tally(kind))
        assert [r[:3] + r[4:] for r in tally_a] == [r[:3] + r[4:] for r in tally_s]
    summary_a, summary_s = alone.read_summary(), stacked.read_summary()
    assert set(summary_a) == set(summary_s)
    for key in ("status", "config_hash", "steps", "parameters", "state_size", "metrics"):
        assert summary_s[key] == summary_a[key]
    for rule in ("final", "best_val", "best_ood"):
        assert summary_s[rule]["step"] == summary_a[rule]["step"]
        assert summary_s[rule]["ood"] == pytest.approx(summary_a[rule]["ood"], abs=metric_tol)
    segments = json.loads(stacked.environment.read_text())["segments"]
    assert {s["stacked_runs"] for s in segments} == {len(SEEDS)}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("model", sorted(CASES))
def test_stacked_runs_match_separate_runs_on_cuda(model, tmp_path):
    """fp32, where the tolerance can be tight; SDPA and cuDNN may pick other kernels for K*B
    rows than for B, hence 1e-4."""
    configs = [config(model, seed, precision="fp32") for seed in SEEDS]
    alone = [train(c, tmp_path / "alone", device="cuda", progress=False) for c in configs]
    stacked = train_stacked(configs, tmp_path / "stacked", device="cuda", progress=False)
    for run_alone, result in zip(alone, stacked, strict=True):
        assert_same_records(run_alone.run_dir, result.run_dir, loss_tol=1e-4, metric_tol=5e-3)


@pytest.fixture(scope="module", params=sorted(CASES))
def separate(request, tmp_path_factory):
    """The model and the records of each seed's run trained alone."""
    runs_dir = tmp_path_factory.mktemp("separate")
    model = request.param
    results = [train(config(model, seed), runs_dir, device="cpu", progress=False) for seed in SEEDS]
    return model, [result.run_dir for result in results]


def test_stacked_runs_match_separate_runs(separate, tmp_path):
    model, alone = separate
    results = train_stacked(
        [config(model, seed) for seed in SEEDS], tmp_path, device="cpu", progress=False
    )
    assert [r.status for r in results] == ["complete"] * len(SEEDS)
    for run_alone, result in zip(alone, results, strict=True):
        assert result.run_dir.path.name == run_alone.path.name  # same config, same run
        assert_same_records(run_alone, result.run_dir)
    task = get_task(CASES[model][0])
    for result in results:  # the frozen <null> row stays zero, as alone
        weights = load_state(result.run_dir.last)["model"]
        table = weights["embedding.weight" if model == "lstm" else "tok_emb.weight"]
        assert not table[task.vocab.ids(task.frozen_tokens)].any()
    again = train_stacked(
        [config(model, seed) for seed in SEEDS], tmp_path, device="cpu", progress=False
    )
    assert all(result.skipped for result in again)


class Interrupted(StackedTrainer):
    """Killed in step 15, after the checkpoint of step 10."""

    def train_step(self, members):
        if members[0].step == 14:
            raise KeyboardInterrupt
        return super().train_step(members)


def test_a_stacked_checkpoint_resumes_stacked_or_alone(separate, tmp_path):
    model, alone = separate
    configs = [config(model, seed) for seed in SEEDS]
    with pytest.raises(KeyboardInterrupt):
        Interrupted(configs, tmp_path, device="cpu", progress=False).run_training()
    first = train(configs[0], tmp_path, device="cpu", progress=False)  # alone
    rest = train_stacked(configs[1:], tmp_path, device="cpu", progress=False)
    for run_alone, result in zip(alone, [first, *rest], strict=True):
        segments = json.loads(result.run_dir.environment.read_text())["segments"]
        assert [s["started_at_step"] for s in segments] == [0, 10]
        resumed = rows(result.run_dir.train_log)
        for a, s in zip(rows(run_alone.train_log)[1:], resumed[1:], strict=True):
            assert float(s[1]) == pytest.approx(float(a[1]), rel=1e-5)
        assert result.summary["final"]["ood"] == pytest.approx(
            RunDir(run_alone.path).read_summary()["final"]["ood"], abs=2e-3
        )


class PoisonsTheSecondRun(StackedTrainer):
    """A NaN weight in run 2 from step 5, as an fp16 overflow would leave."""

    def train_step(self, members):
        if members[0].step == 4:
            with torch.no_grad():
                self.params[0][1].fill_(float("nan"))
        return super().train_step(members)


def test_a_diverged_run_stops_alone_and_leaves_the_others_untouched(separate, tmp_path):
    model, alone = separate
    configs = [config(model, seed) for seed in SEEDS]
    trainer = PoisonsTheSecondRun(configs, tmp_path, device="cpu", progress=False)
    first, poisoned, third = trainer.run_training()
    assert (
        poisoned.status == "diverged" and "non-finite loss at step 10" in poisoned.summary["reason"]
    )
    assert poisoned.run_dir.read_summary()["steps"] == 10
    for run_alone, result in ((alone[0], first), (alone[2], third)):
        assert result.status == "complete"
        assert_same_records(run_alone, result.run_dir)


@pytest.mark.parametrize(
    "model, options",
    [
        ("transformer", {"pe": pe, "hidden": 8, "heads": 2, "layers": 2})
        for pe in ("nope", "sine", "ape", "alibi", "t5", "rope+ape")
    ]
    # every other family the catalogue says stacks, at 2 layers
    + [(name, {"hidden": 8, "layers": 2}) for name in STACKABLE if name != "transformer"],
)
def test_stacked_model_computes_each_model(model, options):
    models = []
    for seed in range(3):
        torch.manual_seed(seed)
        models.append(build_model(model, 11, **options))
    stacked = stack_models(models)
    ids = torch.randint(0, 11, (3, 4, 7))
    positions = torch.arange(7).expand(3, 4, 7) + 2
    mask = torch.ones(3, 4, 7, dtype=torch.bool)
    mask[:, 0, -2:] = False  # padding at the end of one row
    inputs = {"position_ids": positions.flatten(0, 1), "attention_mask": mask.flatten(0, 1)}
    out = stacked(ids.flatten(0, 1), **inputs).view(3, 4, 7, -1)
    out.square().sum().backward()
    for k, single in enumerate(models):
        ref = single(ids[k], position_ids=positions[k], attention_mask=mask[k])
        ref.square().sum().backward()
        torch.testing.assert_close(out[k], ref)
        for param, stacked_param in zip(single.parameters(), stacked.parameters(), strict=True):
            torch.testing.assert_close(stacked_param.grad[k], param.grad)


def test_gradients_are_clipped_per_run():
    grads = [torch.randn(3, 5, 4) * torch.tensor([0.01, 1.0, 100.0]).view(3, 1, 1)]
    grads.append(torch.randn(3, 6))
    params = [torch.zeros_like(g, requires_grad=True) for g in grads]
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad.clone()
    clip_per_run(params, 1.0)
    for k in range(3):
        alone = [torch.zeros_like(g[k], requires_grad=True) for g in grads]
        for param, grad in zip(alone, grads, strict=True):
            param.grad = grad[k].clone()
        torch.nn.utils.clip_grad_norm_(alone, 1.0)
        for param, stacked in zip(alone, params, strict=True):
            torch.testing.assert_close(stacked.grad[k], param.grad)


def test_only_runs_of_one_stackable_shape_stack():
    with pytest.raises(ValueError, match="differ in more than their seeds"):
        check_stackable([config("lstm", 1), config("lstm", 2, batch_size=4)])
    with pytest.raises(ValueError, match="cannot be stacked"):
        check_stackable([RunConfig(task="shifted_start", model="s4")])
    with pytest.raises(ValueError, match="L2Wrap"):
        check_stackable([config("lstm", 1, l2wrap=1e-4)])
    with pytest.raises(ValueError, match="twice"):
        check_stackable([config("lstm", 1), config("lstm", 1)])
