"""RWKV-6 ("Finch") and RWKV-5 ("Eagle") language models in plain PyTorch.

Structure (seed-spec 2.4, the original's ``x060``): embedding, dropout, L blocks, LayerNorm,
bias-free head. Block 0 first applies an extra LayerNorm; every block does
``x = drop(x + TimeMix(LN1(x)))`` then ``x = drop(x + ChannelMix(LN2(x)))``.

TimeMix mixes each token with the previous one (token shift), projects to receptance r, key k,
value v and gate g, and runs the per-head WKV recurrence with a state S of head_size x head_size
(key index j, value index i):

    y_t[i] = sum_j r_t[j] * (u[j] * k_t[j] * v_t[i] + S[j, i])
    S[j, i] <- exp(-exp(w_t[j])) * S[j, i] + k_t[j] * v_t[i]

Version 6 makes the shift interpolation and the decay logit w_t data-dependent through small
tanh LoRAs; version 5 keeps both static (w is one learned value per channel). The WKV output is
group-normed per head, gated by SiLU(g) and projected back.

WKV backends (``backend``): ``"countlib"`` runs one of two equivalent pure-PyTorch forms
(``form``): ``"recurrent"`` loops over time; ``"chunked"`` handles pairs inside a chunk in
parallel and passes the state between chunks. ``"fla"`` runs flash-linear-attention's Triton
kernel (CUDA only); ``"auto"`` takes it on CUDA when it imports, else the countlib form.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from countlib.models.backends import FLA_INSTALL, BackendChoice, BackendUnavailableError
from countlib.validation import check_field_types

FORMS = ("chunked", "recurrent")
BACKENDS = ("auto", "countlib", "fla")
VERSIONS = (5, 6)
# Cap of the decay logit w. Beyond it the decay exp(-exp(w)) <= e^-148 is 0 in fp32 anyway (and in
# the original kernel, which computes it in fp32), so the cap changes no fp32 result; it keeps
# exp(w) finite (no inf * 0 in backward) and each chunk's cumulative log-decay small enough that
# its rounding error is negligible.
MAX_DECAY_LOGIT = 5.0


@dataclass
class RWKVConfig:
    vocab_size: int
    layers: int = 4
    hidden: int = 128  # n_embd
    head_size: int = 64
    dim_att: int | None = None  # None = hidden
    dim_ffn: int | None = None  # None = int(3.5 * hidden / 32) * 32
    dropout: float = 0.1
    version: int = 6
    mix_lora_rank: int = 32  # v6 only
    decay_lora_rank: int = 64  # v6 only
    head_size_divisor: int = 8  # the WKV GroupNorm's eps is 1e-5 * divisor**2
    form: str = "chunked"
    chunk_size: int = 8
    backend: str = "auto"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.version not in VERSIONS:
            raise ValueError(f"unknown RWKV version {self.version!r}; choose from {VERSIONS}")
        if self.form not in FORMS:
            raise ValueError(f"unknown WKV form {self.form!r}; choose from {FORMS}")
        if self.backend not in BACKENDS:
            raise ValueError(f"unknown WKV backend {self.backend!r}; choose from {BACKENDS}")
        sizes = {
            "vocab_size": self.vocab_size,
            "layers": self.layers,
            "hidden": self.hidden,
            "head_size": self.head_size,
            "dim_att": self.d_att,
            "dim_ffn": self.d_ffn,
            "mix_lora_rank": self.mix_lora_rank,
            "decay_lora_rank": self.decay_lora_rank,
            "head_size_divisor": self.head_size_divisor,
            "chunk_size": self.chunk_size,
        }
        bad = [name for name, value in sizes.items() if value < 1]
        if bad:
            raise ValueError(f"{', '.join(bad)} must be >= 1")
        if self.d_att % self.head_size:
            raise ValueError(
                f"head_size {self.head_size} must divide dim_att {self.d_att} "
                f"(dim_att defaults to hidden)"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def d_att(self) -> int:
        return self.hidden if self.dim_att is None else self.dim_att

    @property
    def d_ffn(self) -> int:
        return int(3.5 * self.hidden / 32) * 32 if self.dim_ffn is None else self.dim_ffn

    @property
    def heads(self) -> int:
        return self.d_att // self.head_size


@dataclass
class RWKV5Config(RWKVConfig):
    version: int = 5


# -- WKV: per-head linear attention with decay -------------------------------------------------
# All countlib forms take r, k, v, log_decay of shape [B, H, T, N] (log_decay = -exp(w) <= 0)
# and the bonus u of shape [H, N], and return y of shape [B, H, T, N].


def _bonus_term(r: Tensor, k: Tensor, v: Tensor, bonus: Tensor) -> Tensor:
    """The current token's own contribution, which skips the state and its decay."""
    return (r * bonus[:, None] * k).sum(-1, keepdim=True) * v


class _DecayScan(torch.autograd.Function):
    """The states S_0 .. S_{n-1} of S_{c+1} = diag(a_c) S_c + X_c, S_0 = 0, scanned over dim -3.

    ``a`` [..., n, N] decays the rows (key index) of ``x`` [..., n, N, N]. Both WKV forms run it:
    over tokens with X_t = k_t v_t^T, or over chunks with each chunk's summed contribution. It
    has a hand-written backward because autograd through the loop allocates a full-size gradient
    per step. Backward: with G_c = dL/dS_c in full, G_c = dS_c + diag(a_c) G_{c+1}; then
    dX_c = G_{c+1} and da_c[j] = sum_i G_{c+1}[j, i] S_c[j, i].
    """

    @staticmethod
    def forward(ctx: Any, a: Tensor, x: Tensor) -> Tensor:
        states = torch.empty_like(x)
        states[..., 0, :, :] = 0
        for c in range(x.shape[-3] - 1):
            torch.addcmul(
                x[..., c, :, :],
                a[..., c, :, None],
                states[..., c, :, :],
                out=states[..., c + 1, :, :],
            )
        ctx.save_for_backward(a, states)
        return states

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, d_states: Tensor) -> tuple[Tensor, Tensor]:
        a, states = ctx.saved_tensors
        grads = d_states.clone()
        for c in reversed(range(states.shape[-3] - 1)):
            grads[..., c, :, :].addcmul_(a[..., c, :, None], grads[..., c + 1, :, :])
        later = grads[..., 1:, :, :]
        d_x = F.pad(later, (0, 0, 0, 0, 0, 1))  # the last X feeds no returned state
        d_a = F.pad((later * states[..., :-1, :, :]).sum(-1), (0, 0, 0, 1))
        return d_a, d_x


def wkv_recurrent(r: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, bonus: Tensor) -> Tensor:
    """The WKV recurrence token by token (the reference form); holds all T states at once."""
    states = _DecayScan.apply(log_decay.exp(), k.unsqueeze(-1) * v.unsqueeze(-2))
    return (r.unsqueeze(-2) @ states).squeeze(-2) + _bonus_term(r, k, v, bonus)


def wkv_chunked(
    r: Tensor, k: Tensor, v: Tensor, log_decay: Tensor, bonus: Tensor, chunk_size: int
) -> Tensor:
    """The WKV recurrence in chunks: pairs inside a chunk in parallel, the state between chunks.

    Every decay factor is exp of a sum of log-decays over a stretch of one chunk: every exponent
    is <= 0, so nothing overflows however strong the decay. The quadratic part costs
    chunk_size x head_size per token; small chunks are fastest on CPU.
    """
    batch, heads, steps, size = r.shape
    chunk = min(chunk_size, steps)
    pad = -steps % chunk
    chunks = (steps + pad) // chunk
    # Zero padding at the end: it only follows the real tokens, so it changes none of them.
    r, k, v, log_decay = (
        F.pad(x, (0, 0, 0, pad)).reshape(batch, heads, chunks, chunk, size)
        for x in (r, k, v, log_decay)
    )
    # Each decay is summed over its own stretch of the chunk, never taken as a difference of two
    # running sums: after a strong decay early in the chunk that difference would cancel badly.
    shifted = F.pad(log_decay[..., :-1, :], (0, 0, 1, 0))  # token t - 1's log-decay, at t
    before = shifted.cumsum(-2)  # the chunk's tokens before t
    total = before[..., -1:, :] + log_decay[..., -1:, :]  # the whole chunk
    after = F.pad(log_decay[..., 1:, :], (0, 0, 0, 1)).flip(-2).cumsum(-2).flip(-2)  # after s

    # Inside a chunk: y_t gets v_s (s < t) weighted by sum_j r_t[j] k_s[j] exp(between[t, s, j]),
    # with between[t, s] the summed log-decays of the tokens strictly between s and t.
    ones = torch.ones(chunk, chunk, dtype=torch.bool, device=r.device)
    between = (shifted.unsqueeze(-2) * ones.tril(-2)[..., None]).cumsum(-3)  # [..., t, s, N]
    exponent = between.masked_fill(~ones.tril(-1)[..., None], -math.inf)
    scores = (r.unsqueeze(-2) * k.unsqueeze(-3) * exponent.exp()).sum(-1)
    scores = scores + torch.diag_embed((r * bonus[:, None, None] * k).sum(-1))
    y = scores @ v

    # Between chunks: the state at each chunk's start, read out with the decay since that start.
    chunk_kv = (k * after.exp()).transpose(-1, -2) @ v  # [B, H, chunks, N, N]
    states = _DecayScan.apply(total.squeeze(-2).exp(), chunk_kv)
    y = y + (r * before.exp()) @ states
    return y.reshape(batch, heads, chunks * chunk, size)[:, :, :steps]


@functools.cache
def _import_fla() -> tuple[Callable[..., Any] | None, str]:
    """flash-linear-attention's chunked RWKV-6 kernel, or None and why (tried once)."""
    try:
        from fla.ops.rwkv6 import chunk_rwkv6
    except ImportError as error:
        return None, str(error)
    return chunk_rwkv6, ""


def _fla_kernel() -> Callable[..., Any]:
    kernel, error = _import_fla()
    if kernel is None:
        raise BackendUnavailableError(
            f"WKV backend 'fla' cannot load ({error}); install it with: {FLA_INSTALL}"
        )
    return kernel


def resolve_backend(config: RWKVConfig, device: torch.device) -> BackendChoice:
    """The WKV implementation that runs for ``config`` on ``device``, and why 'auto' passed
    over fla's kernel on CUDA."""
    countlib = BackendChoice(f"countlib-{config.form}")
    if config.backend == "countlib":
        return countlib
    if device.type != "cuda":
        if config.backend == "fla":
            raise BackendUnavailableError(
                "WKV backend 'fla' runs Triton kernels on CUDA only; use backend 'countlib' or "
                "'auto' on this device"
            )
        return countlib
    if config.backend == "auto":
        kernel, error = _import_fla()
        if kernel is None:
            return countlib._replace(why=f"auto: fla cannot load ({error})")
        return BackendChoice("fla-chunk")
    _fla_kernel()
    return BackendChoice("fla-chunk")


def wkv(
    r: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    bonus: Tensor,
    backend: str,
    chunk_size: int,
) -> Tensor:
    """WKV of [B, T, H, N] inputs with the resolved ``backend``; returns [B, T, H, N].

    The countlib forms run in at least fp32 whatever autocast says, as the original kernels
    accumulate in fp32: decayed sums over many tokens lose too much in bf16.
    """
    if backend == "fla-chunk":
        dtype = r.dtype
        y, _ = _fla_kernel()(
            r, k.to(dtype), v.to(dtype), log_decay.to(dtype), bonus.to(dtype), scale=1.0
        )
        return y
    dtype = torch.promote_types(r.dtype, torch.float32)
    with torch.autocast(r.device.type, enabled=False):
        r, k, v, log_decay = (x.transpose(1, 2).to(dtype) for x in (r, k, v, log_decay))
        bonus = bonus.to(dtype)
        if backend == "countlib-chunked":
            y = wkv_chunked(r, k, v, log_decay, bonus, chunk_size)
        else:
            y = wkv_recurrent(r, k, v, log_decay, bonus)
    return y.transpose(1, 2)


# -- blocks ---------------------------------------------------------------------------------------


def token_shift(x: Tensor) -> Tensor:
    """The previous token's vector at every position ([B, T, C]); zeros at t = 0."""
    return F.pad(x, (0, 0, 1, -1))


def _ramp(size: int) -> Tensor:
    """i / size for channel i: the channel-dependent base of the original's init formulas."""
    return torch.arange(size, dtype=torch.float32) / size


def _layer_ratios(layer: int, layers: int) -> tuple[float, float]:
    """(0 at the first layer -> 1 at the last, 1 at the first -> almost 0 at the last)."""
    rising = layer / (layers - 1) if layers > 1 else 0.0
    return rising, 1.0 - layer / layers


class TimeMix(nn.Module):
    def __init__(self, config: RWKVConfig, layer: int) -> None:
        super().__init__()
        self.config = config
        hidden, dim_att = config.hidden, config.d_att
        rising, falling = _layer_ratios(layer, config.layers)
        ramp = _ramp(hidden)

        # Shift interpolation x + (shift(x) - x) * mix, one row per stream; v6 also mixes w.
        self.streams = ("w", "k", "v", "r", "g") if config.version == 6 else ("k", "v", "r", "g")
        base = {
            "w": 1 - ramp**falling,
            "k": 1 - ramp**falling,
            "v": 1 - (ramp**falling + 0.3 * rising),
            "r": 1 - ramp ** (0.5 * falling),
            "g": 1 - ramp ** (0.5 * falling),
        }
        self.mix = nn.Parameter(torch.stack([base[s] for s in self.streams]))

        # Decay logit per channel: slow in early channels and layers, fast in late ones.
        channel = torch.arange(dim_att, dtype=torch.float32) / max(dim_att - 1, 1)
        self.time_decay = nn.Parameter(-6 + 5 * channel ** (0.7 + 1.3 * rising))
        # Bonus u of the current token, with a +-0.1 zigzag over channels.
        zigzag = ((torch.arange(dim_att) + 1) % 3 - 1) * 0.1
        self.bonus = nn.Parameter((rising * (1 - channel) + zigzag).view(config.heads, -1))

        if config.version == 6:
            # Down-projections start at zero, so v6 starts as v5 and the LoRAs grow from there.
            self.mix_x = nn.Parameter(1 - ramp**falling)
            self.mix_lora_down = nn.Parameter(torch.zeros(hidden, 5 * config.mix_lora_rank))
            self.mix_lora_up = nn.Parameter(
                torch.empty(5, config.mix_lora_rank, hidden).uniform_(-0.01, 0.01)
            )
            self.decay_lora_down = nn.Parameter(torch.zeros(hidden, config.decay_lora_rank))
            self.decay_lora_up = nn.Parameter(
                torch.empty(config.decay_lora_rank, dim_att).uniform_(-0.01, 0.01)
            )

        self.receptance = nn.Linear(hidden, dim_att, bias=False)
        self.key = nn.Linear(hidden, dim_att, bias=False)
        self.value = nn.Linear(hidden, dim_att, bias=False)
        self.gate = nn.Linear(hidden, dim_att, bias=False)
        self.output = nn.Linear(dim_att, hidden, bias=False)
        self.ln_x = nn.GroupNorm(config.heads, dim_att, eps=1e-5 * config.head_size_divisor**2)
        with torch.no_grad():
            self.ln_x.weight.fill_(((layer + 1) / config.layers) ** 0.7)

    def _mix_offsets(self, x: Tensor, shifted: Tensor) -> Tensor:
        """v6's data-dependent mix offsets, [5, B, T, C], from a rank-r tanh LoRA."""
        batch, steps, _ = x.shape
        hidden = torch.tanh((x + shifted * self.mix_x) @ self.mix_lora_down)
        hidden = hidden.view(batch, steps, 5, -1)
        return torch.einsum("btmr,mrc->mbtc", hidden, self.mix_lora_up)

    def forward(self, x: Tensor, backend: str) -> Tensor:
        batch, steps, _ = x.shape
        heads, size = self.config.heads, self.config.head_size
        shifted = token_shift(x) - x
        mix = self.mix[:, None, None]
        if self.config.version == 6:
            mix = mix + self._mix_offsets(x, shifted)
        streams = dict(zip(self.streams, (x + shifted * mix).unbind(0), strict=True))

        decay_logit = self.time_decay
        if self.config.version == 6:
            lora = torch.tanh(streams["w"] @ self.decay_lora_down) @ self.decay_lora_up
            decay_logit = decay_logit + lora
        log_decay = -decay_logit.clamp(max=MAX_DECAY_LOGIT).exp()
        log_decay = log_decay.expand(batch, steps, -1).reshape(batch, steps, heads, size)

        def split(t: Tensor) -> Tensor:
            return t.view(batch, steps, heads, size)

        r = split(self.receptance(streams["r"]))
        k = split(self.key(streams["k"]))
        v = split(self.value(streams["v"]))
        g = F.silu(self.gate(streams["g"]))
        y = wkv(r, k, v, log_decay, self.bonus, backend, self.config.chunk_size)
        y = self.ln_x(y.reshape(batch * steps, -1)).view(batch, steps, -1)
        return self.output(y * g)


class ChannelMix(nn.Module):
    def __init__(self, config: RWKVConfig, layer: int) -> None:
        super().__init__()
        _, falling = _layer_ratios(layer, config.layers)
        ramp = _ramp(config.hidden)
        self.mix_k = nn.Parameter(1 - ramp**falling)
        self.mix_r = nn.Parameter(1 - ramp**falling)
        self.key = nn.Linear(config.hidden, config.d_ffn, bias=False)
        self.receptance = nn.Linear(config.hidden, config.hidden, bias=False)
        self.value = nn.Linear(config.d_ffn, config.hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        shifted = token_shift(x) - x
        k = torch.relu(self.key(x + shifted * self.mix_k)).square()
        return torch.sigmoid(self.receptance(x + shifted * self.mix_r)) * self.value(k)


class Block(nn.Module):
    def __init__(self, config: RWKVConfig, layer: int) -> None:
        super().__init__()
        self.ln0 = nn.LayerNorm(config.hidden) if layer == 0 else None
        self.ln1 = nn.LayerNorm(config.hidden)
        self.ln2 = nn.LayerNorm(config.hidden)
        self.att = TimeMix(config, layer)
        self.ffn = ChannelMix(config, layer)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, backend: str) -> Tensor:
        if self.ln0 is not None:
            x = self.ln0(x)
        x = self.drop(x + self.att(self.ln1(x), backend))
        return self.drop(x + self.ffn(self.ln2(x)))


# -- model ----------------------------------------------------------------------------------------

# Linear maps that start at zero (each block's residual branches start silent) or small.
_ZERO = ("att.output", "ffn.value", "ffn.receptance")
_SMALL = ("att.key", "att.gate")


class RWKVModel(nn.Module):
    def __init__(self, config: RWKVConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config, i) for i in range(config.layers))
        self.ln_out = nn.LayerNorm(config.hidden)
        self.head = nn.Linear(config.hidden, config.vocab_size, bias=False)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -1e-4, 1e-4)
        for name, module in self.named_modules():
            if not isinstance(module, nn.Linear):
                continue
            rows, cols = module.weight.shape
            # Orthogonal with gain sqrt(out/in) for expanding maps, scaled per role.
            gain = math.sqrt(rows / cols) if rows > cols else 1.0
            if name == "head":
                gain *= 0.5
            elif name.endswith(_SMALL):
                gain *= 0.1
            if name.endswith(_ZERO):
                nn.init.zeros_(module.weight)
            else:
                nn.init.orthogonal_(module.weight, gain=gain)

    def token_embedding(self) -> nn.Embedding:
        """The token lookup table, one row per vocabulary id (the trainer freezes rows of it)."""
        return self.embedding

    def backend_choices(self) -> dict[str, BackendChoice]:
        return {"wkv": resolve_backend(self.config, self.head.weight.device)}

    def forward(
        self,
        input_ids: Tensor,
        *,
        position_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
    ) -> Tensor:
        backend = resolve_backend(self.config, input_ids.device).name
        x = self.drop(self.embedding(input_ids))
        for block in self.blocks:
            x = block(x, backend)
        return self.head(self.ln_out(x))

    def state_size(self) -> int:
        """Floats carried from one token to the next: the WKV states plus two shifted tokens."""
        per_layer = self.config.d_att * self.config.head_size + 2 * self.config.hidden
        return per_layer * self.config.layers

    def param_groups(self, optim: Any) -> list[dict[str, Any]]:
        """AdamW groups as in the original: 2x lr for the decay base, weight decay on matrices.

        The decay LoRA keeps 1x (the original's name rules catch ``_w1``/``_w2`` first); weight
        decay applies to the weight matrices of the embedding, linear maps and head only.
        """
        decay_base, matrices, rest = [], [], []
        for name, param in self.named_parameters():
            if name.endswith(".time_decay"):
                decay_base.append(param)
            elif name.endswith(".weight") and param.dim() >= 2:
                matrices.append(param)
            else:
                rest.append(param)
        return [
            {"params": matrices, "weight_decay": optim.weight_decay},
            {"params": rest, "weight_decay": 0.0},
            {"params": decay_base, "weight_decay": 0.0, "lr": 2 * optim.lr},
        ]


# -- training loss -------------------------------------------------------------------------------


class L2Wrap(torch.autograd.Function):
    """RWKV-LM's logit regulariser (seed-spec 3.5) around a loss computed from ``logits``.

    Forward returns the loss unchanged. Backward adds, at every position of ``logits``
    [..., V], ``coefficient * max_v logits[..., v]`` to the gradient of that position's arg-max
    logit, which pulls the largest logit towards 0. The original's coefficient is
    1e-4 / (B * T) over its whole [B, T, V] logits, labelled or not. The added gradient is
    scaled by the loss's incoming gradient (1 in the original, which did no loss scaling), so
    that it survives fp16 loss scaling as the loss's own gradient does.
    """

    @staticmethod
    def forward(ctx: Any, loss: Tensor, logits: Tensor, coefficient: float) -> Tensor:
        ctx.save_for_backward(logits)
        ctx.coefficient = coefficient
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: Tensor) -> tuple[Tensor, Tensor, None]:
        (logits,) = ctx.saved_tensors
        top, index = logits.max(dim=-1, keepdim=True)
        grad_logits = torch.zeros_like(logits).scatter_(-1, index, top * ctx.coefficient)
        return grad_loss, grad_logits * grad_loss, None


def l2wrap(loss: Tensor, logits: Tensor, coefficient: float) -> Tensor:
    """``loss`` with `L2Wrap`'s extra gradient on ``logits``."""
    return L2Wrap.apply(loss, logits, coefficient)
