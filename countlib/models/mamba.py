"""Mamba (S6) language model with interchangeable mixer backends.

The model follows ``mamba_ssm`` 1.0.1's ``MambaLMHeadModel`` as the original used it: embedding,
pre-norm residual blocks (add -> RMSNorm -> Mamba mixer, residual stream in fp32), a final add +
RMSNorm, and an output head tied to the embedding. Parameter names mirror that model
(``backbone.layers.0.mixer.in_proj.weight``, ...), so checkpoints move between backends:

* ``"mamba_ssm"``: the official CUDA kernels (``mamba_ssm.Mamba``), GPU only;
* ``"mambapy"``: the pure-PyTorch ``mambapy`` package (a Blelloch scan; slow on CPU);
* ``"countlib"``: the mixer below with a hand-written forward and reverse scan (the CPU default).

``"auto"`` takes ``mamba_ssm`` for a model built for a CUDA device where it imports, else
``countlib`` (the device is the run's, given when the model is built: the mixers are modules
of one backend or the other).

``negative_eigenvalues`` (Grazzi et al., ICLR 2025, arXiv 2411.12537) maps every transition
exp(delta A) in (0, 1] to 2 exp(delta A) - 1 in (-1, 1], which linear RNNs need to track parity or
count modulo m. Only the ``countlib`` scan has it ('auto' then takes ``countlib``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from countlib.models.backends import BackendChoice, BackendUnavailableError
from countlib.validation import check_field_types

BACKENDS = ("auto", "countlib", "mambapy", "mamba_ssm")
_RMS_EPS = 1e-5

_INSTALL = {
    "mambapy": "pip install mambapy",
    "mamba_ssm": (
        "on a CUDA machine with nvcc: MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE "
        "pip install --no-build-isolation mamba-ssm causal-conv1d"
    ),
}


@dataclass
class MambaConfig:
    vocab_size: int
    layers: int = 2
    hidden: int = 128  # d_model
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"  # "auto" = ceil(hidden / 16)
    dt_min: float = 0.001
    dt_max: float = 0.1
    dt_init_floor: float = 1e-4
    conv_bias: bool = True
    bias: bool = False
    backend: str = "auto"
    negative_eigenvalues: bool = False
    #: Options added after runs were recorded, with the value that reproduces the runs before
    #: them: the config hash leaves them out at that value, so older run directories keep their
    #: names (`countlib.config.RunConfig.config_hash`).
    LATER_OPTIONS: ClassVar[dict[str, Any]] = {"negative_eigenvalues": False}

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown mamba backend {self.backend!r}; choose from {BACKENDS}")
        if self.negative_eigenvalues and self.backend not in ("auto", "countlib"):
            raise ValueError(
                f"negative_eigenvalues runs on mamba backend 'countlib' only (or 'auto', which "
                f"then takes it); backend {self.backend!r} computes exp(delta A) transitions only"
            )
        sizes = (self.vocab_size, self.layers, self.hidden, self.d_state, self.d_conv, self.expand)
        if min(sizes) < 1:
            raise ValueError("vocab_size, layers, hidden, d_state, d_conv and expand must be >= 1")
        if self.dt_rank != "auto" and (not isinstance(self.dt_rank, int) or self.dt_rank < 1):
            raise ValueError(f"dt_rank must be 'auto' or a positive int, got {self.dt_rank!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.hidden

    @property
    def resolved_dt_rank(self) -> int:
        return math.ceil(self.hidden / 16) if self.dt_rank == "auto" else self.dt_rank


# -- selective scan -------------------------------------------------------------------------------


def transition(delta_A: Tensor, negative: bool = False) -> Tensor:
    """The S6 transition exp(delta A) in (0, 1]; 2 exp(delta A) - 1 in (-1, 1] if ``negative``."""
    decay = torch.exp(delta_A)
    return 2 * decay - 1 if negative else decay


class _SelectiveScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + delta_t x_t B_t (h_0 = 0), y_t = C_t . h_t, time-major, with the
    transition a_t = exp(delta_t A), or 2 exp(delta_t A) - 1 where ``negative``.

    Autograd through a Python loop over time records a graph node per step and is slow on CPU.
    Here both directions are plain loops whose per-step tensors [batch, inner, state] stay in
    cache, and the gradients are closed-form sums.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        delta: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        keep: bool,
        negative: bool = False,
    ) -> Tensor:
        # Without a backward pass (keep False) one reused state suffices: evaluation on long
        # sequences stays small.
        decay = x.new_empty(*x.shape, A.shape[1]) if keep else None  # [time, batch, inner, state]
        states = torch.empty_like(decay) if keep else None
        y = torch.empty_like(x)
        h = x.new_zeros(*x.shape[1:], A.shape[1])
        for t in range(x.shape[0]):
            decay_t = torch.exp(delta[t].unsqueeze(-1) * A, out=decay[t] if keep else None)
            if negative:
                decay_t = decay_t.mul_(2).sub_(1)
            inflow = (delta[t] * x[t]).unsqueeze(-1) * B[t].unsqueeze(1)
            h = torch.addcmul(inflow, decay_t, h, out=states[t] if keep else None)
            torch.linalg.vecdot(h, C[t].unsqueeze(1), out=y[t])
        if keep:
            ctx.save_for_backward(x, delta, A, B, C, decay, states)
            ctx.negative = negative
        return y

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor, ...]:
        x, delta, A, B, C, decay, states = ctx.saved_tensors
        grad_y = grad_y.contiguous()
        inflow = delta * x
        grad_inflow, grad_delta = torch.empty_like(x), torch.zeros_like(x)
        grad_B, grad_C = torch.empty_like(B), torch.empty_like(C)
        grad_A = torch.zeros_like(states[0])  # summed over the batch at the end
        grad_h = torch.zeros_like(states[0])  # at loop start: the part of dL/dh_t via h_{t+1}
        for t in reversed(range(x.shape[0])):
            grad_h = torch.addcmul(grad_h, grad_y[t].unsqueeze(-1), C[t].unsqueeze(1))
            torch.bmm(grad_y[t].unsqueeze(1), states[t], out=grad_C[t].unsqueeze(1))
            torch.bmm(inflow[t].unsqueeze(1), grad_h, out=grad_B[t].unsqueeze(1))
            torch.linalg.vecdot(grad_h, B[t].unsqueeze(1), out=grad_inflow[t])
            # Carry back through the decay: dL/dh_{t-1} = a_t dL/dh_t. With a_t = exp(delta_t A),
            # that times h_{t-1} is also dL/d(delta_t A); with a_t = 2 exp(delta_t A) - 1,
            # dL/d(delta_t A) = dL/da_t 2 exp(delta_t A) = dL/da_t (a_t + 1). At t = 0,
            # h_{-1} = 0.
            if ctx.negative and t > 0:
                grad_log_decay = grad_h * states[t - 1] * (decay[t] + 1)
            grad_h = grad_h * decay[t]
            if t > 0:
                if not ctx.negative:
                    grad_log_decay = grad_h * states[t - 1]
                torch.linalg.vecdot(grad_log_decay, A, out=grad_delta[t])
                grad_A.addcmul_(grad_log_decay, delta[t].unsqueeze(-1))
        grad_delta.addcmul_(grad_inflow, x)
        return grad_inflow * delta, grad_delta, grad_A.sum(0), grad_B, grad_C, None, None


def selective_scan(
    x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, negative: bool = False
) -> Tensor:
    """The S6 scan without skip or gate; ``negative``: transitions 2 exp(delta A) - 1.

    x, delta [batch, time, inner]; A [inner, state]; B, C [batch, time, state] -> y like x.
    """
    # The recurrence accumulates over time, so it runs in fp32 at least (as the CUDA kernel does).
    out_dtype, dtype = x.dtype, torch.promote_types(x.dtype, torch.float32)
    x, delta, B, C = (v.to(dtype).transpose(0, 1).contiguous() for v in (x, delta, B, C))
    A = A.to(dtype).contiguous()
    keep = torch.is_grad_enabled() and any(v.requires_grad for v in (x, delta, A, B, C))
    y = _SelectiveScan.apply(x, delta, A, B, C, keep, negative)
    return y.transpose(0, 1).to(out_dtype)


# -- mixers ---------------------------------------------------------------------------------------


class MambaMixer(nn.Module):
    """The countlib backend: ``mamba_ssm.Mamba``'s parameters and initialisation, our scan."""

    def __init__(self, config: MambaConfig) -> None:
        super().__init__()
        d_inner, rank, n = config.d_inner, config.resolved_dt_rank, config.d_state
        self.in_proj = nn.Linear(config.hidden, 2 * d_inner, bias=config.bias)
        self.conv1d = nn.Conv1d(
            d_inner,
            d_inner,
            config.d_conv,
            groups=d_inner,
            padding=config.d_conv - 1,
            bias=config.conv_bias,
        )
        self.x_proj = nn.Linear(d_inner, rank + 2 * n, bias=False)
        self.dt_proj = nn.Linear(rank, d_inner, bias=True)
        # S4D-real initialisation: A = -(1, 2, ..., N) in every channel.
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1).float().repeat(d_inner, 1)))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, config.hidden, bias=config.bias)
        self.negative = config.negative_eigenvalues

        nn.init.uniform_(self.dt_proj.weight, -(rank**-0.5), rank**-0.5)
        # Bias = softplus^-1(dt) with dt log-uniform in [dt_min, dt_max], so softplus starts there.
        log_dt = torch.empty(d_inner).uniform_(math.log(config.dt_min), math.log(config.dt_max))
        dt = log_dt.exp().clamp(min=config.dt_init_floor)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def forward(self, hidden_states: Tensor) -> Tensor:
        length = hidden_states.shape[1]
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))
        rank, n = self.dt_proj.in_features, self.A_log.shape[1]
        dt, B, C = self.x_proj(x).split([rank, n, n], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        y = selective_scan(x, delta, -torch.exp(self.A_log.float()), B, C, self.negative)
        return self.out_proj((y + x * self.D) * F.silu(z))

    def transitions(self, hidden_states: Tensor) -> Tensor:
        """The transitions a_t [batch, time, inner, state] this mixer applies to the input."""
        length = hidden_states.shape[1]
        x, _ = self.in_proj(hidden_states).chunk(2, dim=-1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :length].transpose(1, 2))
        delta = F.softplus(self.dt_proj(self.x_proj(x)[..., : self.dt_proj.in_features]))
        return transition(delta.unsqueeze(-1) * -torch.exp(self.A_log.float()), self.negative)


def _mambapy_mixer(config: MambaConfig) -> nn.Module:
    try:
        from mambapy.mamba import MambaBlock
        from mambapy.mamba import MambaConfig as MambapyConfig
    except ImportError as error:
        raise _unavailable("mambapy", error) from error
    options = MambapyConfig(
        d_model=config.hidden,
        n_layers=config.layers,
        dt_rank=config.resolved_dt_rank,
        d_state=config.d_state,
        expand_factor=config.expand,
        d_conv=config.d_conv,
        dt_min=config.dt_min,
        dt_max=config.dt_max,
        bias=config.bias,
        conv_bias=config.conv_bias,
    )
    options.dt_init_floor = config.dt_init_floor  # a class attribute there, not a field
    return MambaBlock(options)


def _mamba_ssm_class() -> type[nn.Module]:
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "mamba backend 'mamba_ssm' runs CUDA kernels and needs a CUDA device (use backend "
            f"'countlib' on CPU); install the kernels {_INSTALL['mamba_ssm']}"
        )
    try:
        from mamba_ssm.modules.mamba_simple import Mamba
    except (ImportError, OSError) as error:  # a wheel built for another torch fails at load
        raise _unavailable("mamba_ssm", error) from error
    return Mamba


def _mamba_ssm_mixer(config: MambaConfig, layer: int) -> nn.Module:
    return _mamba_ssm_class()(
        d_model=config.hidden,
        d_state=config.d_state,
        d_conv=config.d_conv,
        expand=config.expand,
        dt_rank=config.resolved_dt_rank,
        dt_min=config.dt_min,
        dt_max=config.dt_max,
        dt_init_floor=config.dt_init_floor,
        conv_bias=config.conv_bias,
        bias=config.bias,
        layer_idx=layer,
    )


def _unavailable(backend: str, error: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"mamba backend {backend!r} cannot load ({error}); install it with: {_INSTALL[backend]}"
    )


def resolve_backend(name: str, device: torch.device) -> BackendChoice:
    """The backend ``name`` stands for on ``device``; 'auto' takes the CUDA kernels for a CUDA
    device where they load, and says why not where they do not."""
    if name == "mamba_ssm" and device.type != "cuda":
        raise BackendUnavailableError(
            f"mamba backend 'mamba_ssm' runs CUDA kernels and this model is built for {device} "
            f"(use backend 'countlib' or 'auto' there); on a GPU install the kernels "
            f"{_INSTALL['mamba_ssm']}"
        )
    if name != "auto":
        return BackendChoice(name)
    if device.type != "cuda":
        return BackendChoice("countlib")
    try:
        _mamba_ssm_class()
    except BackendUnavailableError as error:
        return BackendChoice("countlib", f"auto: {error}")
    return BackendChoice("mamba_ssm")


def _build_mixer(config: MambaConfig, backend: str, layer: int) -> nn.Module:
    if backend == "mambapy":
        return _mambapy_mixer(config)
    if backend == "mamba_ssm":
        return _mamba_ssm_mixer(config, layer)
    return MambaMixer(config)


def _mixer_step(
    mixer: nn.Module, x: Tensor, conv_state: Tensor, ssm_state: Tensor, negative: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    """One token through any backend's mixer, from its parameters (the names are shared).

    x [b, hidden]; conv_state [b, inner, d_conv - 1] holds the previous conv inputs and
    ssm_state [b, inner, state] the scan state.
    """
    x, z = mixer.in_proj(x).chunk(2, dim=-1)
    window = torch.cat([conv_state, x.unsqueeze(-1)], dim=-1)
    x = (window * mixer.conv1d.weight.squeeze(1)).sum(-1)
    if mixer.conv1d.bias is not None:
        x = x + mixer.conv1d.bias
    x = F.silu(x)
    rank, n = mixer.dt_proj.in_features, mixer.A_log.shape[1]
    dt, B, C = mixer.x_proj(x).split([rank, n, n], dim=-1)
    delta = F.softplus(mixer.dt_proj(dt))
    decay = transition(delta.unsqueeze(-1) * -torch.exp(mixer.A_log.float()), negative)
    ssm_state = decay * ssm_state + (delta * x).unsqueeze(-1) * B.unsqueeze(1)
    y = (ssm_state @ C.unsqueeze(-1)).squeeze(-1) + x * mixer.D
    return mixer.out_proj(y * F.silu(z)), window[..., 1:], ssm_state


# -- language model -------------------------------------------------------------------------------


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + _RMS_EPS) * self.weight


class Block(nn.Module):
    """add residual -> RMSNorm -> mixer; returns the mixer output and the (fp32) residual."""

    def __init__(self, config: MambaConfig, backend: str, layer: int) -> None:
        super().__init__()
        self.norm = RMSNorm(config.hidden)
        self.mixer = _build_mixer(config, backend, layer)
        self.negative = config.negative_eigenvalues

    def forward(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        residual, normed = self._add_norm(hidden, residual)
        return self.mixer(normed), residual

    def step(
        self, hidden: Tensor, residual: Tensor | None, state: tuple[Tensor, ...]
    ) -> tuple[Tensor, Tensor, tuple[Tensor, Tensor]]:
        residual, normed = self._add_norm(hidden, residual)
        out, conv_state, ssm_state = _mixer_step(self.mixer, normed, *state, self.negative)
        return out, residual, (conv_state, ssm_state)

    def _add_norm(self, hidden: Tensor, residual: Tensor | None) -> tuple[Tensor, Tensor]:
        # Keeping the residual stream in fp32 keeps low-precision runs from drifting.
        residual = (hidden if residual is None else hidden + residual).float()
        return residual, self.norm(residual.to(self.norm.weight.dtype))


class MambaModel(nn.Module):
    def __init__(self, config: MambaConfig, device: str | torch.device = "cpu") -> None:
        """``device``: where the model will run, which decides what 'auto' builds (its
        parameters are created on the CPU all the same, so a seed initialises them alike)."""
        super().__init__()
        self.config = config
        # Negative eigenvalues have the countlib scan only; the config refuses other backends.
        negative = config.negative_eigenvalues
        self.choice = (
            BackendChoice("countlib")
            if negative
            else resolve_backend(config.backend, torch.device(device))
        )
        self.backend = self.choice.name
        self.backbone = nn.ModuleDict(
            dict(
                embedding=nn.Embedding(config.vocab_size, config.hidden),
                layers=nn.ModuleList(Block(config, self.backend, i) for i in range(config.layers)),
                norm_f=RMSNorm(config.hidden),
            )
        )
        self.lm_head = nn.Linear(config.hidden, config.vocab_size, bias=False)
        self.lm_head.weight = self.backbone.embedding.weight
        self._init_weights()

    def _init_weights(self) -> None:
        """mamba_ssm's init: N(0, 0.02) embedding, zero linear biases, shrunk output projections."""
        nn.init.normal_(self.backbone.embedding.weight, std=0.02)
        for block in self.backbone.layers:
            mixer = block.mixer
            for linear in (mixer.in_proj, mixer.x_proj, mixer.out_proj):  # dt_proj keeps its bias
                if linear.bias is not None:
                    nn.init.zeros_(linear.bias)
            # Each layer adds to the residual stream; scaling by 1/sqrt(layers) keeps its growth
            # independent of depth (GPT-2's rescaled pre-norm residual init).
            nn.init.kaiming_uniform_(mixer.out_proj.weight, a=math.sqrt(5))
            with torch.no_grad():
                mixer.out_proj.weight /= math.sqrt(self.config.layers)

    def forward(
        self,
        input_ids: Tensor,
        *,
        position_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        hidden, residual = self.backbone.embedding(input_ids), None
        for block in self.backbone.layers:
            hidden, residual = block(hidden, residual)
        return self._head(hidden, residual)

    def init_state(self, batch_size: int) -> list[tuple[Tensor, Tensor]]:
        """Zero (conv, ssm) state per layer for ``step``."""
        c, weight = self.config, self.lm_head.weight
        shapes = ((batch_size, c.d_inner, c.d_conv - 1), (batch_size, c.d_inner, c.d_state))
        return [tuple(weight.new_zeros(s) for s in shapes) for _ in range(c.layers)]

    def step(
        self, input_ids: Tensor, state: list[tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """Recurrent form: logits [b, vocab] for tokens [b], and the state after them."""
        hidden, residual, new_state = self.backbone.embedding(input_ids), None, []
        for block, layer_state in zip(self.backbone.layers, state, strict=True):
            hidden, residual, layer_state = block.step(hidden, residual, layer_state)
            new_state.append(layer_state)
        return self._head(hidden, residual), new_state

    def _head(self, hidden: Tensor, residual: Tensor) -> Tensor:
        residual = hidden + residual
        return self.lm_head(self.backbone.norm_f(residual.to(self.backbone.norm_f.weight.dtype)))

    def token_embedding(self) -> nn.Embedding:
        """The token lookup table, one row per vocabulary id (the trainer freezes rows of it).

        The output head is tied to it, so a frozen zero row also fixes that token's logit at 0.
        """
        return self.backbone.embedding

    def backend_choices(self) -> dict[str, BackendChoice]:
        return {"mamba": self.choice}

    def state_size(self) -> int:
        """Floats carried between tokens: conv inputs plus scan state, over layers."""
        c = self.config
        return c.layers * c.d_inner * (c.d_conv - 1 + c.d_state)
