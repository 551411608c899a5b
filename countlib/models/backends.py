"""Shared by the families with optional fast kernels (Mamba, Mamba-2, RWKV, DeltaNet)."""

from __future__ import annotations

import functools
import importlib.metadata
from collections.abc import Callable
from typing import NamedTuple

import torch

FLA_INSTALL = "pip install 'countlib[gpu]' (or: pip install flash-linear-attention triton)"

#: fla 0.6's chunk backward with a gate (``chunk_bwd_dqkwg``, used by Gated DeltaNet and by
#: Mamba-2's scalar-gated SSD) raises on Hopper GPUs (compute capability 9.x) under Triton from
#: 3.4 until 3.7.1, where Triton fixed the layout it miscompiles.
HOPPER_GATED_TRITON = ((3, 4), (3, 7, 1))


class BackendUnavailableError(ImportError):
    """A requested kernel backend cannot run here; the message says why and how to install it."""


class BackendChoice(NamedTuple):
    """The kernel a model runs, and why "auto" passed over a GPU kernel on a CUDA device
    (empty where it took the kernel, was asked for the countlib form, or runs on CPU, where
    the countlib forms are the design and not a fallback)."""

    name: str
    why: str = ""


@functools.cache
def triton_version() -> tuple[int, ...] | None:
    """The installed Triton's version as numbers (3.6.0 -> (3, 6, 0)), None without Triton."""
    try:
        text = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None
    numbers = []
    for part in text.split("+")[0].split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def gated_backward_fault(capability: tuple[int, int], triton: tuple[int, ...] | None) -> str:
    """Why fla's gated chunk backward cannot run on a GPU of ``capability`` under ``triton``
    (`HOPPER_GATED_TRITON`), or "" where it can."""
    low, fixed = HOPPER_GATED_TRITON
    if capability[0] != 9 or triton is None or not low <= triton < fixed:
        return ""
    version = ".".join(map(str, triton))
    return (
        f"fla's gated chunk backward (chunk_bwd_dqkwg) raises on Hopper (sm_{capability[0]}"
        f"{capability[1]}) under Triton {version}; Triton 3.7.1 fixes it"
    )


def fla_gated_backward_fault(device: torch.device) -> str:
    """`gated_backward_fault` for ``device`` ("" off CUDA)."""
    if device.type != "cuda":
        return ""
    return gated_backward_fault(torch.cuda.get_device_capability(device), triton_version())


def resolve_fla_backend(
    family: str,
    backend: str,
    device: torch.device,
    available: Callable[[], str],
    *,
    gated: bool = False,
) -> BackendChoice:
    """What ``backend`` runs on ``device``: "fla-chunk" or "countlib-chunked".

    ``available`` returns "" where fla's kernels import, else why not. ``gated``: the kernel
    takes a gate, whose backward fails on Hopper under some Tritons (`HOPPER_GATED_TRITON`).
    'fla' is an error off CUDA, without the package or where its backward fails; 'auto' takes
    fla only on CUDA where it imports and can train, and says why not otherwise.
    """
    if backend == "countlib":
        return BackendChoice("countlib-chunked")
    if device.type != "cuda":
        if backend == "fla":
            raise BackendUnavailableError(
                f"{family} backend 'fla' runs Triton kernels on CUDA only; use backend "
                f"'countlib' or 'auto' on this device (install fla on a GPU with: {FLA_INSTALL})"
            )
        return BackendChoice("countlib-chunked")
    error = available()
    if error:
        if backend == "fla":
            raise BackendUnavailableError(
                f"{family} backend 'fla' cannot load ({error}); install it with: {FLA_INSTALL}"
            )
        return BackendChoice("countlib-chunked", f"auto: fla cannot load ({error})")
    fault = fla_gated_backward_fault(device) if gated else ""
    if fault:
        if backend == "fla":
            raise BackendUnavailableError(
                f"{family} backend 'fla' cannot train on this GPU: {fault}; use backend "
                "'countlib' or 'auto' (which then takes countlib's chunked form)"
            )
        return BackendChoice("countlib-chunked", f"auto: {fault}")
    return BackendChoice("fla-chunk")
