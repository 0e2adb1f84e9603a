"""Reading SARM off: attribution, preference shift, overseer recovery, and examples for autointerp.

Every held-out text (``prompt + response``, the distinct texts of the held-out preference file) has
latents z (m,), the head's input (at its last token, or with ``sarm.pool: mean`` the mean over its tokens
but the first), and a reward ``r = sum_i w_i z_i``; w (m,) are the head weights.

- **Attribution** (``attribution.parquet``): each reward split into its terms ``w_i z_i``; per response
  the ``top_contributors`` largest |w_i z_i| (rank, latent, activation, weight, contribution) and the
  remainder ``r - sum(top terms)``. With the TopK head at most k terms are non-zero.
- **Preference shift** (``shift.parquet``): SARM's check that a reward can be re-weighted one concept at a
  time. For each of the ``shift_latents`` latents with the largest |w_i| and each alpha, the head weight
  w_i is scaled by alpha and every held-out reward recomputed (their code scales the latent's activation at
  the read position, the same thing for a linear, bias-free head). The reward change is averaged on the
  target set (responses whose latent fires, z_i > 0) and on its complement, per prompt group, then over
  groups with a bootstrap CI over groups; also the held-out pair accuracy after the change. With the TopK
  head the complement's change is exactly 0 (a latent that does not fire contributes nothing); with the
  dense head every response moves.
- **Overseer recovery** (``recovery.json``): does the RM's feature space carry the utility table we
  planted? Each latent's mean overseer utility over the tokens it fires on (latents at every token of
  the held-out texts, the head's input at each position; utilities from the overseer's per-token
  rewards, each text read whole as a response, which for a word-utility table gives every word its
  utility), for latents that fire on at least ``recovery_min_tokens`` tokens; the Spearman correlation of
  that with the latents' head weights, against a baseline of ``recovery_shuffles`` shuffles of the
  weights over the same latents (like for like): its mean, central 95% interval and the two-sided
  permutation p-value ``(1 + #{|rho_shuffled| >= |rho|}) / (1 + shuffles)``. An overseer without per-token
  rewards (a classifier) has no token utilities: recovery.json then says so and holds no numbers.
- **Examples** (``examples.parquet``): for the ``example_latents`` latents with the largest |w_i|, windows
  from the RM corpus (the train texts, every token) chosen by ``rlhf_lens.autointerp.examples.select_examples``
  (top, quantile and silent windows split by prompt group), one row per latent with the record's fields;
  ``feature_examples(row)`` rebuilds the ``FeatureExamples`` that ``autointerp.pipeline.explain_and_score``
  takes; rule sarm_autointerp (``sarm_autointerp.explain_sarm_latents``) explains and scores them.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..autointerp.examples import ExampleConfig, FeatureExamples, select_examples
from ..autointerp.prompts import Window
from ..bootstrap import bootstrap_ci

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SARMAnalysisConfig:
    """How SARM is read off (``sarm.analysis`` in config.yaml)."""

    top_contributors: int = 5
    """Largest terms |w_i z_i| kept per held-out response in attribution.parquet."""
    shift_latents: int = 5
    """Latents (largest |w_i| first) whose head weight the preference shift scales."""
    shift_alphas: tuple[float, ...] = (0.0, 2.0)
    """Factors the weight is scaled by (0 removes the latent's say, 2 doubles it)."""
    recovery_min_tokens: int = 5
    """A latent enters overseer recovery if it fires on at least this many held-out tokens."""
    recovery_shuffles: int = 1000
    """Shuffles of the head weights for the recovery baseline and its p-value."""
    example_latents: int = 10
    """Latents (largest |w_i| first) whose RM-corpus examples are written for autointerp."""
    bootstrap: int = 1000
    """Bootstrap resamples over prompt groups of the shift's confidence intervals."""


# --------------------------------------------------------------------------- attribution


def attribution_table(latents: np.ndarray, weights: np.ndarray, responses: pd.DataFrame, top_n: int) -> pd.DataFrame:
    """One row per (response, rank) of its ``top_n`` largest |w_i z_i|.

    ``latents`` (N, m), ``weights`` (m,), ``responses``: N rows of metadata (kept as columns, e.g. response,
    group, gold). Columns added: reward, rank (0 = largest), latent, activation, weight, contribution, rest
    (reward minus the response's listed contributions).
    """
    z, w = np.asarray(latents, np.float64), np.asarray(weights, np.float64)
    terms = z * w
    reward = terms.sum(1)
    n = min(top_n, terms.shape[1])
    top = np.argsort(-np.abs(terms), axis=1, kind="stable")[:, :n]
    rows = np.repeat(np.arange(len(z)), n)
    latent = top.reshape(-1)
    out = responses.iloc[rows].reset_index(drop=True)
    out["reward"] = reward[rows]
    out["rank"] = np.tile(np.arange(n), len(z))
    out["latent"] = latent
    out["activation"] = z[rows, latent]
    out["weight"] = w[latent]
    out["contribution"] = terms[rows, latent]
    listed = np.take_along_axis(terms, top, axis=1).sum(1)
    out["rest"] = (reward - listed)[rows]
    return out


# --------------------------------------------------------------------------- preference shift


def _group_mean_ci(values: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> tuple[float, float, float, int]:
    """(mean over groups of the group means, CI lo, hi, number of groups); NaNs when empty."""
    if not len(values):
        return float("nan"), float("nan"), float("nan"), 0
    frame = pd.DataFrame({"v": values, "g": groups}).groupby("g")["v"].mean().to_numpy()
    lo, hi = bootstrap_ci(frame, n_boot, 0.95, seed)
    return float(frame.mean()), lo, hi, len(frame)


def preference_shift(latents: np.ndarray, weights: np.ndarray, groups: np.ndarray, chosen_latents: Sequence[int],
                     alphas: Sequence[float], pairs: tuple[np.ndarray, np.ndarray] | None = None,
                     n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Reward change when head weight w_i is scaled by alpha, on the target set (z_i > 0) vs its complement.

    ``latents`` (N, m) and ``groups`` (N,) of the responses; ``pairs``: (chosen index, rejected index) of
    held-out pairs into the responses, for the accuracy before and after. One row per (latent, alpha, set)
    with n_responses, n_groups, mean_change, ci_lo, ci_hi (95%, over groups), and accuracy_before/after.
    """
    z, w, g = np.asarray(latents, np.float64), np.asarray(weights, np.float64), np.asarray(groups)
    before = z @ w
    rows = []
    for i in chosen_latents:
        fires = z[:, i] > 0
        for alpha in alphas:
            shifted = w.copy()
            shifted[i] *= alpha
            after = z @ shifted  # recomputed from the modified head, not from the formula
            change = after - before
            acc = {}
            if pairs is not None:
                c, r = pairs
                acc = {"accuracy_before": float(np.mean(before[c] > before[r])),
                       "accuracy_after": float(np.mean(after[c] > after[r]))}
            for name, mask in (("target", fires), ("complement", ~fires)):
                mean, lo, hi, n_groups = _group_mean_ci(change[mask], g[mask], n_boot, seed)
                rows.append({"latent": int(i), "weight": float(w[i]), "alpha": float(alpha), "set": name,
                             "n_responses": int(mask.sum()), "n_groups": n_groups, "mean_change": mean,
                             "ci_lo": lo, "ci_hi": hi, "max_abs_change": float(np.abs(change[mask]).max(initial=0.0)),
                             **acc})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- overseer recovery


def latent_utilities(token_latents: Sequence[np.ndarray], token_utilities: Sequence[np.ndarray]):
    """Per latent: (tokens it fires on (m,), mean utility of those tokens (m,), NaN where it never fires).

    ``token_latents[j]`` (T_j, m) and ``token_utilities[j]`` (T_j,) are one text's latents and utilities.
    """
    z = np.concatenate([np.asarray(a) for a in token_latents])
    u = np.concatenate([np.asarray(a, np.float64) for a in token_utilities])
    fires = z > 0
    count = fires.sum(0)
    total = (fires * u[:, None]).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return count, mean


def overseer_recovery(weights: np.ndarray, token_latents: Sequence[np.ndarray], token_utilities: Sequence[np.ndarray],
                      min_tokens: int = 5, n_shuffles: int = 1000, seed: int = 0) -> dict:
    """Spearman(w_i, mean utility of the tokens latent i fires on) over latents firing on >= ``min_tokens``
    tokens, against the same statistic with the weights shuffled over those latents."""
    w = np.asarray(weights, np.float64)
    count, mean = latent_utilities(token_latents, token_utilities)
    kept = np.flatnonzero(count >= min_tokens)
    out = {"n_latents": int(len(w)), "n_latents_used": int(len(kept)), "min_tokens": min_tokens,
           "n_tokens": int(sum(len(a) for a in token_utilities)), "shuffles": n_shuffles,
           "latents": [{"latent": int(i), "weight": float(w[i]), "n_fired": int(count[i]),
                        "mean_utility": float(mean[i])} for i in kept]}
    wk, uk = w[kept], mean[kept]
    if len(kept) < 3 or np.all(wk == wk[0]) or np.all(uk == uk[0]):
        return {**out, "spearman": None, "baseline_mean": None, "baseline_ci95": [None, None], "p_value": None,
                "reason": "fewer than 3 latents fire often enough, or their weights or utilities are all equal"}
    rho = float(spearmanr(wk, uk).statistic)
    rng = np.random.default_rng(seed)
    null = np.array([spearmanr(rng.permutation(wk), uk).statistic for _ in range(n_shuffles)])
    p = float((1 + np.sum(np.abs(null) >= abs(rho) - 1e-12)) / (1 + n_shuffles))
    return {**out, "spearman": rho, "baseline_mean": float(null.mean()),
            "baseline_ci95": [float(np.quantile(null, 0.025)), float(np.quantile(null, 0.975))], "p_value": p}


# --------------------------------------------------------------------------- examples for autointerp


def examples_table(token_ids: Sequence[Sequence[int]], token_latents: Sequence[np.ndarray], groups: Sequence[int],
                   decode, latents: Sequence[int], weights: np.ndarray, cfg: ExampleConfig, seed: int = 0) -> pd.DataFrame:
    """For each latent of ``latents``, its ``FeatureExamples`` record over the corpus texts, one row each
    (windows as JSON strings). ``decode(id)`` gives a token's text; ``groups`` each text's prompt group."""
    tokens = pd.DataFrame({
        "doc_id": np.concatenate([np.full(len(ids), j) for j, ids in enumerate(token_ids)]),
        "group": np.concatenate([np.full(len(ids), g) for ids, g in zip(token_ids, groups)]),
        "token_text": [decode(t) for ids in token_ids for t in ids],
    })
    z = np.concatenate([np.asarray(a) for a in token_latents])
    rows = []
    for i in latents:
        ex = select_examples(tokens, z[:, i].astype(np.float64), int(i), cfg, seed)
        rows.append({"feature": int(i), "weight": float(weights[i]), "max_activation": ex.max_activation,
                     "n_active": ex.n_active, "n_tokens": len(tokens), "rare": ex.rare,
                     "explain": _windows_json(ex.explain), "held_out": _windows_json(ex.held_out),
                     "held_out_kinds": json.dumps(ex.held_out_kinds), "silent": _windows_json(ex.silent)})
    return pd.DataFrame(rows)


def _windows_json(windows: Sequence[Window]) -> str:
    return json.dumps([{"tokens": w.tokens, "activations": w.activations} for w in windows])


def feature_examples(row) -> FeatureExamples:
    """The ``FeatureExamples`` record of one row of examples.parquet (what autointerp's pipeline explains)."""
    def windows(text):
        return [Window(tokens=w["tokens"], activations=w["activations"]) for w in json.loads(text)]

    return FeatureExamples(feature=int(row["feature"]), max_activation=float(row["max_activation"]),
                           n_active=int(row["n_active"]), rare=bool(row["rare"]), explain=windows(row["explain"]),
                           held_out=windows(row["held_out"]), held_out_kinds=json.loads(row["held_out_kinds"]),
                           silent=windows(row["silent"]))


# --------------------------------------------------------------------------- the stage


def overseer_token_utilities(overseer, tokenizer, token_ids: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """Each token's overseer utility, (T_j,) per text: the overseer's per-token rewards of the whole text
    read as a response, with each token's character span from ``rl.text.decode_with_spans``."""
    import torch

    from ..rl.text import decode_with_spans

    out = []
    for ids in token_ids:
        text, spans = decode_with_spans(tokenizer, torch.as_tensor(ids))
        out.append(overseer.token_rewards([""], [text], [spans]).numpy()[0, :len(ids)].astype(np.float64))
    return out


def sarm_analysis_stage(sarm_dir: str | os.PathLike, train_path: str | os.PathLike, heldout_path: str | os.PathLike,
                        overseer, cfg: SARMAnalysisConfig, *, out_attribution, out_shift, out_recovery, out_examples,
                        example_cfg: ExampleConfig | None = None, seed: int = 0, device: str = "cpu") -> dict:
    """Rule sarm_analysis: the four read-offs of the SARM in ``sarm_dir`` on the preference files' texts.

    ``overseer``: the ``Reward`` that labelled the pairs (its per-token rewards give token utilities).
    """
    from ..atomic import write_json, write_parquet
    from ..missing import json_safe
    from .sarm import load_sarm, pair_texts, read_pairs

    heldout, train = read_pairs(heldout_path), read_pairs(train_path)
    sarm = load_sarm(sarm_dir, device=device)
    texts, chosen, rejected = pair_texts(heldout)
    meta = _responses(heldout, texts)
    z = sarm.latents(texts).double().numpy()
    w = sarm.weight.detach().cpu().double().numpy()
    write_parquet(attribution_table(z, w, meta, cfg.top_contributors), out_attribution)

    ranked = [int(i) for i in np.argsort(-np.abs(w), kind="stable") if w[i] != 0]
    shift = preference_shift(z, w, meta["group"].to_numpy(), ranked[:cfg.shift_latents], cfg.shift_alphas,
                             pairs=(chosen, rejected), n_boot=cfg.bootstrap, seed=seed)
    write_parquet(shift, out_shift)

    per_token = sarm.token_latents(texts)
    ids = [i for i, _ in per_token]
    if getattr(overseer, "per_token", False):
        utilities = overseer_token_utilities(overseer, sarm.reader.tokenizer, ids)
        recovery = overseer_recovery(w, [a.numpy() for _, a in per_token], utilities, cfg.recovery_min_tokens,
                                     cfg.recovery_shuffles, seed)
    else:
        recovery = {"spearman": None, "p_value": None,
                    "reason": f"overseer {getattr(overseer, 'name', overseer)!r} gives no per-token rewards, so "
                              "tokens have no utility to recover"}
    recovery.update({"overseer": getattr(overseer, "name", None), "head_input": sarm.info["head_input"]})
    write_json(json_safe(recovery, finite=True), out_recovery)

    corpus, _, _ = pair_texts(train)
    corpus_groups = _responses(train, corpus)["group"].tolist()
    corpus_tokens = sarm.token_latents(corpus)
    cache: dict[int, str] = {}

    def decode(t: int) -> str:
        if t not in cache:
            cache[t] = sarm.reader.tokenizer.decode([t])
        return cache[t]

    examples = examples_table([i for i, _ in corpus_tokens], [a.numpy() for _, a in corpus_tokens], corpus_groups,
                              decode, ranked[:cfg.example_latents], w, example_cfg or ExampleConfig(), seed)
    write_parquet(examples, out_examples)
    log.info("SARM read-off: %d responses, recovery Spearman %s (p %s)", len(texts), recovery.get("spearman"),
             recovery.get("p_value"))
    return {"recovery": recovery, "shift": shift}


def _responses(pairs: pd.DataFrame, texts: Sequence[str]) -> pd.DataFrame:
    """Metadata of each distinct text of ``pairs``: response index, prompt_index, group, the overseer's reward."""
    first = {}
    for col, gold in (("chosen", "chosen_reward"), ("rejected", "rejected_reward")):
        for row in pairs.itertuples(index=False):
            first.setdefault(row.prompt + getattr(row, col), (row.prompt_index, row.group, getattr(row, gold)))
    meta = [first[t] for t in texts]
    return pd.DataFrame({"response": np.arange(len(texts)), "prompt_index": [m[0] for m in meta],
                         "group": [m[1] for m in meta], "gold": [float(m[2]) for m in meta]})
