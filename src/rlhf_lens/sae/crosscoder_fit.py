"""Fit one crosscoder on one layer of two activation stores, measure it, diff it, save it.

The stores must hold identical tokens (same documents, same (doc_id, position, token_id) rows in
the same order): a crosscoder reads both models' activations of one token. ``read_paired`` checks
that and names the first row that differs. The documents are split by prompt group (seeded) into
training and held-out documents; every metric in ``metrics.json`` is measured on the held-out
tokens; Latent Scaling (``diff.parquet``) uses every token of the store, since it describes the
trained dictionary, and rare latents need every activation they have.

The (base, base) null is the same call with the base store given twice: one dictionary for two
identical models must find no model-specific latents (``diffing.diff_summary``'s one-model bins).

A folder (``crosscoder/{reward}/layer{L}/``) holds ``cfg.json`` + ``sae_weights.safetensors``
(``io.load_sae`` reads it back), ``metrics.json`` and ``diff.parquet``.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..activations import ActivationStoreError, doc_groups, read_docs, read_layer, read_manifest, split_docs
from ..atomic import atomic_dir, write_json
from ..missing import json_safe
from .base import activation_scale
from .crosscoder_metrics import crosscoder_reconstruction_metrics, spliced_model_losses
from .diffing import diff_summary, diff_table
from .io import saelens_hook_name, save_sae
from .train import SAETrainConfig, train_sae

log = logging.getLogger(__name__)

DIFF_FILE = "diff.parquet"
METRICS_FILE = "metrics.json"


class CrosscoderDataError(ValueError):
    """The two stores do not hold the same tokens (or not the same layer, width or documents)."""


@dataclass(frozen=True)
class CrosscoderStageConfig:
    """How the crosscoder of each studied block is trained (``crosscoder:`` in config.yaml)."""

    enabled: bool = False
    """Train a (base, rlhf) crosscoder and its (base, base) null for every selected layer of every reward."""
    kind: str = "crosscoder_batchtopk"
    """A registered two-model architecture: crosscoder_batchtopk (BatchTopK, no shrinkage pressure) or crosscoder_l1."""
    size: int = 2
    """Dictionary size as a multiple of d_model."""
    k: int = 32
    """crosscoder_batchtopk: mean active latents per token (the batch keeps k * batch values)."""
    l1: float = 1.0
    """crosscoder_l1: lambda, the weight of sum_j f_j sum_m ||d_j^m|| against the summed squared error."""
    lr: float = 1e-3
    """Adam learning rate."""
    epochs: int = 10
    """Passes over the training tokens."""
    batch_size: int = 256
    """Tokens per optimiser step."""
    seed: int | None = None
    """Seeds the split, the initialisation and the shuffles; null: the run's seed."""
    eval_fraction: float = 0.2
    """Fraction of prompt groups held out to measure the crosscoder on."""
    ce_eval_tokens: int = 128
    """Held-out tokens scored for each model's spliced CE/KL; 0 skips it."""
    explain_latents: int = 3
    """RLHF-only and RLHF-leaning latents explained per layer and group (autointerp.crosscoder); no training setting."""


def read_paired(stores: list, layer: int, doc_ids=None) -> tuple:
    """(rows, [X_m]): the token rows (of the first store) and each store's activations
    (tokens, d_model) of ``layer``, after checking that every store holds the same tokens."""
    read = [read_layer(s, layer, doc_ids=doc_ids) for s in stores]
    rows0 = read[0][0]
    d0 = read[0][1].shape[1]
    for store, (rows, x) in zip(stores[1:], read[1:]):
        if x.shape[1] != d0:
            raise CrosscoderDataError(f"{store}: layer {layer} has width {x.shape[1]}, {stores[0]} has {d0}: "
                                      "expected one width for every model of a crosscoder")
        if len(rows) != len(rows0):
            raise CrosscoderDataError(f"{stores[0]} and {store}: layer {layer} holds {len(rows0)} and {len(rows)} "
                                      "tokens: expected identical tokens (rebuild both stores from one corpus)")
        cols = ["doc_id", "position", "token_id"]
        diff = np.flatnonzero((rows[cols].to_numpy() != rows0[cols].to_numpy()).any(1))
        if len(diff):
            i = int(diff[0])
            raise CrosscoderDataError(
                f"{stores[0]} and {store}: layer {layer} row {i} is (doc_id, position, token_id) "
                f"{tuple(int(v) for v in rows0.loc[i, cols])} vs {tuple(int(v) for v in rows.loc[i, cols])}: "
                f"expected identical tokens in both stores ({len(diff)} rows differ)")
    return rows0, [x for _, x in read]


def check_same_documents(stores: list) -> None:
    """Every store's docs.parquet holds the same token streams (the spliced CE runs them)."""
    ref = read_docs(stores[0])["token_ids"].map(list).tolist()
    for store in stores[1:]:
        other = read_docs(store)["token_ids"].map(list).tolist()
        if other != ref:
            first = next((i for i, (a, b) in enumerate(zip(ref, other)) if a != b), min(len(ref), len(other)))
            raise CrosscoderDataError(f"{stores[0]} and {store}: docs.parquet differs (first at document {first}; "
                                      f"{len(ref)} vs {len(other)} documents): expected identical token streams")


def fit_crosscoder(stores: list, layer: int, out_dir: str | os.PathLike, cfg: CrosscoderStageConfig, seed: int,
                   names: tuple[str, ...] = ("base", "rlhf"), model_dirs: list | None = None,
                   device: str = "cpu", progress: bool = True) -> dict:
    """Train, measure, diff and save the crosscoder of ``layer`` over ``stores`` (one per model, in
    ``names`` order; the same store twice for the null). ``model_dirs``: the models, for the spliced
    CE/KL (None skips it). Returns metrics.json's content."""
    stores = [Path(s) for s in stores]
    if len(stores) != len(names):
        raise ValueError(f"{len(stores)} stores for {len(names)} model names {names}")
    seed = cfg.seed if cfg.seed is not None else seed
    manifest = read_manifest(stores[0])
    check_same_documents(stores)
    groups = doc_groups(stores[0])
    train_ids, eval_ids = split_docs(groups, cfg.eval_fraction, seed)
    _, x_train = read_paired(stores, layer, train_ids)
    _, x_eval = read_paired(stores, layer, eval_ids)
    if len(x_train[0]) == 0 or len(x_eval[0]) == 0:
        raise ActivationStoreError(f"{stores[0]}: layer {layer} has {len(x_train[0])} training and {len(x_eval[0])} "
                                   "held-out tokens: expected some of each (more documents, or another eval_fraction)")
    d_model = x_train[0].shape[1]
    scales = [activation_scale(x) for x in x_train]  # per model, as the SAEs'
    tcfg = SAETrainConfig(kind=cfg.kind, d_sae=cfg.size * d_model, l1=cfg.l1, k=cfg.k, lr=cfg.lr, epochs=cfg.epochs,
                          batch_size=cfg.batch_size, seed=seed)
    out = Path(out_dir)
    ckpt = out.parent / f".{out.name}.ckpt.pt"  # beside the output: Snakemake clears outputs of failed jobs
    started = time.monotonic()
    xc, history = train_sae(torch.cat([c * x for c, x in zip(scales, x_train)], 1), tcfg, checkpoint=ckpt,
                            progress=progress, device=device)
    train_s = time.monotonic() - started
    xc = xc.cpu().eval()
    xc.set_input_scale(scales)
    metrics = {"layer": layer, "kind": cfg.kind, "models": list(names), "stores": [str(s) for s in stores],
               "d_model": d_model, "d_sae": tcfg.d_sae, "seed": seed, "site": manifest["site"],
               "train_tokens": len(x_train[0]), "eval_tokens": len(x_eval[0]), "train_seconds": train_s,
               "train_tokens_per_second": cfg.epochs * len(x_train[0]) / max(train_s, 1e-9),
               "activation_scales": scales, "final_epoch": history[-1] if history else None}
    metrics.update(crosscoder_reconstruction_metrics(xc, x_eval, list(names)))
    if model_dirs is not None and cfg.ce_eval_tokens > 0:
        metrics.update(_spliced(stores[0], layer, manifest, xc, x_train, eval_ids, model_dirs, names, cfg, device))
    _, x_all = read_paired(stores, layer)
    table = diff_table(xc, torch.cat(x_all, 1))
    metrics["diff"] = diff_summary(table)
    with atomic_dir(out) as tmp:
        save_sae(xc, tmp, hook_name=saelens_hook_name(layer, manifest["site"]), model_name=manifest.get("model"),
                 context_size=manifest.get("max_length"),
                 extra={"layer": layer, "site": manifest["site"], "models": list(names),
                        "stores": [str(s) for s in stores], "d_model": d_model, "seed": seed,
                        "train_config": asdict(tcfg), "input_scale": scales})
        table.to_parquet(tmp / DIFF_FILE, index=False)
        write_json(json_safe(metrics, finite=True), tmp / METRICS_FILE)
    ckpt.unlink(missing_ok=True)
    s = metrics["diff"]
    log.info("crosscoder %s layer %d (%s): EV %s, L0 %.1f, live %d, rlhf_only %d, base_only %d, shared %d", cfg.kind,
             layer, "/".join(names), [round(metrics[f"explained_variance_{n}"], 3) for n in names], metrics["l0"],
             s["n_live"], s["n_rlhf_only"], s["n_base_only"], s["n_shared"])
    return metrics


def _spliced(store, layer, manifest, xc, x_train, eval_ids, model_dirs, names, cfg, device) -> dict:
    from ..model_parts import find_blocks, pad_token_id, site_module
    from ..models import load_prepared

    loaded = [load_prepared(d, device) for d in model_dirs]
    models = [m for m, _ in loaded]
    tokenizer = loaded[0][1]
    modules = [site_module(find_blocks(m)[layer], manifest["site"], layer) for m in models]
    docs = read_docs(store)
    streams = [list(docs.loc[i, "token_ids"]) for i in eval_ids]
    return spliced_model_losses(xc, models, layer, manifest["site"], modules, streams, list(names),
                                [x.mean(0) for x in x_train], exclude=set(tokenizer.all_special_ids),
                                pad_id=pad_token_id(tokenizer), device=device, max_tokens=cfg.ce_eval_tokens,
                                skip_first=manifest.get("skip_first_positions", 0))


def summarise_crosscoders(folders: dict[int, tuple[str, str]]) -> tuple:
    """(table, panels) of one reward: ``folders`` maps layer -> (crosscoder folder, null folder).

    The table has one row per (layer, pair) (pair: rlhf or null) with the diff summary's counts and
    the metrics (EV per model, L0, dead fraction, spliced CE/KL where measured); panels are
    (title, live dn of the crosscoder, live dn of the null) for ``report.plots.plot_dn_histograms``.
    """
    import json

    import pandas as pd

    rows, panels = [], []
    for layer in sorted(folders):
        dns = {}
        for pair, folder in zip(("rlhf", "null"), folders[layer]):
            metrics = json.loads((Path(folder) / METRICS_FILE).read_text())
            table = pd.read_parquet(Path(folder) / DIFF_FILE)
            dns[pair] = table.loc[table["live"], "dn"].to_numpy()
            flat = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
            rows.append({"layer": layer, "pair": pair, **flat, **metrics["diff"]})
        panels.append((f"layer {layer}", dns["rlhf"], dns["null"]))
    return pd.DataFrame(rows), panels
