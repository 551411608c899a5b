"""Train every registered family for a few steps, one after another in this one process, each
at its own ``auto`` precision on one device; one line per family as soon as it has trained.

The line says whether the family trained, the kernels it ran (`countlib.models.backend_names`)
and why "auto" passed over a GPU kernel, its precision, and its steps per second over the second
half of its steps (the first half warms up: Triton compiles its kernels at their first call;
the evaluations are not counted). Families train in one process on
purpose: the families' precisions differ on CUDA (bf16, fp16, fp32), and one process must train
them all (issue 22). A family that fails is reported and the next one trains.

    python benchmarks/gpu_smoke.py --device cuda --out families.txt
    python benchmarks/gpu_smoke.py --device cpu --tiny --steps 2      # the script itself, on CPU

``--tiny`` trains each family at its registered tiny size (`countlib.families`).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from countlib.config import EvalConfig, OptimConfig, RunConfig
from countlib.models import MODELS, backend_names, backend_notes, get_family
from countlib.paper import DEPTHS, PAPER_TRANSFORMER
from countlib.train.trainer import Trainer

#: The paper's Transformer at its deepest (protocol.md), with RoPE; the recurrent families at
#: their registered defaults, the sizes their CPU profiles train.
PAPER_OPTIONS: dict[str, dict[str, Any]] = {
    "transformer": {
        **{k: v for k, v in PAPER_TRANSFORMER.items() if k != "model"},
        "layers": max(DEPTHS),
        "pe": "rope",
    },
}
HEADER = f"{'family':16s} {'result':8s} {'precision':9s} {'steps/s':>8s}  device   backends"


def smoke_config(family: str, steps: int, tiny: bool) -> RunConfig:
    facts = get_family(family)  # an unknown name fails here, naming the valid ones
    options = facts.tiny_options if tiny else PAPER_OPTIONS.get(family, {})
    return RunConfig(
        task="shifted_start",
        model=family,
        model_options=options,
        optim=OptimConfig(steps=steps, batch_size=64),
        eval=EvalConfig(every=steps, batch_size=256),
    )


def smoke_line(family: str, steps: int, tiny: bool, device: str, runs_dir: Path) -> str:
    """Train ``family`` for ``steps``; its one line of the table, or why it did not train."""
    try:
        config = smoke_config(family, steps, tiny)
        half = max(1, config.optim.steps // 2)
        trainer = Trainer(config, runs_dir, device=device, progress=False, log_every=half)
        precision = trainer.placement.precision
        result = trainer.run_training()
    except Exception as error:  # report it and go on with the next family
        reason = " ".join(str(error).split())[:300]
        failed = f"{type(error).__name__}: {reason}"
        return f"{family:16s} {'FAILED':8s} {'':9s} {'':>8s}  {device:8s} {failed}"
    segment = result.run_dir.read_environment()["segments"][-1]
    steps_per_s = _second_half_rate(trainer.train_rows)
    names = backend_names(trainer.model)
    kernels = ", ".join(f"{part}={name}" for part, name in names.items()) or "torch"
    notes = backend_notes(trainer.model)
    line = (
        f"{family:16s} {result.status:8s} {precision:9s} {steps_per_s:8.1f}  "
        f"{segment['device']:8s} {kernels}"
    )
    return line + (f"  ({notes})" if notes else "")


def _second_half_rate(rows: list[list[Any]]) -> float:
    """Steps per second between the last two log rows ([step, loss, lr, elapsed_s])."""
    if len(rows) < 2:
        return float("nan")
    (step_a, *_, seconds_a), (step_b, *_, seconds_b) = rows[-2], rows[-1]
    return (step_b - step_a) / max(seconds_b - seconds_a, 1e-9)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--tiny", action="store_true", help="CPU-sized models")
    parser.add_argument("--families", nargs="+", default=sorted(MODELS))
    parser.add_argument("--out", help="also append each line to this file as it is written")
    args = parser.parse_args()
    out = open(args.out, "a") if args.out else None  # noqa: SIM115 (kept open for each line)

    def emit(line: str) -> None:
        print(line, flush=True)
        if out is not None:
            out.write(line + "\n")
            out.flush()

    emit(HEADER)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs_dir:
        for family in args.families:
            emit(smoke_line(family, args.steps, args.tiny, args.device, Path(runs_dir)))
    emit(f"# {len(args.families)} families in {time.perf_counter() - started:.0f} s")
    if out is not None:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
