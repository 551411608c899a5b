"""The paper's causal Transformer (GPT-2 style, pre-LayerNorm) with every positional scheme.

``causal=False`` drops the causal mask (Table A6's probe: every position sees the whole
sequence); it combines with every PE except the relative biases ``alibi`` and ``t5``, whose
distance buckets are defined for keys at or before the query only.

Structure (seed-spec 2.1.1): token embedding, positional signal, L blocks of
``h + Attn(LN(h))`` then ``h + MLP(LN(h))``, final LayerNorm, bias-free head. The attention logits
of layer l (0-based) are divided by sqrt(head_dim) and, with ``scale_by_layer``, by l + 1.

Positional schemes (``pe``):

- ``nope``: no positional signal; position ids are ignored.
- ``sine``: fixed sinusoidal table; the token embedding is multiplied by sqrt(d) before it is added.
- ``ape``: learned absolute table (``max_positions`` x d); ``ape_init="sine"`` starts it from the
  sinusoidal table (the original's flag of that name was a no-op), ``ape_frozen`` keeps it fixed.
- ``rope``: rotary embedding (rotate-half, base 10000) of q and k in every layer, with angles from
  the supplied position ids.
- ``spe``: scalar PE; the token embedding has d - 1 channels and the float position value from
  the batch ("scalar_shift" or "zooming" scheme) is the d-th channel.
- ``alibi`` (beyond the paper): per-head linear bias -slope * (query id - key id), standard slopes.
- ``t5`` (beyond the paper): T5's learned relative bias over 32 log-spaced causal distance buckets
  (exact up to 15, log-spaced up to 128), one value per head, one table shared by all layers as in
  T5. Like ALiBi it is added after the logit scaling.
- combinations: ``+``-joined additive PEs {ape, sine} with at most one of {rope, alibi, t5},
  e.g. ``"ape+rope"``. With both ape and sine, (token + APE) is scaled by sqrt(d) before the sine
  table is added, as in the original. ``nope`` and ``spe`` do not combine.

Position ids come from the batch (``countlib.batches``): integer ids for every scheme but ``spe``,
which reads float values. ``attention_mask`` is False at keys nobody may attend to (padding and
``<pad>`` helpers); such a token may still be a query, and with ``must_attend_to_identity`` it may
attend to itself. A query left with no key at all gets a zero attention output instead of NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from countlib.validation import check_field_types

INPUT_PES = ("ape", "sine")
ATTENTION_PES = ("rope", "alibi", "t5")
ALONE_PES = ("nope", "spe")
ATTENTIONS = ("sdpa", "explicit")
APE_INITS = ("normal", "sine")
ROPE_BASE = 10000.0
T5_BUCKETS = 32
T5_MAX_DISTANCE = 128
INIT_STD = 0.02


def parse_pe(pe: str) -> tuple[str, ...]:
    """The parts of a positional-scheme name; ValueError for anything undefined."""
    parts = tuple(pe.split("+"))
    valid = (
        f"valid: {', '.join(ALONE_PES + INPUT_PES + ATTENTION_PES)}, or a '+'-joined combination of"
        f" {{{', '.join(INPUT_PES)}}} with at most one of {{{', '.join(ATTENTION_PES)}}}"
    )
    if len(parts) == 1 and parts[0] in ALONE_PES:
        return parts
    known = set(INPUT_PES + ATTENTION_PES)
    if (
        any(p not in known for p in parts)
        or len(set(parts)) < len(parts)
        or sum(p in ATTENTION_PES for p in parts) > 1
    ):
        raise ValueError(f"unknown positional scheme {pe!r}; {valid}")
    return parts


@dataclass
class TransformerConfig:
    vocab_size: int
    layers: int = 2
    hidden: int = 1024
    heads: int = 8
    mlp_ratio: int = 4
    pe: str = "nope"
    #: Size of the position tables (ape, sine): ids must stay below it.
    max_positions: int = 128
    #: Divide layer l's attention logits by l + 1 (on in every run of the paper).
    scale_by_layer: bool = True
    ape_init: str = "normal"
    ape_frozen: bool = False
    #: Let a query whose own key is masked (a ``<pad>`` helper) attend to itself.
    must_attend_to_identity: bool = False
    #: False: bidirectional attention (no causal mask), for the first-token probe of Table A6.
    causal: bool = True
    #: "sdpa": PyTorch's fused kernel; "explicit": float32 logits and softmax written out.
    attention: str = "sdpa"
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        check_field_types(self)
        parts = parse_pe(self.pe)
        if min(self.vocab_size, self.layers, self.hidden, self.heads, self.mlp_ratio) < 1:
            raise ValueError("vocab_size, layers, hidden, heads and mlp_ratio must be positive")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        if "rope" in parts and (self.hidden // self.heads) % 2:
            raise ValueError(f"rope needs an even head dimension, got {self.hidden // self.heads}")
        if "spe" in parts and self.hidden < 2:
            raise ValueError("spe needs hidden >= 2 (one channel holds the position)")
        if self.max_positions < 1:
            raise ValueError(f"max_positions must be positive, got {self.max_positions}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}; choose from {ATTENTIONS}")
        if self.ape_init not in APE_INITS:
            raise ValueError(f"unknown ape_init {self.ape_init!r}; choose from {APE_INITS}")
        if (self.ape_init != "normal" or self.ape_frozen) and "ape" not in parts:
            raise ValueError(f"ape_init and ape_frozen need 'ape' in pe, got pe={self.pe!r}")
        if not self.causal and {"alibi", "t5"} & set(parts):
            raise ValueError(
                f"causal=False is not supported with pe={self.pe!r}: alibi and t5 biases are "
                "defined for keys at or before the query; use nope, sine, ape, rope or spe"
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")

    @property
    def pe_parts(self) -> tuple[str, ...]:
        return parse_pe(self.pe)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def default_position_scheme(self) -> str:
        """The batch position scheme the paper trains this PE with: shifted ids for every PE
        except NoPE (no ids) and the scalar PE (shifted values in [0, 1))."""
        if self.pe == "nope":
            return "none"
        if self.pe == "spe":
            return "scalar_shift"
        return "shift"

    def check_positions(self, scheme: str, *, floats: bool, needed: int) -> None:
        """ValueError for batches of position scheme ``scheme`` (float values if ``floats``)
        that `Transformer` would refuse at its first forward, for a task whose longest sequence
        takes ``needed`` position ids: said before training, not after its first batch."""
        parts = self.pe_parts
        if parts == ("nope",):
            return
        if ("spe" in parts) != floats:
            wanted = "float position values" if "spe" in parts else "integer position ids"
            raise ValueError(
                f"pe={self.pe!r} needs {wanted}, which position scheme {scheme!r} does not give; "
                f"use {self.default_position_scheme!r} (the default for this PE)"
            )
        if any(p in INPUT_PES for p in parts) and needed > self.max_positions:
            raise ValueError(
                f"pe={self.pe!r} has a table of max_positions = {self.max_positions}, but the "
                f"task's longest sequence takes {needed} position ids; set max_positions to at "
                f"least {needed}"
            )


# -- positional helpers ------------------------------------------------------------------------


def sinusoid_table(positions: int, dim: int) -> torch.Tensor:
    """Entry (p, 2i) = sin(p * 10000^(-2i/d)) and (p, 2i+1) = cos(p * 10000^(-2i/d))."""
    p = torch.arange(positions, dtype=torch.float64)[:, None]
    even = torch.arange(0, dim, 2, dtype=torch.float64)
    angles = p * torch.pow(10000.0, -even / dim)
    table = torch.zeros(positions, dim, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles[:, : dim // 2])
    return table.float()


def alibi_slopes(heads: int) -> torch.Tensor:
    """Press et al.'s geometric slopes; for a head count that is not a power of two, the slopes of
    the next lower power plus every other slope of twice that power."""
    closest = 2 ** math.floor(math.log2(heads))
    slopes = [2 ** (-8 * (i + 1) / closest) for i in range(closest)]
    slopes += [2 ** (-4 * (2 * i + 1) / closest) for i in range(heads - closest)]
    return torch.tensor(slopes)


def t5_buckets(distance: torch.Tensor) -> torch.Tensor:
    """T5's causal buckets: one per distance below 16, then log-spaced; the last bucket (31)
    holds every distance from 113 on, as in T5 with max distance 128."""
    exact = T5_BUCKETS // 2
    log_ratio = torch.log(distance.float().clamp(min=1) / exact) / math.log(T5_MAX_DISTANCE / exact)
    far = (exact + (log_ratio * (T5_BUCKETS - exact)).long()).clamp(max=T5_BUCKETS - 1)
    return torch.where(distance < exact, distance, far)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B, H, T, head_dim] in float32 (angles of long sequences need the precision)."""
    x32 = x.float()
    return (x32 * cos + rotate_half(x32) * sin).to(x.dtype)


# -- attention -----------------------------------------------------------------------------------


@dataclass
class AttentionContext:
    """Everything about positions and masking that all layers share in one forward pass."""

    allowed: torch.Tensor  # bool [B, 1, T, T]: query may attend to key; never an empty row
    empty: torch.Tensor  # bool [B, 1, T, 1]: queries that really have no key (output zero)
    bias: torch.Tensor | None  # float [B, H, T, T], added to the scaled logits (alibi, t5)
    rope: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin [B, 1, T, head_dim]
    plain_causal: bool  # the mask is exactly causal: SDPA may use its fused causal path


@dataclass
class AttentionRecord:
    """One layer's attention for analysis; q and k after RoPE, all [B, H, T, ...]."""

    scores: torch.Tensor  # pre-softmax logits after scaling and bias, before masking (float32)
    probs: torch.Tensor  # softmax over the allowed keys (float32; zero rows for empty queries)
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor


def explicit_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, ctx: AttentionContext, scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Logits and softmax in float32 even under autocast, as in the original.
    with torch.autocast(q.device.type, enabled=False):
        scores = (q.float() @ k.float().transpose(-2, -1)) * scale
        if ctx.bias is not None:
            scores = scores + ctx.bias
        probs = scores.masked_fill(~ctx.allowed, float("-inf")).softmax(dim=-1)
        probs = probs.masked_fill(ctx.empty, 0.0)
    return probs.to(v.dtype) @ v, scores, probs


class CausalSelfAttention(nn.Module):
    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.heads = config.heads
        self.explicit = config.attention == "explicit"
        self.scale = 1.0 / math.sqrt(config.head_dim)
        if config.scale_by_layer:
            self.scale /= layer + 1
        self.c_attn = nn.Linear(config.hidden, 3 * config.hidden)
        self.c_proj = nn.Linear(config.hidden, config.hidden)

    def forward(
        self, x: torch.Tensor, ctx: AttentionContext, record: list[AttentionRecord] | None
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
            for t in self.c_attn(x).split(C, dim=2)
        )
        if ctx.rope is not None:
            q, k = apply_rope(q, *ctx.rope), apply_rope(k, *ctx.rope)
        if self.explicit or record is not None:
            y, scores, probs = explicit_attention(q, k, v, ctx, self.scale)
            if record is not None:
                record.append(AttentionRecord(scores, probs, q, k, v))
        elif ctx.plain_causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        else:
            if ctx.bias is None:
                mask = ctx.allowed
            else:
                mask = ctx.bias.masked_fill(~ctx.allowed, float("-inf")).to(q.dtype)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
            y = y.masked_fill(ctx.empty, 0.0)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(config.hidden, config.mlp_ratio * config.hidden)
        self.c_proj = nn.Linear(config.mlp_ratio * config.hidden, config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.relu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig, layer: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = nn.LayerNorm(config.hidden, eps=config.layer_norm_eps)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, ctx: AttentionContext, record: list[AttentionRecord] | None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), ctx, record)
        return x + self.mlp(self.ln_2(x))


# -- model ---------------------------------------------------------------------------------------


class Transformer(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        parts = config.pe_parts
        d = config.hidden
        # the task's frozen tokens (a ``<null>`` row) are held fixed by the trainer
        self.tok_emb = nn.Embedding(config.vocab_size, d - 1 if "spe" in parts else d)
        if "ape" in parts:
            self.pos_emb = nn.Embedding(config.max_positions, d)
        if "sine" in parts:
            self.register_buffer(
                "sine_table", sinusoid_table(config.max_positions, d), persistent=False
            )
        if "rope" in parts:
            inv_freq = ROPE_BASE ** (-torch.arange(0, config.head_dim, 2) / config.head_dim)
            self.register_buffer("rope_inv_freq", inv_freq.float(), persistent=False)
        if "alibi" in parts:
            self.register_buffer("alibi_slopes", alibi_slopes(config.heads), persistent=False)
        if "t5" in parts:
            self.relative_bias = nn.Embedding(T5_BUCKETS, config.heads)
        self.blocks = nn.ModuleList(Block(config, layer) for layer in range(config.layers))
        self.ln_f = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.head = nn.Linear(d, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=INIT_STD)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=INIT_STD)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # GPT-2: residual output projections shrink with depth.
        for name, param in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(param, std=INIT_STD / math.sqrt(2 * self.config.layers))
        # After the global init, so that the sine start survives (the original lost it).
        if self.config.ape_init == "sine":
            with torch.no_grad():
                self.pos_emb.weight.copy_(
                    sinusoid_table(self.config.max_positions, self.config.hidden)
                )
        if self.config.ape_frozen:
            self.pos_emb.weight.requires_grad_(False)

    def token_embedding(self) -> nn.Embedding:
        """The token lookup table (the trainer freezes rows of it)."""
        return self.tok_emb

    def backends(self) -> dict[str, str]:
        return {"attention": self.config.attention}

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self._run(input_ids, position_ids, attention_mask, record=None)

    def attention_maps(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> list[AttentionRecord]:
        """Per-layer scores, probabilities and q/k/v (explicit path; wrap in torch.no_grad())."""
        record: list[AttentionRecord] = []
        self._run(input_ids, position_ids, attention_mask, record=record)
        return record

    def _run(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        record: list[AttentionRecord] | None,
    ) -> torch.Tensor:
        position_ids = self._check_positions(input_ids, position_ids)
        h = self.embed(input_ids, position_ids)
        ctx = self._context(position_ids, attention_mask)
        for block in self.blocks:
            h = block(h, ctx, record)
        return self.head(self.ln_f(h))

    def _check_positions(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        parts = self.config.pe_parts
        if position_ids is None:
            if "spe" in parts:
                raise ValueError(
                    "pe='spe' needs float position values from the batch "
                    "(position scheme 'scalar_shift' or 'zooming')"
                )
            T = input_ids.shape[1]
            return torch.arange(T, device=input_ids.device).expand_as(input_ids)
        if position_ids.shape != input_ids.shape:
            raise ValueError(
                f"position_ids shape {tuple(position_ids.shape)} != input_ids shape "
                f"{tuple(input_ids.shape)}"
            )
        if parts == ("nope",):
            return position_ids
        if ("spe" in parts) != position_ids.is_floating_point():
            wanted = "float position values" if "spe" in parts else "integer position ids"
            raise ValueError(
                f"pe={self.config.pe!r} needs {wanted}, got {position_ids.dtype}; check the "
                f"batch position scheme (default for this PE: "
                f"{self.config.default_position_scheme!r})"
            )
        if any(p in INPUT_PES for p in parts) and position_ids.numel():
            low, high = int(position_ids.min()), int(position_ids.max())
            if low < 0 or high >= self.config.max_positions:
                raise ValueError(
                    f"position ids span [{low}, {high}] but pe={self.config.pe!r} has a table of "
                    f"max_positions = {self.config.max_positions}; raise the model option "
                    f"max_positions (the task's max_positions) to cover them"
                )
        return position_ids

    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Input vectors [B, T, d]: token embedding plus the additive positional signal."""
        parts = self.config.pe_parts
        h = self.tok_emb(input_ids)
        if "spe" in parts:
            return torch.cat((h, position_ids[..., None].to(h.dtype)), dim=-1)
        if "ape" in parts:
            h = h + self.pos_emb(position_ids)
        if "sine" in parts:
            h = h * math.sqrt(self.config.hidden) + self.sine_table[position_ids]
        return h

    def _context(
        self, position_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> AttentionContext:
        B, T = position_ids.shape
        device = position_ids.device
        allowed = torch.ones(T, T, dtype=torch.bool, device=device)
        if self.config.causal:
            allowed = allowed.tril()
        eye = torch.eye(T, dtype=torch.bool, device=device)
        allowed = allowed.expand(B, 1, T, T)
        if attention_mask is not None:
            allowed = allowed & attention_mask.bool()[:, None, None, :]
            if self.config.must_attend_to_identity:
                allowed = allowed | eye
        empty = ~allowed.any(dim=-1, keepdim=True)
        # A key for queries that have none keeps the softmax finite; their output is zeroed.
        allowed = allowed | (eye & empty)

        parts = self.config.pe_parts
        bias = None
        if "alibi" in parts or "t5" in parts:
            # Ids never decrease along a sequence, so the clamp only touches masked pairs.
            distance = (position_ids[:, :, None] - position_ids[:, None, :]).clamp(min=0)
            if "alibi" in parts:
                bias = -self.alibi_slopes[:, None, None] * distance[:, None].float()
            else:
                bias = self.relative_bias(t5_buckets(distance)).permute(0, 3, 1, 2).float()
        rope = None
        if "rope" in parts:
            angles = position_ids[:, None, :, None].float() * self.rope_inv_freq
            angles = torch.cat((angles, angles), dim=-1)
            rope = (angles.cos(), angles.sin())
        return AttentionContext(
            allowed=allowed,
            empty=empty,
            bias=bias,
            rope=rope,
            plain_causal=self.config.causal and attention_mask is None and bias is None,
        )
