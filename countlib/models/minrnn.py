"""minGRU and minLSTM language models (Feng et al. 2024, "Were RNNs All We Needed?",
arXiv 2410.01201).

Both drop the hidden state from their gates, which leaves a linear recurrence
h_t = a_t * h_{t-1} + b_t (elementwise) that a parallel scan computes:

* minGRU: z_t = sigmoid(W_z x_t), h~_t = g(W_h x_t); a_t = 1 - z_t, b_t = z_t h~_t.
* minLSTM: f_t = sigmoid(W_f x_t), i_t = sigmoid(W_i x_t), normalised to f' = f / (f + i) and
  i' = i / (f + i) (time-independent scale); a_t = f'_t, b_t = i'_t h~_t.

The paper's log-space version keeps everything positive, with g(x) = x + 0.5 for x >= 0 and
sigmoid(x) below, so that log h_t = a*_t + logcumsumexp_s(log b_s - a*_s), a*_t = sum_{r<=t}
log a_r (Heinsen 2023's scan). ``forward`` runs that scan chunk by chunk (the state passes between
chunks), which bounds the running sums a*_t whose cancellation costs precision over long
sequences; ``step`` runs the plain recurrence of the paper's sequential mode, h_0 = 0.

Layer: projections to the gates and h~ of width expand * hidden, the scan, a projection back.
The language model is `MixerLM`'s: pre-RMSNorm residual blocks of that layer and a SwiGLU MLP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from countlib.models.deltanet import MixerLM, check_sizes, ffn_width, full_precision
from countlib.validation import check_field_types

CELLS = ("gru", "lstm")


@dataclass
class MinGRUConfig:
    vocab_size: int
    layers: int = 2
    hidden: int = 128
    expand: int = 1  # state width = expand * hidden (the paper's expansion factor)
    d_ffn: int | None = None  # None = SwiGLU width ~ 8/3 hidden (deltanet.ffn_width); 0 = none
    chunk_size: int = 64
    cell: str = "gru"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.cell not in CELLS:
            raise ValueError(f"unknown min-RNN cell {self.cell!r}; choose from {CELLS}")
        check_sizes(self, "vocab_size", "layers", "hidden", "expand", "chunk_size")
        if self.d_ffn is not None and self.d_ffn < 0:
            raise ValueError(f"d_ffn must be >= 0 (0 = no MLP), got {self.d_ffn}")

    @property
    def d_inner(self) -> int:
        return self.expand * self.hidden


@dataclass
class MinLSTMConfig(MinGRUConfig):
    cell: str = "lstm"


def g(x: Tensor) -> Tensor:
    """The paper's positive activation for h~: x + 0.5 for x >= 0, sigmoid(x) below."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), finite everywhere (neither branch of the where sees a bad input)."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def log_space_scan(log_a: Tensor, log_b: Tensor, chunk_size: int) -> Tensor:
    """h_t = a_t h_{t-1} + b_t from h_0 = 0, for a, b > 0 given by their logs ([B, T, D]).

    Per chunk: log h_t = a*_t + log(h_prev + sum_{s <= t} exp(log b_s - a*_s)), with a*_t the
    chunk's running sum of log a, so that a*_t grows over one chunk only.
    """
    chunks, log_h = [], None
    for start in range(0, log_a.shape[1], chunk_size):
        running = log_a[:, start : start + chunk_size].cumsum(1)
        terms = log_b[:, start : start + chunk_size] - running
        if log_h is None:  # h_0 = 0 adds nothing (and its log would be -inf)
            summed = terms.logcumsumexp(1)
        else:
            summed = torch.cat([log_h.unsqueeze(1), terms], dim=1).logcumsumexp(1)[:, 1:]
        chunks.append(running + summed)
        log_h = chunks[-1][:, -1]
    return torch.cat(chunks, dim=1).exp()


class MinRNNMixer(nn.Module):
    def __init__(self, config: MinGRUConfig) -> None:
        super().__init__()
        self.config = config
        streams = 2 if config.cell == "gru" else 3  # (z, h~) or (f, i, h~)
        self.in_proj = nn.Linear(config.hidden, streams * config.d_inner)
        self.out_proj = nn.Linear(config.d_inner, config.hidden, bias=False)

    def log_coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(log a_t, log b_t) of h_t = a_t h_{t-1} + b_t, in log space as the paper's Algorithms."""
        if self.config.cell == "gru":
            k, pre_h = self.in_proj(x).chunk(2, dim=-1)
            # log(1 - sigmoid(k)) = -softplus(k), log sigmoid(k) = -softplus(-k)
            return -F.softplus(k), -F.softplus(-k) + log_g(pre_h)
        pre_f, pre_i, pre_h = self.in_proj(x).chunk(3, dim=-1)
        # log f' = log f - log(f + i) = -softplus(log i - log f), and i' likewise
        diff = F.softplus(-pre_f) - F.softplus(-pre_i)
        return -F.softplus(diff), -F.softplus(-diff) + log_g(pre_h)

    def coefficients(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, b_t) from the gates directly: the sequential mode of the paper."""
        if self.config.cell == "gru":
            k, pre_h = self.in_proj(x).chunk(2, dim=-1)
            z = torch.sigmoid(k)
            return 1 - z, z * g(pre_h)
        pre_f, pre_i, pre_h = self.in_proj(x).chunk(3, dim=-1)
        f, i = torch.sigmoid(pre_f), torch.sigmoid(pre_i)
        return f / (f + i), i / (f + i) * g(pre_h)

    def forward(self, x: Tensor) -> Tensor:
        log_a, log_b = self.log_coefficients(x)
        h = full_precision(log_space_scan, log_a, log_b, chunk_size=self.config.chunk_size)
        return self.out_proj(h)

    def step(self, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple[Tensor, ...]]:
        a, b = self.coefficients(x)
        h = a * state[0] + b
        return self.out_proj(h), (h,)

    def init_state(self, batch: int) -> tuple[Tensor, ...]:
        return (self.out_proj.weight.new_zeros(batch, self.config.d_inner),)

    def state_floats(self) -> int:
        return self.config.d_inner


class MinRNNModel(MixerLM):
    """minGRU or minLSTM (``cell``) language model."""

    def __init__(self, config: MinGRUConfig) -> None:
        mixers = [MinRNNMixer(config) for _ in range(config.layers)]
        super().__init__(config, mixers, ffn_width(config.hidden, config.d_ffn))
