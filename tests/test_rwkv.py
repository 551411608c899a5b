from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

import countlib.models.rwkv as rwkv
from countlib.models import backend_names
from countlib.models.rwkv import (
    BackendUnavailableError,
    RWKV5Config,
    RWKVConfig,
    RWKVModel,
    wkv_chunked,
    wkv_recurrent,
)
from tests.conftest import gpu_kernels
from tests.family_checks import check_ignores_positions_and_masks, one_thread  # noqa: F401

V = 11


def tiny(**options) -> RWKVModel:
    torch.manual_seed(0)
    options = {"layers": 2, "hidden": 16, "head_size": 8, "dropout": 0.0} | options
    return RWKVModel(RWKVConfig(vocab_size=V, **options)).eval()


def wkv_inputs(batch=2, heads=2, steps=13, size=4, dtype=torch.float64, strength=2.0, seed=0):
    """Random r, k, v, log-decay, bonus; decay logits ~ N(-1, strength^2) reach tiny decays."""
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, heads, steps, size)
    r, k, v = (torch.randn(shape, generator=gen, dtype=dtype) for _ in range(3))
    log_decay = -torch.exp(torch.randn(shape, generator=gen, dtype=dtype) * strength - 1)
    bonus = torch.randn(heads, size, generator=gen, dtype=dtype)
    return [x.requires_grad_() for x in (r, k, v, log_decay, bonus)]


def naive_wkv(r, k, v, log_decay, bonus):
    """The recurrence exactly as written in the spec, one channel pair at a time."""
    batch, heads, steps, size = r.shape
    y = torch.zeros_like(v)
    for b in range(batch):
        for h in range(heads):
            state = torch.zeros(size, size, dtype=r.dtype)
            for t in range(steps):
                kv = torch.outer(k[b, h, t], v[b, h, t])
                y[b, h, t] = r[b, h, t] @ (bonus[h, :, None] * kv + state)
                state = log_decay[b, h, t].exp()[:, None] * state + kv
    return y


def trained_like(model: RWKVModel) -> RWKVModel:
    """Weights for the maps that start at zero: the residual branches start silent and the v6
    LoRAs start inactive, which would hide what the tests look for."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_down" in name or name.removesuffix(".weight").endswith(rwkv._ZERO):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    return model


# -- configuration and size -----------------------------------------------------------------------


def test_config_defaults_follow_the_original():
    config = RWKVConfig(vocab_size=103)
    assert (config.layers, config.hidden, config.head_size, config.heads) == (4, 128, 64, 2)
    assert (config.d_att, config.d_ffn) == (128, 448)
    assert config.version == 6 and RWKV5Config(vocab_size=103).version == 5
    assert RWKVConfig(vocab_size=103, hidden=64).d_ffn == 224
    wide = RWKVConfig(vocab_size=103, hidden=64, dim_att=128, dim_ffn=100)
    assert (wide.heads, wide.d_ffn) == (2, 100)
    model = RWKVModel(wide)
    assert model.blocks[0].att.output.weight.shape == (64, 128)
    assert model.blocks[0].ffn.key.weight.shape == (100, 64)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"hidden": 64, "head_size": 48}, "must divide"),
        ({"version": 7}, "version"),
        ({"form": "parallel"}, "form"),
        ({"backend": "cuda"}, "backend"),
        ({"chunk_size": 0}, "chunk_size"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_rejects_invalid_options(options, message):
    with pytest.raises(ValueError, match=message):
        RWKVConfig(vocab_size=V, **options)


def test_parameter_count_at_the_paper_size():
    """4 x 128 with V = 103: the spec's ~1.1M (v5 lacks the two LoRAs and mix_x)."""
    v6 = RWKVModel(RWKVConfig(vocab_size=103))
    v5 = RWKVModel(RWKV5Config(vocab_size=103))
    assert sum(p.numel() for p in v6.parameters()) == 1_116_416
    lora = 128 * 160 + 5 * 32 * 128 + 128 * 64 + 64 * 128 + 128 + 128
    assert sum(p.numel() for p in v5.parameters()) == 1_116_416 - 4 * lora


def test_state_size_counts_wkv_states_and_shifted_tokens():
    model = tiny()
    assert model.state_size() == 2 * (16 * 8 + 2 * 16)


# -- the WKV forms ------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [1, 2, 9])
def test_both_forms_match_the_spec_recurrence(steps):
    inputs = wkv_inputs(steps=steps)
    expected = naive_wkv(*inputs)
    torch.testing.assert_close(wkv_recurrent(*inputs), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(wkv_chunked(*inputs, 4), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("chunk_size", [1, 4, 5, 13, 32])
def test_chunked_matches_recurrent_forward_and_gradients(chunk_size):
    inputs = wkv_inputs(steps=13)
    grad_out = torch.randn(2, 2, 13, 4, dtype=torch.float64)
    y_rec = wkv_recurrent(*inputs)
    grads_rec = torch.autograd.grad(y_rec, inputs, grad_out)
    y_chunk = wkv_chunked(*inputs, chunk_size)
    grads_chunk = torch.autograd.grad(y_chunk, inputs, grad_out)
    torch.testing.assert_close(y_chunk, y_rec, rtol=1e-10, atol=1e-10)
    for chunk_grad, rec_grad in zip(grads_chunk, grads_rec, strict=True):
        torch.testing.assert_close(chunk_grad, rec_grad, rtol=1e-9, atol=1e-9)


def test_hand_written_backward_passes_gradcheck():
    inputs = wkv_inputs(batch=1, heads=1, steps=6, size=3)
    assert torch.autograd.gradcheck(wkv_recurrent, inputs)
    assert torch.autograd.gradcheck(lambda *xs: wkv_chunked(*xs, 4), inputs)


def test_forms_agree_in_fp32_with_extreme_decays():
    """Decays from 1 - 1e-7 to e^-148 (the cap): the chunked form stays finite and exact."""
    inputs = wkv_inputs(steps=40, size=8, dtype=torch.float32, strength=4.0)
    with torch.no_grad():
        logit = torch.randn(inputs[3].shape, generator=torch.Generator().manual_seed(3)) * 8
        inputs[3].copy_(-logit.clamp(max=rwkv.MAX_DECAY_LOGIT).exp())
    assert inputs[3].min() < -140 and inputs[3].max() > -1e-6
    y_rec, y_chunk = wkv_recurrent(*inputs), wkv_chunked(*inputs, 16)
    torch.testing.assert_close(y_chunk, y_rec, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(y_chunk.square().sum(), inputs)
    assert all(torch.isfinite(g).all() for g in grads)


def test_huge_decay_logits_give_finite_losses_and_gradients():
    model = tiny().train()
    with torch.no_grad():
        for block in model.blocks:
            block.att.time_decay.fill_(200.0)  # exp(200) overflows fp32 without the cap
    ids = torch.randint(0, V, (2, 10))
    loss = model(ids).logsumexp(-1).mean()
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def _fla_naive():
    try:
        from fla.ops.rwkv6.chunk_naive import naive_chunk_rwkv6
        from fla.ops.rwkv6.recurrent_naive import naive_recurrent_rwkv6
    except Exception as error:  # fla pulls in triton at import; any failure means "not here"
        pytest.skip(f"flash-linear-attention's naive RWKV-6 references not importable: {error}")
    return naive_recurrent_rwkv6, naive_chunk_rwkv6


def test_against_flash_linear_attention_naive_references():
    """fla's pure-PyTorch references (layout [B, H, T, N], w = log-decay, scale 1, fp32)."""
    naive_recurrent, naive_chunk = _fla_naive()
    inputs = wkv_inputs(steps=32, size=8, dtype=torch.float32, strength=1.0)
    expected, _ = naive_recurrent(*inputs, scale=1.0)
    expected_grads = torch.autograd.grad(expected.square().sum(), inputs)
    for form in (wkv_recurrent, lambda *xs: wkv_chunked(*xs, 8)):
        y = form(*inputs)
        torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
        grads = torch.autograd.grad(y.square().sum(), inputs)
        for grad, expected_grad in zip(grads, expected_grads, strict=True):
            torch.testing.assert_close(grad, expected_grad, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        torch.testing.assert_close(
            naive_chunk(*inputs, chunk_size=16), expected, rtol=1e-4, atol=1e-4
        )


# -- the model ----------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["chunked", "recurrent"])
@pytest.mark.parametrize("version", [5, 6])
def test_model_is_causal(form, version):
    model = trained_like(tiny(form=form, version=version, chunk_size=4))
    ids = torch.randint(0, V, (2, 12), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 7] = (changed[:, 7] + 1) % V
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7], rtol=0, atol=0)
    assert (before[:, 7:] - after[:, 7:]).abs().amax(dim=(0, 2)).min() > 1e-6


def test_model_forms_agree_on_logits_and_gradients():
    chunked = trained_like(tiny(form="chunked", chunk_size=4)).double()
    recurrent = tiny(form="recurrent").double()
    recurrent.load_state_dict(chunked.state_dict())
    ids = torch.randint(0, V, (3, 15), generator=torch.Generator().manual_seed(0))
    logits = []
    for model in (chunked, recurrent):
        out = model(ids)
        out.logsumexp(-1).sum().backward()
        logits.append(out)
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-10, atol=1e-10)
    for (name, a), b in zip(chunked.named_parameters(), recurrent.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-8, atol=1e-10, msg=name)


def test_init_silences_residual_branches_and_sets_layer_scales():
    """Zero output maps: at init the model is head(ln_out(ln0(embedding)))."""
    model = tiny(layers=3)
    ids = torch.randint(0, V, (2, 6))
    with torch.no_grad():
        direct = model.head(model.ln_out(model.blocks[0].ln0(model.embedding(ids))))
        torch.testing.assert_close(model(ids), direct)
    assert model.embedding.weight.abs().max() <= 1e-4
    for layer, block in enumerate(model.blocks):
        assert torch.allclose(block.att.ln_x.weight, torch.tensor(((layer + 1) / 3) ** 0.7))
        decay = block.att.time_decay
        assert decay.min() == -6 and math.isclose(decay.max().item(), -1, abs_tol=1e-6)
    head = model.head.weight  # [V, d] with V < d: orthonormal rows, gain 0.5
    torch.testing.assert_close(head @ head.T, torch.eye(V) * 0.25, atol=1e-6, rtol=0)
    big_head = RWKVModel(RWKVConfig(vocab_size=40, hidden=16, head_size=8)).head.weight
    torch.testing.assert_close(
        big_head.T @ big_head, torch.eye(16) * 0.25 * 40 / 16, atol=1e-5, rtol=0
    )
    key = model.blocks[0].att.key.weight
    torch.testing.assert_close(key @ key.T, torch.eye(16) * 0.01, atol=1e-6, rtol=0)


def test_v6_starts_as_v5_and_departs_once_its_loras_have_weight():
    """The v6 LoRA down-projections start at zero: with v5's weights, v6 computes v5 exactly."""
    v5 = trained_like(tiny(version=5))
    v6 = tiny(version=6)
    state = v5.state_dict()
    for layer in range(2):
        key = f"blocks.{layer}.att.mix"
        state[key] = torch.cat([v6.state_dict()[key][:1], state[key]])  # v6 adds the w row
    missing, unexpected = v6.load_state_dict(state, strict=False)
    assert not unexpected and all("lora" in name or "mix_x" in name for name in missing)
    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(v6(ids), v5(ids), rtol=1e-6, atol=1e-6)
        trained_like(v6)
        assert (v6(ids) - v5(ids)).abs().max() > 1e-3


def test_v5_decay_is_static_and_v6_decay_follows_the_input(monkeypatch):
    seen = []
    original = rwkv.wkv

    def spy(r, k, v, log_decay, *rest):
        seen.append(log_decay.detach())
        return original(r, k, v, log_decay, *rest)

    monkeypatch.setattr(rwkv, "wkv", spy)
    ids = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        trained_like(tiny(version=5))(ids)
        trained_like(tiny(version=6))(ids)
    decay5, decay6 = seen[0], seen[2]  # the first layer of each model, [B, T, H, N]
    assert torch.equal(decay5, decay5[:1, :1].expand_as(decay5))
    assert decay6.std(dim=(0, 1)).min() > 0


def test_a_few_adamw_steps_reduce_the_loss():
    """Learn 'next token = current + 1 (mod V)', which needs the current token only."""
    model = tiny(layers=1).train()
    optimizer = torch.optim.AdamW(
        model.param_groups(SimpleNamespace(lr=3e-3, weight_decay=0.01)), lr=3e-3
    )
    ids = torch.randint(0, V, (16, 1), generator=torch.Generator().manual_seed(0))
    ids = (ids + torch.arange(12)) % V
    losses = []
    for _ in range(40):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ids[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]


def test_param_groups_double_the_decay_lr_and_decay_only_matrices():
    model = tiny()
    groups = model.param_groups(SimpleNamespace(lr=1e-3, weight_decay=0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    listed = [names[id(p)] for group in groups for p in group["params"]]
    assert sorted(listed) == sorted(names.values())
    doubled = [g for g in groups if g.get("lr") == 2e-3]
    assert [names[id(p)] for p in doubled[0]["params"]] == [
        "blocks.0.att.time_decay",
        "blocks.1.att.time_decay",
    ]
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    assert "head.weight" in decayed and "blocks.0.att.key.weight" in decayed
    assert not any("lora" in n or "ln" in n or "mix" in n or "bonus" in n for n in decayed)


def test_backends_on_cpu():
    assert backend_names(tiny()) == {"wkv": "countlib-chunked"}
    assert backend_names(tiny(form="recurrent", backend="countlib")) == {
        "wkv": "countlib-recurrent"
    }
    model = tiny(backend="fla")
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        model(torch.zeros(1, 3, dtype=torch.long))


def test_fla_backend_reports_how_to_install(monkeypatch):
    monkeypatch.setattr(rwkv, "_import_fla", lambda: (None, "No module named 'fla'"))
    with pytest.raises(BackendUnavailableError, match="pip install"):
        rwkv.resolve_backend(RWKVConfig(vocab_size=V, backend="fla"), torch.device("cuda"))
    auto = RWKVConfig(vocab_size=V, backend="auto")
    choice = rwkv.resolve_backend(auto, torch.device("cuda"))
    assert choice.name == "countlib-chunked" and "No module named 'fla'" in choice.why


def test_bf16_autocast_keeps_the_wkv_in_fp32():
    model = trained_like(tiny())
    ids = torch.randint(0, V, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(ids)
    assert half.dtype == torch.bfloat16
    torch.testing.assert_close(half.float(), full, rtol=0.05, atol=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(ids).float().logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_positions_and_masks_are_ignored():
    model = tiny()
    plain = check_ignores_positions_and_masks(model, torch.randint(0, V, (2, 5)))
    assert plain.shape == (2, 5, V)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fla_kernel_matches_countlib_on_gpu():
    gpu_kernels("fla.ops.rwkv6")
    device = torch.device("cuda")
    inputs = [
        x.detach().to(device).requires_grad_()
        for x in wkv_inputs(batch=2, heads=2, steps=100, size=64, dtype=torch.float32, strength=1.0)
    ]
    r, k, v, log_decay, bonus = inputs
    swap = [x.transpose(1, 2) for x in (r, k, v, log_decay)]  # fla takes [B, T, H, N]
    y_fla = rwkv.wkv(*swap, bonus, "fla-chunk", 8).transpose(1, 2)
    y_ref = wkv_chunked(*inputs, 8)
    torch.testing.assert_close(y_fla, y_ref, rtol=2e-3, atol=2e-3)
    grad_out = torch.randn_like(y_ref)
    grads_fla = torch.autograd.grad(y_fla, inputs, grad_out)
    grads_ref = torch.autograd.grad(y_ref, inputs, grad_out)
    for got, expected in zip(grads_fla, grads_ref, strict=True):
        torch.testing.assert_close(got, expected, rtol=5e-3, atol=5e-3)
    model = trained_like(tiny(hidden=64, head_size=32)).to(device)
    assert backend_names(model) == {"wkv": "fla-chunk"}
    reference = tiny(hidden=64, head_size=32, backend="countlib").to(device)
    reference.load_state_dict(model.state_dict())
    ids = torch.randint(0, V, (2, 40), device=device)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), reference(ids), rtol=2e-3, atol=2e-3)
