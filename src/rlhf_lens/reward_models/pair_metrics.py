"""A reward model against the overseer: held-out pair accuracy and Spearman correlation, with CIs
over prompt groups (scores + pairs -> numbers; nothing here knows which model made the scores).

Pairs and responses that share a prompt are not independent, so every interval resamples prompt
groups (DESIGN.md, statistics): pair accuracy is the mean over groups of each group's accuracy (each
group weighs the same; ``rlhf_lens.bootstrap`` over the group means), and the Spearman interval is a
percentile bootstrap that draws whole groups with replacement and recomputes the rank correlation on
their pooled responses. A tie (chosen score == rejected score) counts half.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from ..bootstrap import bootstrap_ci


def pair_accuracy(chosen_scores, rejected_scores, groups, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> dict:
    """Accuracy of ``chosen > rejected`` (arrays of one score per pair; ``groups`` the prompt group of each).

    Returns accuracy (mean over groups of the group's accuracy), its CI, the pooled accuracy over
    pairs, and the numbers of pairs and groups.
    """
    c, r = np.asarray(chosen_scores, np.float64), np.asarray(rejected_scores, np.float64)
    g = np.asarray(groups)
    if not (len(c) == len(r) == len(g)):
        raise ValueError(f"pair_accuracy: {len(c)} chosen, {len(r)} rejected scores and {len(g)} groups")
    correct = (c > r) + 0.5 * (c == r)
    names, inverse = np.unique(g, return_inverse=True)
    per_group = np.bincount(inverse, weights=correct, minlength=len(names)) / np.bincount(inverse, minlength=len(names))
    lo, hi = bootstrap_ci(per_group, n_boot, level, seed)
    return {"accuracy": float(per_group.mean()) if len(per_group) else float("nan"), "ci": [lo, hi],
            "accuracy_pooled": float(correct.mean()) if len(correct) else float("nan"),
            "n_pairs": int(len(c)), "n_groups": int(len(names)), "level": level}


def spearman_ci(scores, gold, groups, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Spearman correlation of ``scores`` with ``gold`` (one value each per response) and its group-bootstrap CI."""
    s, y, g = np.asarray(scores, np.float64), np.asarray(gold, np.float64), np.asarray(groups)
    if not (len(s) == len(y) == len(g)):
        raise ValueError(f"spearman_ci: {len(s)} scores, {len(y)} gold values and {len(g)} groups")
    rho = _spearman(s, y)
    names, inverse = np.unique(g, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(names))]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot if len(names) > 1 else 0):
        idx = np.concatenate([members[i] for i in rng.integers(0, len(names), len(names))])
        value = _spearman(s[idx], y[idx])
        if np.isfinite(value):
            draws.append(value)
    alpha = (1 - level) / 2
    ci = [float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))] if draws else [float("nan")] * 2
    return {"spearman": rho, "ci": ci, "n_responses": int(len(s)), "n_groups": int(len(names)), "level": level}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def heldout_accuracy(pairs, chosen_scores, rejected_scores, n_boot: int = 1000, level: float = 0.95,
                     seed: int = 0) -> dict:
    """Both measures on a preference table (columns prompt, chosen, rejected, chosen_reward,
    rejected_reward, group) and a model's score of each pair's chosen and rejected text.

    Pair accuracy is against the file's labels (chosen is the overseer's pick, flips included);
    Spearman is against the overseer's reward over the distinct (prompt, response) texts of the table.
    """
    import pandas as pd

    c, r = np.asarray(chosen_scores, np.float64), np.asarray(rejected_scores, np.float64)
    responses = pd.concat([
        pd.DataFrame({"text": pairs["prompt"] + pairs["chosen"], "gold": pairs["chosen_reward"], "score": c,
                      "group": pairs["group"]}),
        pd.DataFrame({"text": pairs["prompt"] + pairs["rejected"], "gold": pairs["rejected_reward"], "score": r,
                      "group": pairs["group"]}),
    ]).drop_duplicates("text")
    return {"pair_accuracy": pair_accuracy(c, r, pairs["group"].to_numpy(), n_boot, level, seed),
            "spearman": spearman_ci(responses["score"], responses["gold"], responses["group"], n_boot, level, seed)}
