"""``diff_sae``: a TopK SAE trained on the activation differences policy - base of identical tokens.

Source: Aranguri, Drori, Nanda 2025, "SAE on activation differences" (diff-SAEs; a planted backdoor on
SmolLM2-360M, arXiv 2605.07324): a sparse dictionary of what fine-tuning changed, rather than of what
either model computes; they beat crosscoders at isolating the planted behaviour.

Training: per studied block, the registry's ``topk`` SAE (``sae.train.train_sae``, the SAE stage's loop)
on ``d_t = x_policy,t - x_base,t`` of the stores' training documents, split by prompt group
(``activations.split_docs``; the rest is held out). The decoder bias starts at zero: for differences
zero is "unchanged", so the latents, not an offset, carry what changed. Differences are scaled to mean
norm sqrt(d_model) for training and the scale folded back (``sae.base.fold_input_scale``). Each trained
SAE is saved under ``ctx.work_dir`` (and checkpointed while training), so a rerun loads it.

How latents become word scores (``dictionary_readout``): on the held-out tokens, latent j *carries*
``mean_t f_j(d_t) * s_j`` (mean activation x decoder norm: its share of the mean difference along its
unit atom ``a_j``); latents are ranked by it. Atoms whose cosine is at least ``merge_cosine`` are read as one
latent: where one direction dominates the differences, a TopK SAE learns up to k copies of it that fire
together (on the planted test case: exactly k, cosines > 0.95), which would otherwise fill the top of the
ranking with one feature. Each (merged) unit atom is decoded through the final norm's weight and the
unembedding (direct logit effect, centred over the vocabulary). A seed's token scores are
``sum_blocks sum_j carried_j * decoded_j``; one row per seed (the unit: anything trained is resampled
over seeds). ``include_bias`` adds the decoder bias (the part of the difference on every token) to the
sum; it is off by default so the score is the latents' alone, and the bias is always shown as latent -1.

``latents.parquet``: seed, block, rank (by carried, within seed and block), latent (the member that
carries most), members (the SAE latents read as this one), carried, energy_share (sum_t (f s)^2 /
sum_t |d_t|^2 on held-out tokens: the fraction of the difference's squared norm along it, exact for
orthogonal atoms), firing_rate (on held-out tokens; 0: dead), top_tokens (distinct token texts of its
largest held-out activations), decoded_words / decoded_ids.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..activations import doc_groups, read_manifest, split_docs
from ..atomic import atomic_dir
from ..model_parts import token_texts
from ..sae.base import activation_scale, fold_input_scale
from ..sae.io import load_sae, save_sae
from ..sae.metrics import reconstruction_metrics
from ..sae.train import SAETrainConfig, train_sae
from .base import MethodResult
from .dictionary_readout import (LatentAccumulator, decode_latents, latent_directions, parallel_groups,
                                 top_token_texts)
from .paired_stores import read_block, shared_blocks, stores_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffSAEConfig:
    """Settings of ``diff_sae``."""

    blocks: tuple[int, ...] | None = None
    """Blocks to train on; None: every block in both activation stores."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """One SAE per seed and block; each seed is one unit (row of token scores), so the CI is over seeds."""
    size: int = 1
    """Dictionary size as a multiple of d_model."""
    k: int = 16
    """Active latents per token (differences are sparser than activations: the SAE stage uses 52)."""
    epochs: int = 3
    """Passes over the training tokens."""
    lr: float = 3e-3
    """Adam learning rate."""
    lr_decay: float = 0.3
    """Fraction of the steps, at the end, over which the learning rate falls linearly to 0."""
    batch_size: int = 512
    """Tokens per optimiser step."""
    dead_after: int = 2048
    """A latent silent for this many training tokens is dead and trained by the AuxK loss."""
    aux_coef: float = 0.125
    """Weight of the AuxK loss."""
    eval_fraction: float = 0.2
    """Share of prompt groups held out: latents are measured on them."""
    merge_cosine: float = 0.9
    """Atoms at least this cosine apart are read as one latent (TopK learns up to k copies of a dominant
    direction that fire together); 1.0 reads every latent alone."""
    include_bias: bool = False
    """Add the decoder bias (the difference common to every token) to the token scores."""
    top_tokens: int = 8
    """Distinct token texts kept per latent card."""
    decoded_words: int = 10
    """Tokens its atom promotes most, kept per latent card."""


def train_config(cfg: DiffSAEConfig, d: int, seed: int) -> SAETrainConfig:
    return SAETrainConfig(kind="topk", d_sae=cfg.size * d, k=cfg.k, aux_coef=cfg.aux_coef, dead_after=cfg.dead_after,
                          decoder="free", lr=cfg.lr, lr_decay=cfg.lr_decay, epochs=cfg.epochs,
                          batch_size=cfg.batch_size, b_dec_init="zeros", seed=seed)


def fit_diff_sae(diff: torch.Tensor, tcfg: SAETrainConfig, folder: Path | None, device: str = "cpu"):
    """(the SAE on raw differences ``diff`` (tokens, d), seconds spent training: 0 when loaded).

    ``folder``: where the trained SAE is kept; one whose recorded training config and token count match
    is loaded instead of retrained. Training resumes from a checkpoint beside it."""
    meta = {"train_config": asdict(tcfg), "train_tokens": len(diff)}
    if folder is not None and (folder / "cfg.json").is_file():
        sae, cfg = load_sae(folder)
        if {k: cfg.get("rlhf_lens", {}).get(k) for k in meta} == json.loads(json.dumps(meta)):
            return sae, 0.0
        log.info("%s: trained with other settings or data; training again", folder)
    started = time.monotonic()
    scale = activation_scale(diff)
    ckpt = None if folder is None else folder.parent / f".{folder.name}.ckpt.pt"
    sae, _ = train_sae(diff * scale, tcfg, checkpoint=ckpt, progress=False, device=device)
    sae = sae.cpu()
    fold_input_scale(sae, scale)
    if folder is not None:
        with atomic_dir(folder) as tmp:
            save_sae(sae, tmp, extra={**meta, "trained_on_differences_times": scale})
        ckpt.unlink(missing_ok=True)
    return sae.eval(), time.monotonic() - started


class DiffSAE:
    name = "diff_sae"
    config_class = DiffSAEConfig

    def run(self, ctx, cfg: DiffSAEConfig) -> MethodResult:
        base_store, _ = stores_of(ctx)
        blocks = list(cfg.blocks) if cfg.blocks is not None else shared_blocks(ctx)
        model, _, tokenizer = ctx.models()
        texts = token_texts(tokenizer)
        splits = {seed: split_docs(doc_groups(base_store), cfg.eval_fraction, seed) for seed in cfg.seeds}
        seed_scores = {seed: np.zeros(len(texts)) for seed in cfg.seeds}
        frames, fits = [], []
        for block_idx in blocks:
            block = read_block(ctx, block_idx)  # read once; each seed splits it by prompt group
            differences = block.policy - block.base
            doc = block.rows["doc_id"].to_numpy()
            for seed in cfg.seeds:
                train = torch.from_numpy(np.isin(doc, splits[seed][0]))
                held = np.isin(doc, splits[seed][1])
                tcfg = train_config(cfg, differences.shape[1], seed)
                name = f"block{block_idx}_seed{seed}"
                folder = None if ctx.work_dir is None else Path(ctx.work_dir) / "diff_sae" / name
                sae, seconds = fit_diff_sae(differences[train], tcfg, folder, ctx.device)
                diff = differences[torch.from_numpy(held)]
                frame, weights, atoms = _read_latents(sae, diff, block.rows["token_id"].to_numpy()[held], texts, cfg)
                scores, decoded = decode_latents(atoms, weights[None, :], model, len(texts), cfg.decoded_words)
                frame = _ranked(frame, decoded, texts)
                frame.insert(0, "seed", seed)
                frame.insert(1, "block", block_idx)
                frames.append(frame)
                seed_scores[seed] += scores[0]
                with torch.no_grad():
                    fit = reconstruction_metrics(sae, diff)
                fits.append({"seed": seed, "block": block_idx, "train_tokens": int(train.sum()),
                             "heldout_tokens": int(held.sum()), "train_seconds": round(seconds, 2),
                             "explained_variance": fit.get("explained_variance"), "l0": fit.get("l0")})
                log.info("diff_sae block %d seed %d: %d training tokens, %.1f s, held-out EV %.3f", block_idx, seed,
                         fits[-1]["train_tokens"], seconds, fits[-1]["explained_variance"] or float("nan"))
        rows_per_seed = [seed_scores[seed] for seed in cfg.seeds]
        return MethodResult(token_scores=np.stack(rows_per_seed), unit="seed",
                            latents=pd.concat(frames, ignore_index=True),
                            extra={"site": read_manifest(base_store)["site"], "blocks": blocks, "fits": fits,
                                   "weighting": "held-out mean activation x decoder norm, unit atoms",
                                   "include_bias": cfg.include_bias})


def _read_latents(sae, diff: torch.Tensor, token_ids: np.ndarray, texts: list[str], cfg: DiffSAEConfig):
    """(latent table of one SAE, weights of the token score, matching unit atoms) on held-out differences
    ``diff`` (n, d) of tokens ``token_ids`` (n,). Atoms parallel to within ``merge_cosine`` are one row (``members``: its latents;
    ``latent``: the one that carries most); the decoder bias is the last row (latent -1), weighted 0 in
    the token score unless ``include_bias``."""
    atoms, scales = latent_directions(sae)
    labels = parallel_groups(atoms, cfg.merge_cosine)
    n_groups = int(labels.max()) + 1
    member = torch.zeros(sae.m, n_groups)
    member[torch.arange(sae.m), torch.as_tensor(labels)] = 1.0
    group_atoms = torch.nn.functional.normalize(member.T @ atoms, dim=1)
    acc = LatentAccumulator(1, n_groups, top_n=8 * cfg.top_tokens)
    each = np.zeros(sae.m)
    fired = np.zeros(n_groups)
    with torch.no_grad():
        for lo in range(0, len(diff), 4096):
            f = sae.encode(diff[lo:lo + 4096]) * scales
            each += f.double().sum(0).numpy()
            g = f @ member  # a group's activation: the sum of its (nearly parallel) members'
            acc.add(g, np.zeros(len(g), dtype=np.int64))
            fired += (g > 0).sum(0).numpy()
        bias = sae.decode(torch.zeros(1, sae.m))[0]
    energy = max(float((diff.double() ** 2).sum()), 1e-30)
    carried = acc.mean()
    members = [np.flatnonzero(labels == c) for c in range(n_groups)]
    token_text = [texts[t] for t in token_ids]
    bias_norm = float(bias.norm())
    frame = pd.DataFrame({"latent": [int(ms[np.argmax(each[ms])]) for ms in members] + [-1],
                          "members": [ms.tolist() for ms in members] + [[]],
                          "carried": np.r_[carried, bias_norm],
                          "energy_share": np.r_[acc.sq / energy, bias_norm ** 2 * len(diff) / energy],
                          "firing_rate": np.r_[fired / max(len(diff), 1), 1.0],
                          "top_tokens": top_token_texts(acc, token_text, cfg.top_tokens) + [[]]})
    all_atoms = torch.cat([group_atoms, (bias / max(bias_norm, 1e-12))[None]])
    weights = np.r_[carried, bias_norm if cfg.include_bias else 0.0]
    return frame, weights, all_atoms


def _ranked(frame: pd.DataFrame, decoded: np.ndarray, texts: list[str]) -> pd.DataFrame:
    """``frame`` with its decoded tokens, sorted by carried (largest first; the bias row last) and ranked."""
    frame = frame.assign(decoded_words=[[texts[t] for t in row] for row in decoded], decoded_ids=decoded.tolist())
    frame = frame.sort_values(["latent", "carried"], key=lambda c: c if c.name == "carried" else c < 0,
                              ascending=[True, False], kind="stable").reset_index(drop=True)
    frame.insert(1, "rank", np.arange(len(frame)))
    return frame


METHOD_CLASS = DiffSAE
