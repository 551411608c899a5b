"""S4 (full DPLR state matrix) and S4D (diagonal state matrix) language models.

Written from the S4 and S4D papers (Gu et al. 2022), in plain PyTorch so it runs anywhere.

Model (as the original ``scripts/s4`` copy): embedding V x H with PyTorch's N(0, 1) init; per
layer ``x = x + Dropout1d(S4Block(LayerNorm(x)))``; no final norm; bias-free head H -> V.
Block: one single-input single-output SSM per channel, convolved with the input by FFT, plus a
D skip, GELU, dropout, Linear H -> 2H and GLU.

SSM per channel: ``x'(t) = A x(t) + B u(t)``, ``y(t) = C x(t)``, state size N = ``d_state``.
A is complex and diagonalisable; the real N-dimensional system is stored as N/2 complex
eigenvalues whose conjugates are implied, so ``y = 2 Re(C x)`` over the stored half.

- ``dplr`` (S4): A = Lambda - P P^*, the normal-plus-low-rank form of HiPPO-LegS (rank 1).
  Bilinear discretisation. The kernel's spectrum at the roots of unity is a Cauchy sum with a
  Woodbury correction for P; an inverse FFT gives the length-L kernel.
- ``diag`` (S4D): A = Lambda. ZOH discretisation; the kernel is a Vandermonde sum.
  ``init="legs"`` takes Lambda and B from the normal part of HiPPO-LegS (S4D-LegS);
  ``init="lin"`` uses Lambda_n = -1/2 + i pi n and B = 1 (S4D-Lin).

Deliberate difference from the original S4 code: the trainable output matrix is C itself, not
C~ = C (I - Abar^L) tied to a kernel length that grows lazily. C~ is recomputed on every call
for the call's own length (a few N x N squarings per channel), so the module has no length state,
any length works, and the recurrent form uses C directly. The function class is the same; the
init differs slightly, because the complex N(0, 1) draw initialises C here and C~ there.

``S4Model.step`` runs the same model token by token with an explicit state (for analysis).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from countlib.validation import check_field_types

_MODES = ("dplr", "diag")
_INITS = ("legs", "lin")


@dataclass
class S4Config:
    vocab_size: int
    layers: int = 1
    hidden: int = 128
    #: N, the real state size per channel (stored as N/2 complex-conjugate pairs).
    d_state: int = 64
    mode: str = "dplr"
    init: str = "legs"
    dropout: float = 0.1
    dt_min: float = 0.001
    dt_max: float = 0.1
    #: Learning rate of the SSM parameters, capped at the global rate.
    ssm_lr: float = 0.001
    #: Clip Im(B) of the HiPPO-LegS init to +-this (None: no clip). The original's S4 code clips
    #: at 2 (``nplr(..., B_clip=2.0)``), for S4 and S4D-LegS alike; at N = 64 that clips 11 of
    #: the 32 entries and |B| drops from 45 to 8.7. S4D-Lin's B = 1 is never clipped.
    b_imag_clip: float | None = 2.0

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.mode not in _MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose from {list(_MODES)}")
        if self.init not in _INITS:
            raise ValueError(f"unknown init {self.init!r}; choose from {list(_INITS)}")
        if self.init == "lin" and self.mode != "diag":
            raise ValueError("init 'lin' exists only for mode 'diag'; mode 'dplr' uses 'legs'")
        if self.layers < 1 or self.hidden < 1:
            raise ValueError("layers and hidden must be positive")
        if self.d_state < 2 or self.d_state % 2:
            raise ValueError(f"d_state must be a positive even number, got {self.d_state}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if self.ssm_lr <= 0:
            raise ValueError(f"ssm_lr must be positive, got {self.ssm_lr}")
        if self.b_imag_clip is not None and self.b_imag_clip <= 0:
            raise ValueError(f"b_imag_clip must be positive or None, got {self.b_imag_clip}")


@dataclass
class S4DConfig(S4Config):
    mode: str = "diag"


# -- HiPPO-LegS ----------------------------------------------------------------------------------


def hippo_legs(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """HiPPO-LegS ``(A, B)`` in float64: A_nk = -sqrt((2n+1)(2k+1)) below the diagonal,
    -(n+1) on it, 0 above; B_n = sqrt(2n+1)."""
    q = torch.sqrt(2 * torch.arange(n, dtype=torch.float64) + 1)
    a = -torch.tril(q[:, None] * q[None, :], diagonal=-1)
    a = a - torch.diag(torch.arange(1, n + 1, dtype=torch.float64))
    return a, q


def legs_normal_eigenbasis(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(Lambda, V, p)`` with A_LegS = V_full diag(Lambda_full) V_full^* - p p^T.

    Adding p p^T (p_n = sqrt(n + 1/2)) makes LegS normal: -I/2 plus a skew-symmetric matrix,
    unitarily diagonalisable. Its eigenvalues come in conjugate pairs; Lambda and the columns of
    V keep the half with positive imaginary part, the full basis is ``[V, conj(V)]``.
    """
    a, _ = hippo_legs(n)
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    skew = a + p[:, None] * p[None, :] + 0.5 * torch.eye(n, dtype=torch.float64)
    # -i * skew is Hermitian, so eigh gives a stable orthonormal basis.
    freq, vectors = torch.linalg.eigh(-1j * skew.to(torch.complex128))
    top = torch.argsort(freq, descending=True)[: n // 2]
    if not (freq[top] > 0).all():
        raise ValueError(f"LegS skew part of size {n} has zero eigenvalues; cannot pair them")
    return torch.complex(torch.full_like(freq[top], -0.5), freq[top]), vectors[:, top], p


def _init_ssm(config: S4Config) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-state ``(Lambda, B, P)``, complex, length N/2 (P is None for S4D)."""
    n = config.d_state
    if config.init == "lin":
        lam = torch.complex(
            torch.full((n // 2,), -0.5), math.pi * torch.arange(n // 2, dtype=torch.float32)
        )
        return lam, torch.ones(n // 2, dtype=torch.complex64), None
    lam, vectors, p = legs_normal_eigenbasis(n)
    _, b = hippo_legs(n)
    b = clip_imag(vectors.mH @ b.to(vectors.dtype), config.b_imag_clip)
    p = vectors.mH @ p.to(vectors.dtype) if config.mode == "dplr" else None
    return lam, b, p


def clip_imag(z: torch.Tensor, bound: float | None) -> torch.Tensor:
    """``z`` with its imaginary part clamped to [-bound, bound]; unchanged for None.

    The clip is symmetric, so it treats the two halves of a conjugate pair alike: keeping the
    positive-frequency half (here) or the negative one (the original) clips the same entries.
    """
    if bound is None:
        return z
    return torch.complex(z.real, z.imag.clamp(-bound, bound))


# -- SSM kernels ---------------------------------------------------------------------------------


@dataclass
class DiscreteSSM:
    """Per-channel recurrence ``x_k = A x_{k-1} + B u_k``, ``y_k = Re(C x_k)``.

    A is dense ``[H, n, n]`` (real basis, DPLR) or diagonal ``[H, n]`` (complex, S4D).
    """

    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.B.new_zeros(batch_size, *self.B.shape)

    def step(self, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: state ``[batch, H, n]`` and input ``[batch, H]`` -> (state, output)."""
        if self.A.dim() == 3:
            x = torch.einsum("hnm,bhm->bhn", self.A, x) + self.B * u[..., None]
        else:
            x = self.A * x + self.B * u[..., None]
        return x, (self.C * x).sum(-1).real


def _as_param(z: torch.Tensor, channels: int) -> nn.Parameter:
    """A complex per-state vector copied to every channel, stored as real pairs [H, n, 2]."""
    z = z.to(torch.complex64).expand(channels, -1)
    return nn.Parameter(torch.view_as_real(z).clone())


class _SSMKernel(nn.Module):
    """Parameters shared by both modes: Lambda, B, C and the step size, one SSM per channel."""

    def __init__(self, config: S4Config) -> None:
        super().__init__()
        h = config.hidden
        lam, b, p = _init_ssm(config)
        # Re(Lambda) = -exp(.) keeps every eigenvalue in the stable half plane while training.
        self.a_real_log = nn.Parameter(torch.log(-lam.real).float().expand(h, -1).clone())
        self.a_imag = nn.Parameter(lam.imag.float().expand(h, -1).clone())
        self.b = _as_param(b, h)
        c = torch.randn(h, config.d_state // 2, dtype=torch.cfloat)
        self.c = nn.Parameter(torch.view_as_real(c).clone())
        log_dt = torch.rand(h) * math.log(config.dt_max / config.dt_min)
        self.log_dt = nn.Parameter(log_dt + math.log(config.dt_min))
        if p is not None:
            self.p = _as_param(p, h)

    def _lambda(self) -> torch.Tensor:
        return torch.complex(-torch.exp(self.a_real_log), self.a_imag)


class DPLRKernel(_SSMKernel):
    """S4: A = Lambda - P P^*, bilinear discretisation, Cauchy kernel with Woodbury correction."""

    def _bilinear(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Real-basis ``(Abar [H, N, N], Bbar [H, N])`` of the bilinear discretisation
        Abar = (I - dt/2 A)^-1 (I + dt/2 A) = 2 (I - dt/2 A)^-1 - I, Bbar = (I - dt/2 A)^-1 dt B.

        I - dt/2 A = diag(d) + dt/2 P P^* with d = 1 - dt/2 Lambda, so Sherman-Morrison gives
        the inverse as diag(1/d) - s q w^T with q = P/d, w = conj(P)/d: no dense solve.
        """
        lam, p, b = self._lambda(), torch.view_as_complex(self.p), torch.view_as_complex(self.b)
        half_dt = torch.exp(self.log_dt)[:, None] / 2
        d = 1 - half_dt * lam
        q, w = p / d, p.conj() / d
        # The sums run over the full conjugate basis, hence 2 Re(.) over the stored half.
        s = half_dt / (1 + half_dt * 2 * (w * p).sum(-1, keepdim=True).real)
        # Abar on the full basis [x, conj x] is [[X, Y], [conj Y, conj X]].
        x = torch.diag_embed(2 / d - 1) - 2 * s[..., None] * q[..., :, None] * w[..., None, :]
        y = -2 * s[..., None] * q[..., :, None] * w.conj()[..., None, :]
        b_bar = 2 * half_dt * (b / d - s * q * 2 * (w * b).sum(-1, keepdim=True).real)
        return _real_matrix(x, y), torch.cat([b_bar.real, b_bar.imag], dim=-1)

    def _real_output(self) -> torch.Tensor:
        """C on the real coordinates: 2 Re(C x) = [2 Re C, -2 Im C] . [Re x, Im x]."""
        c = torch.view_as_complex(self.c)
        return torch.cat([2 * c.real, -2 * c.imag], dim=-1)

    def _c_tilde(self, a_bar: torch.Tensor, length: int) -> torch.Tensor:
        """C~ = C (I - Abar^L) on the stored half; it makes the length-L kernel exact.

        Row vector times Abar^L by binary powering: log2(L) squarings, no loop over positions.
        """
        row, power, remaining = self._real_output(), a_bar, length
        while remaining:
            if remaining & 1:
                row = torch.einsum("hn,hnm->hm", row, power)
            remaining >>= 1
            if remaining:
                power = power @ power
        # Back from real coordinates to the half basis: [u1, u2] -> (u1 - i u2) / 2.
        half = row.shape[-1] // 2
        return torch.view_as_complex(self.c) - torch.complex(row[:, :half], -row[:, half:]) / 2

    def kernel(self, length: int) -> torch.Tensor:
        """Convolution kernel ``[H, length]``: K_l = C Abar^l Bbar."""
        lam, b, p = self._lambda(), torch.view_as_complex(self.b), torch.view_as_complex(self.p)
        c_tilde = self._c_tilde(self._bilinear()[0], length)
        dt = torch.exp(self.log_dt)[:, None, None]
        # rfft convention: Khat(w) = sum_l K_l w^l at w = exp(-2 pi i f / L), f = 0..L/2.
        angle = torch.arange(length // 2 + 1, dtype=dt.dtype, device=dt.device)
        omega = torch.polar(torch.ones_like(angle), -2 * math.pi * angle / length)
        # Bilinear: Khat(w) = C~ (I - w Abar)^-1 Bbar = 2 C~ [(2/dt)(1-w) - (1+w) A]^-1 B,
        # written without dividing by (1+w) so that w = -1 (even L) needs no special case.
        # With A = Lambda - P P^*, Woodbury turns the inverse into four Cauchy sums
        # k_xy = sum_n x_n y_n / ((2/dt)(1-w) - (1+w) lambda_n) over the full conjugate basis.
        denom = (2 / dt) * (1 - omega) - (1 + omega) * _conj_full(lam)[..., None]
        pairs = [c_tilde * b, c_tilde * p, p.conj() * b, p.conj() * p]
        numer = _conj_full(torch.stack(pairs))
        k_cb, k_cp, k_pb, k_pp = torch.einsum("khn,hnf->khf", numer, 1 / denom)
        spectrum = 2 * (k_cb - (1 + omega) * k_cp * k_pb / (1 + (1 + omega) * k_pp))
        return torch.fft.irfft(spectrum, n=length)

    def discrete(self) -> DiscreteSSM:
        a_bar, b_bar = self._bilinear()
        return DiscreteSSM(a_bar, b_bar, self._real_output())


class DiagonalKernel(_SSMKernel):
    """S4D: diagonal A, zero-order-hold discretisation, Vandermonde kernel."""

    def _zoh(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log Abar, Bbar)`` per state: Abar = exp(dt Lambda), Bbar = (Abar - 1) / Lambda B."""
        lam = self._lambda()
        dt_lam = torch.exp(self.log_dt)[:, None] * lam
        return dt_lam, (torch.exp(dt_lam) - 1) / lam * torch.view_as_complex(self.b)

    def kernel(self, length: int) -> torch.Tensor:
        """Convolution kernel ``[H, length]``: K_l = 2 Re sum_n C_n Bbar_n Abar_n^l."""
        dt_lam, b_bar = self._zoh()
        steps = torch.arange(length, dtype=self.log_dt.dtype, device=self.log_dt.device)
        vandermonde = torch.exp(dt_lam[..., None] * steps)
        c = torch.view_as_complex(self.c)
        return 2 * torch.einsum("hn,hnl->hl", c * b_bar, vandermonde).real

    def discrete(self) -> DiscreteSSM:
        dt_lam, b_bar = self._zoh()
        return DiscreteSSM(torch.exp(dt_lam), b_bar, 2 * torch.view_as_complex(self.c))


def _real_matrix(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The map z -> X z + Y conj(z) on the stored half, i.e. [[X, Y], [conj Y, conj X]] on the
    full basis [z, conj z], as a real matrix on the coordinates [Re z, Im z]."""
    top = torch.cat([(x + y).real, (y - x).imag], dim=-1)
    bottom = torch.cat([(x + y).imag, (x - y).real], dim=-1)
    return torch.cat([top, bottom], dim=-2)


def _conj_full(z: torch.Tensor) -> torch.Tensor:
    """The stored half of a conjugate-paired vector, completed with its conjugates."""
    return torch.cat([z, z.conj()], dim=-1)


def fft_conv(u: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Causal convolution ``y_t = sum_{l<=t} K_l u_{t-l}`` of ``[B, H, L]`` with ``[H, L]``;
    zero-padding to 2L keeps the circular FFT product from wrapping around."""
    length = u.shape[-1]
    spectrum = torch.fft.rfft(u, n=2 * length) * torch.fft.rfft(kernel, n=2 * length)
    return torch.fft.irfft(spectrum, n=2 * length)[..., :length]


# -- model ---------------------------------------------------------------------------------------


class S4Block(nn.Module):
    def __init__(self, config: S4Config) -> None:
        super().__init__()
        kernel = DPLRKernel if config.mode == "dplr" else DiagonalKernel
        self.ssm: DPLRKernel | DiagonalKernel = kernel(config)
        self.d = nn.Parameter(torch.randn(config.hidden))
        self.dropout = nn.Dropout(config.dropout)
        self.out = nn.Linear(config.hidden, 2 * config.hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, L, H] -> [B, L, H]``."""
        # The kernel needs linear solves and FFTs in full precision even under bf16 autocast.
        with torch.autocast(x.device.type, enabled=False):
            u = x.to(self.d.dtype).transpose(1, 2)
            y = fft_conv(u, self.ssm.kernel(u.shape[-1])) + self.d[:, None] * u
        return self._output(y.transpose(1, 2))

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        return F.glu(self.out(self.dropout(F.gelu(y))), dim=-1)

    def step(
        self, x: torch.Tensor, system: DiscreteSSM, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One token ``[B, H]`` through the recurrent form of the block."""
        u = x.to(self.d.dtype)
        state, y = system.step(state, u)
        return self._output(y + self.d * u), state


class S4Layer(nn.Module):
    def __init__(self, config: S4Config) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden)
        self.block = S4Block(config)
        # Drops whole channels for the whole sequence (the original's Dropout1d).
        self.drop = nn.Dropout1d(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(self.norm(x))
        return x + self.drop(y.transpose(1, 2)).transpose(1, 2)


@dataclass
class RecurrentState:
    """State of :meth:`S4Model.step`: the per-layer discrete systems (fixed while the
    parameters are) and the per-layer SSM states ``[B, H, n]``."""

    systems: list[DiscreteSSM]
    states: list[torch.Tensor]


class _Optim(Protocol):
    lr: float
    weight_decay: float


class S4Model(nn.Module):
    def __init__(self, config: S4Config) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden)
        self.layers = nn.ModuleList(S4Layer(config) for _ in range(config.layers))
        self.head = nn.Linear(config.hidden, config.vocab_size, bias=False)

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = self.embedding(input_ids)
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    # -- recurrent form (analysis; matches forward in eval mode) ---------------------------------

    def initial_state(self, batch_size: int) -> RecurrentState:
        systems = [layer.block.ssm.discrete() for layer in self.layers]
        return RecurrentState(systems, [s.initial_state(batch_size) for s in systems])

    def step(
        self, input_ids: torch.Tensor, state: RecurrentState
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Logits ``[B, V]`` for one token per sequence ``[B]`` and the next state."""
        x = self.embedding(input_ids)
        states = []
        for layer, system, old in zip(self.layers, state.systems, state.states, strict=True):
            y, new = layer.block.step(layer.norm(x), system, old)
            x = x + y
            states.append(new)
        return self.head(x), RecurrentState(state.systems, states)

    # -- trainer hooks ---------------------------------------------------------------------------

    def param_groups(self, optim: _Optim) -> list[dict]:
        """SSM parameters train at min(ssm_lr, lr). A, B, P and dt have no weight decay; C keeps
        the global decay, as in the original (its C was not registered with its own decay)."""
        ssm_lr = min(self.config.ssm_lr, optim.lr)
        no_decay, c_params = [], []
        for layer in self.layers:
            for name, param in layer.block.ssm.named_parameters():
                (c_params if name == "c" else no_decay).append(param)
        ssm_ids = {id(p) for p in no_decay + c_params}
        general = [p for p in self.parameters() if id(p) not in ssm_ids]
        return [
            {"params": general, "lr": optim.lr, "weight_decay": optim.weight_decay},
            {"params": no_decay, "lr": ssm_lr, "weight_decay": 0.0},
            {"params": c_params, "lr": ssm_lr, "weight_decay": optim.weight_decay},
        ]

    def token_embedding(self) -> nn.Embedding:
        """The token lookup table, one row per vocabulary id (the trainer freezes rows of it)."""
        return self.embedding

    def backends(self) -> dict[str, str]:
        kind = "cauchy" if self.config.mode == "dplr" else "vandermonde"
        return {"s4_kernel": f"{kind} (plain PyTorch)"}

    def state_size(self) -> int:
        """Floats of recurrent state per sequence: N real numbers (N/2 complex) per channel."""
        return self.config.layers * self.config.hidden * self.config.d_state
