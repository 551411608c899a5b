"""Mamba: the countlib scan against a plain loop, mambapy and the CUDA kernels; backends; init."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from countlib.models import backend_names
from countlib.models.mamba import (
    BackendUnavailableError,
    MambaConfig,
    MambaModel,
    selective_scan,
)
from tests.conftest import gpu_kernels

HAS_MAMBAPY = importlib.util.find_spec("mambapy") is not None
needs_mambapy = pytest.mark.skipif(
    not HAS_MAMBAPY, reason="mambapy not installed (pip install mambapy)"
)


def tiny(backend: str = "countlib") -> MambaModel:
    return MambaModel(MambaConfig(vocab_size=11, layers=2, hidden=16, d_state=4, backend=backend))


def reference_scan(x, delta, A, B, C):
    """The S6 recurrence one step at a time, differentiated by autograd."""
    state = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        decay = torch.exp(delta[:, t, :, None] * A)
        state = decay * state + (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((state * C[:, t, None, :]).sum(-1))
    return torch.stack(ys, dim=1)


def scan_inputs(batch=3, length=13, inner=5, n=4, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(0)

    def draw(*shape):
        return torch.randn(*shape, generator=g, dtype=dtype).to(device)

    return [
        draw(batch, length, inner),
        F.softplus(draw(batch, length, inner)),  # delta > 0, some steps near 1
        -torch.exp(draw(inner, n)),  # A < 0
        draw(batch, length, n),
        draw(batch, length, n),
    ]


def grads(fn, inputs, weight):
    inputs = [v.detach().requires_grad_() for v in inputs]
    out = fn(*inputs)
    (out * weight).sum().backward()
    return out.detach(), [v.grad for v in inputs]


def test_scan_matches_sequential_reference_forward_and_gradients():
    inputs = scan_inputs()
    weight = torch.randn(3, 13, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y, g = grads(selective_scan, inputs, weight)
    y_ref, g_ref = grads(reference_scan, inputs, weight)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # the path that keeps no states for backward
        torch.testing.assert_close(selective_scan(*inputs), y, rtol=0, atol=0)
    for name, got, want in zip(["x", "delta", "A", "B", "C"], g, g_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=f"grad {name}")


@needs_mambapy
def test_scan_matches_mambapy_parallel_scan_forward_and_gradients():
    from mambapy.pscan import pscan

    def blelloch(x, delta, A, B, C):
        decay = torch.exp(delta.unsqueeze(-1) * A)
        states = pscan(decay, (delta * x).unsqueeze(-1) * B[:, :, None])
        return (states * C[:, :, None]).sum(-1)

    inputs = [v.float() for v in scan_inputs()]
    weight = torch.randn(3, 13, 5, generator=torch.Generator().manual_seed(1))
    y, g = grads(selective_scan, inputs, weight)
    y_ref, g_ref = grads(blelloch, inputs, weight)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(g, g_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_scan_runs_half_precision_inputs_in_fp32():
    inputs = [v.to(torch.bfloat16) for v in scan_inputs()]
    y = selective_scan(*inputs)
    assert y.dtype == torch.bfloat16
    expected = reference_scan(*[v.double() for v in inputs])
    torch.testing.assert_close(y.double(), expected, rtol=2e-2, atol=2e-2)


def test_causal():
    torch.manual_seed(0)
    model = tiny().eval()
    ids = torch.randint(0, 11, (2, 9), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 5] = (ids[:, 5] + 1) % 11
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)
    assert (a[:, 5:] - b[:, 5:]).abs().amax(-1).min() > 1e-6


@pytest.mark.parametrize("backend", ["countlib", pytest.param("mambapy", marks=needs_mambapy)])
def test_step_form_equals_parallel_forward(backend):
    torch.manual_seed(0)
    model = tiny(backend).eval()
    ids = torch.randint(0, 11, (3, 10))
    state = model.init_state(3)
    with torch.no_grad():
        full = model(ids)
        stepped = []
        for t in range(ids.shape[1]):
            logits, state = model.step(ids[:, t], state)
            stepped.append(logits)
    torch.testing.assert_close(torch.stack(stepped, dim=1), full, rtol=1e-5, atol=1e-5)
    assert sum(s.numel() for layer in state for s in layer) == 3 * model.state_size()


def test_parameter_names_and_shapes_match_mamba_ssm():
    model = MambaModel(MambaConfig(vocab_size=103, layers=2, hidden=128, backend="countlib"))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mixer = {
        "in_proj.weight": (512, 128),
        "conv1d.weight": (256, 1, 4),
        "conv1d.bias": (256,),
        "x_proj.weight": (8 + 2 * 16, 256),
        "dt_proj.weight": (256, 8),
        "dt_proj.bias": (256,),
        "A_log": (256, 16),
        "D": (256,),
        "out_proj.weight": (128, 256),
    }
    expected = {"backbone.embedding.weight": (103, 128), "backbone.norm_f.weight": (128,)}
    expected["lm_head.weight"] = (103, 128)
    for i in range(2):
        expected[f"backbone.layers.{i}.norm.weight"] = (128,)
        expected |= {f"backbone.layers.{i}.mixer.{k}": v for k, v in mixer.items()}
    assert shapes == expected
    # Tied head: the spec's ~0.25M parameters count the shared matrix once.
    assert model.lm_head.weight is model.backbone.embedding.weight
    assert sum(p.numel() for p in model.parameters()) == 246_528
    assert model.state_size() == 2 * 256 * (3 + 16)


def test_init_follows_mamba_ssm():
    torch.manual_seed(0)
    config = MambaConfig(vocab_size=103, layers=4, hidden=128, bias=True, backend="countlib")
    model = MambaModel(config)
    mixer = model.backbone.layers[0].mixer
    assert abs(model.backbone.embedding.weight.std().item() - 0.02) < 2e-3
    assert not mixer.in_proj.bias.any() and not mixer.out_proj.bias.any()
    dt = F.softplus(mixer.dt_proj.bias)
    assert dt.min() >= config.dt_min * (1 - 1e-4) and dt.max() <= config.dt_max * (1 + 1e-4)
    # Kaiming-uniform(a=sqrt 5) bound is 1/sqrt(fan_in); then divided by sqrt(layers).
    bound = 1 / 256**0.5 / 4**0.5
    assert mixer.out_proj.weight.abs().max() <= bound
    assert mixer.out_proj.weight.abs().max() > 0.9 * bound
    torch.testing.assert_close(-torch.exp(mixer.A_log[3]), -torch.arange(1.0, 17.0))


def test_adamw_steps_reduce_loss():
    torch.manual_seed(0)
    model = tiny()
    ids = torch.randint(0, 11, (8, 12))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        loss = F.cross_entropy(model(ids[:, :-1]).flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]


@needs_mambapy
def test_state_dict_moves_to_mambapy_with_same_outputs_and_gradients():
    torch.manual_seed(0)
    ours = tiny("countlib")
    theirs = tiny("mambapy")
    assert backend_names(theirs) == {"mamba": "mambapy"}
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 11, (2, 7))
    target = torch.randint(0, 11, (2, 7))
    outputs = []
    for model in (ours, theirs):
        logits = model(ids)
        F.cross_entropy(logits.flatten(0, 1), target.flatten()).backward()
        outputs.append((logits.detach(), {k: p.grad for k, p in model.named_parameters()}))
    (a, grads_a), (b, grads_b) = outputs
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)


def test_unknown_backend_lists_choices():
    with pytest.raises(ValueError, match="choose from.*countlib.*mambapy.*mamba_ssm"):
        MambaConfig(vocab_size=5, backend="cuda")


def test_missing_mambapy_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mambapy", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "mambapy.mamba", None)
    with pytest.raises(BackendUnavailableError, match="pip install mambapy"):
        tiny("mambapy")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU fallback")
def test_cpu_auto_uses_countlib_and_mamba_ssm_says_how_to_install():
    assert backend_names(tiny("auto")) == {"mamba": "countlib"}
    with pytest.raises(BackendUnavailableError, match="CUDA.*pip install --no-build-isolation"):
        tiny("mamba_ssm")


def test_auto_chooses_by_the_device_it_is_built_for(monkeypatch):
    """Not by what is installed: a CPU run on a GPU machine with the kernels gets countlib's
    scan, and a CUDA run without them says why it did not get them."""
    import countlib.models.mamba as mamba

    monkeypatch.setattr(mamba, "_mamba_ssm_class", lambda: nn.Identity)  # "installed"
    assert mamba.resolve_backend("auto", torch.device("cpu")) == ("countlib", "")
    assert mamba.resolve_backend("auto", torch.device("cuda", 1)) == ("mamba_ssm", "")

    def missing():
        raise BackendUnavailableError("mamba backend 'mamba_ssm' cannot load (no module)")

    monkeypatch.setattr(mamba, "_mamba_ssm_class", missing)
    choice = mamba.resolve_backend("auto", torch.device("cuda"))
    assert choice.name == "countlib" and "cannot load (no module)" in choice.why
    with pytest.raises(BackendUnavailableError, match="built for cpu"):
        mamba.resolve_backend("mamba_ssm", torch.device("cpu"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_countlib_scan_and_model_match_mamba_ssm_kernels():
    gpu_kernels("mamba_ssm")
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    inputs = scan_inputs(batch=4, length=50, inner=32, n=16, dtype=torch.float32, device="cuda")
    weight = torch.randn(4, 50, 32, device="cuda")
    y, g = grads(selective_scan, inputs, weight)

    def kernel(x, delta, A, B, C):  # the kernels take channels-first tensors
        t = [v.transpose(1, 2).contiguous() for v in (x, delta, B, C)]
        return selective_scan_fn(t[0], t[1], A, t[2], t[3]).transpose(1, 2)

    y_ref, g_ref = grads(kernel, inputs, weight)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    for got, want in zip(g, g_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)

    torch.manual_seed(0)
    ours = MambaModel(MambaConfig(vocab_size=103, hidden=64, backend="countlib")).cuda()
    config = MambaConfig(vocab_size=103, hidden=64, backend="mamba_ssm")
    theirs = MambaModel(config, device="cuda").cuda()
    theirs.load_state_dict(ours.state_dict())
    ids = torch.randint(0, 103, (8, 51), device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids), rtol=1e-4, atol=1e-4)
