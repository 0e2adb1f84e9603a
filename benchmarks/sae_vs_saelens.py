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
   Both train with each of ``--seeds`` (default 0 1 2); the arms run alternately, ``--repeats`` times per
   seed, and each (arm, seed) keeps its fastest run (the CPU is shared). Ours runs the default run's
   ``sae.autocast`` (``auto``: bfloat16 products where the CPU has them natively); ``--saelens-autocast``
   adds SAELens with its own ``autocast`` (bfloat16) as a second anchor.
4. Scores every reconstruction of the evaluation tokens with the same explained variance
   (around the mean, float64, rlhf_lens.sae.metrics) and prints tokens/s (median over seeds) and EV (mean
   over seeds) side by side, with the per-seed speed ratios and EV differences.
5. With ``--record NAME``, writes all of it as a record (``docs/results/records/NAME.json``: the command,
   commit, date, machine from ``rlhf-lens env`` and both sides' versions); ``rlhf-lens results`` then renders it
   into docs/results.md and the README. The published record is ``--record sae_vs_saelens``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
                        lr_decay_steps=args["decay_steps"], device="cpu", n_batches_for_norm_estimate=1,
                        autocast=args["autocast"])
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


def _ev_difference(ours: dict, theirs: dict) -> tuple[float, float | None, float | None]:
    """Mean EV difference over seeds with Welch's 95% interval (None with one seed): a seed draws the
    initialisation and the token order of each tool from its own generator, so the two runs of a seed are
    independent, not paired."""
    from scipy import stats

    a, b = list(ours.values()), list(theirs.values())
    diff = statistics.mean(a) - statistics.mean(b)
    if len(a) < 2:
        return diff, None, None
    low, high = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return diff, float(low), float(high)


def _ev_text(diff: float, low: float | None, high: float | None, seeds: int) -> str:
    if low is None:
        return f"{diff:+.4f} (one seed: no interval)"
    return f"{diff:+.4f} [{low:+.4f}, {high:+.4f}] (Welch 95% over {seeds} seeds each)"


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
    p.add_argument("--autocast", choices=("auto", "bfloat16", "off"), default="auto",
                   help="our sae.autocast (the default run's: auto, bfloat16 products where the CPU has them)")
    p.add_argument("--saelens-autocast", action="store_true",
                   help="also time SAELens with its own autocast (bfloat16 products), a second anchor row")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--mult", type=int, default=2, help="dictionary size as a multiple of d_model")
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1, help="alternating timed runs of each (arm, seed); the fastest counts")
    p.add_argument("--record", metavar="NAME", default=None,
                   help="also write the result as docs/results/records/NAME.json (then run `rlhf-lens results`)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                   help="training seeds (initialisation and order): speed is the median, EV the mean over them")
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
        if args.epochs is not None:  # whole passes of full batches, as both trainers take them
            args.steps = args.epochs * (len(x) // args.batch)
        np.save(tmp / "train.npy", x.numpy())
        np.save(tmp / "eval.npy", x_eval.numpy())
        epochs_equiv = args.steps * args.batch / len(x)
        print(f"cached {len(x)} training and {len(x_eval)} evaluation tokens, d_model {d}, layer {args.layer}")

        # Ours: the same number of steps, as whole epochs plus the remainder via stop_after.
        steps_per_epoch = -(-len(x) // args.batch)
        base = SAETrainConfig(kind="topk", d_sae=args.mult * d, k=args.k, lr=args.lr, batch_size=args.batch,
                              epochs=-(-args.steps // steps_per_epoch), seed=0, checkpoint_every=0,
                              lr_decay=args.lr_decay, b_dec_init=args.b_dec_init, decoder=args.decoder,
                              autocast=args.autocast)
        # The first torch.optim optimiser built in a process imports torch._dynamo (~2 s). SAELens's
        # timed region (trainer.fit) starts after its optimiser exists, so pay that import here too.
        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
        job = {"train": str(tmp / "train.npy"), "eval": str(tmp / "eval.npy"), "out": str(tmp / "recon.npy"),
               "d_sae": args.mult * d, "k": args.k, "lr": args.lr, "batch": args.batch, "steps": args.steps,
               "threads": args.threads, "b_dec_init": args.b_dec_init, "decay_steps": round(args.lr_decay * args.steps)}

        def ours(seed):
            t = time.perf_counter()
            sae, _ = train_sae(x, SAETrainConfig(**{**base.__dict__, "seed": seed}), progress=False, stop_after=args.steps)
            seconds = time.perf_counter() - t
            with torch.no_grad():
                return seconds, explained_variance(x_eval, sae(x_eval)[0])

        def saelens(seed, autocast):
            proc = subprocess.run([str(python), "-c", WORKER, json.dumps({**job, "seed": seed, "autocast": autocast})],
                                  capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit("SAELens run failed (see above)")
            seconds = json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]
            return seconds, explained_variance(x_eval, torch.from_numpy(np.load(tmp / "recon.npy")))

        arms = {f"rlhf-lens ({args.autocast})": ours, "SAELens": lambda s: saelens(s, False)}
        if args.saelens_autocast:
            arms["SAELens autocast"] = lambda s: saelens(s, True)
        # The CPU is shared, so the arms run alternately and each (arm, seed) keeps its fastest repeat; every
        # run is deterministic, so repeats give the same weights. Seeds vary the initialisation and the order.
        seconds = {a: {s: float("inf") for s in args.seeds} for a in arms}
        ev = {a: {} for a in arms}
        for seed in args.seeds:
            for _ in range(args.repeats):
                for arm, run in arms.items():
                    t, ev[arm][seed] = run(seed)
                    seconds[arm][seed] = min(seconds[arm][seed], t)
            print(f"seed {seed}: " + "; ".join(f"{a} {seconds[a][seed]:.2f} s, EV {ev[a][seed]:.4f}" for a in arms),
                  flush=True)

    tokens = args.steps * args.batch
    print(f"\nTopK SAE, d_sae {args.mult * d}, k {args.k}, {args.steps} steps x {args.batch} tokens "
          f"(~{epochs_equiv:.1f} epochs), {args.threads} threads, seeds {args.seeds}")
    print(f"{'':24}{'tokens/s (median)':>18}{'EV (mean over seeds)':>22}")
    for arm in arms:
        print(f"{arm:24}{tokens / statistics.median(seconds[arm].values()):18.0f}"
              f"{statistics.mean(ev[arm].values()):22.4f}")
    ours_arm = next(iter(arms))
    values = [{"name": f"{arm}, tokens/s (median over seeds)", "value": round(tokens / statistics.median(seconds[arm].values())),
               "reading": f"EV {statistics.mean(ev[arm].values()):.4f} (mean over seeds)"} for arm in arms]
    for anchor in list(arms)[1:]:
        ratios = [seconds[anchor][s] / seconds[ours_arm][s] for s in args.seeds]
        diff, low, high = _ev_difference(ev[ours_arm], ev[anchor])
        print(f"vs {anchor}: speed ratio (median over seeds) {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}, {max(ratios):.2f}]; EV difference (ours - theirs) "
              f"{_ev_text(diff, low, high, len(args.seeds))}")
        values += [{"name": f"speed, ours / {anchor}", "value": round(statistics.median(ratios), 2), "unit": "x",
                    "decimals": 2, "reading": f"per-seed ratios {min(ratios):.2f}-{max(ratios):.2f}"},
                   {"name": f"held-out EV, ours - {anchor}", "value": round(diff, 4), "decimals": 4, "signed": True,
                    **({"ci": [round(low, 4), round(high, 4)]} if low is not None else {}),
                    "reading": f"Welch 95% over {len(args.seeds)} seeds each" if low is not None else "one seed"}]
    if args.record:
        from rlhf_lens.environment import environment
        from rlhf_lens.records import write_record

        env = environment(REPO)
        reference = subprocess.run([str(VENV / "bin" / "python"), "-c", "import importlib.metadata as m; "
                                    "print(m.version('sae-lens'), m.version('torch'))"], capture_output=True, text=True)
        if reference.returncode == 0:  # the reference side runs in its own environment
            sae_lens, torch_version = reference.stdout.split()
            env["versions"].update({"sae-lens": sae_lens, "torch (SAELens side)": torch_version})
        path = write_record(
            args.record, "SAE training vs SAELens",
            f"TopK SAE (d_sae {args.mult * d}, k {args.k}, decoder {args.decoder}, autocast {args.autocast}) against "
            f"SAELens on the same tokens, steps and schedule: {args.steps} steps x {args.batch} tokens, "
            f"{args.threads} thread(s), seeds {args.seeds} alternating; speed: median tokens/s over seeds.",
            "benchmarks/sae_vs_saelens.py " + " ".join(sys.argv[1:]), values, root=REPO, env=env)
        print(f"record written: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
