"""Score a recovered table against the truth, the same way for every method.

Metrics, on the method's score per word-like token (``MethodResult.mean_scores`` at each token of
``truth.frame``, one token per word):

- ``spearman``: Spearman's rho (scipy) between score and truth value over the ``in_truth`` rows (the
  truth's words that are single vocabulary tokens), with a permutation null (scipy's
  ``permutation_test``, truth values permuted over those words): its two-sided p and the 95% quantile of
  |rho| under the null.
- ``precision@k`` (k = 20, 50): the share of truth-positive tokens (value > 0) among the top-k word-like
  tokens, beside the base rate (the positive share of all word-like tokens: a random ranking's expected
  precision). Ties at the k-th score are counted at their expected share under random tie-breaking, so a
  constant score (an identical policy) gives exactly the base rate.
- ``auroc``: positive vs rest over all word-like tokens (the Mann-Whitney U, equal to sklearn's
  ``roc_auc_score``; ties count one half; chance 0.5).
- ``recall@50``: the share of the planted (positive) tokens found in the top 50 (chance 50 / n_words).

CIs: percentile bootstrap over the rows of ``token_scores``, the independent unit (prompt groups or
seeds), as ``bootstrap.bootstrap_groups_ci`` does: each resample draws the units with replacement, the
method's score is the mean of the drawn rows, and every metric is computed on it. With one unit there is
no CI (None).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

from .truth import Truth

PRECISION_K = (20, 50)
RECALL_K = 50


def top_k_hits(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Expected number of ``positive`` items among the ``k`` highest ``scores`` (n,), ties broken at random."""
    n = len(scores)
    k = min(k, n)
    if k <= 0:
        return 0.0
    threshold = np.partition(scores, n - k)[n - k]
    above, tied = scores > threshold, scores == threshold
    return float(positive[above].sum() + (k - above.sum()) * positive[tied].sum() / tied.sum())


def precision_at_k(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Share of positives among the top ``k`` (ties at their expected share)."""
    return top_k_hits(scores, positive, k) / min(k, len(scores))


def recall_at_k(scores: np.ndarray, positive: np.ndarray, k: int) -> float:
    """Share of all positives found in the top ``k``; NaN without positives."""
    n_pos = positive.sum()
    return top_k_hits(scores, positive, k) / n_pos if n_pos else float("nan")


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for positive vs rest (ties count one half); NaN when one class is
    empty. Computed as the Mann-Whitney U over n_pos * n_neg, by counting for each positive the negatives
    below it in the sorted negatives: the same value as sklearn's ``roc_auc_score`` (the tests check it) at a
    tenth of its time, which the bootstrap repeats."""
    pos, neg = scores[positive], np.sort(scores[~positive])
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    below = np.searchsorted(neg, pos, side="left")
    tied = np.searchsorted(neg, pos, side="right") - below
    return float((below.sum() + 0.5 * tied.sum()) / (len(pos) * len(neg)))


def spearman(scores: np.ndarray, values: np.ndarray) -> float:
    """Spearman's rho; NaN for fewer than 3 pairs or a constant side."""
    if len(scores) < 3:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        return float(stats.spearmanr(scores, values).statistic)


def metric_names() -> list[str]:
    return ["spearman", *(f"precision@{k}" for k in PRECISION_K), "auroc", f"recall@{RECALL_K}"]


def point_metrics(word_scores: np.ndarray, truth: Truth) -> dict[str, float]:
    """Every metric of one score per word-like token (n_words,), in ``truth.frame``'s row order."""
    positive = truth.positive
    in_truth = truth.frame["in_truth"].to_numpy()
    out = {"spearman": spearman(word_scores[in_truth], truth.frame["value"].to_numpy()[in_truth])}
    for k in PRECISION_K:
        out[f"precision@{k}"] = precision_at_k(word_scores, positive, k)
    out["auroc"] = auroc(word_scores, positive)
    out[f"recall@{RECALL_K}"] = recall_at_k(word_scores, positive, RECALL_K)
    return out


def spearman_null(word_scores: np.ndarray, truth: Truth, n_perm: int, seed: int) -> dict[str, float | None]:
    """Permutation null of Spearman over the ``in_truth`` words: two-sided p and the 95% quantile of |rho|."""
    in_truth = truth.frame["in_truth"].to_numpy()
    x = stats.rankdata(word_scores[in_truth])
    y = stats.rankdata(truth.frame["value"].to_numpy()[in_truth])
    if len(x) < 3 or n_perm <= 0 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"p_perm": None, "null_abs_95": None}

    def rho(a, b, axis=-1):  # Pearson's r of ranks is Spearman's rho
        a = a - a.mean(axis=axis, keepdims=True)
        b = b - b.mean(axis=axis, keepdims=True)
        return (a * b).sum(axis=axis) / np.sqrt((a * a).sum(axis=axis) * (b * b).sum(axis=axis))

    res = stats.permutation_test((x, y), rho, permutation_type="pairings", n_resamples=n_perm, vectorized=True,
                                 alternative="two-sided", rng=np.random.default_rng(seed))
    return {"p_perm": float(res.pvalue), "null_abs_95": float(np.quantile(np.abs(res.null_distribution), 0.95))}


READABLE = 0.5
"""The level a depth profile's Spearman or precision@50 must reach for the reward to count as readable at a block."""


def first_readable_block(profile: list[dict], key: str, level: float = READABLE) -> int | None:
    """The first block of a depth profile (readout.json's ``depth_profile``: one dict per block, in block order,
    with ``block`` and the point metrics) whose ``key`` reaches ``level``; None when no block does."""
    return next((row["block"] for row in profile if (row.get(key) or 0) >= level), None)


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def readout(token_scores: np.ndarray, truth: Truth, *, unit: str = "prompt_group", n_boot: int = 1000,
            n_perm: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Every metric with its bootstrap CI, the base rates and the Spearman permutation null, as a JSON-ready dict.

    ``token_scores``: (n_units, vocab_size) float, one row per independent unit (``MethodResult``).
    """
    scores = np.asarray(token_scores, dtype=np.float64)
    ids = truth.frame["token_id"].to_numpy()
    if scores.ndim != 2 or scores.shape[1] <= ids.max(initial=-1):
        raise ValueError(f"token_scores of shape {scores.shape} do not cover the vocabulary's token ids "
                         f"(largest {ids.max(initial=-1)})")
    per_unit = scores[:, ids]  # (n_units, n_words)
    n_units, n_words = per_unit.shape
    point = point_metrics(per_unit.mean(axis=0), truth)

    names = metric_names()
    boot = {name: [] for name in names}
    if n_units > 1 and n_boot > 0:
        rng = np.random.default_rng(seed)
        for start in range(0, n_boot, 100):
            draws = rng.integers(0, n_units, size=(min(100, n_boot - start), n_units))
            weights = np.zeros((len(draws), n_units))
            np.add.at(weights, (np.arange(len(draws))[:, None], draws), 1.0 / n_units)
            for row in weights @ per_unit:  # each resample's mean score per word
                for name, value in point_metrics(row, truth).items():
                    boot[name].append(value)
    alpha = (1 - level) / 2
    n_pos = int(truth.positive.sum())
    base_rate = n_pos / n_words if n_words else float("nan")
    metrics = {}
    for name in names:
        b = np.asarray(boot[name], dtype=np.float64)
        b = b[np.isfinite(b)]
        ci = [float(np.quantile(b, alpha)), float(np.quantile(b, 1 - alpha))] if len(b) else None
        metrics[name] = {"value": _finite_or_none(point[name]), "ci": ci}
        if name.startswith("precision@"):
            metrics[name]["chance"] = base_rate
        elif name == "auroc":
            metrics[name]["chance"] = 0.5
        elif name.startswith("recall@"):
            metrics[name]["chance"] = min(RECALL_K, n_words) / n_words if n_words else None
        else:
            metrics[name]["chance"] = 0.0
    metrics["spearman"].update(spearman_null(per_unit.mean(axis=0), truth, n_perm, seed))
    metrics["spearman"]["n_words"] = int(truth.frame["in_truth"].sum())
    return {
        "reward": truth.reward, "truth_source": truth.source, "unit": unit, "n_units": int(n_units),
        "n_words": int(n_words), "n_truth_words": int(truth.frame["in_truth"].sum()), "n_positive": n_pos,
        "base_rate": base_rate, "ci_level": level, "n_boot": int(n_boot) if n_units > 1 else 0,
        "n_perm": int(n_perm), "metrics": metrics,
    }
