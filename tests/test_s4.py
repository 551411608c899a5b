import math

import pytest
import torch
import torch.nn.functional as F

from countlib.models.s4 import (
    DPLRKernel,
    S4Config,
    S4DConfig,
    S4Model,
    hippo_legs,
    legs_normal_eigenbasis,
)

MODES = ["dplr", "diag"]


def tiny(mode="dplr", **kwargs):
    options = {"vocab_size": 11, "layers": 2, "hidden": 6, "d_state": 8, "mode": mode}
    return S4Model(S4Config(**(options | kwargs)))


def perturbed(model, scale=0.3):
    """Move the SSM parameters off their structured initialisation so that tests do not pass
    only because of special values (P proportional to B, equal channels, ...)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for layer in model.layers:
            for param in layer.block.ssm.parameters():
                param.add_(scale * torch.randn_like(param))
    return model


def impulse_response(system, channels, length, dtype):
    x = system.initial_state(1)
    outputs = []
    for t in range(length):
        u = torch.full((1, channels), float(t == 0), dtype=dtype)
        x, y = system.step(x, u)
        outputs.append(y[0])
    return torch.stack(outputs, dim=-1)


def run_recurrent(model, ids):
    state = model.initial_state(ids.shape[0])
    logits = []
    for t in range(ids.shape[1]):
        out, state = model.step(ids[:, t], state)
        logits.append(out)
    return torch.stack(logits, dim=1)


# -- HiPPO ---------------------------------------------------------------------------------------


def test_hippo_legs_small_case_by_hand():
    a, b = hippo_legs(3)
    r3, r5, r15 = math.sqrt(3), math.sqrt(5), math.sqrt(15)
    expected = torch.tensor([[-1.0, 0, 0], [-r3, -2, 0], [-r5, -r15, -3]], dtype=torch.float64)
    torch.testing.assert_close(a, expected)
    torch.testing.assert_close(b, torch.tensor([1.0, r3, r5], dtype=torch.float64))


@pytest.mark.parametrize("n", [2, 8, 64])
def test_normal_plus_low_rank_form_reconstructs_legs(n):
    lam, vectors, p = legs_normal_eigenbasis(n)
    assert lam.shape == (n // 2,) and vectors.shape == (n, n // 2)
    assert torch.allclose(lam.real, torch.full_like(lam.real, -0.5)) and (lam.imag > 0).all()
    full_v = torch.cat([vectors, vectors.conj()], dim=1)
    full_lam = torch.cat([lam, lam.conj()])
    rebuilt = full_v @ torch.diag(full_lam) @ full_v.mH - torch.outer(p, p)
    torch.testing.assert_close(rebuilt.real, hippo_legs(n)[0])
    assert rebuilt.imag.abs().max() < 1e-9


# -- kernels -------------------------------------------------------------------------------------


def test_bilinear_transition_matches_dense_solve():
    """Sherman-Morrison Abar (real basis) equals (I - dt/2 A)^-1 (I + dt/2 A) on the full basis."""
    ssm = perturbed(tiny()).double().layers[0].block.ssm
    a_bar, b_bar = ssm._bilinear()
    lam, p = ssm._lambda(), torch.view_as_complex(ssm.p)
    b = torch.view_as_complex(ssm.b)
    full = lambda z: torch.cat([z, z.conj()], dim=-1)  # noqa: E731
    a_full = torch.diag_embed(full(lam)) - full(p)[..., :, None] * full(p).conj()[..., None, :]
    dt = torch.exp(ssm.log_dt)[:, None, None]
    eye = torch.eye(a_full.shape[-1], dtype=a_full.dtype)
    left = eye - dt / 2 * a_full
    a_dense = torch.linalg.solve(left, eye + dt / 2 * a_full)
    b_dense = torch.linalg.solve(left, dt[..., 0] * full(b))
    half = lam.shape[-1]
    # On the full basis, conjugate-paired vectors stay paired; compare the stored half.
    z = torch.randn(lam.shape, dtype=torch.complex128)
    expected = (a_dense @ full(z)[..., None])[..., :half, 0]
    got = (a_bar @ torch.cat([z.real, z.imag], -1)[..., None])[..., 0]
    torch.testing.assert_close(got, torch.cat([expected.real, expected.imag], -1))
    expected_b = b_dense[..., :half]
    torch.testing.assert_close(b_bar, torch.cat([expected_b.real, expected_b.imag], -1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("length", [1, 16, 17, 40])
def test_convolution_kernel_is_the_recurrence_impulse_response(mode, length):
    for dtype, tol in [(torch.float64, 1e-10), (torch.float32, 1e-4)]:
        ssm = perturbed(tiny(mode, dt_max=0.5)).to(dtype).layers[0].block.ssm
        with torch.no_grad():
            kernel = ssm.kernel(length)
            expected = impulse_response(ssm.discrete(), 6, length, dtype)
        assert kernel.shape == (6, length) and kernel.dtype == dtype
        scale = expected.abs().max()
        assert (kernel - expected).abs().max() <= tol * scale, (dtype, length)


@pytest.mark.parametrize("mode", MODES)
def test_convolutional_and_recurrent_model_agree(mode):
    model = perturbed(tiny(mode)).eval()
    ids = torch.randint(0, 11, (3, 23))
    with torch.no_grad():
        conv = model(ids)
        rec = run_recurrent(model, ids)
        torch.testing.assert_close(rec, conv, atol=1e-4, rtol=1e-4)
        model64 = model.double()
        torch.testing.assert_close(run_recurrent(model64, ids), model64(ids), atol=1e-10, rtol=0)


@pytest.mark.parametrize("mode", MODES)
def test_causal_and_length_independent(mode):
    """Output t sees inputs <= t only, and a prefix's outputs do not depend on how long the
    whole input is (the kernel is exact at every length, so extrapolation is consistent)."""
    model = perturbed(tiny(mode)).eval()
    torch.manual_seed(0)
    ids = torch.randint(0, 11, (2, 128))
    changed = ids.clone()
    changed[:, 30] = (ids[:, 30] + 1) % 11
    with torch.no_grad():
        out, out_changed, prefix = model(ids), model(changed), model(ids[:, :50])
    assert out.shape == (2, 128, 11)
    torch.testing.assert_close(out[:, :30], out_changed[:, :30])
    assert (out[:, 30] - out_changed[:, 30]).abs().max() > 1e-3
    torch.testing.assert_close(out[:, :50], prefix, atol=1e-5, rtol=1e-4)


# -- model ---------------------------------------------------------------------------------------


def test_parameter_counts_match_the_original():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # Spec: the original S4 has ~93K parameters at hidden 128, vocab 103, one layer.
    assert count(S4Model(S4Config(vocab_size=103))) == 92_672
    # S4D has no low-rank P: 128 channels x 32 complex entries fewer.
    assert count(S4Model(S4DConfig(vocab_size=103))) == 92_672 - 128 * 32 * 2


def test_state_size_and_config_defaults():
    assert S4DConfig(vocab_size=5).mode == "diag" and S4Config(vocab_size=5).mode == "dplr"
    assert S4Config(vocab_size=5).dropout == 0.1
    model = tiny()
    assert model.state_size() == 2 * 6 * 8
    state = model.initial_state(4)
    assert sum(s[0].numel() * (2 if s.is_complex() else 1) for s in state.states) == 2 * 6 * 8


def test_s4d_lin_init():
    ssm = tiny("diag", init="lin").layers[0].block.ssm
    lam = ssm._lambda()
    torch.testing.assert_close(lam.real, torch.full_like(lam.real, -0.5))
    torch.testing.assert_close(lam.imag[0], math.pi * torch.arange(4.0))
    assert torch.equal(torch.view_as_complex(ssm.b), torch.ones(6, 4, dtype=torch.complex64))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "full"}, "dplr"),
        ({"init": "fourier"}, "legs"),
        ({"init": "lin"}, "diag"),
        ({"d_state": 7}, "even"),
        ({"dropout": 1.0}, "dropout"),
        ({"dt_min": 0.2}, "dt_min"),
        ({"hidden": 0}, "positive"),
        ({"ssm_lr": 0.0}, "ssm_lr"),
    ],
)
def test_bad_config_is_rejected(options, message):
    with pytest.raises(ValueError, match=message):
        S4Config(vocab_size=5, **options)


class Optim:
    def __init__(self, lr, weight_decay):
        self.lr, self.weight_decay = lr, weight_decay


@pytest.mark.parametrize("mode", MODES)
def test_param_groups(mode):
    model = tiny(mode)
    groups = model.param_groups(Optim(lr=0.01, weight_decay=0.05))
    names = {id(p): n for n, p in model.named_parameters()}
    by_setting = {(g["lr"], g["weight_decay"]): {names[id(p)] for p in g["params"]} for g in groups}
    assert sorted(by_setting) == [(0.001, 0.0), (0.001, 0.05), (0.01, 0.05)]
    ssm = {n.rsplit(".", 1)[1] for n in by_setting[(0.001, 0.0)]}
    assert ssm == ({"a_real_log", "a_imag", "b", "log_dt"} | ({"p"} if mode == "dplr" else set()))
    assert {n.rsplit(".", 1)[1] for n in by_setting[(0.001, 0.05)]} == {"c"}
    general = by_setting[(0.01, 0.05)]
    assert "embedding.weight" in general and "layers.0.block.d" in general
    assert sum(len(g["params"]) for g in groups) == len(names)
    # The SSM rate never exceeds the global one.
    assert {g["lr"] for g in model.param_groups(Optim(lr=1e-4, weight_decay=0.0))} == {1e-4}


@pytest.mark.parametrize("mode", MODES)
def test_adamw_steps_reduce_loss(mode):
    torch.manual_seed(0)
    model = tiny(mode, hidden=16, dropout=0.0)
    optimizer = torch.optim.AdamW(model.param_groups(Optim(lr=0.02, weight_decay=0.01)))
    ids = torch.randint(0, 11, (4, 20))

    def loss():
        return F.cross_entropy(model(ids[:, :-1]).reshape(-1, 11), ids[:, 1:].reshape(-1))

    start = loss().item()
    for _ in range(20):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
    assert loss().item() < 0.75 * start


@pytest.mark.parametrize("mode", MODES)
def test_state_dict_round_trip(mode):
    model = perturbed(tiny(mode)).eval()
    torch.manual_seed(5)
    clone = tiny(mode).eval()
    ids = torch.randint(0, 11, (2, 9))
    assert not torch.allclose(model(ids), clone(ids))
    clone.load_state_dict(model.state_dict())
    torch.testing.assert_close(clone(ids), model(ids), rtol=0, atol=0)


def test_bf16_autocast_keeps_the_ssm_in_full_precision():
    model = perturbed(tiny()).eval()
    ids = torch.randint(0, 11, (2, 30))
    with torch.no_grad():
        reference = model(ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids)
    assert torch.isfinite(mixed).all()
    assert (mixed.float() - reference).abs().max() < 0.05 * reference.abs().max()


def test_dplr_kernel_class_is_used_for_s4_only():
    assert isinstance(tiny("dplr").layers[0].block.ssm, DPLRKernel)
    assert not isinstance(tiny("diag").layers[0].block.ssm, DPLRKernel)
    assert not hasattr(tiny("diag").layers[0].block.ssm, "p")
