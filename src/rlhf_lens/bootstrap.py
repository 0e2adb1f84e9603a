"""The percentile bootstrap CI of a mean, shared by every stage that reports one (RL evaluation over
prompts, MMCS over atoms, utilities over features)."""

from __future__ import annotations

import numpy as np


def bootstrap_ci(values, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI (lo, hi) of the mean of ``values``; (nan, nan) when empty or n_boot <= 0."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(n_boot, len(v)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def bootstrap_groups_ci(groups, statistic, n_boot: int = 1000, level: float = 0.95,
                        seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI (lo, hi) of ``statistic(rows)`` resampling whole groups (the independent unit).

    ``groups`` (n,) labels each row's group (e.g. its prompt); each resample draws as many groups as
    there are, with replacement, and passes the row indices of the drawn groups (a group drawn twice
    appears twice) to ``statistic``, which returns a float. Resamples whose statistic is NaN (e.g. a
    correlation of constant values) are left out; (nan, nan) when none is finite or n_boot <= 0.
    """
    g = np.asarray(groups)
    if len(g) == 0 or n_boot <= 0:
        return float("nan"), float("nan")
    unique, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(unique))]
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        drawn = rng.integers(0, len(unique), size=len(unique))
        stats[b] = statistic(np.concatenate([members[i] for i in drawn]))
    stats = stats[np.isfinite(stats)]
    if len(stats) == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))
