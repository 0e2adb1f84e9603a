"""``sae_shift``: the base model's SAE latents ranked by how much their mean activation moved after RLHF.

Source: OpenAI's persona features (Wang et al. 2025, "Persona Features Control Emergent Misalignment",
arXiv 2506.19823): a base-model SAE applied to both models on the same text; latents ranked by the
change of their mean activation. Their follow-up warns that the largest change need not be the cause.

How latents become word scores (``dictionary_readout``): each studied block's base SAE encodes both
models' activations of identical tokens (the activation stores); latent j's change on a prompt group is
``mean_t (f_j(policy) - f_j(base)) * s_j`` over the group's tokens, ``s_j`` its decoder norm, so the
change is in the site's units along the unit atom ``a_j``. Each unit atom is decoded through the final
norm's weight and the unembedding (its direct logit effect, centred over the vocabulary). A group's
token scores are ``sum_blocks sum_j change_j * decoded_j``: the direct logit effect of the SAE's
reconstruction of the mean activation change; one row per prompt group of the store (the unit).

The site must add to the residual stream for the decoding to be a direct effect: ``mlp_out`` (the
default: a block's MLP output is added to the residual stream as it is) or ``resid_post`` (the residual
stream itself, read like a logit lens).

``latents.parquet`` (``MethodResult.latents``), one row per latent of each block: block, latent, rank
(by change within the block, largest increase first), change, change_se (its standard error over
prompt groups), change_z, base_mean, policy_mean, relative_change ((policy - base) / base; NaN where
the base never fires), top_tokens (distinct token texts of its largest policy activations),
top_shift_tokens (of its largest per-token increases), decoded_words / decoded_ids (the tokens its atom
promotes most).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..activations import read_manifest
from ..model_parts import token_texts
from ..sae.io import load_sae
from .base import MethodResult
from .dictionary_readout import LatentAccumulator, decode_latents, latent_directions, top_token_texts
from .paired_stores import read_block, shared_blocks, stores_of

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SAEShiftConfig:
    """Settings of ``sae_shift``."""

    blocks: tuple[int, ...] | None = None
    """Blocks to read; None: every block that has a base SAE and is in both activation stores."""
    top_tokens: int = 8
    """Distinct token texts kept per latent card (where it fires most, and where it grew most)."""
    decoded_words: int = 10
    """Tokens its atom promotes most, kept per latent card."""
    batch_size: int = 4096
    """Tokens encoded at a time (bounds memory: batch x dictionary size floats per role)."""


def latent_changes(sae, block, batch_size: int, top_n: int):
    """Encode both roles of a ``PairedBlock``; returns (base, policy, shift) ``LatentAccumulator``s of
    activations times decoder norm (the shift: policy - base per token) and the unit atoms (m, d)."""
    atoms, scales = latent_directions(sae)
    n_units, m = len(block.groups), sae.m
    accs = [LatentAccumulator(n_units, m, n) for n in (0, top_n, top_n)]  # the base side's top tokens are not shown
    with torch.no_grad():
        for lo in range(0, len(block.rows), batch_size):
            units = block.units[lo:lo + batch_size]
            fb = sae.encode(block.base[lo:lo + batch_size]) * scales
            fp = sae.encode(block.policy[lo:lo + batch_size]) * scales
            for acc, f in zip(accs, (fb, fp, fp - fb)):
                acc.add(f, units)
    return (*accs, atoms)


def unit_spread(unit_means: np.ndarray) -> np.ndarray:
    """(m,) standard error over units of the mean of ``unit_means`` (n_units, m); NaN with one unit."""
    n = unit_means.shape[0]
    return unit_means.std(axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.full(unit_means.shape[1], np.nan)


class SAEShift:
    name = "sae_shift"
    config_class = SAEShiftConfig

    def run(self, ctx, cfg: SAEShiftConfig) -> MethodResult:
        base_store, _ = stores_of(ctx)
        site = read_manifest(base_store)["site"]
        blocks = list(cfg.blocks) if cfg.blocks is not None else [b for b in shared_blocks(ctx) if b in ctx.sae_dirs]
        missing = [b for b in blocks if b not in ctx.sae_dirs]
        if not blocks or missing:
            raise ValueError(f"sae_shift: no base SAE for block(s) {missing or 'any'} "
                             f"(SAEs for {sorted(ctx.sae_dirs)}, "
                             f"stores hold {shared_blocks(ctx)})")
        model, _, tokenizer = ctx.models()
        texts = token_texts(tokenizer)
        scores, frames = None, []
        for block_idx in blocks:
            sae, _ = load_sae(ctx.sae_dirs[block_idx])
            block = read_block(ctx, block_idx)
            token_text = [texts[t] for t in block.rows["token_id"].to_numpy()]
            base, policy, shift, atoms = latent_changes(sae, block, cfg.batch_size, top_n=8 * cfg.top_tokens)
            unit_change = shift.unit_means()  # (n_units, m)
            block_scores, decoded = decode_latents(atoms, unit_change, model, len(texts), cfg.decoded_words)
            scores = block_scores if scores is None else scores + block_scores
            frames.append(_latent_table(block_idx, base, policy, shift, unit_change, decoded, token_text, texts, cfg))
            log.info("sae_shift block %d: %d latents over %d tokens, %d prompt groups; largest change %.4g",
                     block_idx, sae.m, len(token_text), len(block.groups), frames[-1]["change"].max())
        latents = pd.concat(frames, ignore_index=True)
        return MethodResult(token_scores=scores, unit="prompt_group", latents=latents,
                            extra={"site": site, "blocks": blocks, "n_units": int(scores.shape[0]),
                                   "weighting": "change in mean activation x decoder norm, unit atoms"})


def _latent_table(block_idx, base, policy, shift, unit_change, decoded, token_text, texts, cfg) -> pd.DataFrame:
    change = shift.mean()
    base_mean, policy_mean = base.mean(), policy.mean()
    se = unit_spread(unit_change)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(base_mean > 0, change / base_mean, np.nan)
        z = np.where(se > 0, change / se, np.nan)
    frame = pd.DataFrame({"block": block_idx, "latent": np.arange(len(change)), "change": change,
                          "change_se": se, "change_z": z, "base_mean": base_mean, "policy_mean": policy_mean,
                          "relative_change": relative,
                          "top_tokens": top_token_texts(policy, token_text, cfg.top_tokens),
                          "top_shift_tokens": top_token_texts(shift, token_text, cfg.top_tokens),
                          "decoded_words": [[texts[t] for t in row] for row in decoded],
                          "decoded_ids": decoded.tolist()})
    frame = frame.sort_values("change", ascending=False, kind="stable").reset_index(drop=True)
    frame.insert(2, "rank", np.arange(len(frame)))
    return frame


METHOD_CLASS = SAEShift
