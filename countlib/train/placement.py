"""Where a run trains and at what precision: its device, its autocast and its loss scaler.

Each run owns these; nothing here is global to the process. A process can therefore train any
sequence of runs at any devices and precisions (the sequential executor, a long-lived pool
worker, ``countlib book``), which a per-process framework state (accelerate's
``AcceleratorState``) cannot: it refuses a second mixed precision in one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch

from countlib.models import get_family
from countlib.train.records import precision_name

#: Precision names a run records, and the autocast dtype of each (None: no autocast).
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
#: Environment variables a multi-process launcher (torchrun, ``accelerate launch``) sets.
_LAUNCHER_VARIABLES = ("WORLD_SIZE", "LOCAL_WORLD_SIZE")


class DeviceUnavailableError(ValueError):
    """The requested device does not exist on this machine: a bad argument here, which the
    command line reports as such."""


class DistributedLaunchError(ValueError):
    """countlib was started as one rank of several (torchrun, ``accelerate launch``): a launch
    it does not support, reported as a bad argument."""


def resolve_device(device: str) -> str:
    """``device`` checked against this machine: "auto" becomes "cuda" or "cpu"; "cuda" and
    "cuda:N" stay as given, once CUDA (and GPU N) exist."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"unknown device {device!r}; choose cpu, cuda, cuda:N or auto")
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"device {device!r} requested but CUDA is not available here; use --device cpu or auto"
        )
    index = int(device[5:]) if ":" in device else None
    visible = torch.cuda.device_count()
    if index is not None and index >= visible:
        raise DeviceUnavailableError(
            f"device {device!r} requested but this process sees {visible} GPU(s): "
            f"cuda:0 to cuda:{visible - 1} (CUDA_VISIBLE_DEVICES renumbers them)"
        )
    return device


def training_device(device: str) -> torch.device:
    """The one device a run's parameters live on: "cuda" is the process's current GPU, named
    by its index, so that the run's records and its rng state name that GPU and no other."""
    name = resolve_device(device)
    if name == "cuda":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device(name)


def resolve_precision(precision: str, device: str | torch.device, model: str) -> str:
    """The precision a run of ``model`` trains at: "fp32", "bf16" or "fp16". "auto" is the
    family's ``gpu_precision`` on CUDA and fp32 on CPU, where half-precision autocast is slow."""
    on_cuda = str(device).startswith("cuda")
    if precision == "auto":
        precision = get_family(model).gpu_precision if on_cuda else "fp32"
    precision = precision_name(precision)
    if precision not in AUTOCAST_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(AUTOCAST_DTYPES)}")
    if precision == "fp16" and not on_cuda:
        # torch's CPU autocast and loss scaling are for bf16: fp16 would train another recipe
        raise ValueError(
            "precision 'fp16' needs a CUDA device: its loss scaling is a CUDA recipe; "
            "use fp32, bf16 or auto on CPU"
        )
    return precision


@dataclass
class Placement:
    """One run's device and precision: its autocast, and its loss scaler when fp16."""

    device: torch.device
    precision: str

    def __post_init__(self) -> None:
        dtype = AUTOCAST_DTYPES[self.precision]
        self.dtype = dtype
        #: fp16's loss scaler (a step whose gradients overflow is skipped); None otherwise.
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    @classmethod
    def of(cls, device: str, precision: str, model: str) -> Placement:
        """The placement of a run of ``model`` asked for on ``device`` at ``precision``."""
        where = training_device(device)
        return cls(where, resolve_precision(precision, where, model))

    def autocast(self) -> Any:
        if self.dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    @contextmanager
    def current(self) -> Iterator[None]:
        """Make the run's GPU the current one while it trains: kernels that launch on the
        current device (Triton's, mamba_ssm's) then run where the tensors are."""
        if self.device.type != "cuda":
            yield
            return
        with torch.cuda.device(self.device):
            yield

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring fp16's scaled gradients back to their scale (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def rng_state(self) -> torch.Tensor | None:
        """The random state of the run's GPU (None on CPU): of that device only, so that a
        process that sees fewer or other GPUs restores it."""
        if self.device.type != "cuda":
            return None
        return torch.cuda.get_rng_state(self.device)

    def set_rng_state(self, state: torch.Tensor | None) -> None:
        if state is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(state, self.device)


def parameters_device(model: torch.nn.Module) -> torch.device:
    """Where ``model``'s parameters actually live (what a run's records say it trained on)."""
    return next(model.parameters()).device


def refuse_distributed_launch() -> None:
    """countlib trains each run in one process on one device, and runs side by side across
    GPUs (``countlib sweep --executor pool``): ranks of a data-parallel launch would all take
    the same run, wait for each other's lock and train it once each."""
    sizes = {name: os.environ.get(name) for name in _LAUNCHER_VARIABLES}
    launched = {name: size for name, size in sizes.items() if size and size != "1"}
    if launched:
        found = ", ".join(f"{name}={size}" for name, size in launched.items())
        raise DistributedLaunchError(
            f"countlib was started as one of several ranks ({found}: torchrun or "
            "accelerate launch). It trains each run in one process, not data-parallel; start "
            "it as a plain process, and train runs side by side with one per GPU: "
            "countlib sweep --executor pool"
        )
