"""The autointerp stage of one (role, layer): pick features, choose their examples, explain and score.

Features: the top-k best-matched features of the small dictionary (the paper's selection, from
the features stage's table), plus a few randomly chosen live features of the same dictionary
explained the same way, so the Table 3 metric has a baseline. Examples come from the whole
activation store of the role; activations are the SAE's latents on it.

Output: one parquet row per explained feature (the columns are listed in ``OUTPUT_COLUMNS``),
with the example windows, the simulated activations and an activation histogram as JSON
strings so the report can draw feature cards from this file alone.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..atomic import write_parquet
from .examples import ExampleConfig, FeatureExamples, select_examples
from .llm import CachedLLM, LocalChatLLM, OpenAICompatibleLLM
from .pipeline import explain_and_score
from .scorers import DEFAULT_SCORERS, build_scorers
from .simulate import SimulationConfig

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = [
    "role", "layer", "dictionary", "feature", "selected", "rank", "max_cosine", "match", "density", "max_activation",
    "n_active", "n_tokens", "rare", "explanation", "score", "score_top", "score_quantile", "detection_auroc",
    "status", "reason", "prompt_tokens", "completion_tokens", "examples", "histogram",
]


@dataclass(frozen=True)
class AutointerpConfig:
    """Which LLM explains and simulates, and which features (``autointerp:`` in config.yaml)."""

    backend: str = "local"
    """local: a transformers chat model on this machine; openai: any OpenAI-compatible endpoint."""
    model: str | None = None
    """local: a prepared model folder (None: the run's base model); openai: the model name the endpoint serves."""
    base_url: str | None = None
    """openai only: the endpoint, e.g. http://127.0.0.1:8080/v1."""
    api_key_env: str | None = None
    """openai only: NAME of the environment variable holding the API key (the key itself is never in config)."""
    timeout_s: float = 60.0
    """openai only: seconds per request before it counts as failed."""
    max_retries: int = 3
    """openai only: retries (exponential backoff) before a feature is marked failed."""
    features_per_layer: int | None = 3
    """Explain at most this many of the top-k matched features per (role, layer); None: all top-k."""
    random_features: int = 1
    """Randomly chosen live features explained per (role, layer) as the Table 3 baseline."""
    max_density: float | None = 0.1
    """Leave out features that fire on more than this fraction of the store's tokens before ranking
    (selected and random alike; 0.1 is the SAE metrics' dense threshold). Matching by MMCS favours
    dense, always-on latents that carry the mean; None keeps them."""
    kind: str | None = None
    """SAE kind whose small dictionary is explained (None: the first of sae.kinds)."""
    cache_dir: str = "resources/llm_cache"
    """Disk cache of every LLM answer, shared by runs: a rerun with the same prompts costs nothing."""


def build_llm(cfg: AutointerpConfig, base_model_dir: str | os.PathLike, device: str = "cpu",
              seed: int = 0) -> CachedLLM:
    """The configured backend behind the disk cache; an endpoint is checked with one tiny request first,
    so a wrong URL, model name or key fails before the first feature."""
    if cfg.backend == "local":
        llm = LocalChatLLM(cfg.model or base_model_dir, device=device, seed=seed)
    elif cfg.backend == "openai":
        if not cfg.base_url or not cfg.model:
            raise ValueError("autointerp.backend openai needs autointerp.base_url and autointerp.model")
        llm = OpenAICompatibleLLM(cfg.base_url, cfg.model, cfg.api_key_env, timeout_s=cfg.timeout_s,
                                  max_retries=cfg.max_retries)
        llm.check()
    else:
        raise ValueError(f"autointerp.backend {cfg.backend!r}: expected local or openai")
    return CachedLLM(llm, cfg.cache_dir)


def choose_features(matches: pd.DataFrame, kind: str, n_selected: int | None, n_active: np.ndarray,
                    n_random: int, seed: int, max_density: float | None = None, n_tokens: int | None = None
                    ) -> pd.DataFrame:
    """Rows of the small dictionary's matches table to explain, with ``selected`` and ``density`` columns.

    ``matches``: the features stage's table (columns kind, direction, feature, rank, top_k,
    max_cosine, match). ``n_active``: (m,) tokens each latent fires on, of ``n_tokens``. Features
    denser than ``max_density`` are left out first; the selection is then the best-ranked
    ``n_selected`` of the rest (as many as top_k marks when None), and random picks are live
    (n_active > 0) features outside it.
    """
    small = matches[(matches["kind"] == kind) & (matches["direction"] == "small_to_large")].sort_values("rank")
    if small.empty:
        raise ValueError(f"the features table has no small_to_large rows of kind {kind!r}")
    small = small.assign(density=n_active[small["feature"].to_numpy()] / max(n_tokens or 1, 1))
    k = int(small["top_k"].sum()) if n_selected is None else min(n_selected, int(small["top_k"].sum()))
    eligible = small if max_density is None or n_tokens is None else small[small["density"] <= max_density]
    top = eligible.head(k)
    rest = eligible[~eligible["feature"].isin(top["feature"]) & (n_active[eligible["feature"].to_numpy()] > 0)]
    rng = np.random.default_rng(seed)
    random = rest.iloc[np.sort(rng.permutation(len(rest))[: min(n_random, len(rest))])]
    return pd.concat([top.assign(selected=True), random.assign(selected=False)], ignore_index=True)


def _latent_columns(sae, x, features: np.ndarray | None, batch_size: int = 4096):
    """(n_active (m,), columns (tokens, len(features)) or None): latent statistics in bounded batches."""
    import torch

    counts = np.zeros(sae.m, dtype=np.int64)
    cols = []
    index = None if features is None else torch.from_numpy(np.array(features, dtype=np.int64))  # a writable copy
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            f = sae.encode(x[i:i + batch_size])
            counts += (f > 0).sum(dim=0).numpy()
            if features is not None:
                cols.append(f[:, index].numpy())
    return counts, (np.concatenate(cols) if features is not None else None)


def examples_json(examples: FeatureExamples, predicted: list | None) -> str:
    """The ``examples`` cell of an autointerp row: explanation and scoring windows, with each scoring window's
    kind and simulated activations (``predicted``), as JSON (what feature cards draw)."""
    score = []
    for i, (window, kind) in enumerate(zip(examples.score, examples.score_kinds)):
        score.append({"tokens": window.tokens, "activations": window.activations, "kind": kind,
                      "predicted": predicted[i] if predicted else None})
    explain = [{"tokens": w.tokens, "activations": w.activations} for w in examples.explain]
    return json.dumps({"explain": explain, "score": score})


def _histogram_json(acts: np.ndarray, bins: int = 20) -> str:
    nonzero = acts[acts > 0]
    if not len(nonzero):
        return json.dumps({"edges": [], "counts": []})
    counts, edges = np.histogram(nonzero, bins=bins)
    return json.dumps({"edges": edges.tolist(), "counts": counts.tolist()})


def autointerp_stage(store, layer: int, sae_dir, matches_path, out_path, llm, *, role: str, dictionary: str,
                     kind: str, cfg: AutointerpConfig, examples_cfg: ExampleConfig, simulation_cfg: SimulationConfig,
                     seed: int = 0, scorers=DEFAULT_SCORERS) -> pd.DataFrame:
    """Explain and score the chosen features of one (role, layer); write the table; return it.

    ``store``: the role's activation store; ``sae_dir``: its small SAE of ``kind``; ``matches_path``:
    the features stage's parquet for this (role, layer); ``llm``: a ChatLLM (see ``build_llm``);
    ``scorers``: names in ``scorers.SCORERS`` (their columns must be in ``OUTPUT_COLUMNS``).
    """
    from tqdm import tqdm

    from ..activations import doc_groups, read_layer
    from ..sae.io import load_sae

    unlisted = [c for scorer in build_scorers(scorers, llm, simulation_cfg) for c in scorer.columns
                if c not in OUTPUT_COLUMNS]
    if unlisted:
        raise ValueError(f"scorer column(s) {unlisted} are not in the autointerp table's OUTPUT_COLUMNS")
    sae, _ = load_sae(sae_dir)
    tokens, x = read_layer(store, layer, with_text=True)
    tokens["group"] = doc_groups(store)[tokens["doc_id"].to_numpy()]  # windows are split by prompt group
    n_active, _ = _latent_columns(sae, x, None)
    chosen = choose_features(pd.read_parquet(matches_path), kind, cfg.features_per_layer, n_active,
                             cfg.random_features, seed, max_density=cfg.max_density, n_tokens=len(tokens))
    _, cols = _latent_columns(sae, x, chosen["feature"].to_numpy())
    log.info("layer %d (%s): explaining %d selected (density %.3f-%.3f) + %d random features of %s with %s "
             "over %d tokens", layer, role, int(chosen["selected"].sum()),
             chosen.loc[chosen["selected"], "density"].min(), chosen.loc[chosen["selected"], "density"].max(),
             int((~chosen["selected"]).sum()), dictionary, llm.cache_identity, len(tokens))
    rows = []
    for j, meta in enumerate(tqdm(chosen.itertuples(index=False), total=len(chosen), desc=f"{role} layer {layer}",
                                  mininterval=5)):
        acts = cols[:, j]
        examples = select_examples(tokens, acts, int(meta.feature), examples_cfg, seed)
        result = explain_and_score(llm, examples, simulation_cfg, scorers)
        if result["status"] != "ok":
            log.warning("feature %d: %s", meta.feature, result["reason"])
        predicted = result.pop("predicted")
        rows.append({**result, "role": role, "layer": layer, "dictionary": dictionary, "selected": meta.selected,
                     "rank": int(meta.rank), "max_cosine": float(meta.max_cosine), "match": int(meta.match),
                     "density": float(meta.density),
                     "n_tokens": len(tokens), "examples": examples_json(examples, predicted),
                     "histogram": _histogram_json(acts)})
    table = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
    ok = table["status"] == "ok"
    log.info("explained %d/%d (failed %d); mean simulation score %.3f; tokens %d prompt + %d completion; "
             "cache %d hits, %d misses", int(ok.sum()), len(table), int((~ok).sum()),
             table.loc[ok, "score"].astype(float).mean(), int(table["prompt_tokens"].sum()),
             int(table["completion_tokens"].sum()), getattr(llm, "hits", 0), getattr(llm, "misses", 0))
    write_parquet(table, out_path)
    return table
