"""Whether two runs directories hold the same runs with the same numbers: the check that a
refactoring changed no recorded result (train the same sweep before and after, compare).

Compared: the run names (config hashes), every record byte for byte (config, evaluations,
tallies, COMPLETE), the training log and summary without their wall times, the weights tensor
by tensor (safetensors files of equal tensors may order their header differently), and
checksums.json: the same files listed, with the same checksums for those compared byte for
byte (it holds no time of its own; the checksums of the others follow their bytes).
Not compared: environment.json (versions, machine, dates) and last.pt (which holds the rng and
wall clock of the process that wrote it).

    python benchmarks/same_records.py RUNS_BEFORE RUNS_AFTER
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

SKIPPED = {"environment.json", "last.pt"}
#: The records compared other than byte for byte (`same_file`), by name or suffix.
READ_AS_VALUES = {"train.csv", "summary.json", ".safetensors"}


def same_file(before: Path, after: Path) -> bool:
    if before.suffix == ".safetensors":
        a, b = load_file(str(before)), load_file(str(after))
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if before.name == "train.csv":  # without elapsed_s
        return _rows(before) == _rows(after)
    if before.name == "summary.json":
        a, b = json.loads(before.read_text()), json.loads(after.read_text())
        return {**a, "wall_time_s": None} == {**b, "wall_time_s": None}
    if before.name == "checksums.json":
        return _bytewise_checksums(before) == _bytewise_checksums(after)
    return before.read_bytes() == after.read_bytes()


def _bytewise_checksums(path: Path) -> tuple[list[str], dict[str, object]]:
    """The files checksums.json lists, and the checksums of those compared byte for byte."""
    files = json.loads(path.read_text())["files"]
    bytewise = {
        name: digest
        for name, digest in files.items()
        if Path(name).name not in SKIPPED | READ_AS_VALUES
        and Path(name).suffix not in READ_AS_VALUES
    }
    return sorted(files), bytewise


def _rows(path: Path) -> list[list[str]]:
    with open(path) as handle:
        return [row[:3] for row in csv.reader(handle)]


def differences(before: Path, after: Path) -> list[str]:
    """What differs between two runs directories, one line each; empty when they agree."""
    runs = {p.name for p in before.iterdir() if p.is_dir()}
    others = {p.name for p in after.iterdir() if p.is_dir()}
    found = [f"only in {before}: {name}" for name in sorted(runs - others)]
    found += [f"only in {after}: {name}" for name in sorted(others - runs)]
    for name in sorted(runs & others):
        for path in sorted((before / name).rglob("*")):
            if path.is_dir() or path.name in SKIPPED:
                continue
            twin = after / path.relative_to(before)
            if not twin.exists():
                found.append(f"{name}: {path.name} missing after")
            elif not same_file(path, twin):
                found.append(f"{name}: {path.relative_to(before / name)} differs")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args()
    found = differences(args.before, args.after)
    runs = sum(1 for p in args.before.iterdir() if p.is_dir())
    print("\n".join(found) or f"{runs} runs: the same records")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
