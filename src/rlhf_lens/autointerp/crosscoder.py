"""The autointerp stage for the latents of one layer's (base, rlhf) crosscoder: the RLHF-only and
RLHF-leaning latents explained and scored like SAE features, with shared and random live latents
explained the same way as their baselines.

Which latents (``choose_latents``), from the crosscoder's ``diff.parquet`` (one row per latent):

- ``rlhf_only``: live latents with dn > 0.9, highest dn first;
- ``rlhf_leaning``: live latents with 0.6 < dn <= 0.9, highest dn first;
- ``shared``: a seeded random draw of the live latents with 0.4 <= dn <= 0.6;
- ``random``: a seeded random draw of every other live latent (any bin).

The first two are ``selected`` (they get a feature card); latents firing on more than
``autointerp.max_density`` of the tokens are left out of every group first, as for SAE features.

A crosscoder has one activation per latent and token (its encoder reads both models'
activations of the token), so the examples, the explanation and the simulation are exactly the
SAE features' (``examples.select_examples``, ``pipeline.explain_and_score``) on that activation.
What differs between the models is what the latent writes: ``f_j * ||d_j^m||`` in model m. The
table keeps both decoder norms (``norm_base``, ``norm_rlhf``, training space) so a card can show
both models' writes on the same window (``report.crosscoder_cards``).

Output: one parquet row per explained latent, columns ``CROSSCODER_AUTOINTERP_COLUMNS``.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from ..atomic import write_parquet
from .examples import ExampleConfig, select_examples
from .pipeline import explain_and_score
from .scorers import DEFAULT_SCORERS
from .simulate import SimulationConfig
from .stage import AutointerpConfig, _histogram_json, _latent_columns, examples_json

log = logging.getLogger(__name__)

GROUPS = ("rlhf_only", "rlhf_leaning", "shared", "random")
"""The latent groups the stage explains, selected ones first."""
SELECTED_GROUPS = ("rlhf_only", "rlhf_leaning")
"""The groups whose latents are RLHF's candidates (a card each); the others are baselines."""
ROLE = "crosscoder"
"""The ``role`` column of the table: one dictionary serves both models."""

CROSSCODER_AUTOINTERP_COLUMNS = [
    "role", "layer", "dictionary", "feature", "group", "selected", "rank", "dn", "bin", "norm_base", "norm_rlhf",
    "decoder_cosine", "nu_error", "nu_reconstruction", "rlhf_specific", "density", "max_activation", "n_active",
    "n_tokens", "rare", "explanation", "score", "score_top", "score_quantile", "detection_auroc", "status", "reason",
    "prompt_tokens", "completion_tokens", "examples", "histogram",
]
"""Columns of the crosscoder autointerp table, one row per explained latent."""
_DIFF_KEEP = ["dn", "bin", "norm_base", "norm_rlhf", "decoder_cosine", "nu_error", "nu_reconstruction",
              "rlhf_specific"]


def latent_groups(diff: pd.DataFrame) -> pd.Series:
    """Each latent's group for the utility comparison (``GROUPS`` but ``random``, or "" when dead or
    in another bin): rlhf_only (dn > 0.9), rlhf_leaning (0.6 < dn <= 0.9), shared (0.4 <= dn <= 0.6)."""
    live = diff["live"].astype(bool)
    out = pd.Series("", index=diff.index, dtype=object)
    out[live & (diff["bin"] == "rlhf_only")] = "rlhf_only"
    out[live & (diff["bin"] == "rlhf_leaning")] = "rlhf_leaning"
    out[live & (diff["bin"] == "shared")] = "shared"
    return out


def choose_latents(diff: pd.DataFrame, n_per_group: int, n_random: int, seed: int,
                   max_density: float | None = None) -> pd.DataFrame:
    """Rows of ``diff`` (a crosscoder's diff.parquet) to explain, with ``group``, ``selected``, ``rank``
    and ``density`` columns: up to ``n_per_group`` rlhf_only and rlhf_leaning latents (highest dn
    first), ``n_random`` shared ones and ``n_random`` random other live ones (seeded draws)."""
    diff = diff.assign(group=latent_groups(diff), density=diff["frequency"].astype(float))
    if max_density is not None:
        diff = diff[diff["density"] <= max_density]
    rng = np.random.default_rng(seed)
    parts = []
    for group in SELECTED_GROUPS:
        mine = diff[diff["group"] == group].sort_values(["dn", "latent"], ascending=[False, True]).head(n_per_group)
        parts.append(mine)
    shared = diff[diff["group"] == "shared"]
    parts.append(shared.iloc[np.sort(rng.permutation(len(shared))[:n_random])])
    taken = pd.concat(parts)["latent"]
    rest = diff[diff["live"].astype(bool) & ~diff["latent"].isin(taken)]
    parts.append(rest.iloc[np.sort(rng.permutation(len(rest))[:n_random])].assign(group="random"))
    chosen = pd.concat(parts, ignore_index=True)
    chosen["selected"] = chosen["group"].isin(SELECTED_GROUPS)
    chosen["rank"] = chosen.groupby("group").cumcount()
    return chosen


def crosscoder_autointerp_stage(stores: list, layer: int, crosscoder_dir, out_path: str | os.PathLike, llm, *,
                                cfg: AutointerpConfig, examples_cfg: ExampleConfig,
                                simulation_cfg: SimulationConfig, n_per_group: int, seed: int = 0,
                                scorers=DEFAULT_SCORERS) -> pd.DataFrame:
    """Explain and score the chosen latents of one layer's crosscoder; write the table; return it.

    ``stores``: the (base, rlhf) activation stores the crosscoder was trained on (identical tokens);
    ``crosscoder_dir``: its folder (weights + diff.parquet); ``llm``: a ChatLLM (``stage.build_llm``).
    """
    import torch
    from tqdm import tqdm

    from ..activations import doc_groups, read_layer
    from ..sae.crosscoder_fit import DIFF_FILE, read_paired
    from ..sae.io import load_sae

    xc, _ = load_sae(crosscoder_dir)
    diff = pd.read_parquet(os.path.join(crosscoder_dir, DIFF_FILE))
    _, xs = read_paired(stores, layer)
    tokens, _ = read_layer(stores[0], layer, with_text=True)
    tokens["group"] = doc_groups(stores[0])[tokens["doc_id"].to_numpy()]  # windows are split by prompt group
    chosen = choose_latents(diff, n_per_group, cfg.random_features, seed, cfg.max_density)
    _, cols = _latent_columns(xc, torch.cat(xs, 1), chosen["latent"].to_numpy())
    log.info("crosscoder layer %d: explaining %s latents with %s over %d tokens", layer,
             chosen["group"].value_counts().to_dict(), llm.cache_identity, len(tokens))
    rows = []
    dictionary = os.path.basename(os.path.normpath(crosscoder_dir))
    for j, meta in enumerate(tqdm(chosen.to_dict("records"), desc=f"crosscoder layer {layer}", mininterval=5)):
        acts = cols[:, j]
        examples = select_examples(tokens, acts, int(meta["latent"]), examples_cfg, seed)
        result = explain_and_score(llm, examples, simulation_cfg, scorers)
        if result["status"] != "ok":
            log.warning("latent %d: %s", meta["latent"], result["reason"])
        predicted = result.pop("predicted")
        rows.append({**result, **{k: meta[k] for k in _DIFF_KEEP}, "role": ROLE, "layer": layer,
                     "dictionary": dictionary, "feature": int(meta["latent"]), "group": meta["group"],
                     "selected": bool(meta["selected"]), "rank": int(meta["rank"]), "density": float(meta["density"]),
                     "n_tokens": len(tokens), "examples": examples_json(examples, predicted),
                     "histogram": _histogram_json(acts)})
    table = pd.DataFrame(rows, columns=CROSSCODER_AUTOINTERP_COLUMNS)
    ok = table["status"] == "ok"
    log.info("explained %d/%d latents (failed %d); cache %d hits, %d misses", int(ok.sum()), len(table),
             int((~ok).sum()), getattr(llm, "hits", 0), getattr(llm, "misses", 0))
    write_parquet(table, out_path)
    return table
