"""The paper's causal Transformer (GPT-2 style, pre-LayerNorm) with every positional scheme.

``causal=False`` drops the causal mask (Table A6's probe: every position sees the whole
sequence); it combines with every PE except the relative biases ``alibi`` and ``t5``, whose
distance buckets are defined for keys at or before the query only.

Structure (seed-spec 2.1.1): token embedding, positional signal, L blocks of
``h + Attn(LN(h))`` then ``h + MLP(LN(h))``, final LayerNorm, bias-free head. The attention logits
of layer l (0-based) are divided by sqrt(head_dim) and, with ``scale_by_layer``, by l + 1.

Positional schemes (``pe``): nope, spe, ape, sine, rope, alibi and t5, one class each in
`countlib.models.positions` (`PE_SCHEMES`), which says what each does. Combinations are
``+``-joined additive PEs {ape, sine} with at most one of the attention schemes {rope, alibi,
t5}, e.g. ``"ape+rope"``; ``nope`` and ``spe`` do not combine.

Position ids come from the batch (``countlib.batches``): integer ids for every scheme but ``spe``,
which reads float values. ``attention_mask`` is False at keys nobody may attend to (padding and
``<pad>`` helpers); such a token may still be a query, and with ``must_attend_to_identity`` it may
attend to itself. A query left with no key at all gets a zero attention output instead of NaN.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from countlib.models.positions import (
    APE_INITS,
    PE_SCHEMES,
    PositionScheme,
    apply_rope,
    parse_pe,
)
from countlib.validation import check_field_types

ATTENTIONS = ("sdpa", "explicit")
INIT_STD = 0.02


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
        schemes = self.position_schemes
        if min(self.vocab_size, self.layers, self.hidden, self.heads, self.mlp_ratio) < 1:
            raise ValueError("vocab_size, layers, hidden, heads and mlp_ratio must be positive")
        if self.hidden % self.heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by heads ({self.heads})")
        for scheme in schemes:
            scheme.check()
        if self.max_positions < 1:
            raise ValueError(f"max_positions must be positive, got {self.max_positions}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {self.attention!r}; choose from {ATTENTIONS}")
        if self.ape_init not in APE_INITS:
            raise ValueError(f"unknown ape_init {self.ape_init!r}; choose from {APE_INITS}")
        self._check_scheme_options(schemes)
        if not self.causal and any(s.causal_only for s in schemes):
            usable = [name for name, s in PE_SCHEMES.items() if not s.causal_only]
            refused = [name for name, s in PE_SCHEMES.items() if s.causal_only]
            raise ValueError(
                f"causal=False is not supported with pe={self.pe!r}: {' and '.join(refused)} are "
                f"defined for keys at or before the query only; use "
                f"{', '.join(usable[:-1])} or {usable[-1]}"
            )
        if self.layer_norm_eps <= 0:
            raise ValueError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")

    def _check_scheme_options(self, schemes: tuple[PositionScheme, ...]) -> None:
        """ValueError for an option of a scheme that ``pe`` leaves out, set away from its
        default: it would do nothing, silently."""
        defaults = {field.name: field.default for field in dataclasses.fields(self)}
        used = {type(s) for s in schemes}
        for name, scheme in PE_SCHEMES.items():
            changed = any(getattr(self, option) != defaults[option] for option in scheme.options)
            if changed and scheme not in used:
                raise ValueError(
                    f"{' and '.join(scheme.options)} need {name!r} in pe, got pe={self.pe!r}"
                )

    @property
    def position_schemes(self) -> tuple[PositionScheme, ...]:
        """This config's positional schemes, in registry order (`parse_pe`)."""
        return tuple(scheme(self) for scheme in parse_pe(self.pe))

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def default_position_scheme(self) -> str:
        """The batch position scheme the paper trains this PE with: shifted ids for every PE
        except NoPE (no ids) and the scalar PE (shifted values in [0, 1))."""
        schemes = self.position_schemes
        if not any(s.reads_positions for s in schemes):
            return "none"
        if any(s.float_positions for s in schemes):
            return "scalar_shift"
        return "shift"

    def check_positions(self, scheme: str, *, floats: bool, needed: int) -> None:
        """ValueError for batches of position scheme ``scheme`` (float values if ``floats``)
        that `Transformer` would refuse at its first forward, for a task whose longest sequence
        takes ``needed`` position ids: said before training, not after its first batch."""
        schemes = self.position_schemes
        if not any(s.reads_positions for s in schemes):
            return
        wants_floats = any(s.float_positions for s in schemes)
        if wants_floats != floats:
            wanted = "float position values" if wants_floats else "integer position ids"
            raise ValueError(
                f"pe={self.pe!r} needs {wanted}, which position scheme {scheme!r} does not give; "
                f"use {self.default_position_scheme!r} (the default for this PE)"
            )
        if any(s.table for s in schemes) and needed > self.max_positions:
            raise ValueError(
                f"pe={self.pe!r} has a table of max_positions = {self.max_positions}, but the "
                f"task's longest sequence takes {needed} position ids; set max_positions to at "
                f"least {needed}"
            )


# -- attention -----------------------------------------------------------------------------------


@dataclass
class AttentionContext:
    """Everything about positions and masking that all layers share in one forward pass."""

    allowed: torch.Tensor  # bool [B, 1, T, T]: query may attend to key; never an empty row
    empty: torch.Tensor  # bool [B, 1, T, 1]: queries that really have no key (output zero)
    bias: torch.Tensor | None  # float [B, H, T, T], added to the scaled logits (alibi, t5)
    rotation: tuple[torch.Tensor, torch.Tensor] | None  # cos, sin [B, 1, T, head_dim] (rope)
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
        if ctx.rotation is not None:
            q, k = apply_rope(q, *ctx.rotation), apply_rope(k, *ctx.rotation)
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
        self.schemes = config.position_schemes
        d = config.hidden
        # the task's frozen tokens (a ``<null>`` row) are held fixed by the trainer
        channels = d - sum(s.input_channels for s in self.schemes)
        self.tok_emb = nn.Embedding(config.vocab_size, channels)
        # After the token embedding and before the blocks, in registry order: the order in
        # which parameters draw from the RNG and in which the global init visits them.
        for scheme in self.schemes:
            scheme.build(self)
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
        for scheme in self.schemes:
            scheme.init_weights(self)

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
        floats = any(s.float_positions for s in self.schemes)
        if position_ids is None:
            if floats:
                raise ValueError(
                    f"pe={self.config.pe!r} needs float position values from the batch "
                    "(position scheme 'scalar_shift' or 'zooming')"
                )
            T = input_ids.shape[1]
            return torch.arange(T, device=input_ids.device).expand_as(input_ids)
        if position_ids.shape != input_ids.shape:
            raise ValueError(
                f"position_ids shape {tuple(position_ids.shape)} != input_ids shape "
                f"{tuple(input_ids.shape)}"
            )
        if not any(s.reads_positions for s in self.schemes):
            return position_ids
        if floats != position_ids.is_floating_point():
            wanted = "float position values" if floats else "integer position ids"
            raise ValueError(
                f"pe={self.config.pe!r} needs {wanted}, got {position_ids.dtype}; check the "
                f"batch position scheme (default for this PE: "
                f"{self.config.default_position_scheme!r})"
            )
        if any(s.table for s in self.schemes) and position_ids.numel():
            low, high = int(position_ids.min()), int(position_ids.max())
            if low < 0 or high >= self.config.max_positions:
                raise ValueError(
                    f"position ids span [{low}, {high}] but pe={self.config.pe!r} has a table of "
                    f"max_positions = {self.config.max_positions}; raise the model option "
                    f"max_positions (the task's max_positions) to cover them"
                )
        return position_ids

    def embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Input vectors [B, T, d]: token embedding plus the input schemes' positional signal."""
        h = self.tok_emb(input_ids)
        for scheme in self.schemes:
            h = scheme.embed(self, h, position_ids)
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

        # At most one scheme acts on attention (`parse_pe`).
        bias: torch.Tensor | None = None
        rotation: tuple[torch.Tensor, torch.Tensor] | None = None
        for scheme in self.schemes:
            if scheme.attention:
                bias = scheme.bias(self, position_ids)
                rotation = scheme.rotation(self, position_ids)
        return AttentionContext(
            allowed=allowed,
            empty=empty,
            bias=bias,
            rotation=rotation,
            plain_causal=self.config.causal and attention_mask is None and bias is None,
        )
