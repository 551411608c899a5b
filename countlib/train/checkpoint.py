"""Checkpoint files that load safely: tensors and plain containers only, never pickled objects.

A full checkpoint (`last.pt`) holds everything needed for an exact resume; best checkpoints hold
model weights only, in safetensors.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from countlib.train.records import RunDir, RunRecordError, atomic_write_bytes

FORMAT = "countlib-checkpoint-v1"
#: What to do about a run that cannot resume from its checkpoint (`set_aside_broken`).
UNRESUMABLE_HINT = (
    "rerun the same `countlib train` or `countlib sweep` command with --retrain-broken to move "
    "the run aside to <name>.broken-<time> and train it afresh"
)


class CheckpointError(RuntimeError):
    """A checkpoint that is truncated, foreign, or belongs to another run."""


def save_state(path: str | Path, state: dict[str, Any], config_hash: str) -> None:
    """Write the full checkpoint atomically. Serialised in memory first, so that a failed
    write (a full disk) is an OSError naming ``path`` (torch's own file writer says only
    "basic_ios::clear: iostream error"), and the previous checkpoint stays as it was."""
    payload = {"format": FORMAT, "config_hash": config_hash, **state}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_state(path: str | Path, config_hash: str | None = None) -> dict[str, Any]:
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # torch raises several types for truncated or non-torch files
        raise CheckpointError(f"{path} is truncated or corrupt: {_first_sentence(err)}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a countlib checkpoint (expected format {FORMAT})")
    if config_hash is not None and payload["config_hash"] != config_hash:
        raise CheckpointError(
            f"{path} belongs to run {payload['config_hash']}, not to this run ({config_hash})"
        )
    return payload


def _first_sentence(err: Exception) -> str:
    """What went wrong, without torch's advice on what may have caused it."""
    return str(err).split(". ")[0].strip() or type(err).__name__


def save_weights(path: str | Path, model: torch.nn.Module, metadata: dict[str, str]) -> None:
    # clone: safetensors refuses tensors that share storage (tied embeddings and heads)
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    data = safetensors_bytes(tensors, metadata={"format": FORMAT, **metadata})
    atomic_write_bytes(Path(path), with_sorted_metadata(data))


def with_sorted_metadata(data: bytes) -> bytes:
    """A safetensors file whose header lists its metadata in sorted order.

    safetensors writes the metadata in the order of a Rust hash map, which differs from one
    call to the next, so the files of identical runs differed byte for byte. The tensors'
    entries and data stay as they are (their offsets count from the end of the header); the
    header is padded with spaces to a multiple of 8 bytes, as safetensors pads it.
    """
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata = header.pop("__metadata__", None)
    ordered = {"__metadata__": dict(sorted(metadata.items()))} if metadata else {}
    text = json.dumps({**ordered, **header}, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + length :]


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


def set_aside_broken(run: RunDir, config_hash: str) -> tuple[Path, str] | None:
    """Move a run that cannot go on aside (`RunDir.set_aside`) so that it trains afresh: a
    complete run whose records are broken, or an unfinished one whose ``last.pt`` cannot
    resume it. Returns where it went and what was wrong; None if nothing was (or another
    process moved it first)."""

    def problem() -> str | None:
        try:
            if run.is_complete():
                run.read_final(config_hash)
            elif run.last.exists():
                load_state(run.last, config_hash)
        except (RunRecordError, CheckpointError) as err:
            return str(err)
        return None

    reason = problem()
    if reason is None:
        return None
    aside = run.set_aside(still_broken=lambda: problem() is not None)
    return None if aside is None else (aside, reason)
