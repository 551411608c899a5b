from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models.positions import (
    FLAGS,
    PE_SCHEMES,
    PositionScheme,
    alibi_slopes,
    parse_pe,
    sinusoid_table,
    t5_buckets,
)
from countlib.models.transformer import AttentionRecord, Transformer, TransformerConfig
from countlib.train import train
from tests.family_checks import one_thread  # noqa: F401 (the fixture)

V = 13
T = 12


def _undeclared(name: str, scheme: type[PositionScheme]) -> str | None:
    """What a registered scheme fails to declare of `FLAGS`, naming it, or None."""
    missing = [flag for flag in FLAGS if not isinstance(getattr(scheme, flag, None), bool)]
    if not missing:
        return None
    return f"positional scheme {name!r} ({scheme.__name__}) does not declare {', '.join(missing)}"


#: The registered schemes that declare every flag: one that does not fails
#: `test_every_registered_scheme_declares_every_flag`, by name, instead of this module's import.
DECLARED = {name: s for name, s in PE_SCHEMES.items() if _undeclared(name, s) is None}


def _combinations() -> list[str]:
    """Each attention scheme with one input scheme in turn, the last one with all of them: every
    scheme that combines is tried in a combination, without testing every combination."""
    inputs = [name for name, s in DECLARED.items() if s.combines and not s.attention]
    attention = [name for name, s in DECLARED.items() if s.combines and s.attention]
    pairs = [f"{inputs[i % len(inputs)]}+{name}" for i, name in enumerate(attention[:-1])]
    return pairs + ["+".join([*inputs, attention[-1]])]


def _any(pe: str, flag: str) -> bool:
    """Whether any scheme of ``pe`` has ``flag`` set."""
    return any(getattr(scheme, flag) for scheme in parse_pe(pe))


#: Every registered scheme alone, then combinations: a new scheme is tested by registering it.
ALL_PES = [*DECLARED, *_combinations()]
INTEGER_PES = [pe for pe in ALL_PES if not _any(pe, "float_positions")]
#: Schemes without a table that read integer ids see only their differences.
RELATIVE_PES = [pe for pe in INTEGER_PES if not _any(pe, "table")]
TABLE_PES = [pe for pe in INTEGER_PES if _any(pe, "table")]
BIDIRECTIONAL_PES = [name for name, s in DECLARED.items() if not s.causal_only]


def tiny(pe: str = "nope", **options) -> Transformer:
    torch.manual_seed(0)
    options = {"layers": 2, "hidden": 16, "heads": 2, "max_positions": 64} | options
    return Transformer(TransformerConfig(vocab_size=V, pe=pe, **options)).eval()


def positions(pe: str, batch: int, length: int, start: int = 3) -> torch.Tensor:
    """Shifted integer ids, or the scalar_shift values (start + j) / P for spe."""
    ids = torch.arange(start, start + length).expand(batch, length)
    return ids / 64.0 if _any(pe, "float_positions") else ids.clone()


def parameters(model: torch.nn.Module, trainable: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable)


# -- architecture and initialisation --------------------------------------------------------------


@pytest.mark.parametrize(
    "layers, hidden, heads, vocab, pe, expected",
    [
        (1, 1024, 8, 103, "nope", 12_809_216),
        (2, 1024, 8, 103, "nope", 25_405_440),
        (4, 1024, 8, 103, "nope", 50_597_888),
        (2, 1024, 8, 54, "nope", 25_305_088),
        (1, 1024, 8, 103, "ape", 12_809_216 + 128 * 1024),
        (1, 1024, 8, 103, "spe", 12_809_216 - 103),
        # The ICLR small models of seed-spec 2.1.1 (they pin vocabulary 103, NoPE).
        (4, 32, 8, 103, "nope", 57_472),
        (4, 128, 8, 103, "nope", 819_712),
        (4, 4, 1, 103, "nope", 1_808),
    ],
)
def test_parameter_counts_match_the_original_logs(layers, hidden, heads, vocab, pe, expected):
    config = TransformerConfig(vocab, layers=layers, hidden=hidden, heads=heads, pe=pe)
    assert parameters(Transformer(config)) == expected


def test_initialisation_follows_gpt2():
    model = Transformer(TransformerConfig(V, layers=4, hidden=64, heads=4, pe="ape"))
    block = model.blocks[0]
    assert torch.all(block.attn.c_attn.bias == 0) and torch.all(block.mlp.c_fc.bias == 0)
    assert torch.all(block.ln_1.weight == 1) and torch.all(block.ln_1.bias == 0)
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.1)
    assert model.pos_emb.weight.std().item() == pytest.approx(0.02, rel=0.1)
    residual_std = 0.02 / math.sqrt(2 * 4)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.1)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.head.bias is None


def test_layer_scaling_divides_logits_by_layer_index_plus_one():
    ids = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        scaled = tiny(layers=3).attention_maps(ids)
        plain = tiny(layers=3, scale_by_layer=False).attention_maps(ids)
    # Layer 0's factor is 1, so layer 1 sees the same input in both models: exactly halved.
    torch.testing.assert_close(scaled[0].scores, plain[0].scores, rtol=0, atol=0)
    torch.testing.assert_close(scaled[1].scores, plain[1].scores / 2)
    assert not torch.allclose(scaled[2].scores, plain[2].scores)


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pe", ["rotary", "nope+rope", "spe+ape", "rope+alibi", "ape+ape", "sine+spe", ""]
)
def test_undefined_positional_schemes_are_errors_listing_valid_ones(pe):
    with pytest.raises(ValueError, match="valid: nope, spe, ape, sine, rope, alibi, t5"):
        TransformerConfig(V, pe=pe)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"hidden": 10, "heads": 4}, "divisible"),
        ({"attention": "flash"}, "sdpa"),
        ({"ape_init": "zeros"}, "normal"),
        ({"ape_frozen": True}, "need 'ape'"),
        ({"pe": "rope", "hidden": 6, "heads": 2}, "even head dimension"),
        ({"pe": "alibi", "causal": False}, "causal=False is not supported"),
        ({"pe": "ape+t5", "causal": False}, "use nope, spe, ape, sine or rope"),
    ],
)
def test_bad_options_are_errors(options, message):
    with pytest.raises(ValueError, match=message):
        TransformerConfig(V, **options)


@pytest.mark.parametrize(
    "pe, scheme",
    [("nope", "none"), ("spe", "scalar_shift"), ("sine", "shift"), ("ape", "shift")]
    + [("rope", "shift"), ("alibi", "shift"), ("t5", "shift"), ("ape+rope", "shift")],
)
def test_default_position_scheme(pe, scheme):
    assert TransformerConfig(V, pe=pe).default_position_scheme == scheme


# -- causality ------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("pe", ALL_PES)
def test_output_at_t_depends_only_on_inputs_up_to_t(pe, attention):
    assert_causal(tiny(pe, attention=attention), pe)


def assert_causal(model: Transformer, pe: str) -> None:
    """Changing tokens and ids from a cut on leaves every earlier output exactly as it was,
    and changes every later one (helpers and padding in the batch)."""
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, V, (3, T), generator=gen)
    pos = positions(pe, 3, T)
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[1, [2, 5]] = False  # helpers: queries, never keys
    mask[2, 9:] = False  # padding
    cut = 6
    ids2, pos2 = ids.clone(), pos.clone()
    ids2[:, cut:] = (ids2[:, cut:] + 1) % V
    pos2[:, cut:] = pos2[:, cut:] + 1
    with torch.no_grad():
        a = model(ids, position_ids=pos, attention_mask=mask)
        b = model(ids2, position_ids=pos2, attention_mask=mask)
    torch.testing.assert_close(a[:, :cut], b[:, :cut], rtol=0, atol=0)
    assert (a[:, cut:] - b[:, cut:]).abs().amax(dim=-1).min() > 1e-4


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("pe", BIDIRECTIONAL_PES)
def test_without_causal_mask_early_outputs_see_later_tokens(pe, attention):
    model = tiny(pe, causal=False, attention=attention)
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(2))
    pos = positions(pe, 2, T)
    later = ids.clone()
    later[:, -1] = (later[:, -1] + 1) % V
    with torch.no_grad():
        a = model(ids, position_ids=pos)
        b = model(later, position_ids=pos)
    # With the mask this difference is exactly zero (test above); any change shows the leak.
    assert (a[:, 0] - b[:, 0]).abs().amax(dim=-1).min() > 0


@pytest.mark.parametrize("pe", BIDIRECTIONAL_PES)
def test_without_causal_mask_padding_is_still_never_a_key(pe):
    model = tiny(pe, causal=False)
    ids = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(4))
    pos = positions(pe, 1, T)
    mask = torch.ones(1, T, dtype=torch.bool)
    mask[0, 8:] = False
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 1) % V
    with torch.no_grad():
        a = model(ids, position_ids=pos, attention_mask=mask)
        b = model(changed, position_ids=pos, attention_mask=mask)
    torch.testing.assert_close(a[:, :8], b[:, :8], rtol=0, atol=0)


@pytest.mark.parametrize("pe", BIDIRECTIONAL_PES)
def test_without_causal_mask_sdpa_and_explicit_agree(pe):
    sdpa = tiny(pe, causal=False)
    explicit = tiny(pe, causal=False, attention="explicit")
    explicit.load_state_dict(sdpa.state_dict())
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(5))
    pos = positions(pe, 2, T)
    with torch.no_grad():
        torch.testing.assert_close(
            sdpa(ids, position_ids=pos), explicit(ids, position_ids=pos), rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("pe", ALL_PES)
def test_every_scheme_actually_uses_positions_except_nope(pe):
    model = tiny(pe)
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(3))
    pos = positions(pe, 2, T)
    # Spread the ids apart: only relative schemes notice nothing under a plain shift.
    spread = pos * 2
    with torch.no_grad():
        same = torch.allclose(
            model(ids, position_ids=pos), model(ids, position_ids=spread), atol=1e-6
        )
    assert same == (not _any(pe, "reads_positions"))


@pytest.mark.parametrize("pe", INTEGER_PES)
def test_shift_augmentation_changes_ids_not_causal_structure(pe):
    """Shifting every id by s: relative schemes give the same logits; absolute ones differ but
    the output at t still only sees t and before."""
    model = tiny(pe)
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(4))
    base, shifted = positions(pe, 2, T, start=0), positions(pe, 2, T, start=37)
    with torch.no_grad():
        a, b = model(ids, position_ids=base), model(ids, position_ids=shifted)
        assert torch.allclose(a, b, atol=1e-5) == (pe in RELATIVE_PES)
        ids2 = ids.clone()
        ids2[:, 7] = (ids2[:, 7] + 1) % V
        c = model(ids2, position_ids=shifted)
    torch.testing.assert_close(b[:, :7], c[:, :7], rtol=0, atol=0)


def test_rope_scores_depend_only_on_position_differences():
    model = tiny("rope", layers=1)
    ids = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(5))
    # Non-contiguous ids: the property must hold for every pair, not just neighbours.
    pos = torch.tensor([[0, 1, 3, 4, 8, 9, 10, 15, 16, 20, 21, 30]])
    with torch.no_grad():
        base = model.attention_maps(ids, position_ids=pos)[0].scores
        shifted = model.attention_maps(ids, position_ids=pos + 41)[0].scores
        stretched = model.attention_maps(ids, position_ids=pos * 2)[0].scores
        unrotated = tiny("nope", layers=1).attention_maps(ids)[0].scores
    torch.testing.assert_close(base, shifted, rtol=0, atol=1e-5)
    assert not torch.allclose(base, stretched, atol=1e-3)
    # Same weights without RoPE: the rotation really changes scores off the diagonal.
    assert not torch.allclose(base, unrotated, atol=1e-3)
    torch.testing.assert_close(
        base.diagonal(dim1=-2, dim2=-1), unrotated.diagonal(dim1=-2, dim2=-1), rtol=0, atol=1e-5
    )


# -- attention paths and masks --------------------------------------------------------------------


@pytest.mark.parametrize("identity", [False, True])
@pytest.mark.parametrize("pe", ALL_PES)
def test_sdpa_and_explicit_attention_agree(pe, identity):
    sdpa = tiny(pe, must_attend_to_identity=identity)
    explicit = tiny(pe, must_attend_to_identity=identity, attention="explicit")
    explicit.load_state_dict(sdpa.state_dict())
    ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(6))
    pos = positions(pe, 3, T)
    mask = torch.ones(3, T, dtype=torch.bool)
    mask[0, 0] = False  # a helper with no key at all (unless it may attend to itself)
    mask[1, 3::2] = False
    mask[2, 8:] = False
    with torch.no_grad():
        for attention_mask in (mask, None):
            a = sdpa(ids, position_ids=pos, attention_mask=attention_mask)
            b = explicit(ids, position_ids=pos, attention_mask=attention_mask)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("pe", ALL_PES)
def test_queries_without_any_key_stay_finite(pe, attention):
    model = tiny(pe, attention=attention).train()
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(7))
    mask = torch.ones(2, T, dtype=torch.bool)
    mask[0] = False  # a row of pure padding
    mask[1, :4] = False  # leading helpers have nothing to attend to
    logits = model(ids, position_ids=positions(pe, 2, T), attention_mask=mask)
    logits[1, 4:].sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_must_attend_to_identity_lets_a_masked_helper_attend_to_itself():
    ids = torch.randint(0, V, (1, T), generator=torch.Generator().manual_seed(8))
    mask = torch.ones(1, T, dtype=torch.bool)
    mask[0, [0, 5]] = False  # helper at 0 has no other key; helper at 5 has earlier keys
    with torch.no_grad():
        off = tiny().attention_maps(ids, attention_mask=mask)[0].probs
        on = tiny(must_attend_to_identity=True).attention_maps(ids, attention_mask=mask)[0].probs
    assert torch.all(off[0, :, 0] == 0)  # attends to nothing
    assert torch.all(on[0, :, 0, 0] == 1)  # attends only to itself
    assert torch.all(off[0, :, 5, 5] == 0) and torch.all(on[0, :, 5, 5] > 0)
    # Other queries still never see the masked helpers as keys.
    assert torch.all(on[0, :, 6:, [0, 5]] == 0)
    torch.testing.assert_close(on.sum(-1), torch.ones_like(on.sum(-1)))


def test_attention_maps_report_scores_and_probabilities_per_layer():
    model = tiny("rope", layers=3)
    ids = torch.randint(0, V, (2, T), generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        maps = model.attention_maps(ids, position_ids=positions("rope", 2, T))
    assert len(maps) == 3 and all(isinstance(m, AttentionRecord) for m in maps)
    probs = maps[0].probs
    assert probs.shape == (2, 2, T, T)
    assert torch.all(probs.triu(diagonal=1) == 0)
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    for layer in maps:
        expected = layer.scores.masked_fill(future, float("-inf")).softmax(-1)
        torch.testing.assert_close(layer.probs, expected)


# -- positional tables ----------------------------------------------------------------------------


def test_sinusoid_table_entries():
    table = sinusoid_table(128, 10)
    p, i = 37, 2
    assert table[p, 2 * i].item() == pytest.approx(math.sin(p * 10000 ** (-2 * i / 10)), abs=1e-6)
    assert table[p, 2 * i + 1].item() == pytest.approx(
        math.cos(p * 10000 ** (-2 * i / 10)), abs=1e-6
    )
    assert torch.all(table[0, 0::2] == 0) and torch.all(table[0, 1::2] == 1)


def test_sine_pe_scales_tokens_by_sqrt_d_then_adds_the_table():
    model = tiny("sine")
    ids = torch.tensor([[1, 2, 3]])
    pos = torch.tensor([[5, 6, 7]])
    expected = model.tok_emb(ids) * math.sqrt(16) + sinusoid_table(64, 16)[5:8]
    torch.testing.assert_close(model.embed(ids, pos), expected)


def test_spe_puts_the_position_value_in_the_last_channel():
    model = tiny("spe")
    assert model.tok_emb.weight.shape == (V, 15)
    ids = torch.tensor([[1, 2, 3]])
    values = torch.tensor([[0.25, 0.5, 0.75]])
    h = model.embed(ids, values)
    torch.testing.assert_close(h[..., -1], values)
    torch.testing.assert_close(h[..., :-1], model.tok_emb(ids))


@pytest.mark.parametrize("frozen", [False, True])
def test_ape_sine_init_survives_the_global_init(frozen):
    model = tiny("ape", ape_init="sine", ape_frozen=frozen).train()
    torch.testing.assert_close(model.pos_emb.weight, sinusoid_table(64, 16), rtol=0, atol=0)
    _train(model, "ape", steps=1)
    assert torch.equal(model.pos_emb.weight, sinusoid_table(64, 16)) == frozen


def test_frozen_ape_keeps_its_random_table():
    model = tiny("ape", ape_frozen=True).train()
    before = model.pos_emb.weight.clone()
    assert before.std().item() == pytest.approx(0.02, rel=0.2)
    _train(model, "ape", steps=2)
    assert torch.equal(model.pos_emb.weight, before)


@pytest.mark.parametrize("pe", TABLE_PES)
def test_position_ids_beyond_the_table_are_errors(pe):
    model = tiny(pe)
    ids = torch.zeros(1, T, dtype=torch.long)
    with pytest.raises(ValueError, match="max_positions = 64"):
        model(ids, position_ids=torch.arange(60, 60 + T)[None])
    with pytest.raises(ValueError, match="max_positions"):
        model(ids, position_ids=torch.arange(-1, T - 1)[None])
    model(ids, position_ids=torch.arange(64 - T, 64)[None])  # the last ids still fit


@pytest.mark.parametrize(
    "pe, pos, message",
    [
        ("spe", None, "scalar_shift"),
        ("spe", torch.arange(T)[None], "float position values"),
        ("rope", torch.arange(T)[None] / T, "integer position ids"),
        ("ape", torch.arange(T + 1)[None], "shape"),
    ],
)
def test_positions_of_the_wrong_kind_are_errors(pe, pos, message):
    with pytest.raises(ValueError, match=message):
        tiny(pe)(torch.zeros(1, T, dtype=torch.long), position_ids=pos)


@pytest.mark.parametrize("pe", RELATIVE_PES)
def test_extrapolation_beyond_training_lengths(pe):
    """Relative schemes have no table: lengths up to max_positions and ids past it all run."""
    model = tiny(pe, max_positions=64)
    ids = torch.randint(0, V, (2, 64), generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        full = model(ids, position_ids=torch.arange(64).expand(2, 64))
        beyond = model(ids, position_ids=torch.arange(100, 164).expand(2, 64))
    assert full.shape == (2, 64, V) and torch.isfinite(full).all()
    torch.testing.assert_close(full, beyond, rtol=0, atol=1e-4)


def test_alibi_slopes_and_t5_buckets():
    assert alibi_slopes(8).tolist() == pytest.approx([2 ** -(i + 1) for i in range(8)])
    assert alibi_slopes(6).tolist() == pytest.approx([2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3])
    buckets = t5_buckets(torch.arange(0, 400))
    assert buckets[:16].tolist() == list(range(16))
    assert torch.all(buckets.diff() >= 0)
    # As in T5 (32 causal buckets, max distance 128): the last bucket starts at distance 113.
    assert buckets[112].item() == 30 and torch.all(buckets[113:] == 31)


# -- training -------------------------------------------------------------------------------------


def _counting_batch(pe: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Tokens 1 (counted) and 2 (ignored); the label is the running count of token 1."""
    gen = torch.Generator().manual_seed(11)
    ids = 1 + torch.randint(0, 2, (16, T), generator=gen)
    labels = (ids == 1).cumsum(dim=1)
    return ids, labels, positions(pe, 16, T)


def _train(
    model: Transformer, pe: str, steps: int, lr: float = 1e-2, weight_decay: float = 0.01
) -> list[float]:
    ids, labels, pos = _counting_batch(pe)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    losses = []
    for _ in range(steps):
        logits = model(ids, position_ids=pos, attention_mask=torch.ones_like(ids, dtype=torch.bool))
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("pe", ALL_PES)
def test_adamw_steps_reduce_the_loss(pe):
    model = tiny(pe).train()
    losses = _train(model, pe, steps=25)
    assert losses[-1] < 0.75 * losses[0]


# -- the registry of positional schemes -----------------------------------------------------------


@pytest.mark.parametrize("name", list(PE_SCHEMES))
def test_every_registered_scheme_declares_every_flag(name):
    problem = _undeclared(name, PE_SCHEMES[name])
    assert problem is None, problem


def test_a_scheme_that_forgets_a_flag_is_named():
    class Forgetful(PositionScheme):
        combines = attention = float_positions = causal_only = False
        reads_positions = True  # and no `table`

    assert _undeclared("forgetful", Forgetful) == (
        "positional scheme 'forgetful' (Forgetful) does not declare table"
    )


def test_parse_pe_returns_schemes_in_registry_order():
    assert (
        parse_pe("rope+ape")
        == parse_pe("ape+rope")
        == (
            PE_SCHEMES["ape"],
            PE_SCHEMES["rope"],
        )
    )


class ToyBias(PositionScheme):
    """A learned scalar per position id, added to every input channel: a scheme defined outside
    countlib, to show that registering one class is all a new scheme takes."""

    combines = True
    attention = False
    reads_positions = True
    float_positions = False
    table = True
    causal_only = False

    def build(self, model: nn.Module) -> None:
        model.toy_bias = nn.Embedding(self.config.max_positions, 1)

    def embed(self, model: nn.Module, h: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return h + model.toy_bias(position_ids)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(PE_SCHEMES, "toy", ToyBias)


@pytest.mark.usefixtures("toy")
def test_a_registered_scheme_builds_runs_causally_and_trains(tmp_path):
    assert _undeclared("toy", ToyBias) is None
    model = tiny("toy")
    assert "toy_bias.weight" in model.state_dict()
    assert_causal(model, "toy")
    assert TransformerConfig(V, pe="toy+rope").default_position_scheme == "shift"
    config = RunConfig(
        task="shifted_start",
        model="transformer",
        model_options={"pe": "toy", "hidden": 16, "heads": 2, "layers": 1},
        optim=OptimConfig(steps=2, batch_size=4, warmup_steps=0),
        eval=EvalConfig(every=2, batch_size=512),
    )
    result = train(config, tmp_path, device="cpu", progress=False)
    assert result.status == "complete" and result.summary["steps"] == 2
    assert math.isfinite(result.summary["final"]["ind"])
