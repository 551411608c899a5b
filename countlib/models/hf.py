"""A Hugging Face ``transformers`` causal language model as a countlib family, ``hf``.

The option ``hf_config`` names the architecture by its transformers config class (``LlamaConfig``,
``GPT2Config``, ``MambaConfig``, ... any config of a causal LM); the model is built from that
config with random weights (``AutoModelForCausalLM.from_config``: nothing is downloaded).
``hidden``, ``layers``, ``heads`` and ``max_positions`` set the config's hidden size, layer and
head counts and position range under whatever names the config class gives them (``heads`` and
``max_positions`` only where it has them: Mamba has neither); ``options`` sets any other field,
e.g. ``{"intermediate_size": 128}`` (by default 4 x hidden where the config has the field).

The family enters through the same door as a user's model: ``hf`` is an import path
(`countlib.families.EXTRA_FAMILIES`) that registers on first use with `HFCausalLM`'s
``family_defaults``. ``transformers`` is the optional extra ``countlib[hf]``.

Positions and masks: countlib's position ids and attention mask go to the model where its
forward takes them (Llama and GPT-2 take both, Mamba the mask only), as ``position_ids`` and as
HF's 0/1 ``attention_mask`` (0 where countlib's mask is False: padding and ``<pad>`` helpers,
keys nobody may attend to). The default position scheme ``none`` gives 0, 1, 2, ... as HF's own
default does; a shifted scheme needs ``max_positions`` to cover its range (countlib sets the
task's), and float position values are refused.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from countlib.families import ModelImportError
from countlib.validation import check_field_types

#: countlib's option -> the standard transformers config attribute it sets.
STANDARD_NAMES = {
    "hidden": "hidden_size",
    "layers": "num_hidden_layers",
    "heads": "num_attention_heads",
    "max_positions": "max_position_embeddings",
}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ModelImportError(
            "model 'hf' needs the transformers package: pip install 'countlib[hf]' (or pip "
            "install transformers)"
        ) from None
    return transformers


def causal_lm_configs() -> list[str]:
    """The transformers config classes, by name, that build a causal language model."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    return sorted({CONFIG_MAPPING_NAMES[key] for key in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES})


@dataclass
class HFConfig:
    vocab_size: int
    #: The transformers config class of the architecture (a table column of its own).
    hf_config: str = "LlamaConfig"
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    #: The position range of the model (learned or rotary positions); the task's unless set.
    max_positions: int = 128
    #: Any other field of the transformers config.
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_field_types(self)
        _transformers()
        valid = causal_lm_configs()
        if self.hf_config not in valid:
            close = difflib.get_close_matches(self.hf_config, valid, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(
                f"hf_config {self.hf_config!r} is no transformers causal-LM config; {hint}e.g. "
                "LlamaConfig, GPT2Config, MambaConfig (all: countlib.models.hf.causal_lm_configs())"
            )

    def check_positions(self, scheme: str, *, floats: bool, needed: int) -> None:
        """Integer ids within ``max_positions`` only, said before training."""
        if floats:
            raise ValueError(
                f"model 'hf' takes integer position ids; position scheme {scheme!r} gives floats"
            )
        if needed > self.max_positions:
            raise ValueError(
                f"the task needs {needed} position ids, above max_positions = "
                f"{self.max_positions}; set max_positions to at least {needed}"
            )

    def transformers_config(self) -> Any:
        """The transformers config these options describe."""
        config_class = getattr(_transformers(), self.hf_config)
        takes = inspect.signature(config_class.__init__).parameters
        renamed = getattr(config_class, "attribute_map", {})
        # countlib's vocabulary has its own special tokens: none of the config's defaults
        values = {"vocab_size": self.vocab_size}
        values |= dict.fromkeys(("pad_token_id", "bos_token_id", "eos_token_id"))
        for option, standard in STANDARD_NAMES.items():
            name = renamed.get(standard, standard)
            if name in takes:
                values[name] = getattr(self, option)
        if "intermediate_size" in takes:
            values["intermediate_size"] = 4 * self.hidden
        return config_class(**(values | self.options))


class HFCausalLM(nn.Module):
    """A Hugging Face transformers causal LM built from its config (random weights)."""

    config_class = HFConfig
    #: CPU-scale defaults without a source (the families beyond the paper's: lr 1e-3, 10k
    #: steps), with the Transformer's weight decay and bf16 on a GPU.
    family_defaults = {
        "lr": 1e-3,
        "weight_decay": 0.01,
        "warmup_steps": 0,
        "steps": 10_000,
        "gpu_precision": "bf16",
        "tiny_options": {"hidden": 16, "layers": 1, "heads": 2},
    }

    def __init__(self, config: HFConfig) -> None:
        super().__init__()
        from transformers import AutoModelForCausalLM

        self.config = config
        self.lm = AutoModelForCausalLM.from_config(config.transformers_config())
        self._takes = set(inspect.signature(self.lm.forward).parameters)

    def forward(
        self,
        input_ids: torch.Tensor,
        *,
        position_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra: dict[str, torch.Tensor] = {}
        if position_ids is not None and "position_ids" in self._takes:
            extra["position_ids"] = position_ids
        if attention_mask is not None and "attention_mask" in self._takes:
            extra["attention_mask"] = attention_mask.long()
        return self.lm(input_ids=input_ids, use_cache=False, **extra).logits

    def token_embedding(self) -> nn.Embedding:
        return self.lm.get_input_embeddings()
