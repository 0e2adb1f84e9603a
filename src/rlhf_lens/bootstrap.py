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
