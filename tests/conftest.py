from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SEED_DATA = REPO.parent / "shared" / "seed-data" / "rasp_primitives"


@pytest.fixture
def seed_data() -> Path:
    if not SEED_DATA.is_dir():
        pytest.skip(f"original released files not found at {SEED_DATA}")
    return SEED_DATA
