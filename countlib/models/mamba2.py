"""Mamba-2 (SSD) language model in plain PyTorch.

Mamba-2 (Dao & Gu, ICML 2024, arXiv 2405.21060, "Transformers are SSMs") restricts Mamba's
transition to a scalar times the identity per head: with a_t = exp(dt_t A) (A < 0 per head),

    h_t = a_t h_{t-1} + dt_t x_t B_t^T,    y_t = h_t C_t + D x_t,

for every head's state h [head_dim, d_state]; B_t and C_t are shared by the heads (one group).
That structure makes the sequence transform a masked (semiseparable) attention-like matrix, which
the chunked "SSD" form computes: quadratic inside a chunk, a recurrence between chunks.

``negative_eigenvalues`` (Grazzi et al., ICLR 2025, arXiv 2411.12537) maps each transition to
2 a_t - 1, from [0, 1] to [-1, 1]. The chunked form here takes the products of transitions by
cumulative products (`segment_products`) instead of sums of logs, so it runs either way.

Layer (mamba_ssm's ``Mamba2``): one input projection to (z, x, B, C, dt); a short causal conv and
SiLU over (x, B, C); dt = softplus(dt + dt_bias); SSD; y times SiLU(z), RMSNorm (gated RMSNorm,
``norm_before_gate=False``); output projection. The language model is mamba_ssm's layout: pre-norm
residual blocks without MLP (``d_intermediate=0``; ``d_ffn`` adds a SwiGLU MLP), final RMSNorm,
tied head (`MixerLM`).

Backends (``backend``): ``"countlib"`` (the chunked form; ``step`` is the recurrent one),
``"fla"`` (flash-linear-attention's ``chunk_simple_gla``: SSD is scalar-gated linear attention
with q = C, k = B, v = dt x, log-gate dt A; CUDA only, and not with negative eigenvalues, whose
transitions have no logarithm), ``"auto"`` (fla on CUDA where it imports, else countlib).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from countlib.models.backends import (
    FLA_INSTALL,
    BackendChoice,
    BackendUnavailableError,
    resolve_fla_backend,
)
from countlib.models.deltanet import (
    A_INIT_RANGE,
    BACKENDS,
    MixerLM,
    ShortConv,
    check_sizes,
    full_precision,
    init_dt_bias,
    segment_products,
    to_chunks,
)
from countlib.models.mamba import RMSNorm
from countlib.validation import check_field_types


@dataclass
class Mamba2Config:
    vocab_size: int
    layers: int = 2
    hidden: int = 128  # d_model
    # mamba_ssm's Mamba2 defaults are d_state 128 and headdim 64, for d_model in the thousands;
    # these CPU sizes keep Mamba-1's d_state here (16) and several heads at width 128.
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    head_dim: int = 16
    d_ffn: int = 0  # 0 = no MLP (mamba_ssm's d_intermediate = 0)
    negative_eigenvalues: bool = False
    chunk_size: int = 16  # mamba_ssm's 256 is a GPU kernel's tile; small chunks are fast on CPU
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown Mamba-2 backend {self.backend!r}; choose from {BACKENDS}")
        check_sizes(self, "vocab_size", "layers", "hidden", "d_state", "d_conv", "expand")
        check_sizes(self, "head_dim", "chunk_size")
        if self.d_ffn < 0:
            raise ValueError(f"d_ffn must be >= 0 (0 = no MLP), got {self.d_ffn}")
        if self.d_inner % self.head_dim:
            raise ValueError(
                f"head_dim {self.head_dim} must divide expand * hidden = {self.d_inner}"
            )
        if self.negative_eigenvalues and self.backend == "fla":
            raise ValueError(
                "negative_eigenvalues runs on Mamba-2 backend 'countlib' only (or 'auto', which "
                "then takes it): fla's SSD kernel takes log-space decays, and a negative "
                "transition has no logarithm"
            )

    @property
    def d_inner(self) -> int:
        return self.expand * self.hidden

    @property
    def heads(self) -> int:
        return self.d_inner // self.head_dim


def transitions(dt_a: Tensor, negative: bool) -> Tensor:
    """a = exp(dt A) in (0, 1], or 2 a - 1 in (-1, 1] with negative eigenvalues (Grazzi et al.)."""
    a = dt_a.exp()
    return 2 * a - 1 if negative else a


# -- SSD ----------------------------------------------------------------------------------------
# x [b, H, T, P] (already times dt), a [b, H, T], B and C [b, T, N] (one group for all heads);
# the state is [b, H, P, N].


def ssd_step(x: Tensor, a: Tensor, B: Tensor, C: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One token (x [b, H, P], a [b, H], B, C [b, N]): h <- a h + x B^T, y = h C."""
    state = a[..., None, None] * state + x.unsqueeze(-1) * B[:, None, None, :]
    return (state * C[:, None, None, :]).sum(-1), state


def ssd_recurrent(x: Tensor, a: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """SSD token by token from a zero state (the reference form): y [b, H, T, P]."""
    state = x.new_zeros(*x.shape[:2], x.shape[-1], B.shape[-1])
    outputs = []
    for t in range(x.shape[2]):
        y, state = ssd_step(x[:, :, t], a[:, :, t], B[:, t], C[:, t], state)
        outputs.append(y)
    return torch.stack(outputs, dim=2)


def ssd_chunked(x: Tensor, a: Tensor, B: Tensor, C: Tensor, chunk_size: int) -> Tensor:
    """SSD in chunks (Dao & Gu 2024, section 6): inside a chunk, y_r = sum_{s <= r} (C_r . B_s)
    a_{s+1} ... a_r x_s; the state enters each chunk decayed by a_1 ... a_r and leaves it with
    a_1 ... a_L h + sum_s a_{s+1} ... a_L x_s B_s^T.
    """
    steps = x.shape[2]
    chunk = min(chunk_size, steps)
    x = to_chunks(x, chunk)  # [b, H, n, L, P]
    a = to_chunks(a, chunk, fill=1.0)  # [b, H, n, L]; padding keeps the state
    B, C = (to_chunks(t.unsqueeze(1), chunk).squeeze(1) for t in (B, C))  # [b, n, L, N]
    decay = segment_products(a)  # [b, H, n, L, L]
    start_decay = a.cumprod(-1)
    scores = (C @ B.transpose(-1, -2)).unsqueeze(1) * decay
    y = scores @ x
    chunk_states = (x * decay[..., -1, :].unsqueeze(-1)).transpose(-1, -2) @ B.unsqueeze(1)
    state = x.new_zeros(*x.shape[:2], x.shape[-1], B.shape[-1])
    outputs = []
    for n in range(x.shape[2]):
        carried = start_decay[:, :, n].unsqueeze(-1) * (C[:, None, n] @ state.transpose(-1, -2))
        outputs.append(y[:, :, n] + carried)
        state = start_decay[:, :, n, -1, None, None] * state + chunk_states[:, :, n]
    return torch.stack(outputs, dim=2).flatten(2, 3)[:, :, :steps]


@functools.cache
def _import_fla() -> tuple[Any, str]:
    """flash-linear-attention's chunked scalar-gated linear attention, or None and why."""
    try:
        from fla.ops.simple_gla import chunk_simple_gla
    except ImportError as error:
        return None, str(error)
    return chunk_simple_gla, ""


def resolve_backend(config: Mamba2Config, device: torch.device) -> BackendChoice:
    """fla's SSD kernel takes the decays as a gate: see `fla_gated_backward_fault`."""
    if config.negative_eigenvalues:  # 'fla' with it is refused by the config
        return BackendChoice("countlib-chunked")
    return resolve_fla_backend(
        "Mamba-2", config.backend, device, lambda: _import_fla()[1], gated=True
    )


def _fla_ssd(x: Tensor, dt_a: Tensor, B: Tensor, C: Tensor) -> Tensor:
    """SSD by fla's kernel on x [b, T, H, P], dt_a [b, T, H], B, C [b, T, N] -> [b, T, H, P]."""
    kernel, error = _import_fla()
    if kernel is None:
        raise BackendUnavailableError(
            f"Mamba-2 backend 'fla' cannot load ({error}); install it with: {FLA_INSTALL}"
        )
    heads = x.shape[2]
    dtype = x.dtype if x.dtype in (torch.float16, torch.bfloat16) else torch.bfloat16
    q, k = (t.unsqueeze(2).expand(-1, -1, heads, -1).to(dtype) for t in (C, B))
    y, _ = kernel(q, k, x.to(dtype), g=dt_a.float(), scale=1.0)
    return y


# -- the mixer ----------------------------------------------------------------------------------


class Mamba2Mixer(nn.Module):
    """mamba_ssm's ``Mamba2`` layer (one group, scalar D per head) with the SSD above."""

    def __init__(self, config: Mamba2Config) -> None:
        super().__init__()
        self.config = config
        d_inner, n, heads = config.d_inner, config.d_state, config.heads
        self.in_proj = nn.Linear(config.hidden, 2 * d_inner + 2 * n + heads, bias=False)
        self.conv1d = ShortConv(d_inner + 2 * n, config.d_conv, bias=True)
        self.dt_bias = nn.Parameter(init_dt_bias(heads))
        low, high = A_INIT_RANGE
        self.A_log = nn.Parameter(torch.empty(heads).uniform_(low, high).log())
        self.D = nn.Parameter(torch.ones(heads))
        self.norm = RMSNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, config.hidden, bias=False)

    def _split(self, projected: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        c = self.config
        return projected.split([c.d_inner, c.d_inner + 2 * c.d_state, c.heads], dim=-1)

    def _ssm_inputs(self, xbc: Tensor, dt: Tensor) -> tuple[Tensor, ...]:
        """(x [..., H, P], dt [..., H], dt A [..., H], B, C) after the conv's SiLU."""
        c = self.config
        x, B, C = F.silu(xbc).split([c.d_inner, c.d_state, c.d_state], dim=-1)
        dt = F.softplus(dt + self.dt_bias)
        return x.unflatten(-1, (c.heads, c.head_dim)), dt, dt * -self.A_log.exp(), B, C

    def transitions(self, hidden_states: Tensor) -> Tensor:
        """The per-head transitions a_t [B, T, H] this layer applies to ``hidden_states``."""
        _, xbc, dt = self._split(self.in_proj(hidden_states))
        _, _, dt_a, _, _ = self._ssm_inputs(self.conv1d(xbc), dt)
        return transitions(dt_a, self.config.negative_eigenvalues)

    def _output(self, y: Tensor, x: Tensor, z: Tensor) -> Tensor:
        y = (y + x * self.D[:, None]).flatten(-2)
        return self.out_proj(self.norm(y * F.silu(z)))

    def forward(self, hidden_states: Tensor) -> Tensor:
        z, xbc, dt = self._split(self.in_proj(hidden_states))
        x, dt, dt_a, B, C = self._ssm_inputs(self.conv1d(xbc), dt)
        x_dt = x * dt.unsqueeze(-1)
        if resolve_backend(self.config, hidden_states.device).name == "fla-chunk":
            y = _fla_ssd(x_dt, dt_a, B, C).to(x.dtype)
        else:
            a = transitions(dt_a, self.config.negative_eigenvalues)
            y = full_precision(
                ssd_chunked,
                x_dt.transpose(1, 2),
                a.transpose(1, 2),
                B,
                C,
                chunk_size=self.config.chunk_size,
            ).transpose(1, 2)
        return self._output(y, x, z)

    def step(self, hidden: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        conv_state, ssm_state = state
        z, xbc, dt = self._split(self.in_proj(hidden))
        xbc, conv_state = self.conv1d.step(xbc, conv_state)
        x, dt, dt_a, B, C = self._ssm_inputs(xbc, dt)
        a = transitions(dt_a, self.config.negative_eigenvalues)
        y, ssm_state = ssd_step(x * dt.unsqueeze(-1), a, B, C, ssm_state)
        return self._output(y, x, z), (conv_state, ssm_state)

    def init_state(self, batch: int) -> tuple[Tensor, Tensor]:
        c = self.config
        ssm = self.out_proj.weight.new_zeros(batch, c.heads, c.head_dim, c.d_state)
        return self.conv1d.init_state(batch), ssm

    def state_floats(self) -> int:
        """The heads' head_dim x d_state states plus the conv's last d_conv - 1 (x, B, C)."""
        c = self.config
        return c.d_inner * c.d_state + (c.d_conv - 1) * (c.d_inner + 2 * c.d_state)


class Mamba2Model(MixerLM):
    def __init__(self, config: Mamba2Config) -> None:
        super().__init__(config, [Mamba2Mixer(config) for _ in range(config.layers)], config.d_ffn)

    def backend_choices(self) -> dict[str, BackendChoice]:
        return {"ssd": resolve_backend(self.config, self.head.weight.device)}
