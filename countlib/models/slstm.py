"""sLSTM language model (Beck et al., NeurIPS 2024, "xLSTM: Extended Long Short-Term Memory",
arXiv 2405.04517, section 2.2).

The sLSTM keeps a scalar memory per unit with an exponential input gate, a normaliser and a
stabiliser. With pre-activations p~ = W_p x_t + R_p h_{t-1} + b_p for p in (z, i, f, o):

    m_t = max(log f_t + m_{t-1}, i~_t)                       (stabiliser; log f_t = logsigmoid(f~))
    i'_t = exp(i~_t - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t tanh(z~_t),  n_t = f'_t n_{t-1} + i'_t
    h_t = sigmoid(o~_t) c_t / n_t

The stabiliser rescales c and n alike, so h is the paper's unstabilised exp-gate cell. The first
token starts with m_1 = i~_1 (nothing is stored yet to weigh against: xLSTM's reference cell does
the same), so i'_1 = 1 and n_t >= 1 from then on: the division is safe. The forget gate is the
sigmoid the paper allows besides exp. The recurrent matrices R are block-diagonal, one block per
head, which is what makes the heads separate memories.

Recurrent only: h_{t-1} enters the gates through a nonlinearity, so there is no parallel or
chunked form (Beck et al.: sLSTM "is not parallelizable"); ``forward`` loops over time with the
input projections computed for the whole sequence at once, ``step`` does one token.

Block: pre-RMSNorm, the sLSTM cell, per-head GroupNorm into the residual, then a SwiGLU MLP of
width ~4/3 hidden (xLSTM's sLSTM block: post up-projection with factor 4/3); xLSTM's optional
causal conv before the i and f gates is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from countlib.models.deltanet import MixerLM, check_sizes
from countlib.validation import check_field_types

#: Positive forget-gate biases, spread over each head's units, so that the cell starts with long
#: memories (xLSTM initialises the sLSTM forget-gate bias to positive values).
FORGET_BIAS_RANGE = (3.0, 6.0)


@dataclass
class SLSTMConfig:
    vocab_size: int
    layers: int = 2
    hidden: int = 128
    heads: int = 4
    d_ffn: int | None = None  # None = 4/3 hidden rounded up to a multiple of 8; 0 = no MLP

    def __post_init__(self) -> None:
        check_field_types(self)
        check_sizes(self, "vocab_size", "layers", "hidden", "heads")
        if self.hidden % self.heads:
            raise ValueError(f"heads {self.heads} must divide hidden {self.hidden}")
        if self.d_ffn is not None and self.d_ffn < 0:
            raise ValueError(f"d_ffn must be >= 0 (0 = no MLP), got {self.d_ffn}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def ffn(self) -> int:
        return 8 * math.ceil(4 * self.hidden / 3 / 8) if self.d_ffn is None else self.d_ffn


def slstm_cell(
    pre: Tensor, state: tuple[Tensor, Tensor, Tensor, Tensor]
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One stabilised step from pre-activations [B, 4, H, d] (z, i, f, o, recurrent part
    included) and state (c, n, m, h) [B, H, d] each; returns the new state, h last."""
    c, n, m, _ = state
    z, i, f, o = pre.unbind(1)
    log_f = F.logsigmoid(f)
    start = n == 0
    m_new = torch.where(start, i, torch.maximum(i, log_f + m))
    input_gate = torch.exp(i - m_new)
    # <= 0 whenever the state holds something; clamped for the first token, whose f' only ever
    # multiplies the zero c and n (unclamped it could overflow, and inf * 0 is NaN).
    forget_gate = torch.exp((log_f + m - m_new).clamp(max=0.0))
    c = forget_gate * c + input_gate * torch.tanh(z)
    n = forget_gate * n + input_gate
    return c, n, m_new, torch.sigmoid(o) * c / n


class SLSTMMixer(nn.Module):
    def __init__(self, config: SLSTMConfig) -> None:
        super().__init__()
        self.config = config
        heads, size = config.heads, config.head_dim
        self.gates = nn.Linear(config.hidden, 4 * config.hidden)  # W and b of z, i, f, o
        # Block-diagonal R: [head, from unit, gate, to unit], PyTorch LSTM's uniform init.
        bound = size**-0.5
        self.recurrent = nn.Parameter(torch.empty(heads, size, 4, size).uniform_(-bound, bound))
        with torch.no_grad():
            low, high = FORGET_BIAS_RANGE
            bias = self.gates.bias.view(4, heads, size)
            bias[2] = torch.linspace(low, high, size)
            bias[1] = 0.0
        self.norm = nn.GroupNorm(heads, config.hidden)

    def _pre(self, x: Tensor) -> Tensor:
        """Input pre-activations [..., 4, H, d]."""
        return self.gates(x).unflatten(-1, (4, self.config.heads, self.config.head_dim))

    def _cell(self, pre: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        pre = pre + torch.einsum("bhd,hdge->bghe", state[3], self.recurrent)
        return slstm_cell(pre, state)

    def _output(self, h: Tensor) -> Tensor:
        """Per-head GroupNorm of h [..., H, d] -> [..., hidden]."""
        flat = h.flatten(-2)
        return self.norm(flat.reshape(-1, flat.shape[-1])).view(flat.shape)

    def forward(self, x: Tensor) -> Tensor:
        pre = self._pre(x)
        # The recurrence runs in fp32 at least, autocast or not: exp gates overflow in bf16.
        dtype = torch.promote_types(pre.dtype, torch.float32)
        with torch.autocast(x.device.type, enabled=False):
            pre = pre.to(dtype)
            state = tuple(s.to(dtype) for s in self.init_state(x.shape[0]))
            outputs = []
            for t in range(x.shape[1]):
                state = self._cell(pre[:, t], state)
                outputs.append(state[3])
            return self._output(torch.stack(outputs, dim=1)).to(x.dtype)

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        state = self._cell(self._pre(x), state)
        return self._output(state[3]), state

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        """(c, n, m, h), zero: n = 0 marks the start for the stabiliser."""
        shape = (batch, self.config.heads, self.config.head_dim)
        return tuple(self.recurrent.new_zeros(shape) for _ in range(4))

    def state_floats(self) -> int:
        return 4 * self.config.hidden


class SLSTMModel(MixerLM):
    def __init__(self, config: SLSTMConfig) -> None:
        super().__init__(config, [SLSTMMixer(config) for _ in range(config.layers)], config.ffn)
