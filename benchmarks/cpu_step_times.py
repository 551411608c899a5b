"""Measured CPU seconds per training step of every model family at a small size, the data of
the CPU-time estimate that `countlib sweep --dry-run` prints (`countlib.sweep.estimate`).

Each family at width 32 and 1 layer (its catalogue's tiny options otherwise: heads, head
sizes, state sizes; the Transformer with RoPE), batch 32 on Shifted Start, one torch thread
(as each pool worker trains), timed by benchmarks/train_throughput.py's fast path
(`throughput_row`: the trainer's own step, rounds alternating with the baseline path, the first
round discarded). The JSON is train_throughput.py's (the machine's ``cpu_count`` among its
environment fields), so `countlib.sweep.load_step_times` reads it like any measured file:

    python benchmarks/cpu_step_times.py          # about two minutes on one core
    python benchmarks/cpu_step_times.py --out /tmp/mine.json && \\
        countlib sweep --profile smoke --dry-run --step-times /tmp/mine.json

Absolute times depend on the machine and its load (``load_average`` in the file): measure on
yours for a better estimate.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from train_throughput import environment, guarded, print_throughput, throughput_row

from countlib.families import MODELS

#: The measured size: every family is scaled from it (`countlib.sweep.measured_step_seconds`).
WIDTH, LAYERS = 32, 1
OUT = Path(__file__).with_name("cpu_step_times.json")


def family_config(family: str) -> str:
    """``family:key=value,...`` at `WIDTH` and `LAYERS`, the family's tiny options otherwise."""
    options = {**MODELS[family].tiny_options, "hidden": WIDTH, "layers": LAYERS}
    if family == "transformer":
        options |= {"heads": 4, "pe": "rope"}
    return family + ":" + ",".join(f"{key}={value}" for key, value in options.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15, help="timed steps per path and family")
    parser.add_argument("--rounds", type=int, default=3, help="rounds the steps alternate in")
    parser.add_argument("--families", nargs="+", default=sorted(MODELS), choices=sorted(MODELS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    per_round = max(1, args.steps // args.rounds)
    rows = []
    for family in args.families:
        spec = family_config(family)
        rows.append(
            guarded(lambda s=spec: throughput_row(s, "cpu", args.rounds, per_round, None), spec)
        )
        print(f"measured {spec}", flush=True)
    print_throughput(rows)
    how = (
        f"{Path(__file__).name}: each family at hidden {WIDTH}, {LAYERS} layer, batch 32, "
        f"one torch thread, {args.rounds} rounds of {per_round} steps (first discarded)"
    )
    record = environment("cpu") | {"how": how, "throughput": rows}
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
