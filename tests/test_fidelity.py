"""Behaviours of the original code kept as configurable defaults: S4's clipped B, RWKV's AdamW
betas and L2Wrap regulariser, each family's GPU precision, and frozen ``<null>`` rows."""

import json

import pytest
import torch
import torch.nn.functional as F
import yaml

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import MODELS, build_model, freeze_token_rows, get_family
from countlib.models.rwkv import l2wrap
from countlib.models.s4 import S4Config, S4DConfig, S4Model, hippo_legs, legs_normal_eigenbasis
from countlib.profiles import get_profile
from countlib.sweep import SpecError, expand, select
from countlib.train import Trainer, train
from countlib.train import trainer as trainer_module
from countlib.train.placement import resolve_precision
from countlib.train.records import environment_record

#: Small options per family, as in test_trainer.
#: Each family at its registered tiny size (`countlib.families.Family.tiny_options`).
OPTIONS = {name: family.tiny_options for name, family in MODELS.items()}
NULL_TASK = "helper_token_null"


def config(model="lstm", task="shifted_start", **optim):
    optim = {"steps": 3, "batch_size": 4, "lr": 1e-2} | optim
    return RunConfig(
        task=task, model=model, model_options=OPTIONS[model], optim=OptimConfig(**optim)
    )


def built(cfg, tmp_path):
    trainer = Trainer(cfg, tmp_path, device="cpu", progress=False)
    trainer.build()
    return trainer


# -- S4: the original clips Im(B) of its HiPPO-LegS init to +-2 ----------------------------------


def legs_b(n):
    """HiPPO-LegS B in the normal eigenbasis, unclipped, as countlib and the original build it."""
    _, vectors, _ = legs_normal_eigenbasis(n)
    return vectors.mH @ hippo_legs(n)[1].to(vectors.dtype)


def model_b(config):
    return torch.view_as_complex(S4Model(config).layers[0].block.ssm.b)[0]


def test_unclipped_legs_b_has_the_numbers_of_the_original():
    b = legs_b(64)
    assert b.shape == (32,)
    assert b.norm().item() == pytest.approx(45.25, abs=0.01)  # = sqrt(N^2 / 2)
    assert int((b.imag.abs() > 2).sum()) == 11
    clipped = torch.complex(b.real, b.imag.clamp(-2, 2))
    assert clipped.norm().item() == pytest.approx(8.65, abs=0.01)


@pytest.mark.parametrize("config_class", [S4Config, S4DConfig])
def test_s4_and_s4d_legs_clip_imag_b_at_two_by_default(config_class):
    assert config_class(vocab_size=5).b_imag_clip == 2.0
    b = legs_b(64)
    got = model_b(config_class(vocab_size=5, hidden=2, d_state=64))
    torch.testing.assert_close(got.real, b.real.float())
    torch.testing.assert_close(got.imag, b.imag.clamp(-2, 2).float())
    assert int((got.imag.abs() == 2).sum()) == 11
    unclipped = model_b(config_class(vocab_size=5, hidden=2, d_state=64, b_imag_clip=None))
    torch.testing.assert_close(unclipped, b.to(torch.complex64))


def test_s4d_lin_b_is_unaffected_and_bad_clips_are_errors():
    lin = model_b(S4DConfig(vocab_size=5, hidden=2, d_state=64, init="lin"))
    assert torch.equal(lin, torch.ones(32, dtype=torch.complex64))
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="b_imag_clip"):
            S4Config(vocab_size=5, b_imag_clip=bad)


# -- AdamW betas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_betas_resolve_to_the_family_default(model):
    expected = (0.9, 0.99) if model.startswith("rwkv") else (0.9, 0.999)
    assert get_family(model).betas == expected
    cfg = config(model)
    assert cfg.optim.betas is None
    resolved = cfg.resolve()
    assert resolved.optim.betas == expected
    assert resolved.to_dict()["optim"]["betas"] == list(expected)  # explicit in config.json
    # Stating the default is the same experiment; another value is another one.
    assert config(model, betas=expected).config_hash() == cfg.config_hash()
    assert config(model, betas=(0.8, 0.9)).config_hash() != cfg.config_hash()


def test_betas_reach_the_optimizer(tmp_path):
    trainer = built(config("rwkv6"), tmp_path)
    assert {group["betas"] for group in trainer.optimizer.param_groups} == {(0.9, 0.99)}
    trainer = built(config("lstm", betas=[0.5, 0.6]), tmp_path)
    assert {group["betas"] for group in trainer.optimizer.param_groups} == {(0.5, 0.6)}


def test_betas_from_json_and_a_sweep_spec(tmp_path):
    resolved = config("lstm", betas=[0.9, 0.95]).resolve()
    path = tmp_path / "c.json"
    path.write_text(json.dumps(resolved.to_dict()))
    assert RunConfig.load(path).optim.betas == (0.9, 0.95)
    # One pair is one value; a list of pairs sweeps (as the spec's YAML would write them).
    entry = {"task": "shifted_start", "model": "lstm", "steps": 3, "hidden": 8}
    spec = yaml.safe_load("grid: [{betas: [0.9, 0.99], l2wrap: 1.0e-4}]")
    runs = expand({"grid": [entry | spec["grid"][0]]})
    assert [(r.config.optim.betas, r.config.optim.l2wrap) for r in runs] == [((0.9, 0.99), 1e-4)]
    runs = expand({"grid": [entry | {"betas": [[0.9, 0.99], [0.9, 0.999]]}]})
    assert {r.config.optim.betas for r in runs} == {(0.9, 0.99), (0.9, 0.999)}
    with pytest.raises(SpecError, match="betas must be a pair"):
        expand({"grid": [entry | {"betas": [0.9, 0.99, 0.999]}]})


@pytest.mark.parametrize("betas", [(0.9,), (0.9, 1.0), (-0.1, 0.9), 0.9])
def test_bad_betas_are_errors(betas):
    with pytest.raises(ValueError, match="betas"):
        OptimConfig(betas=betas)


# -- L2Wrap --------------------------------------------------------------------------------------


def test_l2wrap_gradient_by_hand():
    """B = 2, T = 3, V = 4; labels -1 at two positions. The CE gradient skips them, L2Wrap does
    not: it adds c * max(logits) at the arg-max of every position."""
    logits = torch.tensor(
        [
            [[1.0, 3.0, -2.0, 0.5], [0.2, -0.1, 0.0, 4.0], [-3.0, -1.0, -2.0, -4.0]],
            [[2.5, 2.0, 1.0, 0.0], [0.0, 0.1, 5.0, -1.0], [1.5, -0.5, 0.0, 6.0]],
        ],
        requires_grad=True,
    )
    labels = torch.tensor([[1, -1, 0], [3, 2, -1]])
    c = 1e-4 / (2 * 3)
    loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-1)
    wrapped = l2wrap(loss, logits, c)
    assert torch.equal(wrapped, loss)
    (ce_grad,) = torch.autograd.grad(loss, logits, retain_graph=True)
    (grad,) = torch.autograd.grad(wrapped, logits, retain_graph=True)
    # Arg-max and max of each position, read off the table above.
    top = {(0, 0): (1, 3.0), (0, 1): (3, 4.0), (0, 2): (1, -1.0)}
    top |= {(1, 0): (0, 2.5), (1, 1): (2, 5.0), (1, 2): (3, 6.0)}
    extra = torch.zeros(2, 3, 4)
    for (b, t), (v, value) in top.items():
        extra[b, t, v] = c * value
    torch.testing.assert_close(grad, ce_grad + extra)
    assert torch.all(ce_grad[0, 1] == 0) and torch.all(ce_grad[1, 2] == 0)
    # The -1 positions: L2Wrap's term only.
    assert grad[0, 1, 3].item() == pytest.approx(c * 4.0)
    assert grad[1, 2, 3].item() == pytest.approx(c * 6.0)
    # A scaled loss (fp16 loss scaling) scales the added gradient with it.
    (scaled,) = torch.autograd.grad(8 * l2wrap(loss, logits, c), logits)
    torch.testing.assert_close(scaled, 8 * (ce_grad + extra))


@pytest.mark.parametrize("model", sorted(MODELS))
def test_l2wrap_defaults_to_the_original_only_for_rwkv(model):
    expected = 1e-4 if model.startswith("rwkv") else 0.0
    assert get_family(model).l2wrap == expected
    assert config(model).resolve().optim.l2wrap == expected
    with pytest.raises(ValueError, match="l2wrap"):
        OptimConfig(l2wrap=-1.0)


@pytest.mark.parametrize("model, l2", [("rwkv6", None), ("lstm", 1e-3), ("lstm", None)])
def test_trainer_applies_l2wrap_over_batch_times_max_seq_len(model, l2, tmp_path, monkeypatch):
    """The original padded to max_seq_len, so its T was max_seq_len for every batch."""
    calls = []

    def spy(loss, logits, coefficient):
        calls.append((logits.shape, coefficient))
        return l2wrap(loss, logits, coefficient)

    monkeypatch.setattr(trainer_module, "l2wrap", spy)
    trainer = built(config(model, l2wrap=l2), tmp_path)
    trainer.train_step()
    strength = trainer.config.optim.l2wrap
    if not strength:
        assert calls == []
        return
    (shape, coefficient) = calls[0]
    assert shape[0] == 4 and shape[1] <= trainer.task.max_seq_len == 128
    assert coefficient == pytest.approx(strength / (4 * 128))


# -- precision -----------------------------------------------------------------------------------


#: The original's precision per family (seed-spec 3.2-3.5), bf16 for the Transformer instead of
#: its fp16 (protocol.md). Accelerate spells fp32 "no".
def test_every_family_states_a_gpu_precision_that_runs():
    assert {family.gpu_precision for family in MODELS.values()} <= {"fp32", "bf16", "fp16"}


@pytest.mark.parametrize("model", sorted(MODELS))
def test_auto_precision_is_the_family_default_on_cuda_and_fp32_on_cpu(model):
    assert resolve_precision("auto", "cuda", model) == get_family(model).gpu_precision
    assert resolve_precision("auto", "cuda:1", model) == get_family(model).gpu_precision
    assert resolve_precision("auto", "cpu", model) == "fp32"
    # An explicit precision wins on either device, but fp16 only where its loss scaling runs.
    assert resolve_precision("fp32", "cuda", model) == "fp32"
    assert resolve_precision("bf16", "cuda", model) == "bf16"
    assert resolve_precision("bf16", "cpu", model) == "bf16"
    with pytest.raises(ValueError, match="'fp16' needs a CUDA device"):
        resolve_precision("fp16", "cpu", model)


def test_environment_records_the_effective_precision(tmp_path):
    result = train(config("rwkv6", steps=1), tmp_path, device="cpu", progress=False)
    assert json.loads(result.run_dir.environment.read_text())["precision"] == "fp32"


def test_environment_records_the_machine_and_its_math_libraries():
    """What may make two machines round differently: every key present, a string or None."""
    env = environment_record("cpu", "fp32", {})
    libraries = ("cpu_capability", "torch_blas", "torch_blas_version", "onednn", "numpy_blas",
                 "numpy_blas_version", "cuda", "cuda_driver")  # fmt: skip
    for key in libraries:
        assert env[key] is None or isinstance(env[key], str), key
    assert isinstance(env["cpu"], str) and isinstance(env["cpu_count"], int)
    assert env["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert env["cuda"] is None and env["cuda_driver"] is None  # on the CPU, whatever is built
    assert env["device_name"] == "cpu" and env["precision"] == "fp32"  # the older keys stay


def test_an_environment_probe_that_fails_is_recorded_as_unknown(monkeypatch):
    def broken() -> str:
        raise RuntimeError("no build information")

    monkeypatch.setattr(torch.__config__, "show", broken)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", broken)
    env = environment_record("cpu", "fp32", {})
    assert env["cpu_capability"] is None and env["onednn"] is None
    assert env["torch_blas"] is None and env["torch_blas_version"] is None


# -- frozen tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", sorted(MODELS))
def test_frozen_null_row_stays_zero_while_the_others_train(model, tmp_path):
    """Weight decay and momentum must not move the row: AdamW with weight decay, lr 1e-2."""
    trainer = built(config(model, NULL_TASK, weight_decay=0.1), tmp_path)
    null = trainer.task.vocab.id("<null>")
    weight = trainer.model.token_embedding().weight
    assert weight.shape[0] == len(trainer.task.vocab)
    assert torch.all(weight[null] == 0)
    before = weight.detach().clone()
    for _ in range(4):
        trainer.train_step()
    assert torch.all(weight[null] == 0)
    trained = [i for i in range(len(before)) if not torch.equal(weight[i], before[i])]
    assert trained and null not in trained
    assert trainer.task.vocab.id("a") in trained


def test_frozen_row_has_no_gradient():
    """As the original's non-trainable row: nothing of it reaches gradient clipping."""
    torch.manual_seed(0)
    model = build_model("lstm", 6, hidden=8)
    freeze_token_rows(model, [0, 2])
    model(torch.tensor([[0, 1, 2, 3, 0]])).square().sum().backward()
    grad = model.token_embedding().weight.grad
    assert torch.all(grad[[0, 2]] == 0) and grad[[1, 3]].abs().sum() > 0


def test_tasks_without_frozen_tokens_leave_the_embedding_alone(tmp_path):
    cfg = config("lstm", weight_decay=0.1)
    trainer = built(cfg, tmp_path)
    torch.manual_seed(cfg.seed)
    fresh = build_model("lstm", len(trainer.task.vocab), **cfg.resolve().model_options)
    weight = trainer.model.token_embedding().weight
    assert torch.equal(weight, fresh.token_embedding().weight)
    assert not weight._backward_hooks


# -- evaluation of shifted position ids --------------------------------------------------------


def test_the_paper_profile_evaluates_shifted_pes_with_ten_draws_as_the_original_tester():
    runs = select(get_profile("paper"), tasks=["mod10"], tables=["2"])
    draws = {r.config.model_options["pe"]: r.config.resolve().eval.shift_samples for r in runs}
    assert draws == {"nope": 1, "sine": 10, "ape": 10, "rope": 10, "spe": 10}
    # a fixed scheme has one draw whatever was asked: the same run, the same hash
    options = OPTIONS["transformer"] | {"pe": "nope"}
    one = RunConfig(task="mod10", model="transformer", model_options=options)
    ten = RunConfig(**{**vars(one), "eval": EvalConfig(shift_samples=10)})
    assert ten.config_hash() == one.config_hash()
    rope = RunConfig(task="mod10", model="transformer", model_options=options | {"pe": "rope"})
    assert (
        RunConfig(**{**vars(rope), "eval": EvalConfig(shift_samples=10)})
        .resolve()
        .eval.shift_samples
        == 10
    )
