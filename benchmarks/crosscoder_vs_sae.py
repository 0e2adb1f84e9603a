"""Crosscoder training time next to our TopK SAE on activations of the same size.

    .venv/bin/python benchmarks/crosscoder_vs_sae.py [--tokens 30000] [--d 576] [--steps 60] [--repeats 2]

Synthetic activations (sparse sums of unit atoms, about SmolLM2-135M's width by default), one
matrix per model, the second a perturbed copy of the first. Trains, for ``--steps`` steps of
``--batch`` tokens each, our TopK SAE on one model (m = 2 d, k 32: the sae stage's 2x dictionary)
and the BatchTopK and L1 crosscoders on both (m = 2 d, k 32: crosscoder.size 2). Each is run
``--repeats`` times, alternately, and its fastest run counts (the CPU is shared). Prints tokens/s,
the time a full ``epochs``-epoch run over ``--tokens`` tokens would take, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from rlhf_lens.sae import SAETrainConfig, train_sae


def activations(n: int, d: int, seed: int = 0, active: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_base, x_rlhf), each (n, d): sums of ``active`` of 4d unit atoms per token, built in chunks."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(4 * d, d, generator=g), dim=1)
    chunks = []
    for start in range(0, n, 2000):
        size = min(2000, n - start)
        idx = torch.randint(0, 4 * d, (size, active), generator=g)
        weight = torch.rand(size, active, 1, generator=g)
        chunks.append((atoms[idx] * weight).sum(1))
    xb = torch.cat(chunks)
    return xb, xb + 0.1 * torch.randn(n, d, generator=g)


def timed(x: torch.Tensor, cfg: SAETrainConfig) -> float:
    started = time.perf_counter()
    train_sae(x, cfg, progress=False)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=30_000)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the full run the extrapolation is for")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    xb, xr = activations(args.tokens, args.d)
    n = args.steps * args.batch  # one epoch of exactly --steps steps
    runs = {
        "topk SAE (one model)": (xb[:n], SAETrainConfig(kind="topk", d_sae=2 * args.d, k=32, epochs=1,
                                                        batch_size=args.batch)),
        "BatchTopK crosscoder": (torch.cat([xb[:n], xr[:n]], 1),
                                 SAETrainConfig(kind="crosscoder_batchtopk", d_sae=2 * args.d, k=32, epochs=1,
                                                batch_size=args.batch)),
        "L1 crosscoder": (torch.cat([xb[:n], xr[:n]], 1),
                          SAETrainConfig(kind="crosscoder_l1", d_sae=2 * args.d, l1=1.0, epochs=1,
                                         batch_size=args.batch)),
    }
    best = {name: float("inf") for name in runs}
    for _ in range(args.repeats):
        for name, (x, cfg) in runs.items():
            best[name] = min(best[name], timed(x, cfg))
    out = {}
    for name, seconds in best.items():
        tps = n / seconds
        out[name] = {"tokens_per_second": round(tps), "full_run_seconds": round(args.epochs * args.tokens / tps, 1)}
        print(f"{name:24s} {tps:9.0f} tokens/s   {args.epochs} epochs x {args.tokens} tokens: "
              f"{args.epochs * args.tokens / tps:7.1f} s")
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out["settings"] = vars(args)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
