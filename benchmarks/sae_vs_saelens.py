"""Our SAE training vs SAELens's, same architecture (TopK), same cached activations, same steps.

    .venv/bin/python benchmarks/sae_vs_saelens.py [--model DIR] [--layer 3] [--steps 300]
    .venv/bin/python benchmarks/sae_vs_saelens.py --store results/default/activations/utility/rlhf --layer 28 \
        --epochs 6 --batch 512 --k 52 --lr 3e-3 --lr-decay 0.3 --b-dec-init mean --mult 1 --threads 1

1. Caches MLP-output activations of one block of the model on the built-in review texts
   (rlhf_lens.activations), split into training and evaluation tokens; or, with ``--store``, reads one
   layer of an existing activation store (the default run's: ~32k tokens), split by prompt group as the
   sae stage splits it.
2. Trains our TopK SAE (rlhf_lens.sae) for ``--steps`` steps of ``--batch`` tokens, with the default run's
   ``sae.decoder`` (``--decoder free``: atom norms start at 0.1 and scale the pre-activations, as SAELens
   trains; ``unit``: atoms renormalised after every step). The default run gives each SAE job one thread
   (``resources.fanout_threads``), hence ``--threads 1`` above.
3. Builds the repository's SAELens environment (``make saelens-env``: .venv-saelens, git-ignored,
   the one tests/test_sae_saelens.py uses) if missing, and trains SAELens's TopKTrainingSAE with its SAETrainer on the same tokens for the
   same steps, batch size, k, dictionary size and learning rate, the same linear decay to 0 over the
   last ``--lr-decay`` fraction of the steps (SAELens: constant scheduler with ``lr_decay_steps``) and
   the same starting decoder bias (``--b-dec-init mean``: SAELens's runner option of that name, set
   here by hand because SAETrainer alone leaves b_dec at zeros).
   Each is run ``--repeats`` times, alternately, and its fastest run counts (the CPU is shared).
4. Scores both reconstructions of the evaluation tokens with the same explained variance
   (around the mean, float64, rlhf_lens.sae.metrics) and prints tokens/s side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENV = REPO / ".venv-saelens"  # sae-lens==6.54.12 and torch==2.13.0, pinned in the Makefile's saelens-env

WORKER = r'''
import json, sys, time
import numpy as np, torch
from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.training.sae_trainer import SAETrainer

args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
torch.manual_seed(args["seed"])
x = torch.from_numpy(np.load(args["train"]))
x_eval = torch.from_numpy(np.load(args["eval"]))
batch, steps = args["batch"], args["steps"]

def provider():
    g = torch.Generator().manual_seed(args["seed"])
    while True:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch + 1, batch):
            yield x[perm[i:i + batch]]

cfg = TopKTrainingSAEConfig(d_in=x.shape[1], d_sae=args["d_sae"], k=args["k"], device="cpu", dtype="float32")
sae = TopKTrainingSAE(cfg)
if args["b_dec_init"] == "mean":
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
tcfg = SAETrainerConfig(total_training_samples=steps * batch, train_batch_size_samples=batch, lr=args["lr"], lr_end=args["lr"],
                        lr_decay_steps=args["decay_steps"], device="cpu", n_batches_for_norm_estimate=1)
trainer = SAETrainer(cfg=tcfg, sae=sae, data_provider=provider())
t = time.perf_counter()
trainer.fit()
seconds = time.perf_counter() - t
with torch.no_grad():
    recon = sae.decode(sae.encode(x_eval)).numpy()
np.save(args["out"], recon)
print(json.dumps({"seconds": seconds}))
'''


def ensure_venv() -> Path:
    if not (VENV / ".installed").is_file():
        print(f"building {VENV} (make saelens-env) ...", flush=True)
        subprocess.run(["make", "-C", str(REPO), "saelens-env"], check=True)
    return VENV / "bin" / "python"


def cache_activations(model_dir: str, layer: int, max_tokens: int, workdir: Path):
    from importlib.resources import files

    from rlhf_lens.activations import ActivationsConfig, extract_activations, read_layer, split_docs
    from rlhf_lens.models import load_prepared

    texts = [t for t in files("rlhf_lens.data").joinpath("builtin_reviews.txt").read_text().splitlines() if t.strip()]
    model, tok = load_prepared(model_dir)
    cfg = ActivationsConfig(max_tokens=max_tokens, max_length=64, batch_size=16)
    manifest = extract_activations(model, tok, texts, [layer], workdir / "store", cfg)
    train_ids, eval_ids = split_docs(manifest["n_docs"], 0.2, 0)
    return read_layer(workdir / "store", layer, train_ids)[1], read_layer(workdir / "store", layer, eval_ids)[1]


def read_store(store: str, layer: int):
    """(x_train, x_eval) of one layer of an activation store, held out by prompt group as in the sae stage."""
    from rlhf_lens.activations import doc_groups, read_layer, split_docs

    train_ids, eval_ids = split_docs(doc_groups(store), 0.2, 0)
    return read_layer(store, layer, train_ids)[1], read_layer(store, layer, eval_ids)[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resources/models/smollm2-135m-instruct")
    p.add_argument("--layer", type=int, default=3)
    p.add_argument("--store", default=None, help="an activation store folder to read --layer from instead of caching")
    p.add_argument("--tokens", type=int, default=6000, help="activation tokens cached (without --store)")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--epochs", type=int, default=None, help="train this many passes instead of --steps")
    p.add_argument("--lr-decay", type=float, default=0.0, help="fraction of steps of linear decay to 0 at the end")
    p.add_argument("--b-dec-init", choices=("zeros", "mean"), default="zeros")
    p.add_argument("--decoder", choices=("free", "unit"), default="free", help="our TopK's sae.decoder")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--mult", type=int, default=2, help="dictionary size as a multiple of d_model")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="alternating timed runs of each; the fastest counts")
    args = p.parse_args()

    import numpy as np
    import torch

    from rlhf_lens.sae import SAETrainConfig, train_sae
    from rlhf_lens.sae.metrics import explained_variance

    torch.set_num_threads(args.threads)
    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.store:
            x, x_eval = read_store(args.store, args.layer)
        else:
            x, x_eval = cache_activations(args.model, args.layer, args.tokens, tmp)
        d = x.shape[1]
        if args.epochs is not None:  # whole passes of full batches, as SAELens's provider serves them
            args.steps = args.epochs * (len(x) // args.batch)
        np.save(tmp / "train.npy", x.numpy())
        np.save(tmp / "eval.npy", x_eval.numpy())
        epochs_equiv = args.steps * args.batch / len(x)
        print(f"cached {len(x)} training and {len(x_eval)} evaluation tokens, d_model {d}, layer {args.layer}")

        # Ours: the same number of steps, as whole epochs plus the remainder via stop_after.
        steps_per_epoch = -(-len(x) // args.batch)
        cfg = SAETrainConfig(kind="topk", d_sae=args.mult * d, k=args.k, lr=args.lr, batch_size=args.batch,
                             epochs=-(-args.steps // steps_per_epoch), seed=0, checkpoint_every=0,
                             lr_decay=args.lr_decay, b_dec_init=args.b_dec_init, decoder=args.decoder)
        # The first torch.optim optimiser built in a process imports torch._dynamo (~2 s). SAELens's
        # timed region (trainer.fit) starts after its optimiser exists, so pay that import here too.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        job = {"train": str(tmp / "train.npy"), "eval": str(tmp / "eval.npy"), "out": str(tmp / "recon.npy"),
               "d_sae": args.mult * d, "k": args.k, "lr": args.lr, "batch": args.batch, "steps": args.steps,
               "seed": 0, "threads": args.threads, "b_dec_init": args.b_dec_init,
               "decay_steps": round(args.lr_decay * args.steps)}
        # The CPU is shared, so the two run alternately and each keeps its fastest repeat; both are
        # deterministic, so every repeat gives the same weights.
        ours_times, theirs_times = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ours, _ = train_sae(x, cfg, progress=False, stop_after=args.steps)
            ours_times.append(time.perf_counter() - t)
            proc = subprocess.run([str(python), "-c", WORKER, json.dumps(job)], capture_output=True, text=True,
                                  env={**os.environ, "WANDB_MODE": "disabled"})
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                print("SAELens run failed (see above)")
                return 1
            theirs_times.append(json.loads(proc.stdout.strip().splitlines()[-1])["seconds"])
        ours_s, theirs_s = min(ours_times), min(theirs_times)
        with torch.no_grad():
            ours_ev = explained_variance(x_eval, ours(x_eval)[0])
        theirs_ev = explained_variance(x_eval, torch.from_numpy(np.load(tmp / "recon.npy")))
        print("seconds per repeat: ours", [round(v, 2) for v in ours_times],
              "SAELens", [round(v, 2) for v in theirs_times])

    tokens = args.steps * args.batch
    print(f"\nTopK SAE, d_sae {args.mult * d}, k {args.k}, {args.steps} steps x {args.batch} tokens "
          f"(~{epochs_equiv:.1f} epochs), {args.threads} threads")
    print(f"{'':12}{'tokens/s':>12}{'EV (around mean)':>20}")
    print(f"{'rlhf-lens':12}{tokens / ours_s:12.0f}{ours_ev:20.4f}")
    print(f"{'SAELens':12}{tokens / theirs_s:12.0f}{theirs_ev:20.4f}")
    print(f"speed ratio (ours / SAELens): {theirs_s / ours_s:.2f}x; EV difference (ours - SAELens): "
          f"{ours_ev - theirs_ev:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
