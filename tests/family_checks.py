"""Checks shared by the tests of the model families: the tiny-model builder, causality, the
recurrent form against the parallel/chunked one, a form against its reference (outputs and
gradients), a few training steps, the state dict, autocast, the trainer on mod-10 and the
registry's defaults. Test modules import them (``from tests import family_checks as checks``),
and ``one_thread`` by name, so that the autouse fixture applies to them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
import torch.nn.functional as F

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import build_model, get_family
from countlib.train import train

V = 11


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models are dispatch-bound: extra threads only add contention on shared CPUs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_model(family: str, defaults: dict, **options) -> torch.nn.Module:
    """``family`` over ``V`` tokens with ``defaults | options``, from seed 0, in eval mode."""
    torch.manual_seed(0)
    return build_model(family, V, **(defaults | options)).eval()


def random_ids(batch: int = 3, length: int = 13, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def check_causal(model: torch.nn.Module, at: int = 5) -> None:
    """Changing token ``at`` leaves every earlier logit exactly as it was, and moves later ones."""
    ids = random_ids(2, 9)
    changed = ids.clone()
    changed[:, at] = (ids[:, at] + 1) % V
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :at], b[:, :at], rtol=0, atol=0)
    assert (a[:, at:] - b[:, at:]).abs().amax(-1).min() > 1e-7


def stepped_logits(model: torch.nn.Module, ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """The recurrent form over ``ids``: logits [B, T, V] and the final state."""
    state = model.init_state(ids.shape[0])
    logits = []
    for t in range(ids.shape[1]):
        out, state = model.step(ids[:, t], state)
        logits.append(out)
    return torch.stack(logits, dim=1), state


def check_step_matches_forward(model: torch.nn.Module, length: int = 13) -> None:
    """The recurrent form equals the parallel/chunked one: float64 to 1e-10, float32 to 1e-4;
    its state has ``state_size()`` floats per sequence."""
    ids = random_ids(3, length)
    for dtype, tol in [(torch.float64, 1e-10), (torch.float32, 1e-4)]:
        model = model.to(dtype)
        with torch.no_grad():
            full = model(ids)
            stepped, state = stepped_logits(model, ids)
        assert full.shape == (3, length, V) and full.dtype == dtype
        torch.testing.assert_close(stepped, full, rtol=tol, atol=tol)
        assert sum(s.numel() for layer in state for s in layer) == 3 * model.state_size()
    model.float()


def check_forms_match_naive(
    naive: Callable, recurrent: Callable, chunked: Callable, inputs: Sequence[torch.Tensor]
) -> None:
    """Without gradients, the recurrent form and the chunked one (chunks of 4) both give the
    papers' recurrence ``naive`` as written (default tolerances)."""
    with torch.no_grad():
        expected = naive(*inputs)
        torch.testing.assert_close(recurrent(*inputs), expected)
        torch.testing.assert_close(chunked(*inputs, 4), expected)


def check_matches_reference(
    form: Callable,
    reference: Callable,
    inputs: Sequence[torch.Tensor],
    weight: torch.Tensor,
    names: Sequence[str] | None = None,
) -> torch.Tensor:
    """``form(*inputs)`` equals ``reference(*inputs)`` to 1e-10, and the gradients of their
    ``weight``-ed sums with respect to ``inputs`` agree to 1e-9 (a failure names the input by
    ``names``, where given). Returns ``form``'s output."""
    y_ref = reference(*inputs)
    y = form(*inputs)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    grads = torch.autograd.grad((y * weight).sum(), inputs)
    grads_ref = torch.autograd.grad((y_ref * weight).sum(), inputs)
    for i, (got, want) in enumerate(zip(grads, grads_ref, strict=True)):
        msg = None if names is None else f"grad {names[i]}"
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=msg)
    return y


def check_training_reduces_loss(
    model: torch.nn.Module, steps: int = 8, lr: float = 1e-2, factor: float = 0.9
) -> None:
    """A few AdamW steps on 'next token = current + 1 (mod V)' lower the loss below ``factor``
    times its start, with finite gradients for every parameter."""
    model.train()
    ids = (random_ids(8, 1) + torch.arange(12)) % V
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(ids[:, :-1]).reshape(-1, V), ids[:, 1:].reshape(-1))

    start = loss().item()
    for _ in range(steps):
        optimizer.zero_grad()
        value = loss()
        value.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        optimizer.step()
    assert loss().item() < factor * start


def check_state_dict_round_trip(make: Callable[[], torch.nn.Module]) -> None:
    """A fresh model (other seed) given a trained one's state dict gives its logits exactly."""
    model = make()
    check_training_reduces_loss(model, steps=2, factor=1.0)
    model.eval()
    torch.manual_seed(5)
    clone = make().eval()
    ids = random_ids(2, 9)
    with torch.no_grad():
        assert not torch.allclose(model(ids), clone(ids))
        clone.load_state_dict(model.state_dict())
        torch.testing.assert_close(clone(ids), model(ids), rtol=0, atol=0)


def check_autocast_keeps_recurrence_in_fp32(model: torch.nn.Module) -> None:
    ids = random_ids(2, 20)
    with torch.no_grad():
        reference = model(ids)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(ids)
    assert torch.isfinite(mixed).all()
    assert (mixed.float() - reference).abs().max() < 0.05 * reference.abs().max() + 0.05


def check_ignores_positions_and_masks(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Position ids and an attention mask leave every logit exactly as it was; returns them."""
    with torch.no_grad():
        plain = model(ids)
        positions = torch.arange(ids.shape[1]).expand(*ids.shape)
        extra = model(ids, position_ids=positions, attention_mask=ids > 3)
    torch.testing.assert_close(plain, extra, rtol=0, atol=0)
    return plain


def check_trains_on_mod10(family: str, options: dict, tmp_path) -> None:
    """Five steps of the project's trainer on the paper's mod-10 task, then its evaluation."""
    config = RunConfig(
        task="mod10",
        model=family,
        model_options=options,
        optim=OptimConfig(steps=5, batch_size=4),
        eval=EvalConfig(every=5, batch_size=512),
    )
    result = train(config, tmp_path, device="cpu", progress=False)
    assert result.status == "complete"
    assert 0 <= result.summary["final"]["ood"] <= 1
    model = build_model(family, 10, **options)
    assert result.summary["state_size"] == model.state_size()


def check_family_defaults(family: str) -> None:
    """The registry's CPU defaults for the new recurrent families (see countlib/models)."""
    spec = get_family(family)
    assert (spec.lr, spec.weight_decay, spec.warmup_steps, spec.steps) == (1e-3, 0.0, 0, 10_000)
    assert spec.betas == (0.9, 0.999) and spec.l2wrap == 0.0
