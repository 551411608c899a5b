"""Time one training step (forward, backward, AdamW) of small Transformers next to an LSTM.

Setting: d = 64, 2 layers, 4 heads, length 51, batch 32, vocabulary 103 (the samesymbol tasks).

    python benchmarks/speed_transformer.py [--steps 30] [--threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from countlib.models import build_model
from countlib.models.transformer import Transformer, TransformerConfig

VOCAB, HIDDEN, LAYERS, HEADS, LENGTH, BATCH = 103, 64, 2, 4, 51, 32


def step_times(model: nn.Module, steps: int, device: str) -> list[float]:
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
    ids = torch.randint(0, VOCAB, (BATCH, LENGTH), device=device)
    labels = torch.randint(0, VOCAB, (BATCH, LENGTH), device=device)
    positions = torch.arange(LENGTH, device=device).expand(BATCH, LENGTH) + 7
    mask = torch.ones(BATCH, LENGTH, dtype=torch.bool, device=device)
    times = []
    for _ in range(steps + 3):  # the first steps warm up allocators and kernels
        start = time.perf_counter()
        logits = model(ids, position_ids=positions, attention_mask=mask)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times[3:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {
        f"transformer pe={pe} ({attention})": Transformer(
            TransformerConfig(
                VOCAB, layers=LAYERS, hidden=HIDDEN, heads=HEADS, pe=pe, attention=attention
            )
        )
        for pe in ("nope", "rope", "ape")
        for attention in ("sdpa", "explicit")
    }
    models["lstm"] = build_model("lstm", VOCAB, layers=LAYERS, hidden=HIDDEN)
    print(
        f"device={args.device} threads={torch.get_num_threads()} d={HIDDEN} layers={LAYERS} "
        f"heads={HEADS} length={LENGTH} batch={BATCH} vocab={VOCAB}"
    )
    for name, model in models.items():
        times = step_times(model, args.steps, args.device)
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{name:36s} {params:>8,d} params  median {1e3 * statistics.median(times):7.2f} ms/step"
            f"  (min {1e3 * min(times):6.2f})"
        )


if __name__ == "__main__":
    main()
