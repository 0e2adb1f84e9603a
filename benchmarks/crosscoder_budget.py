"""Does a crosscoder fit the default run's budget? The crosscoder job's compute on the default-size store.

    .venv/bin/python benchmarks/crosscoder_budget.py [--tokens 32000] [--d 576] [--train-epochs 1]

The default store: 32,000 tokens of SmolLM2-135M (d_model 576) per role and studied block. The
crosscoder job of one block (rule crosscoder; its (base, base) null is a second, equal job) trains on
the training prompt groups (1 - crosscoder.eval_fraction of the tokens) for crosscoder.epochs
epochs, measures EV/L0 on the held-out tokens and runs Latent Scaling (diff.parquet) over every
token. Timed here on synthetic activations of that size (``crosscoder_vs_sae.activations``), with the
schema's crosscoder defaults: training for ``--train-epochs`` epochs, extrapolated to the default's
epochs (every epoch is the same steps), then the metrics and the diff table in full. The spliced
CE/KL (128 held-out tokens through both models) is left out: it needs the models, and costs a few
forward passes of 128 tokens. Side by side: our TopK SAE (the sae stage's 2x dictionary, k 32, the
sae defaults' epochs) on one model's training tokens, the anchor the default run already pays for.

Both wall seconds and this process's CPU seconds are printed; with one thread (the default here),
CPU seconds approximate the wall time on an otherwise idle core, which is what the budget assumes
(the measured wall time on a shared machine is longer). The verdict: the crosscoder is enabled in
the default run only if the job costs under ``--budget-s`` (60 s) per block.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from crosscoder_vs_sae import activations  # noqa: E402

from rlhf_lens.config import validate_config  # noqa: E402
from rlhf_lens.sae import SAETrainConfig, train_sae  # noqa: E402
from rlhf_lens.sae.crosscoder_metrics import crosscoder_reconstruction_metrics  # noqa: E402
from rlhf_lens.sae.diffing import diff_table  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(fn):
    """(result, wall seconds, CPU seconds) of ``fn()``."""
    wall, cpu = time.perf_counter(), _cpu()
    out = fn()
    return out, time.perf_counter() - wall, _cpu() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=32_000)
    ap.add_argument("--d", type=int, default=576)
    ap.add_argument("--train-epochs", type=int, default=1, help="epochs actually trained (then extrapolated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=60.0)
    ap.add_argument("--record", metavar="NAME", default=None,
                    help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    defaults = validate_config({})  # the schema's defaults
    xc_cfg, sae_cfg = defaults["crosscoder"], defaults["sae"]
    xb, xr = activations(args.tokens, args.d)
    n_train = round((1 - xc_cfg["eval_fraction"]) * args.tokens)
    x = torch.cat([xb, xr], 1)
    x_train, x_eval = x[:n_train], [xb[n_train:], xr[n_train:]]
    xc_train = SAETrainConfig(kind=xc_cfg["kind"], d_sae=xc_cfg["size"] * args.d, k=xc_cfg["k"], lr=xc_cfg["lr"],
                              epochs=args.train_epochs, batch_size=xc_cfg["batch_size"], seed=0)
    xc, train_wall, train_cpu = timed(lambda: train_sae(x_train, xc_train, progress=False)[0])
    scale = xc_cfg["epochs"] / args.train_epochs
    _, metrics_wall, metrics_cpu = timed(lambda: crosscoder_reconstruction_metrics(xc.eval(), x_eval, ["base", "rlhf"]))
    _, diff_wall, diff_cpu = timed(lambda: diff_table(xc, x))
    sae_train = SAETrainConfig(kind="topk", d_sae=min(sae_cfg["sizes"]) * args.d, k=sae_cfg["k"],
                               epochs=args.train_epochs, batch_size=sae_cfg["batch_size"], seed=0)
    _, sae_wall, sae_cpu = timed(lambda: train_sae(xb[:n_train], sae_train, progress=False))
    sae_scale = sae_cfg["epochs"] / args.train_epochs
    job_cpu = scale * train_cpu + metrics_cpu + diff_cpu
    job_wall = scale * train_wall + metrics_wall + diff_wall
    out = {
        "crosscoder_train_cpu_s": round(scale * train_cpu, 1), "crosscoder_train_wall_s": round(scale * train_wall, 1),
        "metrics_cpu_s": round(metrics_cpu, 1), "diff_table_cpu_s": round(diff_cpu, 1),
        "crosscoder_job_cpu_s": round(job_cpu, 1), "crosscoder_job_wall_s": round(job_wall, 1),
        "per_block_with_null_cpu_s": round(2 * job_cpu, 1),
        "topk_sae_train_cpu_s": round(sae_scale * sae_cpu, 1), "topk_sae_train_wall_s": round(sae_scale * sae_wall, 1),
        "crosscoder_train_over_sae_train_cpu": round(scale * train_cpu / max(sae_scale * sae_cpu, 1e-9), 2),
        "fits_budget": bool(job_cpu < args.budget_s),
        "settings": {**vars(args), "train_tokens": n_train, "crosscoder": xc_cfg,
                     "sae": {k: sae_cfg[k] for k in ("k", "epochs", "batch_size", "sizes")}},
    }
    print(f"crosscoder job, one block ({n_train} training tokens x {xc_cfg['epochs']} epochs, d {args.d}, "
          f"m {xc_cfg['size'] * args.d}): {job_cpu:.0f} CPU s ({job_wall:.0f} s wall here); training "
          f"{scale * train_cpu:.0f} s, metrics {metrics_cpu:.1f} s, Latent Scaling / diff {diff_cpu:.1f} s")
    print(f"with its (base, base) null: {2 * job_cpu:.0f} CPU s per block; TopK SAE training on one model: "
          f"{sae_scale * sae_cpu:.0f} CPU s (crosscoder training {out['crosscoder_train_over_sae_train_cpu']}x)")
    print(f"verdict: {'fits' if out['fits_budget'] else 'does not fit'} the {args.budget_s:.0f} s per block budget")
    print(json.dumps(out))
    if args.record:
        from rlhf_lens.records import write_record

        path = write_record(
            args.record, "Crosscoder job cost on a store of the default's size",
            f"One crosscoder job (the schema's crosscoder defaults, {n_train} training tokens of synthetic "
            f"activations, d {args.d}) in CPU seconds, {args.threads} thread(s), against the TopK SAE's training "
            f"on one model; training timed for {args.train_epochs} epoch(s) and scaled to the configured epochs.",
            "benchmarks/crosscoder_budget.py " + " ".join(sys.argv[1:]),
            [{"name": "one crosscoder job", "value": out["crosscoder_job_cpu_s"], "unit": "CPU s",
              "reading": f"training {out['crosscoder_train_cpu_s']}, metrics {out['metrics_cpu_s']}, "
                         f"Latent Scaling {out['diff_table_cpu_s']}"},
             {"name": "per block with its (base, base) null", "value": out["per_block_with_null_cpu_s"], "unit": "CPU s",
              "reading": f"{'fits' if out['fits_budget'] else 'over'} the {args.budget_s:g} s per block budget"},
             {"name": "TopK SAE training on one model", "value": out["topk_sae_train_cpu_s"], "unit": "CPU s"}],
            root=Path(__file__).resolve().parents[1])
        print(f"record written: {path}")


if __name__ == "__main__":
    main()
