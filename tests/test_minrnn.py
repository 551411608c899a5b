"""minGRU and minLSTM: the log-space parallel scan against the sequential mode."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from countlib.models import build_model
from countlib.models.minrnn import MinGRUConfig, MinLSTMConfig, g, log_g, log_space_scan
from tests import family_checks as checks
from tests.family_checks import V, one_thread  # noqa: F401 (the fixture)

FAMILIES = ["mingru", "minlstm"]
TINY = {"layers": 2, "hidden": 16, "chunk_size": 4}


def tiny(family: str = "mingru", **options):
    return checks.tiny_model(family, TINY, **options)


def linear_recurrence(a, b):
    """h_t = a_t h_{t-1} + b_t from h_0 = 0, one step at a time."""
    h, out = torch.zeros_like(a[:, 0]), []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("chunk_size", [1, 3, 8, 64])
def test_log_space_scan_matches_the_recurrence_forward_and_gradients(chunk_size):
    gen = torch.Generator().manual_seed(0)
    log_a = -F.softplus(torch.randn(2, 17, 5, generator=gen, dtype=torch.float64) * 3)
    log_b = torch.randn(2, 17, 5, generator=gen, dtype=torch.float64) * 2
    inputs = [log_a.requires_grad_(), log_b.requires_grad_()]
    weight = torch.randn(2, 17, 5, dtype=torch.float64)
    checks.check_matches_reference(
        lambda a, b: log_space_scan(a, b, chunk_size),
        lambda a, b: linear_recurrence(a.exp(), b.exp()),
        inputs,
        weight,
    )


def test_g_is_positive_continuous_and_its_log_is_finite():
    x = torch.linspace(-200, 200, 4001, dtype=torch.float64)
    assert (g(x) > 0).all() and g(torch.tensor(0.0)) == 0.5
    torch.testing.assert_close(log_g(x[x > -30]), g(x[x > -30]).log())
    assert torch.isfinite(log_g(x)).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_log_coefficients_are_the_logs_of_the_sequential_ones(family):
    mixer = tiny(family).double().layers[0].mixer
    x = torch.randn(3, 7, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        log_a, log_b = mixer.log_coefficients(x)
        a, b = mixer.coefficients(x)
    torch.testing.assert_close(log_a.exp(), a)
    torch.testing.assert_close(log_b.exp(), b)
    assert (a > 0).all() and (a < 1).all()  # minGRU: 1 - z; minLSTM: f / (f + i)


@pytest.mark.parametrize("family", FAMILIES)
def test_model_is_causal(family):
    checks.check_causal(tiny(family))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("expand", [1, 2])
def test_step_form_equals_parallel_forward(family, expand):
    checks.check_step_matches_forward(tiny(family, expand=expand))


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_adamw_steps_reduce_the_loss(family):
    checks.check_training_reduces_loss(tiny(family, layers=1))


@pytest.mark.parametrize("family", FAMILIES)
def test_state_dict_round_trip(family):
    checks.check_state_dict_round_trip(lambda: build_model(family, V, hidden=16, layers=1))


def test_state_size_is_one_vector_per_layer():
    assert tiny().state_size() == 2 * 16
    assert tiny("minlstm", expand=2).state_size() == 2 * 32


def test_bf16_autocast_keeps_the_scan_in_fp32():
    checks.check_autocast_keeps_recurrence_in_fp32(tiny("minlstm"))


def test_config_defaults_and_errors():
    assert MinGRUConfig(vocab_size=V).cell == "gru" and MinLSTMConfig(vocab_size=V).cell == "lstm"
    with pytest.raises(ValueError, match="unknown min-RNN cell"):
        MinGRUConfig(vocab_size=V, cell="rnn")
    with pytest.raises(ValueError, match="expand must be >= 1"):
        MinGRUConfig(vocab_size=V, expand=0)
    for family in FAMILIES:
        checks.check_family_defaults(family)


@pytest.mark.parametrize("family", FAMILIES)
def test_trains_through_the_trainer_on_mod10(family, tmp_path):
    checks.check_trains_on_mod10(family, {"hidden": 16, "layers": 1}, tmp_path)
