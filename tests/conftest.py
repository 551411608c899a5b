from __future__ import annotations

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
