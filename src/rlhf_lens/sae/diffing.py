"""Model diffing with a two-model crosscoder: which latents one model has and the other lacks.

- Relative decoder norm per latent (Minder et al. 2025, eq. for Delta_norm):
  ``dn_j = 1/2 * (1 + (||d_j^rlhf|| - ||d_j^base||) / max(||d_j^base||, ||d_j^rlhf||))``, in the
  crosscoder's training space (each model's activations scaled to a mean norm of sqrt(d_model), so
  a model with larger activations does not look as if it owned every latent). Bins (``BINS``):
  base_only < 0.1, base_leaning, shared 0.4-0.6, rlhf_leaning, rlhf_only > 0.9.
- Decoder cosine between the two models' atoms of a latent (``decoder_cosine``): a shared latent
  whose atoms point elsewhere in the two models changed meaning, not presence.
- Latent Scaling (Minder et al. 2025): for latent j with the RLHF model's atom ``d = d_j^rlhf``
  and a target ``y`` per token, the closed-form ``beta_j = argmin_b sum_i ||y_i - b f_ij d||^2
  = sum_i f_ij <d, y_i> / (||d||^2 sum_i f_ij^2)``, fitted against two targets in each model m:
    error:          ``y_i = x_i^m - x_hat_i^m + f_ij d_j^m`` (what the reconstruction misses, with the
                    latent's own contribution added back),
    reconstruction: ``y_i = x_hat_i^m - b_dec^m`` (what every latent writes, this one's own
                    contribution included, so the RLHF model's beta is about 1 for a latent it uses;
                    Minder et al.'s code includes b_dec, left out here: a constant offset along d
                    would move the betas of rarely active latents without any latent writing it).
  ``nu_error = beta_error_base / beta_error_rlhf``: high means the base model's activations hold the
  direction although its atom is small: **complete shrinkage** (an L1 artefact).
  ``nu_reconstruction = beta_reconstruction_base / beta_reconstruction_rlhf``: high means the base
  model's reconstruction holds the direction although this latent's base atom does not write it,
  so other latents do: **latent decoupling**. A latent that is RLHF-only by
  dn and low on both ratios is RLHF-specific. Both are flagged among the live RLHF-leaning latents
  (dn > 0.6) above ``SCALING_FLAG``. Everything is accumulated in float64 over batches, from
  ``(F^T E)_j . d_j`` and ``sum_i f_ij^2``, so all latents cost one pass.
Written here because no package on PyPI ships crosscoders or Latent Scaling (dictionary_learning
0.1.0 has neither; the maintained code is an unreleased fork).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .crosscoder import Crosscoder

BINS = (("base_only", 0.0, 0.1), ("base_leaning", 0.1, 0.4), ("shared", 0.4, 0.6), ("rlhf_leaning", 0.6, 0.9),
        ("rlhf_only", 0.9, 1.0))
"""(name, low, high) of the dn bins; base_only is dn < 0.1, shared 0.4 <= dn <= 0.6, rlhf_only dn > 0.9."""
RLHF_LEANING = 0.6
"""Latents with dn above this are the RLHF-leaning ones Latent Scaling checks."""
SCALING_FLAG = 0.5
"""A ratio nu above this flags the artefact: the base model holds at least half of what the RLHF model
holds of the latent's direction (in its error: complete shrinkage; in other latents: decoupling)."""


def relative_decoder_norm(norm_base, norm_rlhf) -> np.ndarray:
    """dn per latent from the two models' decoder norms (arrays of equal shape); NaN where both are 0."""
    a, b = np.asarray(norm_base, dtype=np.float64), np.asarray(norm_rlhf, dtype=np.float64)
    top = np.maximum(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, 0.5 * (1 + (b - a) / np.where(top > 0, top, 1)), np.nan)


def dn_bin(dn) -> np.ndarray:
    """Bin name of each dn (``BINS``); shared includes both ends, the one-model bins exclude theirs."""
    dn = np.asarray(dn, dtype=np.float64)
    out = np.full(dn.shape, "none", dtype=object)
    out[dn < 0.1] = "base_only"
    out[(dn >= 0.1) & (dn < 0.4)] = "base_leaning"
    out[(dn >= 0.4) & (dn <= 0.6)] = "shared"
    out[(dn > 0.6) & (dn <= 0.9)] = "rlhf_leaning"
    out[dn > 0.9] = "rlhf_only"
    return out


def decoder_cosine(d_base: torch.Tensor, d_rlhf: torch.Tensor) -> np.ndarray:
    """Cosine between the two models' atoms of each latent; d_*: (m, d_model)."""
    return torch.nn.functional.cosine_similarity(d_base.double(), d_rlhf.double(), dim=1, eps=1e-12).numpy()


@torch.no_grad()
def latent_scaling(xc: Crosscoder, x: torch.Tensor, reference: int = 1, batch_size: int = 2048) -> dict[str, np.ndarray]:
    """Latent Scaling betas of every latent on raw activations ``x`` (tokens, n_models * d_model).

    ``reference``: the model whose atoms are the latent vectors (the RLHF model, index 1). Returns
    per-latent arrays (m,): ``beta_error_<m>`` and ``beta_reconstruction_<m>`` for each model index
    m, and ``active_tokens`` (tokens on which the latent is active). A latent never active has NaN betas.
    """
    n_models, m = xc.models, xc.m
    D = xc.model_decoders().double()                      # (n_models, m, d_model), training space
    d_ref = D[reference]
    scale = xc._scale_vector().double()
    b_dec = xc.split(xc.b_dec.double().unsqueeze(0))[0]   # (n_models, d_model)
    a_err = torch.zeros(n_models, m, dtype=torch.float64)
    a_rec = torch.zeros(n_models, m, dtype=torch.float64)
    f_sq = torch.zeros(m, dtype=torch.float64)
    active = torch.zeros(m, dtype=torch.int64)
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        f = xc.encode(xb).double()
        xs = xc.split(xb.double() * scale)
        x_hat = xc.split(f @ xc.W_dec.double() + xc.b_dec.double())
        f_sq += (f ** 2).sum(0)
        active += (f != 0).sum(0)
        for mdl in range(n_models):
            err = xs[:, mdl] - x_hat[:, mdl]                # (n, d_model)
            rec = x_hat[:, mdl] - b_dec[mdl]
            a_err[mdl] += ((f.T @ err) * d_ref).sum(1)      # sum_i f_ij <d_j, e_i>
            a_rec[mdl] += ((f.T @ rec) * d_ref).sum(1)
    self_dot = (D * d_ref.unsqueeze(0)).sum(2)             # <d_j^ref, d_j^m>, (n_models, m)
    denom = f_sq * (d_ref ** 2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"active_tokens": active.numpy()}
        for mdl in range(n_models):
            err_num = a_err[mdl] + self_dot[mdl] * f_sq     # the own contribution f_ij d_j^m added back
            rec_num = a_rec[mdl]                            # the reconstruction holds it already
            out[f"beta_error_{mdl}"] = np.where(denom > 0, (err_num / denom.clamp_min(1e-300)).numpy(), np.nan)
            out[f"beta_reconstruction_{mdl}"] = np.where(denom > 0, (rec_num / denom.clamp_min(1e-300)).numpy(),
                                                         np.nan)
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.abs(den) > 1e-12, num / np.where(np.abs(den) > 1e-12, den, 1.0), np.nan)


DIFF_COLUMNS = ["latent", "norm_base", "norm_rlhf", "dn", "bin", "decoder_cosine", "active_tokens", "frequency",
                "live", "beta_error_base", "beta_error_rlhf", "beta_reconstruction_base",
                "beta_reconstruction_rlhf", "nu_error", "nu_reconstruction", "rlhf_leaning", "complete_shrinkage",
                "latent_decoupling", "rlhf_specific"]
"""diff.parquet's columns, one row per latent."""


def diff_table(xc: Crosscoder, x: torch.Tensor, batch_size: int = 2048) -> pd.DataFrame:
    """One row per latent (``DIFF_COLUMNS``) of a (base, rlhf) crosscoder on raw activations ``x``
    (tokens, 2 * d_model): decoder norms, dn and its bin, decoder cosine, how often it is active,
    Latent Scaling betas and ratios, and the flags. ``live``: active on at least one of these tokens."""
    if xc.models != 2:
        raise ValueError(f"diffing compares two models; this crosscoder reads {xc.models}")
    with torch.no_grad():
        norms = xc.decoder_norms().double().numpy()
        D = xc.model_decoders().detach()
    dn = relative_decoder_norm(norms[0], norms[1])
    ls = latent_scaling(xc, x, reference=1, batch_size=batch_size)
    live = ls["active_tokens"] > 0
    table = pd.DataFrame({
        "latent": np.arange(xc.m), "norm_base": norms[0], "norm_rlhf": norms[1], "dn": dn, "bin": dn_bin(dn),
        "decoder_cosine": decoder_cosine(D[0], D[1]), "active_tokens": ls["active_tokens"],
        "frequency": ls["active_tokens"] / max(len(x), 1), "live": live,
        "beta_error_base": ls["beta_error_0"], "beta_error_rlhf": ls["beta_error_1"],
        "beta_reconstruction_base": ls["beta_reconstruction_0"],
        "beta_reconstruction_rlhf": ls["beta_reconstruction_1"],
    })
    table["nu_error"] = _ratio(table["beta_error_base"].to_numpy(), table["beta_error_rlhf"].to_numpy())
    table["nu_reconstruction"] = _ratio(table["beta_reconstruction_base"].to_numpy(),
                                        table["beta_reconstruction_rlhf"].to_numpy())
    table["rlhf_leaning"] = live & (dn > RLHF_LEANING)
    table["complete_shrinkage"] = table["rlhf_leaning"] & (table["nu_error"] > SCALING_FLAG)
    table["latent_decoupling"] = table["rlhf_leaning"] & (table["nu_reconstruction"] > SCALING_FLAG)
    table["rlhf_specific"] = (table["rlhf_leaning"] & (table["bin"] == "rlhf_only") & ~table["complete_shrinkage"]
                              & ~table["latent_decoupling"])
    return table[DIFF_COLUMNS]


def diff_summary(table: pd.DataFrame) -> dict:
    """Counts over the live latents: per dn bin, RLHF-leaning, flagged, RLHF-specific; median decoder
    cosine of the shared ones."""
    live = table[table["live"]]
    out = {"n_latents": int(len(table)), "n_live": int(len(live)),
           **{f"n_{name}": int((live["bin"] == name).sum()) for name, _, _ in BINS},
           "n_rlhf_leaning": int(live["rlhf_leaning"].sum()),
           "n_complete_shrinkage": int(live["complete_shrinkage"].sum()),
           "n_latent_decoupling": int(live["latent_decoupling"].sum()),
           "n_rlhf_specific": int(live["rlhf_specific"].sum())}
    shared = live.loc[live["bin"] == "shared", "decoder_cosine"]
    out["shared_decoder_cosine_median"] = float(shared.median()) if len(shared) else float("nan")
    return out
