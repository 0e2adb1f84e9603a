"""What RLHF added, in numbers: the utilities of a crosscoder's RLHF-only latents against its shared
latents and against random live latents, every selected layer of one reward.

Per latent (every latent of every layer's crosscoder, ``crosscoder_latent_utilities``):

- **token utility**: the activation-weighted mean utility of the tokens it fires on
  (``utilities.activation_weighted_utility``; the crosscoder's encoder reads both models'
  activations of a token, so there is one activation per token);
- **unembedding utility**: the mean utility of the ``top_n_tokens`` tokens its RLHF atom
  ``d_j^rlhf`` promotes through the RLHF model's final norm and unembedding;
- **explanation utility**: of its explanation's words (Table 3's per-feature value), for the latents
  the crosscoder autointerp stage explained; NaN for the others.

Groups (``autointerp.crosscoder.latent_groups`` on diff.parquet, live latents only): rlhf_only
(dn > 0.9), rlhf_leaning (dn > 0.6, the RLHF-only ones included: diffing's ``rlhf_leaning``), shared
(0.4 <= dn <= 0.6) and random (every live latent but the RLHF-only ones: the pool a random latent is
drawn from).

Statistics (``utility_comparison``) follow Table 3's rules (``stats``): per group the mean |value|
with a bootstrap CI; per comparison (``COMPARISONS``) the difference of means with a stratified
bootstrap CI and a two-sided permutation test, both within layers (latents of one layer share a
dictionary; latents of different layers are not exchangeable). A difference is an ``effect`` when
its CI excludes 0 and p < 0.05; with no RLHF-only latent there is nothing to compare, and the
comparison says so (``None`` values, effect False).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..atomic import atomic_file, write_json, write_parquet
from ..bootstrap import bootstrap_ci
from ..missing import as_float, is_missing, json_safe
from .config import ScoringConfig
from .stats import paired_difference
from .utilities import activation_weighted_utility, explanation_utility, token_utilities, unembed_utility

log = logging.getLogger(__name__)

MEASURES = {"token_utility": "token utility", "unembed_utility": "unembedding utility",
            "explanation_utility": "explanation utility"}
"""Per-latent columns compared across groups, with the words the report names them by."""
COMPARISONS = (("rlhf_only", "shared"), ("rlhf_only", "random"), ("rlhf_leaning", "shared"))
"""(group, baseline) pairs tested: group minus baseline of the mean |value|."""
GROUP_WORDS = {"rlhf_only": "RLHF-only (dn > 0.9)", "rlhf_leaning": "RLHF-leaning (dn > 0.6)",
               "shared": "shared (0.4-0.6)", "random": "random live (not RLHF-only)"}
"""The groups as the report names them."""


@dataclass(frozen=True)
class CrosscoderLayerInputs:
    """Where one layer's crosscoder inputs are."""

    layer: int
    """Block index."""
    stores: tuple
    """The (base, rlhf) activation stores it was trained on."""
    crosscoder_dir: str | os.PathLike
    """Its folder (weights, diff.parquet)."""
    autointerp: str | os.PathLike | None = None
    """Its crosscoder autointerp table, or None (no explanation utilities)."""


def group_masks(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """Boolean masks of ``rows`` (with ``group`` and ``live`` columns) per group of the comparison."""
    live = rows["live"].astype(bool)
    only = live & (rows["group"] == "rlhf_only")
    return {"rlhf_only": only, "rlhf_leaning": live & rows["group"].isin(["rlhf_only", "rlhf_leaning"]),
            "shared": live & (rows["group"] == "shared"), "random": live & ~only}


def crosscoder_latent_utilities(xc, x, tokens: pd.DataFrame, table: dict[str, float], model, vocab_util: np.ndarray,
                                top_n: int) -> pd.DataFrame:
    """One row per latent of crosscoder ``xc`` on raw activations ``x`` (tokens, 2 * d_model) of the
    token rows ``tokens`` (doc_id, token_text): n_active, token_utility (NaN when it never fires) and
    unembed_utility of its RLHF atom through ``model`` (None: NaN)."""
    token_util, n_active = activation_weighted_utility(xc, x, token_utilities(tokens, table))
    if model is None:
        unembed = np.full(xc.m, np.nan)
    else:
        unembed = unembed_utility(xc.model_decoders()[1], model, vocab_util, top_n)
    return pd.DataFrame({"feature": np.arange(xc.m), "n_active": n_active, "token_utility": token_util,
                         "unembed_utility": unembed})


def latent_table(layer: int, diff: pd.DataFrame, utilities: pd.DataFrame, explained: pd.DataFrame | None,
                 table: dict[str, float]) -> pd.DataFrame:
    """One row per latent of a layer: its diff.parquet row (``latent`` named ``feature``), its group,
    the utilities (``crosscoder_latent_utilities``) and, from the crosscoder autointerp table
    ``explained`` (feature, status, explanation; None: none), its explanation and explanation utility."""
    from ..autointerp.crosscoder import latent_groups

    rows = pd.concat([diff.rename(columns={"latent": "feature"}).reset_index(drop=True),
                      utilities.drop(columns="feature").reset_index(drop=True)], axis=1)
    rows.insert(0, "layer", layer)
    rows["group"] = latent_groups(diff).to_numpy()
    if explained is None:
        rows["explanation"], rows["explained"] = None, False
    else:
        rows = rows.merge(explained[["feature", "status", "explanation"]], on="feature", how="left")
        rows["explained"] = rows["status"].eq("ok")
        rows = rows.drop(columns="status")
    rows["explanation_utility"] = [explanation_utility(t, table) if ok else np.nan
                                   for t, ok in zip(rows["explanation"], rows["explained"])]
    return rows


def utility_comparison(rows: pd.DataFrame, cfg: ScoringConfig, seed: int, measures=tuple(MEASURES)) -> dict:
    """The statistics block: per measure, per group the mean |value| (n, CI) and per comparison the
    difference with CI, p-value and ``effect``. ``rows``: one row per latent with ``layer``, ``live``,
    ``group`` and the measure columns (NaN: not measured, left out)."""
    masks = group_masks(rows)
    out = {}
    for m in measures:
        measured = rows[m].notna()
        groups, block = {}, {"groups": {}, "comparisons": {}}
        for name, mask in masks.items():
            sel = rows[mask & measured]
            v = sel[m].abs().to_numpy(dtype=float)
            groups[name] = (v, sel["layer"].to_numpy())
            block["groups"][name] = {"n": int(len(v)), "mean_abs": as_float(v.mean()) if len(v) else None,
                                     "ci": list(bootstrap_ci(v, cfg.bootstrap, cfg.ci_level, seed))}
        for group, baseline in COMPARISONS:
            (b, b_l), (a, a_l) = groups[group], groups[baseline]
            d = paired_difference(a, a_l, b, b_l, np.mean, cfg, seed)
            lo, hi = d["ci"]
            effect = bool(lo is not None and hi is not None and (lo > 0 or hi < 0) and d["p_value"] is not None
                          and d["p_value"] < 0.05)
            block["comparisons"][f"{group}_vs_{baseline}"] = {
                "group": group, "baseline": baseline, "difference": d["rlhf_minus_base"], "ci": d["ci"],
                "p_value": d["p_value"], "effect": effect}
        out[m] = block
    return out


def comparison_frame(stats: dict) -> pd.DataFrame:
    """The statistics as one table: a row per (measure, comparison) with both groups' means and n."""
    rows = []
    for m, block in stats["measures"].items():
        for c in block["comparisons"].values():
            g, b = block["groups"][c["group"]], block["groups"][c["baseline"]]
            lo, hi = c["ci"] if c["ci"] else (None, None)
            rows.append({"measure": m, "group": c["group"], "baseline": c["baseline"], "n_group": g["n"],
                         "n_baseline": b["n"], "group_mean_abs": g["mean_abs"], "baseline_mean_abs": b["mean_abs"],
                         "difference": c["difference"], "ci_low": lo, "ci_high": hi, "p_value": c["p_value"],
                         "effect": c["effect"]})
    return pd.DataFrame(rows)


def comparison_markdown(frame: pd.DataFrame, n_rlhf_only: int) -> str:
    """The comparison in a markdown table, and a sentence saying what it finds."""
    def cell(v, signed=False):
        if is_missing(v):
            return "n/a"
        return f"{v:+.3f}" if signed else f"{v:.3f}"

    lines = ["| measure | group | baseline | n | mean abs | baseline mean abs | difference [CI] | p | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in frame.to_dict("records"):
        lines.append(f"| {MEASURES[r['measure']]} | {GROUP_WORDS[r['group']]} | {GROUP_WORDS[r['baseline']]} | "
                     f"{r['n_group']} / {r['n_baseline']} | {cell(r['group_mean_abs'])} | "
                     f"{cell(r['baseline_mean_abs'])} | {cell(r['difference'], True)} "
                     f"[{cell(r['ci_low'], True)}, {cell(r['ci_high'], True)}] | {cell(r['p_value'])} | "
                     f"{'effect' if r['effect'] else 'no effect'} |")
    found = frame[frame["effect"] & (frame["group"] == "rlhf_only")]
    if n_rlhf_only == 0:
        verdict = "The crosscoders found no RLHF-only latent (dn > 0.9) at this size: nothing RLHF added to compare."
    elif found.empty:
        verdict = (f"{n_rlhf_only} RLHF-only latent(s); their utilities do not differ from the baselines' "
                   "(no effect at this size).")
    else:
        verdict = (f"{n_rlhf_only} RLHF-only latent(s); they differ from the baseline by: "
                   + ", ".join(sorted({f"{MEASURES[m]} (vs {b})" for m, b in zip(found["measure"], found["baseline"])}))
                   + ".")
    return "\n".join(lines) + "\n\n" + verdict + "\n"


def crosscoder_scoring_stage(parts: list[CrosscoderLayerInputs], model_dir, out_table, out_stats, out_md,
                             cfg: ScoringConfig, seed: int = 0) -> dict:
    """Utilities of every latent of every layer's crosscoder, their comparison by group; writes the
    per-latent table (parquet), the statistics (JSON) and the comparison (markdown); returns the statistics.

    ``model_dir``: the RLHF model (its unembedding; its tokenizer is the base one)."""
    import torch

    from ..activations import read_layer
    from ..models import load_prepared
    from ..rewards.utility_table import load_table
    from ..sae.crosscoder_fit import DIFF_FILE, read_paired
    from ..sae.io import load_sae
    from .utilities import vocab_utilities

    if not parts:
        raise ValueError("crosscoder_scoring_stage: no layers; expected one crosscoder folder per selected layer")
    table = load_table(cfg.table)
    model, tokenizer = load_prepared(model_dir)
    vocab_util = vocab_utilities(tokenizer, table)
    frames = []
    for part in sorted(parts, key=lambda p: p.layer):
        xc, _ = load_sae(part.crosscoder_dir)
        diff = pd.read_parquet(os.path.join(part.crosscoder_dir, DIFF_FILE))
        _, xs = read_paired(list(part.stores), part.layer)
        tokens, _ = read_layer(part.stores[0], part.layer, with_text=True)
        rows = crosscoder_latent_utilities(xc, torch.cat(xs, 1), tokens, table, model, vocab_util, cfg.top_n_tokens)
        explained = None if part.autointerp is None else pd.read_parquet(
            part.autointerp, columns=["feature", "status", "explanation"])
        rows = latent_table(part.layer, diff, rows, explained, table)
        frames.append(rows)
        log.info("crosscoder layer %d scored: %s", part.layer, rows.loc[rows["live"], "group"].value_counts().to_dict())
    rows = pd.concat(frames, ignore_index=True)
    stats = {"measures": utility_comparison(rows, cfg, seed),
             "n_rlhf_only": int(group_masks(rows)["rlhf_only"].sum()),
             "n_rlhf_leaning": int(group_masks(rows)["rlhf_leaning"].sum()),
             "n_shared": int(group_masks(rows)["shared"].sum()), "n_live": int(rows["live"].sum()),
             "layers": sorted(int(p.layer) for p in parts), "ci_level": cfg.ci_level, "n_boot": cfg.bootstrap,
             "n_permutations": cfg.permutations, "seed": seed}
    write_parquet(rows, out_table)
    stats = json_safe(stats)
    write_json(stats, out_stats)
    with atomic_file(out_md) as tmp:
        tmp.write_text(comparison_markdown(comparison_frame(stats), stats["n_rlhf_only"]))
    tok = stats["measures"]["token_utility"]["comparisons"]["rlhf_only_vs_shared"]
    log.info("crosscoder utilities: %d RLHF-only latents; token utility vs shared %s, CI %s, p %s",
             stats["n_rlhf_only"], tok["difference"], tok["ci"], tok["p_value"])
    return stats
