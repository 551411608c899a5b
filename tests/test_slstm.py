"""sLSTM: the stabilised cell against the unstabilised one, block-diagonal heads, the model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from countlib.models import build_model
from countlib.models.slstm import SLSTMConfig, slstm_cell
from tests import family_checks as checks
from tests.family_checks import V, one_thread  # noqa: F401 (the fixture)

TINY = {"layers": 2, "hidden": 16, "heads": 2}


def tiny(**options):
    return checks.tiny_model("slstm", TINY, **options)


def unstabilised(pre_steps):
    """The paper's exp-input-gate cell without stabiliser (float64, moderate pre-activations):
    c_t = f c + exp(i~) z, n_t = f n + exp(i~), h_t = o c / n."""
    c = n = torch.zeros_like(pre_steps[0][:, 0])
    out = []
    for pre in pre_steps:
        z, i, f, o = pre.unbind(1)
        c = torch.sigmoid(f) * c + i.exp() * torch.tanh(z)
        n = torch.sigmoid(f) * n + i.exp()
        out.append(torch.sigmoid(o) * c / n)
    return out


def run_cell(pre_steps):
    state = tuple(torch.zeros_like(pre_steps[0][:, 0]) for _ in range(4))
    out = []
    for pre in pre_steps:
        state = slstm_cell(pre, state)
        out.append(state[3])
    return out


def test_the_stabiliser_changes_nothing_but_the_scale_of_c_and_n():
    gen = torch.Generator().manual_seed(0)
    pre = [torch.randn(3, 4, 2, 5, generator=gen, dtype=torch.float64) * 3 for _ in range(12)]
    for got, want in zip(run_cell(pre), unstabilised(pre), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_extreme_input_gates_stay_finite_in_fp32():
    """exp(200) overflows fp32; a first token whose input gate is far below its forget gate
    must not give 0 / 0 either."""

    def pre_activations(input_gate: float, forget_gate: float) -> torch.Tensor:
        pre = torch.ones(1, 4, 1, 3)
        pre[:, 1], pre[:, 2] = input_gate, forget_gate
        return pre.requires_grad_()

    pre = [pre_activations(-200, 50), pre_activations(200, 50), pre_activations(-200, -50)]
    h = run_cell(pre)
    assert all(torch.isfinite(x).all() for x in h)
    torch.stack(h).sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in pre)


def test_heads_are_separate_memories():
    """Block-diagonal recurrence: perturbing one head's state leaves the other head's next
    pre-activations, hence its output, unchanged."""
    mixer = tiny().double().layers[0].mixer
    x = torch.randn(2, 16, dtype=torch.float64)
    state = tuple(torch.rand(2, 2, 8, dtype=torch.float64) + 0.5 for _ in range(4))
    moved = tuple(s.clone() for s in state)
    moved[3][:, 0] += 1.0  # head 0's h
    with torch.no_grad():
        a, b = mixer._cell(mixer._pre(x), state), mixer._cell(mixer._pre(x), moved)
    torch.testing.assert_close(a[3][:, 1], b[3][:, 1], rtol=0, atol=0)
    assert (a[3][:, 0] - b[3][:, 0]).abs().max() > 1e-6


def test_model_is_causal():
    checks.check_causal(tiny())


def test_step_form_equals_forward():
    checks.check_step_matches_forward(tiny())


def test_a_few_adamw_steps_reduce_the_loss():
    checks.check_training_reduces_loss(tiny(layers=1))


def test_state_dict_round_trip():
    checks.check_state_dict_round_trip(
        lambda: build_model("slstm", V, hidden=16, heads=2, layers=1)
    )


def test_state_size_counts_c_n_m_h():
    assert tiny().state_size() == 2 * 4 * 16


def test_init_has_positive_forget_biases():
    bias = tiny().layers[0].mixer.gates.bias.view(4, 2, 8)
    assert (bias[2] >= 3).all() and (bias[2] <= 6).all() and (bias[1] == 0).all()


def test_bf16_autocast_keeps_the_cell_in_fp32():
    checks.check_autocast_keeps_recurrence_in_fp32(tiny())


def test_config_defaults_and_errors():
    config = SLSTMConfig(vocab_size=V)
    assert (config.layers, config.hidden, config.heads, config.ffn) == (2, 128, 4, 176)
    with pytest.raises(ValueError, match="heads 3 must divide hidden 16"):
        SLSTMConfig(vocab_size=V, hidden=16, heads=3)
    checks.check_family_defaults("slstm")


def test_positions_and_masks_are_ignored():
    model = tiny()
    plain = checks.check_ignores_positions_and_masks(model, torch.randint(0, V, (2, 5)))
    assert F.softmax(plain, -1).sum(-1).allclose(torch.ones(2, 5))


def test_trains_through_the_trainer_on_mod10(tmp_path):
    checks.check_trains_on_mod10("slstm", {"hidden": 16, "heads": 2, "layers": 1}, tmp_path)
