"""Fit one SAE on one layer of an activation store, measure it, save it in the SAELens layout.

The store's documents are split (seeded, by document) into training and evaluation documents;
every metric in ``metrics.json`` is measured on the evaluation tokens only. The spliced CE/KL
runs the model on the evaluation documents' full token streams (``docs.parquet``), so the
model sees exactly the tokens it saw during extraction.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..activations import doc_groups, read_docs, read_layer, read_manifest, split_docs
from ..model_parts import find_blocks, pad_token_id, site_module
from ..atomic import atomic_dir, write_json
from ..missing import json_safe
from .base import activation_scale, fold_input_scale
from .io import saelens_hook_name, save_sae
from .precision import autocast_dtype
from .metrics import reconstruction_metrics, spliced_losses
from .registry import architectures
from .train import SAETrainConfig, train_sae

log = logging.getLogger(__name__)

SIZE_RE = re.compile(r"^(?P<kind>[a-z][a-z0-9]*)_(?P<mult>[0-9]+)x(?:_seed(?P<seed>[0-9]+))?$")


@dataclass(frozen=True)
class SAEStageConfig:
    """Settings shared by every SAE of a run (``sae:`` in config.yaml)."""

    kinds: tuple[str, ...] = ("topk",)
    """Architectures trained: topk (TopK + AuxK, the default) and/or relu (the paper's tied ReLU + L1)."""
    sizes: tuple[int, ...] = (1, 2)
    """Dictionary sizes as multiples of d_model: the first is the small dictionary, the last the large."""
    l1: float = 4e-3
    """relu: L1 coefficient, on activations scaled to mean norm sqrt(d_model)."""
    k: int = 52
    """topk: active latents per token (40 left held-out EV at 0.577 on block 17 of the default store; 52: 0.611)."""
    b_dec_init: str = "mean"
    """Starting decoder bias: mean (of the training activations) or zeros (the paper's SAEs)."""
    lr: float = 3e-3
    """Adam learning rate."""
    lr_decay: float = 0.3
    """Fraction of the steps, at the end, over which the learning rate falls linearly to 0."""
    epochs: int = 6
    """Passes over the training tokens."""
    dead_after: int = 2048
    """topk: a latent silent for this many training tokens is dead and trained by the AuxK loss (at ~26k
    training tokens a layer, 10000 left 10% of block 29's 2x latents dead on held-out tokens; 2048: 3%)."""
    aux_coef: float = 0.125
    """topk: weight of the AuxK loss."""
    decoder: str = "free"
    """topk: free (SAELens's training: atom norms start at 0.1 and scale the pre-activations, folded into
    the encoder when saved; +0.014 held-out EV at blocks 19 and 28 of the default run) or unit (atoms
    renormalised after every step, Gao et al.)."""
    batch_size: int = 512
    """Tokens per optimiser step."""
    autocast: str = "auto"
    """Dtype of the training step's matrix products: auto (bfloat16 where the device has it natively: AVX512-BF16
    or AMX CPUs, bf16 GPUs; else float32), bfloat16, or off (float32). Parameters, optimiser state, the loss, the
    saved SAEs and every metric stay float32 (rlhf_lens.sae.precision)."""
    baseline_seeds: tuple[int, ...] = (1, 2, 3)
    """Extra seeds for the seed-vs-seed baseline: each kind's small dictionary is trained again with each."""
    eval_fraction: float = 0.2
    """Fraction of documents held out to measure the SAEs on."""
    ce_eval_tokens: int = 128
    """Evaluation tokens scored for the spliced CE/KL (4 model forwards over them per SAE); 0 skips it."""


def parse_size(name: str) -> tuple[str, int, int | None]:
    """``relu_2x`` -> ("relu", 2, None); ``topk_1x_seed3`` -> ("topk", 1, 3)."""
    m = SIZE_RE.match(name)
    if not m or m["kind"] not in architectures():
        raise ValueError(f"SAE folder name {name!r}: expected <kind>_<multiple>x or <kind>_<multiple>x_seed<N> "
                         f"with kind one of {', '.join(architectures())}, e.g. relu_2x")
    return m["kind"], int(m["mult"]), None if m["seed"] is None else int(m["seed"])


def fit_saes(store: str | os.PathLike, layer: int, outputs: dict[str, str | os.PathLike], cfg: SAEStageConfig,
             seed: int, model_dir: str | os.PathLike | None = None, device: str = "cpu") -> dict[str, dict]:
    """Train every SAE named in ``outputs`` (size name -> folder) on ``layer`` of ``store``.

    One call reads the layer once, loads the model once and shares the clean and ablated
    forwards of the spliced CE/KL among the SAEs (each adds one spliced forward); each folder is
    still written atomically on its own, as soon as its SAE is scored. Returns name -> metrics.
    """
    parsed = {name: parse_size(name) for name in outputs}  # bad names fail before any work
    manifest = read_manifest(store)
    d = manifest["d_model"]
    train_ids, eval_ids = split_docs(doc_groups(store), cfg.eval_fraction, seed)  # held out by prompt group
    _, x_train = read_layer(store, layer, doc_ids=train_ids)
    _, x_eval = read_layer(store, layer, doc_ids=eval_ids)
    scale = activation_scale(x_train)  # train on scale * x; folded back into the biases before saving
    trained = {}
    for name, (kind, mult, own_seed) in parsed.items():
        started = time.monotonic()
        tcfg = SAETrainConfig(kind=kind, d_sae=mult * d, l1=cfg.l1, k=cfg.k, lr=cfg.lr, lr_decay=cfg.lr_decay, epochs=cfg.epochs,
                              dead_after=cfg.dead_after, aux_coef=cfg.aux_coef, decoder=cfg.decoder,
                              batch_size=cfg.batch_size, b_dec_init=cfg.b_dec_init, autocast=cfg.autocast,
                              seed=seed if own_seed is None else own_seed)
        out = Path(outputs[name])
        ckpt = out.parent / f".{out.name}.ckpt.pt"  # beside the output: Snakemake clears outputs of failed jobs
        sae, history = train_sae(x_train * scale, tcfg, checkpoint=ckpt, device=device)
        sae = sae.cpu()  # metrics accumulate in float64 on the CPU; the spliced CE moves it back
        fold_input_scale(sae, scale)
        train_s = time.monotonic() - started
        metrics = {"layer": layer, "size": name, "kind": kind, "d_in": d, "d_sae": tcfg.d_sae, "seed": tcfg.seed,
                   "site": manifest["site"], "train_tokens": len(x_train), "train_seconds": train_s,
                   "activation_scale": scale,
                   "train_products": str(autocast_dtype(cfg.autocast, device) or torch.float32).removeprefix("torch."),
                   "train_tokens_per_second": cfg.epochs * len(x_train) / max(train_s, 1e-9),
                   "final_epoch": history[-1] if history else None}
        metrics.update(reconstruction_metrics(sae, x_eval))
        trained[name] = (sae, tcfg, metrics, ckpt)
    if model_dir is not None and cfg.ce_eval_tokens > 0:
        spliced = _spliced(store, layer, manifest, {n: t[0] for n, t in trained.items()}, x_train.mean(0),
                           eval_ids, model_dir, cfg, device)
        for name, extra in spliced.items():
            trained[name][2].update(extra)
    results = {}
    for name, (sae, tcfg, metrics, ckpt) in trained.items():
        with atomic_dir(Path(outputs[name])) as tmp:
            save_sae(sae.cpu(), tmp, hook_name=saelens_hook_name(layer, manifest["site"]),
                     model_name=manifest.get("model"), context_size=manifest.get("max_length"),
                     extra={"layer": layer, "site": manifest["site"], "size": name, "seed": tcfg.seed,
                            "model": manifest.get("model"), "train_config": tcfg.__dict__,
                            "trained_on_activations_times": scale})
            write_json(json_safe(metrics, finite=True), tmp / "metrics.json")
        ckpt.unlink(missing_ok=True)
        log.info("SAE %s layer %d: EV %.3f, L0 %.1f, dead %.2f", name, layer, metrics["explained_variance"],
                 metrics.get("l0", float("nan")), metrics.get("dead_fraction", float("nan")))
        results[name] = metrics
    return results


def _spliced(store, layer, manifest, saes: dict, mean_vector, eval_ids, model_dir, cfg, device) -> dict:
    from ..models import load_prepared

    model, tokenizer = load_prepared(model_dir, device)
    blocks = find_blocks(model)
    docs = read_docs(store)
    streams = [list(docs.loc[i, "token_ids"]) for i in eval_ids]
    module = site_module(blocks[layer], manifest["site"], layer)
    return spliced_losses(model, module, {n: s.to(device) for n, s in saes.items()}, streams,
                          exclude=set(tokenizer.all_special_ids), mean_vector=mean_vector,
                          pad_id=pad_token_id(tokenizer), device=device, max_tokens=cfg.ce_eval_tokens,
                          skip_first=manifest.get("skip_first_positions", 0))
