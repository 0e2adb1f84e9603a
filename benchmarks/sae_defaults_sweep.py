"""How the SAE defaults were picked: held-out EV, L0, dead and dense fractions of SAE settings on one
layer of a real activation store, split by prompt group as rule sae splits it.

    .venv/bin/python benchmarks/sae_defaults_sweep.py results/default/activations/utility/rlhf 19 \\
        '[{"kind": "relu", "l1": 0.004, "epochs": 6, "b_dec_init": "zeros"},
          {"kind": "topk", "k": 40, "epochs": 6, "lr": 0.003, "lr_decay": 0.3, "batch_size": 512}]'

Each JSON object holds SAETrainConfig fields (d_sae defaults to d_model). Prints one line per setting.
SAETrainConfig's own defaults are not the stage's: the default run's TopK SAEs are
``{"kind": "topk", "k": 52, "epochs": 6, "lr": 0.003, "lr_decay": 0.3, "batch_size": 512, "decoder": "free",
"dead_after": 2048, "aux_coef": 0.125}`` (sae: in config.yaml).
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rlhf_lens.activations import doc_groups, read_layer, read_manifest, split_docs
from rlhf_lens.sae.base import activation_scale, fold_input_scale
from rlhf_lens.sae.metrics import reconstruction_metrics
from rlhf_lens.sae.train import SAETrainConfig, train_sae


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("layer", type=int)
    ap.add_argument("settings", help="JSON list of SAETrainConfig field dicts")
    ap.add_argument("--eval-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    d = read_manifest(args.store)["d_model"]
    train_ids, eval_ids = split_docs(doc_groups(args.store), args.eval_fraction, args.seed)
    _, x_train = read_layer(args.store, args.layer, doc_ids=train_ids)
    _, x_eval = read_layer(args.store, args.layer, doc_ids=eval_ids)
    print(f"layer {args.layer}: {len(x_train)} training tokens, {len(x_eval)} held out (by prompt group)")
    scale = activation_scale(x_train)
    for setting in json.loads(args.settings):
        cfg = SAETrainConfig(**{"d_sae": d, "seed": args.seed, **setting})
        started = time.monotonic()
        sae, _ = train_sae(x_train * scale, cfg, progress=False)
        seconds = time.monotonic() - started
        fold_input_scale(sae, scale)
        m = reconstruction_metrics(sae, x_eval)
        print(f"{json.dumps(setting)}: EV {m['explained_variance']:.3f}  L0 {m['l0']:.1f}  "
              f"dead {m['dead_fraction']:.3f}  dense {m['dense_fraction']:.3f}  {seconds:.1f} s", flush=True)


if __name__ == "__main__":
    main()
