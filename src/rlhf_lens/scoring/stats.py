"""Base vs RLHF statistics over features: bootstrap CIs, permutation tests, random baselines.

Features are resampled and permuted within their layer (DESIGN.md: resample the independent unit):
the base and RLHF dictionaries of one layer share initialisation and data order, so their features
pair by index and cluster by layer. A difference counts as an effect only when its CI excludes 0,
its p < 0.05, and the RLHF features also beat their random-feature baseline (``is_effect``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..bootstrap import bootstrap_ci
from ..missing import as_float
from .config import ScoringConfig


def _ci(values: np.ndarray, cfg: ScoringConfig, seed: int, scale: float = 1.0) -> list[float]:
    """Bootstrap CI of the mean of ``values`` times ``scale`` (NaN pair when empty).

    With ``scale = len(values)`` it is the CI of the sum: a resample has the same size, so its sum
    is exactly len × its mean.
    """
    return [c * scale for c in bootstrap_ci(values, cfg.bootstrap, cfg.ci_level, seed)]


def _strata_index(strata: np.ndarray) -> list[np.ndarray]:
    return [np.flatnonzero(strata == g) for g in np.unique(strata)]


def stratified_boot(values: np.ndarray, strata: np.ndarray, stat, n_boot: int, rng) -> np.ndarray:
    """(n_boot,) bootstrap draws of ``stat`` (np.sum or np.mean) of ``values``, each stratum (layer)
    resampled within itself, so every draw keeps the features-per-layer counts of the data."""
    values = np.asarray(values, dtype=float)
    draws = np.empty((n_boot, len(values)))
    col = 0
    for idx in _strata_index(np.asarray(strata)):
        draws[:, col:col + len(idx)] = values[idx][rng.integers(0, len(idx), (n_boot, len(idx)))]
        col += len(idx)
    return stat(draws, axis=1)


def paired_difference(a: np.ndarray, a_strata, b: np.ndarray, b_strata, stat, cfg: ScoringConfig,
                      seed: int) -> dict:
    """stat(b) - stat(a) with a stratified bootstrap CI (each side resampled within its layers) and a
    two-sided permutation p-value that shuffles the labels within each layer only.

    The unit is the feature within its layer: base and RLHF SAEs of one layer share initialisation
    and data order, and features cluster by layer, so labels are exchangeable only inside a layer.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    a_strata, b_strata = np.asarray(a_strata), np.asarray(b_strata)
    if len(a) == 0 or len(b) == 0:
        return {"rlhf_minus_base": None, "ci": [None, None], "p_value": None}
    observed = float(stat(b) - stat(a))
    ci = [None, None]
    if cfg.bootstrap > 0:
        rng = np.random.default_rng(seed)
        draws = stratified_boot(b, b_strata, stat, cfg.bootstrap, rng) - stratified_boot(a, a_strata, stat,
                                                                                          cfg.bootstrap, rng)
        alpha = (1 - cfg.ci_level) / 2
        ci = [float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))]
    return {"rlhf_minus_base": observed, "ci": ci,
            "p_value": stratified_permutation_p(a, a_strata, b, b_strata, cfg.permutations, seed, stat)}


def stratified_permutation_p(a, a_strata, b, b_strata, n_perm: int, seed: int, stat=np.mean) -> float | None:
    """Two-sided permutation p of stat(b) - stat(a), labels shuffled within each stratum (layer),
    stratum sizes per side kept; +1 correction, so never exactly 0."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) == 0 or len(b) == 0 or n_perm <= 0:
        return None
    pooled = np.concatenate([a, b])
    is_b = np.r_[np.zeros(len(a), bool), np.ones(len(b), bool)]
    strata = _strata_index(np.concatenate([np.asarray(a_strata), np.asarray(b_strata)]))
    observed = abs(stat(b) - stat(a))
    rng = np.random.default_rng(seed)
    hits = 0
    labels = is_b.copy()
    for _ in range(n_perm):
        for idx in strata:
            labels[idx] = rng.permutation(is_b[idx])
        hits += abs(stat(pooled[labels]) - stat(pooled[~labels])) >= observed - 1e-12
    return (hits + 1) / (n_perm + 1)


def is_effect(diff: dict, beats_random: dict, alpha: float = 0.05) -> bool:
    """The statistics rule: the RLHF-vs-base CI excludes 0, its permutation p < alpha, and the RLHF
    side beats its own random-feature baseline by the same two tests."""
    def passes(d):
        lo, hi = d.get("ci") or [None, None]
        p = d.get("p_value")
        return lo is not None and hi is not None and (lo > 0 or hi < 0) and p is not None and p < alpha

    return bool(passes(diff) and passes(beats_random) and beats_random["rlhf_minus_base"] > 0)


def table3_stats(rows: pd.DataFrame, cfg: ScoringConfig, seed: int, column: str = "explanation_utility") -> dict:
    """The Table 3 block: per role the sum of |utility| over the selected features (a failed explanation
    counts 0 on either side, so n is fixed) with a CI and the random features' baseline scaled to that n; the RLHF - base
    difference (stratified bootstrap, permutation within layer); whether RLHF's selected features beat
    its random ones; and ``effect``, the statistics rule applied to all three."""
    out, values = {}, {}
    for role in ("base", "rlhf"):
        sel = rows[(rows["role"] == role) & rows["selected"]]
        u = sel[column].abs().where(sel["explained"], 0.0).fillna(0.0).to_numpy()
        layers = sel["layer"].to_numpy()
        rand_rows = rows[(rows["role"] == role) & ~rows["selected"] & rows["in_autointerp"]]
        rand = rand_rows[column].abs().where(rand_rows["explained"], 0.0).fillna(0.0).to_numpy()
        rand_layers = rand_rows["layer"].to_numpy()
        n = len(u)
        values[role] = (u, layers, rand, rand_layers)
        out[role] = {
            "sum_abs_utility": float(u.sum()), "n_features": n, "n_failed": int((~sel["explained"]).sum()),
            "ci": _ci(u, cfg, seed, scale=n),
            "random_baseline": {
                "sum_abs_utility": as_float(rand.mean() * n) if len(rand) else None, "n_features": int(len(rand)),
                "ci": _ci(rand, cfg, seed, scale=n),
            },
        }
    return {**out, **_rlhf_tests(values, np.sum, cfg, seed)}


def measure_stats(rows: pd.DataFrame, column: str, cfg: ScoringConfig, seed: int) -> dict:
    """An LLM-free measure's block: mean |value| of the selected features per role, the rest as
    baseline; the difference tested as in ``table3_stats`` (within layers), and ``effect``."""
    out, values = {}, {}
    for role in ("base", "rlhf"):
        mine = rows[(rows["role"] == role) & rows[column].notna()]
        sel_rows = mine[mine["selected"]]
        rest_rows = mine[~mine["selected"] & (mine["n_active"] > 0)]
        sel, rest = sel_rows[column].abs().to_numpy(), rest_rows[column].abs().to_numpy()
        values[role] = (sel, sel_rows["layer"].to_numpy(), rest, rest_rows["layer"].to_numpy())
        out[role] = {"mean_abs": as_float(sel.mean()) if len(sel) else None, "n_features": int(len(sel)),
                     "ci": _ci(sel, cfg, seed), "random_mean_abs": as_float(rest.mean()) if len(rest) else None,
                     "random_ci": _ci(rest, cfg, seed)}
    return {**out, **_rlhf_tests(values, np.mean, cfg, seed)}


def _rlhf_tests(values: dict, stat, cfg: ScoringConfig, seed: int) -> dict:
    """``values``: role -> (selected values, their layers, random values, their layers). The RLHF - base
    difference of ``stat``, RLHF's selected vs random features per feature (means: the random pool may
    hold another number of features), and ``effect``, the rule applied to both."""
    (a, a_l, _, _), (b, b_l, b_rand, b_rand_l) = values["base"], values["rlhf"]
    difference = paired_difference(a, a_l, b, b_l, stat, cfg, seed)
    beats = paired_difference(b_rand, b_rand_l, b, b_l, np.mean, cfg, seed)
    return {"difference": difference,
            "rlhf_vs_random": {"selected_minus_random_mean": beats["rlhf_minus_base"], "ci": beats["ci"],
                               "p_value": beats["p_value"]},
            "effect": is_effect(difference, beats)}
