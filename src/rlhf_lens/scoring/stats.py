"""Base vs RLHF statistics over features: bootstrap CIs, permutation tests, random baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..bootstrap import bootstrap_ci
from ..missing import as_float
from .config import ScoringConfig


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
                "sum_abs_utility": as_float(rand.mean() * n) if len(rand) else None, "n_features": int(len(rand)),
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
        out[role] = {"mean_abs": as_float(sel.mean()) if len(sel) else None, "n_features": int(len(sel)),
                     "ci": _ci(sel, cfg, seed), "random_mean_abs": as_float(rest.mean()) if len(rest) else None,
                     "random_ci": _ci(rest, cfg, seed)}
    a, b = values["base"], values["rlhf"]
    out["difference"] = {"rlhf_minus_base": as_float(b.mean() - a.mean()) if len(a) and len(b) else None,
                         "ci": difference_ci(a, b, np.mean, cfg.bootstrap, cfg.ci_level, seed),
                         "p_value": permutation_p(a, b, cfg.permutations, seed)}
    return out
