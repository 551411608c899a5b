"""CPU cost of one training step of each model family, as a multiple of an LSTM of the same width.

One step = forward, cross-entropy, backward, AdamW update on a fixed random batch. Steps alternate
between models, so load from other processes on a shared machine hits them alike; the LSTM
baseline is measured in the same run. Targets (issue 5, hidden 64, length 51, batch 32, 2 layers):
Mamba and RWKV-6 at most 10x the LSTM, S4 at most 5x.

    python benchmarks/cpu_speed.py                       # s4, s4d, mamba, rwkv6, transformer
    python benchmarks/cpu_speed.py --model mamba:backend=mambapy --steps 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import yaml
from torch import nn

from countlib.models import build_model

VOCAB = 103
DEFAULT_MODELS = ["s4", "s4d", "mamba", "rwkv6", "transformer:pe=rope,heads=4"]
TARGETS = {"s4": 5.0, "mamba": 10.0, "rwkv6": 10.0}


def parse_model(spec: str) -> tuple[str, str, dict[str, object]]:
    """'name:key=value,key=value' -> (label, family, options)."""
    family, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    return spec, family, options


def step_seconds(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    logits = model(ids[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def median_seconds(models: dict[str, nn.Module], ids: torch.Tensor, steps: int, warmup: int):
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=1e-4) for name, m in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(warmup + steps):
        for name, model in models.items():
            seconds = step_seconds(model, optimizers[name], ids)
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", help="family[:key=value,...] (repeatable)")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--length", type=int, default=51)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (args.batch, args.length + 1))
    shape = {"layers": args.layers, "hidden": args.hidden}
    models = {"lstm": build_model("lstm", VOCAB, **shape)}
    for label, family, options in map(parse_model, args.model or DEFAULT_MODELS):
        models[label] = build_model(family, VOCAB, **shape, **options)
    print(
        f"hidden {args.hidden}, length {args.length}, batch {args.batch}, layers {args.layers}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    seconds = median_seconds(models, ids, args.steps, args.warmup)
    print(f"{'model':34s} {'ms/step':>9s} {'x lstm':>8s}  target")
    for name, value in seconds.items():
        ratio = value / seconds["lstm"]
        target = TARGETS.get(name)
        verdict = (
            "" if target is None else f"<= {target:g}x: {'met' if ratio <= target else 'MISSED'}"
        )
        print(f"{name:34s} {1000 * value:9.2f} {ratio:8.2f}  {verdict}")


if __name__ == "__main__":
    main()
