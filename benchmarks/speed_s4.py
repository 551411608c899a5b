"""CPU cost of one S4 / S4D training step next to an LSTM of the same width.

One step = forward, cross-entropy, backward, AdamW update, on a fixed random batch.
Target (issue): S4 at most 5x the LSTM at hidden 64, length 51, batch 32, 2 layers, vocab 103.

    python benchmarks/speed_s4.py [--hidden 64] [--length 51] [--batch 32] [--layers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from countlib.models import build_model
from countlib.models.s4 import S4Config, S4Model

VOCAB = 103


def training_step(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> float:
    """Wall time of one training step."""
    start = time.perf_counter()
    logits = model(ids[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def median_step_seconds(
    models: dict[str, nn.Module], ids: torch.Tensor, steps: int, warmup: int
) -> dict[str, float]:
    """Median step time per model. Steps alternate between the models so that load from other
    processes on a shared machine hits all of them alike."""
    optimizers = {}
    for name, model in models.items():
        groups = model.param_groups(_Optim()) if hasattr(model, "param_groups") else None
        optimizers[name] = torch.optim.AdamW(groups or model.parameters(), lr=1e-3)
    times: dict[str, list[float]] = {name: [] for name in models}
    for i in range(warmup + steps):
        for name, model in models.items():
            seconds = training_step(model, optimizers[name], ids)
            if i >= warmup:
                times[name].append(seconds)
    return {name: statistics.median(values) for name, values in times.items()}


class _Optim:
    lr = 1e-3
    weight_decay = 0.01


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--length", type=int, default=51)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (args.batch, args.length + 1))
    size = {"layers": args.layers, "hidden": args.hidden}
    models = {
        "lstm": build_model("lstm", VOCAB, **size),
        "s4": S4Model(S4Config(VOCAB, mode="dplr", **size)),
        "s4d": S4Model(S4Config(VOCAB, mode="diag", **size)),
    }
    print(
        f"hidden {args.hidden}, length {args.length}, batch {args.batch}, layers {args.layers}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    seconds = median_step_seconds(models, ids, args.steps, args.warmup)
    for name, value in seconds.items():
        ratio = value / seconds["lstm"]
        print(f"{name:5s} {1000 * value:8.2f} ms/step  {ratio:5.2f}x lstm")


if __name__ == "__main__":
    main()
