"""The scoring stage: every (role, layer) of one reward scored, Table 3 and the statistics written."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..activations import read_layer
from ..atomic import atomic_file, write_json, write_parquet
from ..missing import is_missing, json_safe
from ..rewards.utility_table import load_table
from ..sae.io import load_sae
from .config import LLM_FREE_MEASURES, ScoringConfig
from .stats import measure_stats, table3_stats
from .utilities import (activation_weighted_utility, explanation_utility, quoted_explanation_utility, token_utilities,
                        unembed_utility, vocab_utilities)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LayerInputs:
    """Where one (role, layer)'s inputs are."""

    role: str
    """base or rlhf."""
    layer: int
    """Block index."""
    store: str | os.PathLike
    """The role's activation store."""
    sae_dir: str | os.PathLike
    """The explained (small) SAE of that layer."""
    model_dir: str | os.PathLike
    """The role's model (for its unembedding)."""
    autointerp: str | os.PathLike
    """The autointerp table of that (role, layer)."""


def score_layer(part: LayerInputs, model, vocab_util: np.ndarray, table: dict[str, float],
                cfg: ScoringConfig) -> pd.DataFrame:
    """One row per latent of the (role, layer)'s SAE: the three utilities and whether it was selected/explained."""
    sae, _ = load_sae(part.sae_dir)
    tokens, x = read_layer(part.store, part.layer, with_text=True)
    token_util, n_active = activation_weighted_utility(sae, x, token_utilities(tokens, table))
    rows = pd.DataFrame({"role": part.role, "layer": part.layer, "dictionary": Path(part.sae_dir).name,
                         "feature": np.arange(sae.m), "n_active": n_active, "token_utility": token_util,
                         "unembed_utility": unembed_utility(sae.atoms(), model, vocab_util, cfg.top_n_tokens)})
    explained = pd.read_parquet(part.autointerp, columns=["feature", "selected", "status", "explanation", "examples"])
    rows = rows.merge(explained, on="feature", how="left")
    rows["selected"] = rows["selected"].astype("boolean").fillna(False).astype(bool)
    rows["in_autointerp"] = rows["status"].notna()  # selected or random baseline, explained or failed
    rows["explained"] = rows["status"].eq("ok")
    rows["explanation_utility"] = [explanation_utility(t, table) if ok else np.nan
                                   for t, ok in zip(rows["explanation"], rows["explained"])]
    rows["explanation_utility_quoted"] = [
        quoted_explanation_utility(t, _explain_text(ex), table) if ok else np.nan
        for t, ex, ok in zip(rows["explanation"], rows["examples"], rows["explained"])]
    # Random baseline features are explained but not selected; unexplained rows keep selected False.
    return rows.drop(columns=["status", "examples"])


def _explain_text(examples_json) -> str:
    """The text of the windows the explainer saw (the autointerp table's ``examples`` JSON), joined."""
    if not isinstance(examples_json, str):
        return ""
    return " ".join("".join(w["tokens"]) for w in json.loads(examples_json).get("explain", []))


def table3_frame(stats: dict) -> pd.DataFrame:
    """The paper's Table 3 shape (rows base, rlhf, rlhf - base) plus the LLM-free columns."""
    def ci(pair):
        return pair if pair else [None, None]

    rows = []
    for role in ("base", "rlhf"):
        t = stats["table3"][role]
        row = {"role": role, "n_features": t["n_features"], "sum_abs_utility": t["sum_abs_utility"],
               "ci_low": ci(t["ci"])[0], "ci_high": ci(t["ci"])[1],
               "random_baseline": t["random_baseline"]["sum_abs_utility"],
               "random_ci_low": ci(t["random_baseline"]["ci"])[0], "random_ci_high": ci(t["random_baseline"]["ci"])[1]}
        for m in LLM_FREE_MEASURES:
            s = stats[m][role]
            row.update({f"{m}_mean_abs": s["mean_abs"], f"{m}_ci_low": ci(s["ci"])[0], f"{m}_ci_high": ci(s["ci"])[1]})
        rows.append(row)
    d = stats["table3"]["difference"]
    diff = {"role": "rlhf - base", "sum_abs_utility": d["rlhf_minus_base"], "ci_low": d["ci"][0],
            "ci_high": d["ci"][1], "p_value": d["p_value"]}
    for m in LLM_FREE_MEASURES:
        s = stats[m]["difference"]
        diff.update({f"{m}_mean_abs": s["rlhf_minus_base"], f"{m}_ci_low": s["ci"][0], f"{m}_ci_high": s["ci"][1],
                     f"{m}_p_value": s["p_value"]})
    rows.append(diff)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(v):
        if is_missing(v):
            return ""
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.astype(object).itertuples(index=False)]
    return "\n".join(lines) + "\n"


def scoring_stage(parts: list[LayerInputs], out_table, out_csv, out_md, out_stats, cfg: ScoringConfig,
                  seed: int = 0) -> dict:
    """Score every (role, layer) of one reward; write the per-feature table, Table 3 (CSV and markdown)
    and the statistics JSON; return the statistics."""
    from ..models import load_prepared

    if not parts:
        raise ValueError("scoring_stage: no (role, layer) inputs; expected the autointerp tables of both roles")
    table = load_table(cfg.table)
    frames, models = [], {}
    vocab_util = None
    for part in sorted(parts, key=lambda p: (p.role, p.layer)):
        if part.model_dir not in models:
            models.clear()  # one model in memory at a time
            models[part.model_dir] = load_prepared(part.model_dir)
        model, tokenizer = models[part.model_dir]
        if vocab_util is None:  # both roles share the base tokenizer
            vocab_util = vocab_utilities(tokenizer, table)
        frames.append(score_layer(part, model, vocab_util, table, cfg))
        log.info("%s layer %d scored", part.role, part.layer)
    rows = pd.concat(frames, ignore_index=True)
    stats = {"table3": table3_stats(rows, cfg, seed),
             "table3_quoted": table3_stats(rows, cfg, seed, column="explanation_utility_quoted"),
             **{m: measure_stats(rows, m, cfg, seed) for m in LLM_FREE_MEASURES},
             "ci_level": cfg.ci_level, "n_boot": cfg.bootstrap, "n_permutations": cfg.permutations, "seed": seed}
    write_parquet(rows, out_table)
    frame = table3_frame(stats)
    with atomic_file(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_file(out_md) as tmp:
        tmp.write_text(_markdown(frame))
    stats = json_safe(stats)
    write_json(stats, out_stats)
    t3 = stats["table3"]
    log.info("Table 3: base %.2f, rlhf %.2f (difference %.2f, CI %s, p %s)", t3["base"]["sum_abs_utility"],
             t3["rlhf"]["sum_abs_utility"], t3["difference"]["rlhf_minus_base"], t3["difference"]["ci"],
             t3["difference"]["p_value"])
    return stats
