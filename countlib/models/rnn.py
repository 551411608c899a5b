"""Elman RNN, LSTM and GRU language models: embedding, recurrent stack, linear head.

Initialisation follows the original: embedding and head N(0, 0.02), recurrent weights keep
PyTorch's uniform(+-1/sqrt(hidden)) default.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from countlib.validation import check_field_types


@dataclass
class RNNConfig:
    vocab_size: int
    layers: int = 1
    hidden: int = 128
    dropout: float = 0.0
    cell: str = "rnn"

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.cell not in _CELLS:
            raise ValueError(f"unknown cell {self.cell!r}; choose from {sorted(_CELLS)}")
        if self.layers < 1 or self.hidden < 1:
            raise ValueError("layers and hidden must be positive")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass
class LSTMConfig(RNNConfig):
    cell: str = "lstm"


@dataclass
class GRUConfig(RNNConfig):
    cell: str = "gru"


_CELLS: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RecurrentModel(nn.Module):
    def __init__(self, config: RNNConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.hidden)
        self.rnn = _CELLS[config.cell](
            config.hidden,
            config.hidden,
            num_layers=config.layers,
            # PyTorch applies this between layers only; a 1-layer stack would just warn.
            dropout=config.dropout if config.layers > 1 else 0.0,
            batch_first=True,
        )
        self.head = nn.Linear(config.hidden, config.vocab_size, bias=False)
        nn.init.normal_(self.embedding.weight, std=0.02)
        nn.init.normal_(self.head.weight, std=0.02)

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden, _ = self.rnn(self.embedding(input_ids))
        return self.head(hidden)

    def token_embedding(self) -> nn.Embedding:
        """The token lookup table, one row per vocabulary id (the trainer freezes rows of it)."""
        return self.embedding

    def state_size(self) -> int:
        """Floats carried from one step to the next (zoology's fair-comparison measure)."""
        per_layer = self.config.hidden * (2 if self.config.cell == "lstm" else 1)
        return per_layer * self.config.layers
