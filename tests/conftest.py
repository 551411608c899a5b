from __future__ import annotations

import importlib
import os
from pathlib import Path

# Tests train tiny models: one thread each is faster than two threads synchronising, and keeps
# subprocesses (papermill kernels, killed-and-resumed runs) from oversubscribing the cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED_DATA = REPO.parent / "shared" / "seed-data" / "rasp_primitives"


@pytest.fixture
def seed_data() -> Path:
    if not SEED_DATA.is_dir():
        pytest.skip(f"original released files not found at {SEED_DATA}")
    return SEED_DATA


#: Set by benchmarks/gpu_check.sh: there the GPU kernels were installed, so a kernel package
#: that does not import is a failure to see, not a test to skip.
GPU_CHECK = os.environ.get("COUNTLIB_GPU_CHECK") == "1"


def gpu_kernels(module: str) -> None:
    """Skip a GPU test whose kernel package (fla, mamba_ssm) is not installed, naming it; in
    the GPU check (`GPU_CHECK`) fail instead, with the import's own error."""
    if GPU_CHECK:
        importlib.import_module(module)
    else:
        pytest.importorskip(module, reason=f"{module} is not installed (pip install countlib[gpu])")
