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


def bootstrap_seeds_prompts_ci(tables, weights=None, n_boot: int = 1000, level: float = 0.95,
                               seed: int = 0) -> tuple[float, float]:
    """Two-level percentile bootstrap CI of ``sum_i weights[i] * mean(tables[i])`` for trained arms.

    Each table (seeds_i, prompts) holds one arm's per-(seed, prompt) means over the same prompts, in the same
    column order. A resample draws, for each arm on its own, its seeds with replacement (seeds are the
    independent unit of anything trained), and the prompts with replacement once for all arms (the same
    held-out prompts score every arm, so a difference stays paired by prompt). With one seed per arm this is
    the bootstrap over prompts. ``weights`` default to 1 each; (1, -1) gives the CI of a difference.
    """
    tables = [np.asarray(t, dtype=np.float64) for t in tables]
    weights = [1.0] * len(tables) if weights is None else list(weights)
    if not tables or n_boot <= 0 or any(t.size == 0 for t in tables):
        return float("nan"), float("nan")
    n_prompts = tables[0].shape[1]
    if any(t.ndim != 2 or t.shape[1] != n_prompts for t in tables):
        raise ValueError("every table must be (seeds, prompts) over the same prompts")
    rng = np.random.default_rng(seed)
    stats = np.zeros(n_boot)
    prompts = rng.integers(0, n_prompts, size=(n_boot, n_prompts))
    for t, w in zip(tables, weights):
        seeds = rng.integers(0, t.shape[0], size=(n_boot, t.shape[0]))
        for b in range(n_boot):
            stats[b] += w * t[np.ix_(seeds[b], prompts[b])].mean()
    alpha = (1 - level) / 2
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha))
