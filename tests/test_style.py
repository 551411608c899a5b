"""The code style the project keeps: ruff's lint and format, over the whole tree (the
package, tests, benchmarks, experiments and notebooks)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def ruff() -> str:
    beside = Path(sys.executable).with_name("ruff")  # the environment's own, as CI installs it
    found = str(beside) if beside.exists() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: pip install -e '.[dev]'")
    return found


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["lint", "format"])
def test_the_tree_is_ruff_clean(command):
    result = subprocess.run([ruff(), *command, "."], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
