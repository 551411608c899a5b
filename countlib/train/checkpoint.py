"""Checkpoint files that load safely: tensors and plain containers only, never pickled objects.

A full checkpoint (`last.pt`) holds everything needed for an exact resume; best checkpoints hold
model weights only, in safetensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from countlib.train.records import temp_file_beside

FORMAT = "countlib-checkpoint-v1"


class CheckpointError(RuntimeError):
    """A checkpoint that is truncated, foreign, or belongs to another run."""


def _atomic(path: Path, write) -> None:
    fd, tmp = temp_file_beside(path)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_state(path: str | Path, state: dict[str, Any], config_hash: str) -> None:
    payload = {"format": FORMAT, "config_hash": config_hash, **state}
    _atomic(Path(path), lambda tmp: torch.save(payload, tmp))


def load_state(path: str | Path, config_hash: str | None = None) -> dict[str, Any]:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for truncated or non-torch files
        raise CheckpointError(f"{path} is not a readable countlib checkpoint: {err}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a countlib checkpoint (expected format {FORMAT})")
    if config_hash is not None and payload["config_hash"] != config_hash:
        raise CheckpointError(
            f"{path} belongs to run {payload['config_hash']}, not to this run ({config_hash})"
        )
    return payload


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, str]) -> None:
    # clone: safetensors refuses tensors that share storage (tied embeddings and heads)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    _atomic(
        Path(path), lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT, **metadata})
    )


def load_weights(path: str | Path, config_hash: str | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a weights file; given ``config_hash``, only if the file says it was
    written by that run (a best checkpoint copied from another run of the same shape would
    otherwise load without a word)."""
    try:
        if config_hash is not None:
            _check_weights_owner(path, config_hash)
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise CheckpointError(f"{path} is not a readable weights file: {err}") from None


def _check_weights_owner(path: str | Path, config_hash: str) -> None:
    with safe_open(str(path), framework="pt") as handle:
        owner = (handle.metadata() or {}).get("config_hash")
    if owner != config_hash:
        raise CheckpointError(
            f"{path} belongs to run {owner or '(no config hash recorded)'}, "
            f"not to this run ({config_hash})"
        )


def load_model_weights(
    model: torch.nn.Module, path: str | Path, config_hash: str | None = None
) -> None:
    """Strict load: a missing or unexpected tensor is an error, never silently ignored; given
    ``config_hash``, weights of another run are refused (`load_weights`)."""
    state = load_weights(path, config_hash)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not match this model: {err}") from None
