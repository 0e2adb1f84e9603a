"""``crosscoder``: the (base, rlhf) crosscoder's RLHF-only and RLHF-leaning latents, read as words.

Source: crosscoders for model diffing (Lindsey et al. 2024; Minder et al. 2025, NeurIPS, arXiv
2504.02922): one dictionary over both models' activations of a token, a decoder per model; latents whose
RLHF decoder is much larger than the base one (relative decoder norm dn > 0.6, ``sae.diffing``'s bins
rlhf_leaning and rlhf_only) are what the policy has and the base model lacks.

How latents become word scores (``dictionary_readout``): the crosscoder's reconstruction of the mean
difference policy - base is ``sum_j mean_t f_j * (d_j^rlhf - d_j^base)`` (+ the bias difference), with
raw-space atoms (the per-model input scales undone). Each selected latent's change direction
``d_j^rlhf - d_j^base`` is normalised to unit length, its length times the latent's mean activation over
the store's tokens is its weight (``carried``), and the unit direction is decoded through the final
norm's weight and the unembedding (direct logit effect, centred over the vocabulary). Token scores:
``sum_blocks sum_selected carried_j * decoded_j``. One crosscoder per block is trained (one seed), so
the scores are one row (unit "seed": no CI until more seeds are trained).

``latents.parquet``: block, rank (by carried, within the block), latent, dn, bin, carried, frequency,
the Latent Scaling flags of diff.parquet (rlhf_specific, complete_shrinkage, latent_decoupling),
top_tokens (distinct token texts of its largest activations), decoded_words / decoded_ids.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..model_parts import token_texts
from ..sae.crosscoder_fit import DIFF_FILE
from ..sae.io import load_sae
from .base import MethodResult
from .dictionary_readout import LatentAccumulator, decode_latents, top_token_texts
from .paired_stores import read_block

log = logging.getLogger(__name__)

FLAGS = ("rlhf_specific", "complete_shrinkage", "latent_decoupling")


@dataclass(frozen=True)
class CrosscoderMethodConfig:
    """Settings of the ``crosscoder`` diffing method."""

    min_dn: float = 0.6
    """Latents with a relative decoder norm above this (RLHF-leaning and RLHF-only) are read."""
    top_tokens: int = 8
    """Distinct token texts kept per latent card."""
    decoded_words: int = 10
    """Tokens its change direction promotes most, kept per latent card."""
    batch_size: int = 4096
    """Tokens encoded at a time."""


def change_directions(xc) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit change directions (m, d_model), their raw-space lengths (m,)) of a two-model crosscoder:
    ``d_j^rlhf - d_j^base`` with each model's input scale undone (``Crosscoder.decode``'s raw space)."""
    with torch.no_grad():
        raw = xc.model_decoders() / xc.input_scale[:, None, None]  # (2, m, d_model)
        delta = raw[1] - raw[0]
    lengths = delta.norm(dim=1)
    return delta / lengths.clamp_min(1e-12)[:, None], lengths


class CrosscoderMethod:
    name = "crosscoder"
    config_class = CrosscoderMethodConfig

    def run(self, ctx, cfg: CrosscoderMethodConfig) -> MethodResult:
        if not ctx.crosscoder_dirs:
            raise ValueError("crosscoder: no crosscoder folders (crosscoder.enabled trains them)")
        model, _, tokenizer = ctx.models()
        texts = token_texts(tokenizer)
        scores, frames = np.zeros((1, len(texts))), []
        for block_idx, folder in sorted(ctx.crosscoder_dirs.items()):
            xc, _ = load_sae(folder)
            diff = pd.read_parquet(Path(folder) / DIFF_FILE)
            selected = diff["dn"].to_numpy() > cfg.min_dn
            block = read_block(ctx, block_idx)
            acc = LatentAccumulator(1, xc.m, top_n=8 * cfg.top_tokens)
            with torch.no_grad():
                for lo in range(0, len(block.rows), cfg.batch_size):
                    x = torch.cat([block.base[lo:lo + cfg.batch_size], block.policy[lo:lo + cfg.batch_size]], dim=1)
                    acc.add(xc.encode(x), np.zeros(len(x), dtype=np.int64))
            directions, lengths = change_directions(xc)
            carried = acc.mean() * lengths.double().numpy()
            weights = np.where(selected, carried, 0.0)
            block_scores, decoded = decode_latents(directions, weights[None, :], model, len(texts), cfg.decoded_words)
            scores += block_scores
            token_text = [texts[t] for t in block.rows["token_id"].to_numpy()]
            frame = pd.DataFrame({"block": block_idx, "latent": np.arange(xc.m), "dn": diff["dn"].to_numpy(),
                                  "bin": diff["bin"].to_numpy(), "carried": carried,
                                  "frequency": diff["frequency"].to_numpy(),
                                  **{f: diff[f].to_numpy() for f in FLAGS},
                                  "top_tokens": top_token_texts(acc, token_text, cfg.top_tokens),
                                  "decoded_words": [[texts[t] for t in row] for row in decoded],
                                  "decoded_ids": decoded.tolist()})[selected]
            frame = frame.sort_values("carried", ascending=False, kind="stable").reset_index(drop=True)
            frame.insert(1, "rank", np.arange(len(frame)))
            frames.append(frame)
            log.info("crosscoder block %d: %d of %d latents with dn > %.2f", block_idx, int(selected.sum()), xc.m,
                     cfg.min_dn)
        return MethodResult(token_scores=scores, unit="seed", latents=pd.concat(frames, ignore_index=True),
                            extra={"blocks": sorted(ctx.crosscoder_dirs), "min_dn": cfg.min_dn,
                                   "weighting": "mean activation x |d_rlhf - d_base| (raw space), unit directions"})


METHOD_CLASS = CrosscoderMethod
