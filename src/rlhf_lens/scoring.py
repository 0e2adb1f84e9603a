"""How much of the reward the features carry: the paper's Table 3 and two measures that need no LLM.

- **Table 3** (Marks et al. 2023): the utility of an explanation is the mean lexicon utility of
  its words that are in the lexicon (0 if none); a role's score is the sum of |utility| over its
  selected features (top-k per layer over the selected layers). Features explained from a random
  draw of the same dictionary give the baseline, scaled to the same number of features.
- **Token utility**: per feature, the activation-weighted mean utility of the tokens it fires on,
  a token's utility being that of the word it belongs to: sum_t a_t u_t / sum_t a_t.
- **Unembedding utility**: per feature, the mean utility of the ``top_n_tokens`` tokens its
  decoder direction promotes through the final norm and the unembedding.

Base vs RLHF: bootstrap CIs over features, and a two-sided permutation test of the difference
(role labels shuffled over the pooled features). Written here because no library computes these
paper-specific quantities; the statistics are plain numpy.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .atomic import atomic_file, write_json, write_parquet
from .features import bootstrap_ci
from .rewards.utility_table import load_table, words_with_spans

log = logging.getLogger(__name__)

MEASURES = ("token_utility", "unembed_utility")


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of the scoring stage (``scoring:`` in config.yaml, plus the reward's table)."""

    table: str = "vader"
    """Utility table: vader (the VADER lexicon) or a word,utility CSV path."""
    top_n_tokens: int = 20
    """Tokens promoted through the unembedding that a feature's unembedding utility averages over."""
    bootstrap: int = 2000
    """Bootstrap resamples over features for the CIs."""
    permutations: int = 2000
    """Permutations of the role labels for the base vs RLHF tests."""
    ci_level: float = 0.95
    """Confidence level of the intervals."""


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


# ---------------------------------------------------------------------------------------- utilities

# The prompt asks for answers that start "This feature fires on"; that frame is not the explanation's
# content, and "fire" is itself in VADER (-1.4), so small explainers' "The feature fire on ..." would
# give every explanation the same negative utility.
_FRAME = re.compile(r"^\W*(this|the)\s+(feature|neuron|latent)\s+(fires?|activates?|responds?|is active)\s+(on|to|for|when)\b",
                    re.IGNORECASE)


def explanation_utility(text: str | None, table: dict[str, float]) -> float:
    """Mean utility of the words of ``text`` that are in the table (the answer frame "This feature
    fires on" left out); 0 when none is (or no text)."""
    content = _FRAME.sub("", text or "")
    values = [table[w] for w, _ in words_with_spans(content) if w in table]
    return float(np.mean(values)) if values else 0.0


def word_utility(token: str, table: dict[str, float]) -> float:
    """Utility of a token read as one word (stripped, lowercased); 0 unless it is exactly one lexicon word."""
    words = words_with_spans(token)
    return table.get(words[0][0], 0.0) if len(words) == 1 else 0.0


def token_utilities(tokens: pd.DataFrame, table: dict[str, float]) -> np.ndarray:
    """(n_tokens,) each token's utility: that of the word it lies in (0 outside lexicon words).

    ``tokens``: rows in document order with ``doc_id`` and ``token_text`` (texts concatenate to
    the document). A word split over several tokens gives its utility to each of them.
    """
    out = np.zeros(len(tokens))
    doc = tokens["doc_id"].to_numpy()
    texts = tokens["token_text"].tolist()
    bounds = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        pieces = texts[lo:hi]
        ends = np.cumsum([len(p) for p in pieces])
        starts = ends - np.array([len(p) for p in pieces])
        for word, (ws, we) in words_with_spans("".join(pieces)):
            u = table.get(word)
            if u:
                out[lo + np.flatnonzero((starts < we) & (ends > ws))] = u
    return out


def activation_weighted_utility(sae, x, token_util: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """((m,) sum_t a_t u_t / sum_t a_t, (m,) active-token counts) of every latent over tokens ``x`` (n, d).

    NaN for a latent that never fires.
    """
    weighted, total, counts = np.zeros(sae.m), np.zeros(sae.m), np.zeros(sae.m, dtype=np.int64)
    u = torch.as_tensor(token_util, dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            f = sae.encode(x[i:i + batch_size]).double()
            weighted += (u[i:i + batch_size] @ f).numpy()
            total += f.sum(0).numpy()
            counts += (f > 0).sum(0).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / total, np.nan), counts


_FINAL_NORMS = ("norm", "final_layer_norm", "final_layernorm", "ln_f")


def final_norm(model):
    """The norm module applied just before the unembedding, or None if the model has none.

    Llama/SmolLM2/Mistral/Qwen call it ``norm``, GPT-NeoX/Pythia ``final_layer_norm``, Phi
    ``final_layernorm``, GPT-2/Falcon ``ln_f``; OPT keeps it under ``decoder``.
    """
    base = model.base_model
    for owner in (base, getattr(base, "decoder", None)):
        for name in _FINAL_NORMS:
            module = getattr(owner, name, None) if owner is not None else None
            if isinstance(module, torch.nn.Module) and getattr(module, "weight", None) is not None:
                return module
    return None


def vocab_utilities(tokenizer, table: dict[str, float]) -> np.ndarray:
    """(vocab,) utility of every token read as one word."""
    texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return np.array([word_utility(t, table) for t in texts])


def unembed_utility(atoms: torch.Tensor, model, vocab_util: np.ndarray, top_n: int) -> np.ndarray:
    """(m,) mean utility of the ``top_n`` tokens each decoder atom (m, d) promotes most.

    A direction added to the residual stream reaches the logits through the final norm and the
    unembedding (m, d) -> (m, vocab). The norm's division by the token's RMS/std is one positive
    scalar per token, so it cannot change which tokens rank highest, and is left out; its
    elementwise weight rescales each dimension differently, so it is applied. LayerNorm (GPT-NeoX,
    GPT-2) also subtracts the mean over dimensions, so the direction is centred first; its bias
    adds the same logits whatever the feature, so it is left out too.
    """
    unembed = model.get_output_embeddings()
    if unembed is None:
        raise ValueError(f"{type(model).__name__} has no output embedding (get_output_embeddings() is None): "
                         "the unembedding utility needs a causal LM with an lm_head")
    with torch.no_grad():
        directions = atoms.detach().float()
        norm = final_norm(model)
        if norm is None:
            log.warning("%s: no final norm found (looked for %s); using the raw decoder directions",
                        type(model).__name__, ", ".join(_FINAL_NORMS))
        else:
            if isinstance(norm, torch.nn.LayerNorm):
                directions = directions - directions.mean(dim=1, keepdim=True)
            directions = directions * norm.weight.detach().float()
        logits = directions @ unembed.weight.detach().float().T  # (m, vocab)
        # The lm_head may be padded past the tokenizer's vocabulary; those rows are no tokens.
        logits = logits[:, : len(vocab_util)]
        top = logits.topk(min(top_n, logits.shape[1]), dim=1).indices.numpy()
    return vocab_util[top].mean(axis=1)


# ---------------------------------------------------------------------------------------- statistics

def difference_ci(a: np.ndarray, b: np.ndarray, stat, n_boot: int, level: float, seed: int) -> list[float | None]:
    """Percentile bootstrap CI of stat(b) - stat(a), each group resampled on its own.

    ``stat``: a numpy reduction taking ``axis`` (np.mean, np.sum).
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0 or n_boot <= 0:
        return [None, None]
    rng = np.random.default_rng(seed)
    draws = (stat(b[rng.integers(0, len(b), (n_boot, len(b)))], axis=1)
             - stat(a[rng.integers(0, len(a), (n_boot, len(a)))], axis=1))
    alpha = (1 - level) / 2
    return [float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))]


def permutation_p(a: np.ndarray, b: np.ndarray, n_perm: int, seed: int, stat=np.mean) -> float | None:
    """Two-sided permutation p-value of stat(b) - stat(a) (role labels shuffled over the pooled
    values, group sizes kept), with the +1 correction so it is never exactly 0.

    ``stat``: a numpy reduction (np.mean, np.sum); use the statistic whose difference is reported.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return None
    pooled = np.concatenate([a, b])
    observed = abs(stat(b) - stat(a))
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(n_perm):
        perm = rng.permutation(pooled)
        # The tolerance keeps ties (e.g. identical groups) counted despite float rounding.
        hits += abs(stat(perm[len(a):]) - stat(perm[: len(a)])) >= observed - 1e-12
    return (hits + 1) / (n_perm + 1)


def _ci(values: np.ndarray, cfg: ScoringConfig, seed: int, scale: float = 1.0) -> list[float]:
    """Bootstrap CI of the mean of ``values`` times ``scale`` (NaN pair when empty).

    With ``scale = len(values)`` it is the CI of the sum: a resample has the same size, so its sum
    is exactly len × its mean.
    """
    return [c * scale for c in bootstrap_ci(values, cfg.bootstrap, cfg.ci_level, seed)]


def _num(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def _json_safe(obj):
    """NaN -> None everywhere in nested dicts/lists (JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return _num(float(obj))
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def table3_stats(rows: pd.DataFrame, cfg: ScoringConfig, seed: int) -> dict:
    """The Table 3 block of the stats: per role sum |utility| with CI and random baseline, and the difference."""
    out, values = {}, {}
    for role in ("base", "rlhf"):
        mine = rows[rows["role"] == role]
        sel = mine[mine["selected"]]
        ok = sel[sel["explained"]]
        u = ok["explanation_utility"].abs().to_numpy()
        rand = mine[~mine["selected"] & mine["explained"]]["explanation_utility"].abs().to_numpy()
        n = len(u)
        values[role] = u
        out[role] = {
            "sum_abs_utility": float(u.sum()), "n_features": n, "n_failed": int(len(sel) - len(ok)),
            "ci": _ci(u, cfg, seed, scale=n),
            "random_baseline": {
                "sum_abs_utility": _num(rand.mean() * n) if len(rand) else None, "n_features": int(len(rand)),
                "ci": _ci(rand, cfg, seed, scale=n),
            },
        }
    a, b = values["base"], values["rlhf"]
    out["difference"] = {"rlhf_minus_base": float(b.sum() - a.sum()),
                         "ci": difference_ci(a, b, np.sum, cfg.bootstrap, cfg.ci_level, seed),
                         "p_value": permutation_p(a, b, cfg.permutations, seed, stat=np.sum)}
    return out


def measure_stats(rows: pd.DataFrame, column: str, cfg: ScoringConfig, seed: int) -> dict:
    """An LLM-free measure's block: mean |value| of the selected features per role, the rest as baseline."""
    out, values = {}, {}
    for role in ("base", "rlhf"):
        mine = rows[(rows["role"] == role) & rows[column].notna()]
        sel = mine.loc[mine["selected"], column].abs().to_numpy()
        rest = mine.loc[~mine["selected"] & (mine["n_active"] > 0), column].abs().to_numpy()
        values[role] = sel
        out[role] = {"mean_abs": _num(sel.mean()) if len(sel) else None, "n_features": int(len(sel)),
                     "ci": _ci(sel, cfg, seed), "random_mean_abs": _num(rest.mean()) if len(rest) else None,
                     "random_ci": _ci(rest, cfg, seed)}
    a, b = values["base"], values["rlhf"]
    out["difference"] = {"rlhf_minus_base": _num(b.mean() - a.mean()) if len(a) and len(b) else None,
                         "ci": difference_ci(a, b, np.mean, cfg.bootstrap, cfg.ci_level, seed),
                         "p_value": permutation_p(a, b, cfg.permutations, seed)}
    return out


# ---------------------------------------------------------------------------------------- the stage

def score_layer(part: LayerInputs, model, vocab_util: np.ndarray, table: dict[str, float],
                cfg: ScoringConfig) -> pd.DataFrame:
    """One row per latent of the (role, layer)'s SAE: the three utilities and whether it was selected/explained."""
    from .activations import read_layer
    from .sae.io import load_sae

    sae, _ = load_sae(part.sae_dir)
    tokens, x = read_layer(part.store, part.layer, with_text=True)
    token_util, n_active = activation_weighted_utility(sae, x, token_utilities(tokens, table))
    rows = pd.DataFrame({"role": part.role, "layer": part.layer, "dictionary": os.path.basename(str(part.sae_dir)),
                         "feature": np.arange(sae.m), "n_active": n_active, "token_utility": token_util,
                         "unembed_utility": unembed_utility(sae.atoms(), model, vocab_util, cfg.top_n_tokens)})
    explained = pd.read_parquet(part.autointerp, columns=["feature", "selected", "status", "explanation"])
    rows = rows.merge(explained, on="feature", how="left")
    rows["selected"] = rows["selected"].astype("boolean").fillna(False).astype(bool)
    rows["explained"] = rows["status"].eq("ok")
    rows["explanation_utility"] = [explanation_utility(t, table) if ok else np.nan
                                   for t, ok in zip(rows["explanation"], rows["explained"])]
    # Random baseline features are explained but not selected; unexplained rows keep selected False.
    return rows.drop(columns=["status"])


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
        for m in MEASURES:
            s = stats[m][role]
            row.update({f"{m}_mean_abs": s["mean_abs"], f"{m}_ci_low": ci(s["ci"])[0], f"{m}_ci_high": ci(s["ci"])[1]})
        rows.append(row)
    d = stats["table3"]["difference"]
    diff = {"role": "rlhf - base", "sum_abs_utility": d["rlhf_minus_base"], "ci_low": d["ci"][0],
            "ci_high": d["ci"][1], "p_value": d["p_value"]}
    for m in MEASURES:
        s = stats[m]["difference"]
        diff.update({f"{m}_mean_abs": s["rlhf_minus_base"], f"{m}_ci_low": s["ci"][0], f"{m}_ci_high": s["ci"][1],
                     f"{m}_p_value": s["p_value"]})
    rows.append(diff)
    return pd.DataFrame(rows)


def _markdown(frame: pd.DataFrame) -> str:
    def cell(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.astype(object).itertuples(index=False)]
    return "\n".join(lines) + "\n"


def scoring_stage(parts: list[LayerInputs], out_table, out_csv, out_md, out_stats, cfg: ScoringConfig,
                  seed: int = 0) -> dict:
    """Score every (role, layer) of one reward; write the per-feature table, Table 3 (CSV and markdown)
    and the statistics JSON; return the statistics."""
    from .models import load_prepared

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
             **{m: measure_stats(rows, m, cfg, seed) for m in MEASURES},
             "ci_level": cfg.ci_level, "n_boot": cfg.bootstrap, "n_permutations": cfg.permutations, "seed": seed}
    write_parquet(rows, out_table)
    frame = table3_frame(stats)
    with atomic_file(out_csv) as tmp:
        frame.to_csv(tmp, index=False)
    with atomic_file(out_md) as tmp:
        tmp.write_text(_markdown(frame))
    stats = _json_safe(stats)
    write_json(stats, out_stats)
    t3 = stats["table3"]
    log.info("Table 3: base %.2f, rlhf %.2f (difference %.2f, CI %s, p %s)", t3["base"]["sum_abs_utility"],
             t3["rlhf"]["sum_abs_utility"], t3["difference"]["rlhf_minus_base"], t3["difference"]["ci"],
             t3["difference"]["p_value"])
    return stats
