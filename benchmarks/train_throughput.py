"""Training throughput: countlib's fast path against an original-style baseline, and K runs
stacked into one batched model against K runs one after another (issue 13).

Fast path: the trainer's own step (`Trainer.train_step`): batches padded only to their longest
sequence, SDPA attention, the family's precision (bf16 for the Transformer on CUDA), fused AdamW
on CUDA, the loss left on the device until it is read, once per timed round. It is measured
twice: with the batches drawn in the step, and drawn ahead on a background thread
(`countlib.train.stream`, the trainer's default on CUDA); "fast" is the device's default of the
two. Baseline, as the original trainers ran: the same batches drawn in the step and padded on
the host to the task's max_seq_len (128), the explicit float32 attention for the Transformer
under fp16 autocast on CUDA (the recurrent families keep their original precision, which is
countlib's default for them), torch's unfused AdamW, and the loss read back to the host with
``.item()`` after every step.

Stacked (``--stacked K``): K seeds trained by `countlib.train.stacked` against the aggregate
samples/s of K separate fast-path runs trained one after another at the same thread count. The
table also gives the fixed share of a separate step, a batch-1 step's time over a full one's:
stacking can only amortise that share, so the ideal stacked speed-up is
1 / (1 - share * (1 - 1/K)).

Steps of every path alternate in rounds (round-robin, the first round discarded as warm-up),
so load from other processes hits them alike: the ratios are robust to it, the absolute
samples/s are not. A path drawing ahead restarts its drawing thread before each of its rounds,
with an empty queue, and takes two untimed steps: batches it drew while the other paths ran
would otherwise come free, and a cold thread's first batch would count against it.

Model FLOPs are analytic, per trained token: 6 x the parameters outside embedding tables, plus
6 x layers x length x width for causal attention; MFU is against the GPU's dense bf16 peak
(``--peak-tflops`` where the GPU is not in `PEAK_TFLOPS`), n/a on CPU.

    python benchmarks/train_throughput.py                     # CPU defaults, about a minute
    python benchmarks/train_throughput.py --device cuda       # the paper's sizes
    python benchmarks/train_throughput.py --configs lstm:hidden=64 --stacked 0 --steps 10
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from countlib.batches import IGNORE, Batch, Collator
from countlib.config import OptimConfig, RunConfig
from countlib.families import MODELS
from countlib.train.records import environment_record
from countlib.train.stacked import StackedTrainer
from countlib.train.stream import CUDA_BATCHES_AHEAD, batches_ahead
from countlib.train.threads import cpu_threads
from countlib.train.trainer import Trainer

#: The paper's sizes: its Transformer (d = 1024, 8 heads) at 1, 2 and 4 layers, the recurrent
#: families at width 128; batch 32 on Shifted Start throughout. Every family the `paper`
#: profile trains has a row, so that its dry-run estimate from these times needs no fallback.
GPU_CONFIGS = [
    *(f"transformer:hidden=1024,heads=8,layers={n},pe=rope" for n in (1, 2, 4)),
    *(f"{family}:hidden=128" for family in sorted(MODELS) if family != "transformer"),
]
#: Small enough for about a minute on one CPU core: the issue's CPU targets.
CPU_CONFIGS = ["transformer:hidden=64,heads=4,layers=1,pe=rope", "lstm:hidden=128"]
#: What is stacked by default. Stacking refuses fp16 (one loss scale for K runs), the LSTM's
#: default on CUDA, so there it is stacked (and compared) in fp32.
GPU_STACK_CONFIGS = [GPU_CONFIGS[1], "lstm:hidden=128,precision=fp32"]
#: Dense bf16 tensor-core peaks (TFLOP/s) by device-name fragment, first match wins.
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "V100": 125.0,  # fp16: V100 has no bf16
    "4090": 165.0,
}


# -- configs -------------------------------------------------------------------------------------


def run_config(spec: str, seed: int = 1234, batch: int | None = None) -> RunConfig:
    """'family:key=value,...' as a run config: ``task``, ``batch`` and ``precision`` are run
    settings (default shifted_start, 32, auto; ``batch`` overrides the spec's), every other key
    a model option."""
    family, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    task = options.pop("task", "shifted_start")
    size = options.pop("batch", 32)
    precision = options.pop("precision", "auto")
    return RunConfig(
        task=task,
        model=family,
        model_options=options,
        optim=OptimConfig(batch_size=size if batch is None else batch),
        precision=precision,
        seed=seed,
    )


def baseline_config(config: RunConfig, device: str) -> RunConfig:
    """The original's settings for ``config``: explicit attention, fp16 on CUDA (Transformer)."""
    if config.model != "transformer":
        return config
    options = {**config.model_options, "attention": "explicit"}
    precision = "fp16" if device == "cuda" else config.precision
    return dataclasses.replace(config, model_options=options, precision=precision)


class PaddedCollator:
    """The original's collation: every batch padded on the host to a fixed length."""

    def __init__(self, collator: Collator, length: int) -> None:
        self.collator = collator
        self.length = length
        self.pads = {
            "input_ids": collator.task.vocab.pad_id,
            "labels": IGNORE,
            "attention_mask": False,
            "position_ids": 0,
            "real_index": -1,
            "extrapolation": False,
            "legacy_unseen": False,
        }

    def __call__(self, examples: Any, rng: random.Random) -> Batch:
        batch = self.collator(examples, rng)
        fields = {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}
        for name, pad in self.pads.items():
            tensor = fields[name]
            tail = tensor.new_full((tensor.shape[0], self.length - tensor.shape[1]), pad)
            fields[name] = torch.cat((tensor, tail), dim=1)
        return Batch(**fields)


class OriginalStyle(Trainer):
    """The baseline step: host padding to max_seq_len and a host read of every step's loss."""

    def build(self) -> None:
        super().build()
        self.collator = PaddedCollator(self.collator, self.task.max_seq_len)

    def fused_adamw(self) -> bool:
        return False  # the original's torch AdamW, its default (unfused) kernels

    def train_step(self) -> torch.Tensor:
        loss = super().train_step()
        loss.item()  # the original logged every step's loss: a device synchronisation
        return loss


def built(
    cls: type[Trainer], config: RunConfig, runs_dir: str, device: str, **kwargs: Any
) -> Trainer:
    """A trainer ready to step: model, optimizer and data stream, no run records written;
    ``kwargs`` go to the trainer."""
    trainer = cls(config, runs_dir, device=device, progress=False, **kwargs)
    trainer.build()
    trainer.model.train()
    return trainer


# -- measuring -----------------------------------------------------------------------------------


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed_rounds(
    steps: dict[str, Callable[[], Any]],
    rounds: int,
    per_round: int,
    device: str,
    before_round: dict[str, Callable[[], Any]] | None = None,
) -> dict[str, float]:
    """Median seconds per call of each step, over ``rounds`` rounds of ``per_round`` calls that
    alternate between the steps; a first round warms up and is not counted. ``before_round``:
    what to do, untimed, before each round of the steps it names."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for index in range(rounds + 1):
        for name, step in steps.items():
            (before_round or {}).get(name, lambda: None)()
            synchronize(device)
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            synchronize(device)
            if index:
                times[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(values) for name, values in times.items()}


def fast_step(trainer: Trainer) -> Callable[[], None]:
    """The trainer loop's step: losses summed on the device, read at the end of a round (the
    loop reads them every log interval)."""
    total = torch.zeros((), device=trainer.placement.device)

    def step() -> None:
        total.add_(trainer.train_step())

    return step


def restart_drawing(trainer: Trainer, step: Callable[[], None], untimed: int = 2) -> None:
    """Drop the batches ``trainer`` drew ahead and warm its new drawing thread up with
    ``untimed`` steps: what a timed round of a path drawing ahead starts from (module
    docstring)."""
    trainer.close_batches()
    for _ in range(untimed):
        step()


def mean_length(trainer: Trainer, batches: int = 20) -> float:
    """The fast path's mean padded batch length, from a stream of its own."""
    rng = random.Random(0)
    size = trainer.config.optim.batch_size
    collated = (trainer.collator(trainer.task.sample_batch(rng, size), rng) for _ in range(batches))
    return statistics.mean(batch.seq_len for batch in collated)


def model_flops(model: nn.Module, config: RunConfig, length: float) -> float:
    """Training FLOPs per sequence of ``length`` tokens (module docstring)."""
    embedded = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()
    )
    dense = sum(p.numel() for p in model.parameters()) - embedded
    per_token = 6 * dense
    if config.model == "transformer":
        options = config.resolve().model_options
        per_token += 6 * options["layers"] * length * options["hidden"]
    return per_token * length


def peak_flops(device: str, override: float | None) -> float | None:
    if override is not None:
        return override * 1e12
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((tflops * 1e12 for key, tflops in PEAK_TFLOPS.items() if key in name), None)


def throughput_row(
    spec: str, device: str, rounds: int, per_round: int, peak: float | None
) -> dict[str, Any]:
    config = run_config(spec)
    with tempfile.TemporaryDirectory() as runs_dir:
        ahead = built(Trainer, config, runs_dir, device, batches_ahead=CUDA_BATCHES_AHEAD)
        in_step = built(Trainer, config, runs_dir, device, batches_ahead=0)
        baseline = baseline_config(config, device)
        base = built(OriginalStyle, baseline, runs_dir, device, batches_ahead=0)
        ahead_step = fast_step(ahead)
        try:
            seconds = timed_rounds(
                {"ahead": ahead_step, "in_step": fast_step(in_step), "baseline": base.train_step},
                rounds,
                per_round,
                device,
                before_round={"ahead": lambda: restart_drawing(ahead, ahead_step)},
            )
        finally:
            ahead.close_batches()
        flops = model_flops(in_step.model, config, mean_length(in_step))
        precisions = [t.placement.precision for t in (in_step, base)]
    seconds["fast"] = seconds["ahead" if batches_ahead(None, device) else "in_step"]
    batch = config.optim.batch_size
    row: dict[str, Any] = {"config": spec, "precision": "/".join(precisions)}
    for name, value in seconds.items():
        row[f"{name}_samples_s"] = batch / value
        row[f"{name}_mfu"] = None if peak is None else flops * batch / value / peak
    row["ratio"] = row["fast_samples_s"] / row["baseline_samples_s"]
    row["ahead_ratio"] = row["ahead_samples_s"] / row["in_step_samples_s"]
    return row


def stacked_row(spec: str, runs: int, device: str, rounds: int, per_round: int) -> dict[str, Any]:
    configs = [run_config(spec, seed=seed) for seed in range(1, runs + 1)]
    with tempfile.TemporaryDirectory() as runs_dir:
        stack = StackedTrainer(configs, runs_dir, device=device, progress=False)
        for member in stack.members:
            member.stacked_runs = runs  # as StackedTrainer._train sets it
            member.build()
        stack.build(stack.members)
        separate = [built(Trainer, config, runs_dir, device) for config in configs]
        single = built(Trainer, run_config(spec, batch=1), runs_dir, device)
        steps = {
            "stacked": lambda: stack.train_step(stack.members),
            "sequential": lambda: [step() for step in map(fast_step, separate)],
            "batch1": fast_step(single),
        }
        seconds = timed_rounds(steps, rounds, per_round, device)
    batch = configs[0].optim.batch_size
    share = seconds["batch1"] / (seconds["sequential"] / runs)
    return {
        "config": spec,
        "runs": runs,
        "stacked_samples_s": runs * batch / seconds["stacked"],
        "sequential_samples_s": runs * batch / seconds["sequential"],
        "ratio": seconds["sequential"] / seconds["stacked"],
        "fixed_share": share,
        "ideal_ratio": 1 / (1 - share * (1 - 1 / runs)),
    }


# -- reporting -----------------------------------------------------------------------------------


def guarded(measure: Callable[[], dict[str, Any]], spec: str) -> dict[str, Any]:
    """A row, or the error that kept it from being measured (a missing kernel, memory)."""
    try:
        return measure()
    except Exception as err:  # one broken config must not cost the others' numbers
        return {"config": spec, "error": f"{type(err).__name__}: {err}".splitlines()[0]}
    finally:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def print_throughput(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'config':48s} {'precision':>9s} {'fast/s':>9s} {'base/s':>9s} {'fast/base':>9s} "
        f"{'MFU fast':>8s} {'MFU base':>8s} {'ahead/s':>9s} {'in-step/s':>9s} {'ahead/in':>8s}"
    )
    for row in rows:
        if "error" in row:
            print(f"{row['config']:48s} error: {row['error']}")
            continue
        print(
            f"{row['config']:48s} {row['precision']:>9s} {row['fast_samples_s']:9.1f} "
            f"{row['baseline_samples_s']:9.1f} {row['ratio']:8.2f}x "
            f"{fmt(row['fast_mfu'], '8.1%')} {fmt(row['baseline_mfu'], '8.1%')} "
            f"{row['ahead_samples_s']:9.1f} {row['in_step_samples_s']:9.1f} "
            f"{row['ahead_ratio']:7.2f}x"
        )


def print_stacked(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'config':48s} {'K':>2s} {'stacked/s':>10s} {'sequential/s':>12s} {'ratio':>7s} "
        f"{'fixed share':>11s} {'ideal':>7s}"
    )
    for row in rows:
        if "error" in row:
            print(f"{row['config']:48s} error: {row['error']}")
            continue
        print(
            f"{row['config']:48s} {row['runs']:2d} {row['stacked_samples_s']:10.1f} "
            f"{row['sequential_samples_s']:12.1f} {row['ratio']:6.2f}x "
            f"{row['fixed_share']:11.0%} {row['ideal_ratio']:6.2f}x"
        )


def environment(device: str) -> dict[str, Any]:
    """The run records' environment fields, and the machine's load while it was measured."""
    return environment_record(device, "per config", {}) | {
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "note": "ratios are measured interleaved in one run; absolute samples/s depend on load",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--configs", nargs="+", help="family[:key=value,...] (default: the device's list)"
    )
    parser.add_argument("--steps", type=int, default=30, help="timed steps per path and config")
    parser.add_argument("--rounds", type=int, default=5, help="rounds the steps alternate in")
    parser.add_argument("--threads", type=int, help="torch threads (default: countlib's policy)")
    parser.add_argument("--stacked", type=int, default=5, help="runs to stack (0: none)")
    parser.add_argument("--stack-configs", nargs="+", help="configs to stack (default: per device)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak")
    parser.add_argument("--out", help="JSON file (default: train_throughput_<device>.json)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or cpu_threads())
    cuda = args.device == "cuda"
    per_round = max(1, args.steps // args.rounds)
    peak = peak_flops(args.device, args.peak_tflops)
    env = environment(args.device)
    load = ", ".join(f"{value:.2f}" for value in env["load_average"])
    name = env["device_name"] if cuda else env["cpu"]
    print(f"{name}, torch {env['torch']}, {env['torch_threads']} threads, load {load}")

    rows = [
        guarded(lambda s=spec: throughput_row(s, args.device, args.rounds, per_round, peak), spec)
        for spec in args.configs or (GPU_CONFIGS if cuda else CPU_CONFIGS)
    ]
    print_throughput(rows)
    stacked = []
    if args.stacked:
        specs = args.stack_configs or (GPU_STACK_CONFIGS if cuda else CPU_CONFIGS)
        stacked = [
            guarded(
                lambda s=spec: stacked_row(s, args.stacked, args.device, args.rounds, per_round),
                spec,
            )
            for spec in specs
        ]
        print()
        print_stacked(stacked)
    out = Path(args.out or f"train_throughput_{args.device}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**env, "throughput": rows, "stacked": stacked}, indent=2) + "\n")
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
