"""Crosscoder training time next to our TopK SAE on activations of the same size.

    .venv/bin/python benchmarks/crosscoder_vs_sae.py [--tokens 30000] [--d 576] [--steps 60] [--repeats 2]

Synthetic activations (sparse sums of unit atoms, about SmolLM2-135M's width by default), one
matrix per model, the second a perturbed copy of the first. Trains, for ``--steps`` steps of
``--batch`` tokens each, our TopK SAE on one model (m = 2 d, k 32: the sae stage's 2x dictionary)
and the BatchTopK and L1 crosscoders on both (m = 2 d, k 32: crosscoder.size 2). Each is run
``--repeats`` times, alternately, and its fastest run counts (the CPU is shared). Prints tokens/s,
the time a full ``epochs``-epoch run over ``--tokens`` tokens would take, and peak memory.

Peak memory: each training runs in a fresh process (multiprocessing spawn), which builds the same
activations, resets the kernel's peak-RSS counter (``/proc/self/clear_refs``, Linux) once they are
built and reads the peak (``VmHWM``) when training ends: ``peak_rss_mb`` is the process's peak
during training (Python, torch and the activations), ``train_peak_mb`` that peak minus the resident
memory just before training (what the training itself adds: parameters, Adam state, batch
buffers). Where the counter cannot be reset, ``ru_maxrss`` stands in (then it includes building the data).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path

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


def _status_kb(field: str) -> int | None:
    """A ``/proc/self/status`` field in kB (VmRSS, VmHWM), or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); False where it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _child(args: dict, name: str, queue) -> None:
    """One timed training in this (fresh) process; puts (seconds, peak_rss_mb, train_peak_mb) on ``queue``."""
    torch.set_num_threads(args["threads"])
    x, cfg = _runs(args)[name]
    before = _status_kb("VmRSS")
    exact = _reset_peak()
    started = time.perf_counter()
    train_sae(x, cfg, progress=False)
    seconds = time.perf_counter() - started
    peak = _status_kb("VmHWM") if exact else None
    if peak is None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    queue.put((seconds, peak / 1024, (peak - before) / 1024 if before is not None else None))


def timed(args: dict, name: str) -> tuple[float, float, float | None]:
    """(seconds, peak RSS MB, training's peak over the pre-training RSS MB) of one run in a fresh process."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(args, name, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def _runs(args: dict) -> dict:
    xb, xr = activations(args["tokens"], args["d"])
    n = args["steps"] * args["batch"]  # one epoch of exactly --steps steps
    d, batch = args["d"], args["batch"]
    return {
        "topk SAE (one model)": (xb[:n], SAETrainConfig(kind="topk", d_sae=2 * d, k=32, epochs=1, batch_size=batch)),
        "BatchTopK crosscoder": (torch.cat([xb[:n], xr[:n]], 1),
                                 SAETrainConfig(kind="crosscoder_batchtopk", d_sae=2 * d, k=32, epochs=1,
                                                batch_size=batch)),
        "L1 crosscoder": (torch.cat([xb[:n], xr[:n]], 1),
                          SAETrainConfig(kind="crosscoder_l1", d_sae=2 * d, l1=1.0, epochs=1, batch_size=batch)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=30_000)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=10, help="epochs of the full run the extrapolation is for")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--record", metavar="NAME", default=None,
                    help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    args = ap.parse_args()
    settings = {key: value for key, value in vars(args).items() if key != "record"}
    n = args.steps * args.batch
    names = ["topk SAE (one model)", "BatchTopK crosscoder", "L1 crosscoder"]
    best = {name: (float("inf"), None, None) for name in names}
    for _ in range(args.repeats):
        for name in names:
            seconds, peak, train_peak = timed(settings, name)
            if seconds < best[name][0]:
                best[name] = (seconds, peak, train_peak)
            else:  # the peak does not depend on the load: keep the largest seen
                best[name] = (best[name][0], max(best[name][1], peak), max(best[name][2] or 0, train_peak or 0))
    out = {}
    sae_tps = n / best[names[0]][0]
    for name, (seconds, peak, train_peak) in best.items():
        tps = n / seconds
        out[name] = {"tokens_per_second": round(tps), "full_run_seconds": round(args.epochs * args.tokens / tps, 1),
                     "peak_rss_mb": round(peak), "train_peak_mb": None if train_peak is None else round(train_peak)}
        print(f"{name:24s} {tps:9.0f} tokens/s ({tps / sae_tps:4.2f}x the SAE)   {args.epochs} epochs x "
              f"{args.tokens} tokens: {args.epochs * args.tokens / tps:7.1f} s   peak RSS {peak:6.0f} MB "
              f"(training adds {train_peak if train_peak is not None else float('nan'):5.0f} MB)")
    out["settings"] = settings
    print(json.dumps(out))
    if args.record:
        import sys

        from rlhf_lens.records import write_record

        path = write_record(
            args.record, "Crosscoder training speed and memory",
            f"Training on synthetic activations ({args.tokens} x {args.d} per model), {args.steps} steps of "
            f"{args.batch} tokens, {args.threads} thread(s), best of {args.repeats} alternating repeats, each in a "
            "fresh process; peak RSS the largest seen.",
            "benchmarks/crosscoder_vs_sae.py " + " ".join(sys.argv[1:]),
            [{"name": f"{name}, tokens/s", "value": out[name]["tokens_per_second"],
              "reading": f"peak RSS {out[name]['peak_rss_mb']} MB (training adds {out[name]['train_peak_mb']} MB)"}
             for name in names], root=Path(__file__).resolve().parents[1])
        print(f"record written: {path}")


if __name__ == "__main__":
    main()
