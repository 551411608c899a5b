"""DeltaNet and Gated DeltaNet: the chunked WY form against the recurrence, negative eigenvalues,
backends. The checks every recurrent family gets are in tests/family_checks.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import countlib.models.deltanet as deltanet
from countlib.models import backend_names, build_model
from countlib.models.deltanet import (
    BackendUnavailableError,
    DeltaNetConfig,
    DeltaNetModel,
    GatedDeltaNetConfig,
    delta_rule_chunked,
    delta_rule_recurrent,
    segment_products,
)
from tests import family_checks as checks
from tests.conftest import gpu_kernels
from tests.family_checks import V, one_thread  # noqa: F401 (the fixture)

FAMILIES = ["deltanet", "gated_deltanet"]
TINY = {"layers": 2, "hidden": 16, "heads": 2, "chunk_size": 4}


def tiny(family: str = "deltanet", **options) -> DeltaNetModel:
    return checks.tiny_model(family, TINY, **options)


# -- the delta rule ------------------------------------------------------------------------------


def rule_inputs(gated: bool, negative: bool, steps: int = 23, dtype=torch.float64, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    shape = (2, 3, steps)
    q, k = (F.normalize(torch.randn(*shape, 4, generator=gen, dtype=dtype), dim=-1) for _ in "qk")
    v = torch.randn(*shape, 5, generator=gen, dtype=dtype)
    beta = torch.rand(shape, generator=gen, dtype=dtype) * (2 if negative else 1)
    log_alpha = -3 * torch.rand(shape, generator=gen, dtype=dtype) if gated else None
    inputs = [q, k, v, beta] + ([log_alpha] if gated else [])
    return [x.requires_grad_() for x in inputs]


def naive_delta_rule(q, k, v, beta, log_alpha=None):
    """S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T, o_t = S_t q_t, as written
    in the papers (S is [d_v, d_k]), one head at a time."""
    out = torch.zeros_like(v)
    eye = torch.eye(k.shape[-1], dtype=k.dtype)
    for b in range(q.shape[0]):
        for h in range(q.shape[1]):
            state = torch.zeros(v.shape[-1], k.shape[-1], dtype=k.dtype)
            for t in range(q.shape[2]):
                kt, alpha = k[b, h, t], 1.0 if log_alpha is None else log_alpha[b, h, t].exp()
                transition = alpha * (eye - beta[b, h, t] * torch.outer(kt, kt))
                state = state @ transition + beta[b, h, t] * torch.outer(v[b, h, t], kt)
                out[b, h, t] = state @ q[b, h, t]
    return out


def split(inputs):
    q, k, v, beta, *rest = inputs
    return q, k, v, beta, (rest[0] if rest else None)


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("negative", [False, True])
def test_both_forms_match_the_papers_recurrence(gated, negative):
    inputs = split(rule_inputs(gated, negative, steps=9))
    checks.check_forms_match_naive(
        naive_delta_rule, delta_rule_recurrent, delta_rule_chunked, inputs
    )


@pytest.mark.parametrize("gated", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 64])
def test_chunked_matches_recurrent_forward_and_gradients(gated, chunk_size):
    inputs = rule_inputs(gated, negative=True)
    weight = torch.randn(2, 3, 23, 5, dtype=torch.float64)
    checks.check_matches_reference(
        lambda *x: delta_rule_chunked(*split(x), chunk_size),
        lambda *x: delta_rule_recurrent(*split(x)),
        inputs,
        weight,
    )


def test_segment_products_by_hand():
    a = torch.tensor([0.5, -1.0, 0.0, 2.0])
    expected = torch.tensor(
        [[1.0, 0, 0, 0], [-1.0, 1, 0, 0], [0.0, 0, 1, 0], [0.0, 0, 2, 1]]  # a[s+1] ... a[r]
    )
    torch.testing.assert_close(segment_products(a), expected)


# -- the model -----------------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_model_is_causal(family):
    checks.check_causal(tiny(family))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.parametrize("conv_size", [0, 4])
def test_step_form_equals_chunked_forward(family, negative, conv_size):
    model = tiny(family, negative_eigenvalues=negative, conv_size=conv_size)
    checks.check_step_matches_forward(model)


def transition_eigenvalues(model: DeltaNetModel, x: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of every token's transition alpha_t (I - beta_t k_t k_t^T) in layer 0."""
    mixer = model.layers[0].mixer
    k = mixer.k_proj(x)
    if mixer.convs:
        k = mixer.convs[1](k)
    _, k, _ = mixer._qkv(k, k, k)
    beta, log_alpha = mixer.gates(x)
    alpha = torch.ones_like(beta) if log_alpha is None else log_alpha.exp()
    eye = torch.eye(k.shape[-1])
    outer = k.unsqueeze(-1) * k.unsqueeze(-2)
    matrices = alpha[..., None, None] * (eye - beta[..., None, None] * outer)
    return torch.linalg.eigvalsh(matrices)


#: float32 eigvalsh rounds by some ulps of the matrix norm (1), more or less by LAPACK build and
#: processor: 1e-6 (8 ulps) failed on one machine at -1.0000012.
EIGENVALUE_ROUNDING = 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_negative_eigenvalues_widen_the_transition_range_to_minus_one(family):
    x = torch.randn(4, 10, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for negative in (False, True):
            model = tiny(family, negative_eigenvalues=negative)
            beta, _ = model.layers[0].mixer.gates(x)
            assert beta.min() >= 0 and beta.max() <= (2 if negative else 1)
            # Large beta logits: beta -> 1 (eigenvalue 0) or, with the option, -> 2 (-1).
            model.layers[0].mixer.b_proj.weight.mul_(100)
            eigenvalues = transition_eigenvalues(model, x)
            low = -1 - EIGENVALUE_ROUNDING if negative else -EIGENVALUE_ROUNDING
            assert eigenvalues.min() >= low and eigenvalues.max() <= 1 + EIGENVALUE_ROUNDING
            if negative:
                assert eigenvalues.min() < -0.9
            else:
                assert eigenvalues.min() > -EIGENVALUE_ROUNDING


def test_gated_decay_is_data_dependent_and_in_the_unit_interval():
    model = tiny("gated_deltanet")
    x = torch.randn(2, 6, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _, log_alpha = model.layers[0].mixer.gates(x)
    assert log_alpha.shape == (2, 6, 2) and (log_alpha < 0).all()
    assert log_alpha.std(dim=(0, 1)).min() > 0
    assert tiny("deltanet").layers[0].mixer.gates(x)[1] is None


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_adamw_steps_reduce_the_loss(family):
    checks.check_training_reduces_loss(tiny(family, layers=1))


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_round_trip(family):
    checks.check_state_dict_round_trip(lambda: build_model(family, V, hidden=16, heads=2, layers=1))


def test_state_size_counts_head_states_and_conv_inputs():
    model = tiny(conv_size=4)  # 2 layers of 2 heads of 8 x 8, conv windows of 3 for q, k, v
    assert model.state_size() == 2 * (2 * 8 * 8 + 3 * 16 * 3)
    assert tiny(conv_size=0).state_size() == 2 * 2 * 8 * 8


def test_bf16_autocast_keeps_the_delta_rule_in_fp32():
    checks.check_autocast_keeps_recurrence_in_fp32(tiny("gated_deltanet"))


def test_config_defaults_and_errors():
    assert GatedDeltaNetConfig(vocab_size=V).gated and not DeltaNetConfig(vocab_size=V).gated
    config = DeltaNetConfig(vocab_size=V)
    assert (config.layers, config.hidden, config.heads, config.conv_size) == (2, 128, 4, 4)
    assert not config.negative_eigenvalues and config.backend == "auto"
    assert deltanet.ffn_width(128, None) == 344 and deltanet.ffn_width(128, 0) == 0
    with pytest.raises(ValueError, match="heads 3 must divide hidden 16"):
        DeltaNetConfig(vocab_size=V, hidden=16, heads=3)
    with pytest.raises(ValueError, match="choose from.*countlib.*fla"):
        DeltaNetConfig(vocab_size=V, backend="cuda")
    with pytest.raises(ValueError, match="conv_size must be >= 0"):
        DeltaNetConfig(vocab_size=V, conv_size=-1)
    for family in FAMILIES:
        checks.check_family_defaults(family)


def test_positions_and_masks_are_ignored():
    checks.check_ignores_positions_and_masks(tiny(), checks.random_ids(2, 5))


# -- backends ------------------------------------------------------------------------------------


def test_backends_on_cpu():
    assert backend_names(tiny()) == {"delta_rule": "countlib-chunked"}
    assert backend_names(tiny(backend="countlib")) == {"delta_rule": "countlib-chunked"}
    model = tiny(backend="fla")
    with pytest.raises(BackendUnavailableError, match="CUDA only.*pip install"):
        model(checks.random_ids(1, 3))


def test_fla_backend_reports_how_to_install(monkeypatch):
    monkeypatch.setattr(deltanet, "_import_fla", lambda: (None, None, "No module named 'fla'"))
    cuda = torch.device("cuda")
    with pytest.raises(BackendUnavailableError, match="No module named 'fla'.*pip install"):
        deltanet.resolve_backend(DeltaNetConfig(vocab_size=V, backend="fla"), cuda)
    auto = GatedDeltaNetConfig(vocab_size=V, backend="auto")
    choice = deltanet.resolve_backend(auto, cuda)
    assert choice.name == "countlib-chunked" and "No module named 'fla'" in choice.why


@pytest.mark.parametrize("family", FAMILIES)
def test_trains_through_the_trainer_on_mod10(family, tmp_path):
    checks.check_trains_on_mod10(family, {"hidden": 16, "heads": 2, "layers": 1}, tmp_path)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("negative", [False, True])
def test_fla_kernels_match_countlib_on_gpu(family, negative):
    gpu_kernels("fla.ops.gated_delta_rule")
    torch.manual_seed(0)
    options = {"hidden": 64, "heads": 2, "negative_eigenvalues": negative}
    reference = build_model(family, V, backend="countlib", **options).cuda().eval()
    model = build_model(family, V, backend="fla", **options).cuda().eval()
    model.load_state_dict(reference.state_dict())
    assert backend_names(model) == {"delta_rule": "fla-chunk"}
    ids = torch.randint(0, V, (2, 100), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        torch.testing.assert_close(model(ids).float(), reference(ids).float(), rtol=3e-2, atol=3e-2)
