"""CPU cost of one Mamba training step next to an LSTM of the same width.

One step = forward, cross-entropy, backward, AdamW update, on a fixed random batch.
Target (issue): the countlib backend at most 10x the LSTM at hidden 64, length 51, batch 32,
2 layers, vocab 103. ``--mambapy`` adds the pure-PyTorch package (a few steps only: it is slow).

    python benchmarks/speed_mamba.py [--hidden 64] [--length 51] [--batch 32] [--layers 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from countlib.models import build_model
from countlib.models.mamba import MambaConfig, MambaModel

VOCAB = 103


def step_seconds(model: nn.Module, optimizer: torch.optim.Optimizer, ids: torch.Tensor) -> float:
    start = time.perf_counter()
    logits = model(ids[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def median_seconds(
    models: dict[str, nn.Module], ids: torch.Tensor, steps: int, warmup: int
) -> dict[str, float]:
    """Median step time per model; steps alternate between models so that load from other
    processes on a shared machine hits them alike."""
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
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--length", type=int, default=51)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--mambapy", action="store_true", help="also time the mambapy backend")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (args.batch, args.length + 1))

    def mamba(backend: str) -> MambaModel:
        return MambaModel(MambaConfig(VOCAB, args.layers, args.hidden, backend=backend))

    print(
        f"hidden {args.hidden}, length {args.length}, batch {args.batch}, layers {args.layers}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    models = {
        "lstm": build_model("lstm", VOCAB, layers=args.layers, hidden=args.hidden),
        "mamba": mamba("countlib"),
    }
    seconds = median_seconds(models, ids, args.steps, args.warmup)
    if args.mambapy:
        seconds |= median_seconds({"mambapy": mamba("mambapy")}, ids, steps=3, warmup=1)
    for name, value in seconds.items():
        print(f"{name:8s} {1000 * value:9.2f} ms/step  {value / seconds['lstm']:7.2f}x lstm")


if __name__ == "__main__":
    main()
