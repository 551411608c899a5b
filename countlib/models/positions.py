"""The Transformer's positional schemes: one small class per scheme, registered by name.

A scheme validates the config, registers its parameters and buffers on the model, and applies
itself: to the input vectors (``embed``), or to attention as a rotation of q and k
(``rotation``) or an additive bias on the scaled logits (``bias``). Flags declared on each class
say what the model, the config and the batches must do for it; `FLAGS` lists the ones every
scheme must declare, with no default, so that a new scheme decides each of them.

The parameters and buffers live on the model itself under fixed names (``pos_emb``,
``relative_bias``, ...), not in a sub-module, so that state_dict keys of recorded runs keep
their names. The order of `PE_SCHEMES` is the order in which a model's schemes build
their parameters (which consumes the torch RNG, so changing it changes every recorded
initialisation) and in which they apply to the input (APE is added before the sine scaling).

Adding a scheme: one subclass of `PositionScheme` and one line in `PE_SCHEMES`; the
tests iterate the registry.
"""

from __future__ import annotations

import math
from typing import ClassVar, Protocol

import torch
from torch import nn


class SchemeConfig(Protocol):
    """What a scheme reads of the Transformer's config (`TransformerConfig` has it); a protocol,
    so that this module does not import the model module that imports it."""

    hidden: int
    heads: int
    head_dim: int
    max_positions: int
    ape_init: str
    ape_frozen: bool


APE_INITS = ("normal", "sine")
ROPE_BASE = 10000.0
T5_BUCKETS = 32
T5_MAX_DISTANCE = 128

#: Class attributes every scheme must set itself (see `PositionScheme`).
FLAGS = ("combines", "attention", "reads_positions", "float_positions", "table", "causal_only")


# -- helpers ---------------------------------------------------------------------------------


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


def causal_distance(position_ids: torch.Tensor) -> torch.Tensor:
    """Query id minus key id, [B, T, T]. Ids never decrease along a sequence, so the clamp at
    zero only touches pairs the causal mask hides."""
    return (position_ids[:, :, None] - position_ids[:, None, :]).clamp(min=0)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate [B, H, T, head_dim] in float32 (angles of long sequences need the precision)."""
    x32 = x.float()
    return (x32 * cos + rotate_half(x32) * sin).to(x.dtype)


# -- schemes ---------------------------------------------------------------------------------


class PositionScheme:
    """One positional scheme of one model (``config``). The hooks do nothing by default; a
    scheme overrides the ones it needs. Hooks get the model because the parameters and buffers
    live there (moved with it between devices), under the names ``build`` gave them."""

    #: May be '+'-joined with other schemes that combine (False: it stands alone).
    combines: ClassVar[bool]
    #: Acts on attention (a rotation or a bias): a model takes at most one such scheme.
    attention: ClassVar[bool]
    #: Reads the batch's position ids; a model without such a scheme ignores them.
    reads_positions: ClassVar[bool]
    #: Reads float position values (the scalar PE) instead of integer ids.
    float_positions: ClassVar[bool]
    #: Looks ids up in a table of ``max_positions`` rows: they must lie in [0, max_positions).
    table: ClassVar[bool]
    #: Defined for keys at or before the query only, so it refuses ``causal=False``.
    causal_only: ClassVar[bool]

    #: Input channels the scheme fills itself; the token embedding fills the others.
    input_channels: ClassVar[int] = 0
    #: Config fields that only this scheme reads: setting one away from its default without
    #: the scheme in ``pe`` is an error rather than a silent no-op.
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: SchemeConfig) -> None:
        self.config = config

    def check(self) -> None:
        """ValueError for a config this scheme cannot be built with."""

    def build(self, model: nn.Module) -> None:
        """Register the scheme's parameters and buffers on ``model``."""

    def init_weights(self, model: nn.Module) -> None:
        """Adjust the parameters after the model's global initialisation."""

    def embed(self, model: nn.Module, h: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """The input vectors with this scheme's signal, from the token embedding ``h``."""
        return h

    def rotation(
        self, model: nn.Module, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """cos and sin [B, 1, T, head_dim] that rotate q and k in every layer, or None."""
        return None

    def bias(self, model: nn.Module, position_ids: torch.Tensor) -> torch.Tensor | None:
        """Float [B, H, T, T] added to the scaled attention logits of every layer, or None."""
        return None


class NoPE(PositionScheme):
    """No positional signal; position ids are ignored."""

    combines = False
    attention = False
    reads_positions = False
    float_positions = False
    table = False
    causal_only = False


class ScalarPE(PositionScheme):
    """Scalar PE: the token embedding has d - 1 channels and the float position value from the
    batch ("scalar_shift" or "zooming" scheme) is the d-th channel."""

    combines = False
    attention = False
    reads_positions = True
    float_positions = True
    table = False
    causal_only = False
    input_channels = 1

    def check(self) -> None:
        if self.config.hidden < 2:
            raise ValueError("spe needs hidden >= 2 (one channel holds the position)")

    def embed(self, model: nn.Module, h: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return torch.cat((h, position_ids[..., None].to(h.dtype)), dim=-1)


class LearnedAPE(PositionScheme):
    """Learned absolute table (``max_positions`` x d) added to the token embedding.
    ``ape_init="sine"`` starts it from the sinusoidal table (the original's flag of that name
    was a no-op), ``ape_frozen`` keeps it fixed."""

    combines = True
    attention = False
    reads_positions = True
    float_positions = False
    table = True
    causal_only = False
    options = ("ape_init", "ape_frozen")

    def build(self, model: nn.Module) -> None:
        model.pos_emb = nn.Embedding(self.config.max_positions, self.config.hidden)

    def init_weights(self, model: nn.Module) -> None:
        # After the global init, so that the sine start survives (the original lost it).
        if self.config.ape_init == "sine":
            with torch.no_grad():
                model.pos_emb.weight.copy_(
                    sinusoid_table(self.config.max_positions, self.config.hidden)
                )
        if self.config.ape_frozen:
            model.pos_emb.weight.requires_grad_(False)

    def embed(self, model: nn.Module, h: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return h + model.pos_emb(position_ids)


class SinePE(PositionScheme):
    """Fixed sinusoidal table; the input so far (the token embedding, plus the APE when both
    are used, as in the original) is multiplied by sqrt(d) before the table is added."""

    combines = True
    attention = False
    reads_positions = True
    float_positions = False
    table = True
    causal_only = False

    def build(self, model: nn.Module) -> None:
        table = sinusoid_table(self.config.max_positions, self.config.hidden)
        model.register_buffer("sine_table", table, persistent=False)

    def embed(self, model: nn.Module, h: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        return h * math.sqrt(self.config.hidden) + model.sine_table[position_ids]


class RoPE(PositionScheme):
    """Rotary embedding (rotate-half, base 10000) of q and k in every layer, with angles from the
    supplied position ids."""

    combines = True
    attention = True
    reads_positions = True
    float_positions = False
    table = False
    causal_only = False

    def check(self) -> None:
        if self.config.head_dim % 2:
            raise ValueError(f"rope needs an even head dimension, got {self.config.head_dim}")

    def build(self, model: nn.Module) -> None:
        dim = self.config.head_dim
        inv_freq = ROPE_BASE ** (-torch.arange(0, dim, 2) / dim)
        model.register_buffer("rope_inv_freq", inv_freq.float(), persistent=False)

    def rotation(
        self, model: nn.Module, position_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        angles = position_ids[:, None, :, None].float() * model.rope_inv_freq
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()


class ALiBi(PositionScheme):
    """(Beyond the paper) per-head linear bias -slope * (query id - key id), standard slopes,
    added after the logit scaling."""

    combines = True
    attention = True
    reads_positions = True
    float_positions = False
    table = False
    causal_only = True

    def build(self, model: nn.Module) -> None:
        model.register_buffer("alibi_slopes", alibi_slopes(self.config.heads), persistent=False)

    def bias(self, model: nn.Module, position_ids: torch.Tensor) -> torch.Tensor:
        distance = causal_distance(position_ids)
        return -model.alibi_slopes[:, None, None] * distance[:, None].float()


class T5Bias(PositionScheme):
    """(Beyond the paper) T5's learned relative bias over 32 log-spaced causal distance buckets
    (exact up to 15, log-spaced up to 128), one value per head, one table shared by all layers
    as in T5. Like ALiBi it is added after the logit scaling."""

    combines = True
    attention = True
    reads_positions = True
    float_positions = False
    table = False
    causal_only = True

    def build(self, model: nn.Module) -> None:
        model.relative_bias = nn.Embedding(T5_BUCKETS, self.config.heads)

    def bias(self, model: nn.Module, position_ids: torch.Tensor) -> torch.Tensor:
        buckets = t5_buckets(causal_distance(position_ids))
        return model.relative_bias(buckets).permute(0, 3, 1, 2).float()


#: Every scheme by its ``pe`` name, in build and application order (see the module docstring).
PE_SCHEMES: dict[str, type[PositionScheme]] = {
    "nope": NoPE,
    "spe": ScalarPE,
    "ape": LearnedAPE,
    "sine": SinePE,
    "rope": RoPE,
    "alibi": ALiBi,
    "t5": T5Bias,
}


def parse_pe(pe: str) -> tuple[type[PositionScheme], ...]:
    """The schemes of a ``pe`` name ('+'-joined parts) in registry order, whatever the order of
    the parts; ValueError naming the valid choices for anything undefined."""
    names = pe.split("+")
    schemes = [PE_SCHEMES[name] for name in names if name in PE_SCHEMES]
    if (
        len(schemes) < len(names)
        or len(set(names)) < len(names)
        or (len(schemes) > 1 and not all(s.combines for s in schemes))
        or sum(s.attention for s in schemes) > 1
    ):
        raise ValueError(f"unknown positional scheme {pe!r}; {_valid_choices()}")
    order = list(PE_SCHEMES)
    return tuple(PE_SCHEMES[name] for name in sorted(names, key=order.index))


def _valid_choices() -> str:
    alone = [name for name, s in PE_SCHEMES.items() if not s.combines]
    inputs = [name for name, s in PE_SCHEMES.items() if s.combines and not s.attention]
    attention = [name for name, s in PE_SCHEMES.items() if s.combines and s.attention]
    return (
        f"valid: {', '.join(alone + inputs + attention)}, or a '+'-joined combination of"
        f" {{{', '.join(inputs)}}} with at most one of {{{', '.join(attention)}}}"
    )
