"""Mamba-2: the chunked SSD form against the recurrence, negative eigenvalues, backends."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

import countlib.models.backends as backends_module
import countlib.models.mamba2 as mamba2
from countlib.models import backend_names, build_model
from countlib.models.deltanet import BackendUnavailableError
from countlib.models.mamba import MambaConfig, MambaModel, selective_scan
from countlib.models.mamba2 import Mamba2Config, Mamba2Model, ssd_chunked, ssd_recurrent
from tests import family_checks as checks
from tests.conftest import gpu_kernels
from tests.family_checks import V, one_thread  # noqa: F401 (the fixture)

TINY = {"layers": 2, "hidden": 16, "d_state": 4, "head_dim": 8, "chunk_size": 4}


def tiny(**options) -> Mamba2Model:
    return checks.tiny_model("mamba2", TINY, **options)


def ssd_inputs(negative: bool, steps: int = 19, seed: int = 0):
    """x [b, H, T, P], transitions a [b, H, T] (with exact zeros and, if negative, signs), B, C."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 3, steps, 4, generator=gen, dtype=torch.float64)
    a = torch.rand(2, 3, steps, generator=gen, dtype=torch.float64)
    if negative:
        a = 2 * a - 1
    B, C = (torch.randn(2, steps, 5, generator=gen, dtype=torch.float64) for _ in "BC")
    return [t.requires_grad_() for t in (x, a, B, C)]


def naive_ssd(x, a, B, C):
    """h_t = a_t h_{t-1} + x_t B_t^T, y_t = h_t C_t, one head at a time."""
    y = torch.zeros_like(x)
    for b in range(x.shape[0]):
        for h in range(x.shape[1]):
            state = torch.zeros(x.shape[-1], B.shape[-1], dtype=x.dtype)
            for t in range(x.shape[2]):
                state = a[b, h, t] * state + torch.outer(x[b, h, t], B[b, t])
                y[b, h, t] = state @ C[b, t]
    return y


@pytest.mark.parametrize("negative", [False, True])
def test_both_forms_match_the_papers_recurrence(negative):
    checks.check_forms_match_naive(
        naive_ssd, ssd_recurrent, ssd_chunked, ssd_inputs(negative, steps=9)
    )


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 6, 64])
def test_chunked_matches_recurrent_forward_and_gradients(negative, chunk_size):
    inputs = ssd_inputs(negative)
    with torch.no_grad():
        inputs[1][0, 0, 3] = 0.0  # a zero transition (2 a - 1 = 0) must not break anything
    weight = torch.randn(2, 3, 19, 4, dtype=torch.float64)
    chunked = functools.partial(ssd_chunked, chunk_size=chunk_size)
    checks.check_matches_reference(chunked, ssd_recurrent, inputs, weight)


def test_model_is_causal():
    checks.check_causal(tiny())


@pytest.mark.parametrize("negative", [False, True])
def test_step_form_equals_chunked_forward(negative):
    checks.check_step_matches_forward(tiny(negative_eigenvalues=negative))


def test_negative_eigenvalues_widen_the_transition_range_to_minus_one():
    x = torch.randn(4, 10, 16, generator=torch.Generator().manual_seed(0))
    for negative in (False, True):
        model = tiny(negative_eigenvalues=negative)
        mixer = model.layers[0].mixer
        with torch.no_grad():
            a = mixer.transitions(x)
            assert a.shape == (4, 10, mixer.config.heads)
            assert a.max() <= 1 and a.min() >= (-1 if negative else 0)
            # A large dt bias makes dt A very negative: a -> 0, or -> -1 with the option.
            mixer.dt_bias.fill_(10.0)
            strong = mixer.transitions(x)
        if negative:
            assert strong.min() >= -1 and strong.max() < -0.99
        else:
            assert strong.min() >= 0 and strong.max() < 0.01
    # the transition function itself covers (-1, 1]
    dt_a = torch.linspace(-50, 0, 101)
    assert mamba2.transitions(dt_a, True).min() < -0.999
    torch.testing.assert_close(mamba2.transitions(dt_a, True), 2 * dt_a.exp() - 1)


def test_a_few_adamw_steps_reduce_the_loss():
    checks.check_training_reduces_loss(tiny(layers=1))
    checks.check_training_reduces_loss(tiny(layers=1, negative_eigenvalues=True))


def test_state_dict_round_trip():
    checks.check_state_dict_round_trip(lambda: build_model("mamba2", V, **(TINY | {"layers": 1})))


def test_state_size_counts_head_states_and_conv_inputs():
    # d_inner 32 in 4 heads of 8 x d_state 4; conv windows of 3 over x, B and C (32 + 2 * 4)
    assert tiny().state_size() == 2 * (32 * 4 + 3 * (32 + 8))
    assert tiny(d_conv=1).state_size() == 2 * 32 * 4


def test_d_ffn_adds_a_mlp():
    assert tiny().layers[0].mlp is None
    model = tiny(d_ffn=24)
    assert model.layers[0].mlp.up.out_features == 24
    checks.check_step_matches_forward(model)


def test_bf16_autocast_keeps_the_ssd_in_fp32():
    checks.check_autocast_keeps_recurrence_in_fp32(tiny())


def test_config_defaults_and_errors():
    config = Mamba2Config(vocab_size=V)
    assert (config.hidden, config.d_state, config.head_dim, config.heads) == (128, 16, 16, 16)
    assert not config.negative_eigenvalues and config.d_ffn == 0
    with pytest.raises(ValueError, match="head_dim 24 must divide"):
        Mamba2Config(vocab_size=V, hidden=16, head_dim=24)
    with pytest.raises(ValueError, match="negative_eigenvalues runs on .* 'countlib' only"):
        Mamba2Config(vocab_size=V, negative_eigenvalues=True, backend="fla")
    checks.check_family_defaults("mamba2")


def test_backends_on_cpu():
    assert backend_names(tiny()) == {"ssd": "countlib-chunked"}
    with pytest.raises(BackendUnavailableError, match="CUDA only.*pip install"):
        tiny(backend="fla")(checks.random_ids(1, 3))


def test_fla_backend_reports_how_to_install(monkeypatch):
    monkeypatch.setattr(mamba2, "_import_fla", lambda: (None, "No module named 'fla'"))
    cuda = torch.device("cuda")
    with pytest.raises(BackendUnavailableError, match="No module named 'fla'.*pip install"):
        mamba2.resolve_backend(Mamba2Config(vocab_size=V, backend="fla"), cuda)
    choice = mamba2.resolve_backend(Mamba2Config(vocab_size=V), cuda)
    assert choice.name == "countlib-chunked" and "No module named 'fla'" in choice.why
    monkeypatch.setattr(mamba2, "_import_fla", lambda: (F.linear, ""))  # any kernel will do
    monkeypatch.setattr(backends_module, "fla_gated_backward_fault", lambda device: "")
    assert mamba2.resolve_backend(Mamba2Config(vocab_size=V), cuda) == ("fla-chunk", "")
    negative = Mamba2Config(vocab_size=V, negative_eigenvalues=True)
    assert mamba2.resolve_backend(negative, cuda) == ("countlib-chunked", "")


def test_trains_through_the_trainer_on_mod10(tmp_path):
    checks.check_trains_on_mod10("mamba2", {"hidden": 16, "layers": 1, "head_dim": 8}, tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fla_kernel_matches_countlib_on_gpu():
    gpu_kernels("fla.ops.simple_gla")
    torch.manual_seed(0)
    reference = build_model("mamba2", V, hidden=64, backend="countlib").cuda().eval()
    model = build_model("mamba2", V, hidden=64, backend="fla").cuda().eval()
    model.load_state_dict(reference.state_dict())
    assert backend_names(model) == {"ssd": "fla-chunk"}
    ids = torch.randint(0, V, (2, 100), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        torch.testing.assert_close(model(ids).float(), reference(ids).float(), rtol=3e-2, atol=3e-2)


# -- Mamba-1's negative_eigenvalues option (countlib.models.mamba) ------------------------------


def tiny_mamba(**options) -> MambaModel:
    torch.manual_seed(0)
    options = {"layers": 2, "hidden": 16, "d_state": 4, "backend": "countlib"} | options
    return MambaModel(MambaConfig(vocab_size=V, **options)).eval()


def reference_negative_scan(x, delta, A, B, C):
    """The S6 recurrence with transitions 2 exp(delta A) - 1, one step at a time (autograd)."""
    state = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        decay = 2 * torch.exp(delta[:, t, :, None] * A) - 1
        state = decay * state + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((state * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1)


def test_mamba_negative_scan_matches_the_recurrence_forward_and_gradients():
    gen = torch.Generator().manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    inputs = [draw(3, 13, 5), F.softplus(draw(3, 13, 5)), -torch.exp(draw(5, 4))]
    inputs = [v.requires_grad_() for v in inputs + [draw(3, 13, 4), draw(3, 13, 4)]]
    weight = draw(3, 13, 5)
    scan = functools.partial(selective_scan, negative=True)
    y = checks.check_matches_reference(
        scan, reference_negative_scan, inputs, weight, ["x", "delta", "A", "B", "C"]
    )
    with torch.no_grad():  # the path that keeps no states for backward
        torch.testing.assert_close(scan(*inputs), y, rtol=0, atol=0)


def test_mamba_negative_step_form_equals_forward():
    checks.check_step_matches_forward(tiny_mamba(negative_eigenvalues=True))
    checks.check_causal(tiny_mamba(negative_eigenvalues=True))


def test_mamba_negative_eigenvalues_widen_the_transition_range_to_minus_one():
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(0))
    for negative in (False, True):
        mixer = tiny_mamba(negative_eigenvalues=negative).backbone.layers[0].mixer
        with torch.no_grad():
            a = mixer.transitions(x)
            assert a.shape == (2, 7, 32, 4)
            assert a.max() <= 1 and a.min() >= (-1 if negative else 0)
            mixer.dt_proj.bias.fill_(10.0)  # delta ~ 10: exp(delta A) ~ 0
            strong = mixer.transitions(x)
        assert (strong.max() < -0.99) if negative else (strong.min() >= 0 and strong.max() < 0.01)
    # Off, the model is the one it was: same parameters, same logits.
    plain, off = tiny_mamba(), tiny_mamba(negative_eigenvalues=False)
    ids = checks.random_ids(2, 9)
    with torch.no_grad():
        torch.testing.assert_close(plain(ids), off(ids), rtol=0, atol=0)
        assert not torch.allclose(plain(ids), tiny_mamba(negative_eigenvalues=True)(ids))


def test_mamba_negative_training_steps_reduce_the_loss():
    checks.check_training_reduces_loss(tiny_mamba(layers=1, negative_eigenvalues=True))


@pytest.mark.parametrize("backend", ["mambapy", "mamba_ssm"])
def test_mamba_negative_eigenvalues_name_the_backend_that_has_them(backend):
    with pytest.raises(ValueError, match="negative_eigenvalues runs on mamba backend 'countlib'"):
        MambaConfig(vocab_size=V, negative_eigenvalues=True, backend=backend)
    assert backend_names(tiny_mamba(negative_eigenvalues=True, backend="auto")) == {
        "mamba": "countlib"
    }
