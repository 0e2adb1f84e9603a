"""How well a learned reward model agrees with the overseer it was trained to imitate, on held-out pairs.

Scores + pairs -> numbers (no model code here; the caller scores). Two measures, each with a 95%
percentile bootstrap CI over prompt groups (``rlhf_lens.bootstrap.bootstrap_groups_ci``: the pairs and
responses of one prompt are not independent, so whole groups are resampled):

- **pair accuracy**: the fraction of held-out pairs whose response preferred by the overseer (the
  higher overseer reward, i.e. the noiseless label) the reward model scores higher; a tie of the
  reward model counts 1/2. ``label_accuracy`` is the same against the file's labels (``chosen``),
  which carry the Bradley-Terry and flip noise (and are the only labels of an external file);
- **Spearman** rank correlation of the reward model's score with the overseer's reward over the
  distinct held-out responses (chosen and rejected of every pair, deduplicated per prompt).

A scorer equal to the overseer gets accuracy 1 and Spearman 1, a reversed one 0 and -1 (tested).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..bootstrap import bootstrap_groups_ci


def _agree(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """1 where a > b, 1/2 where equal, 0 where a < b."""
    return np.where(a > b, 1.0, np.where(a == b, 0.5, 0.0))


def pair_accuracy(chosen_scores, rejected_scores, groups, *, truth=None, n_boot: int = 2000, level: float = 0.95,
                  seed: int = 0) -> dict:
    """{"mean", "ci95", "n_pairs", "n_groups"} of the reward model's agreement with the preference.

    ``truth`` (n,) > 0 where chosen is truly better, < 0 where rejected is (0: a tie, left out); None:
    the chosen column is the truth. Scores are (n,) floats; ``groups`` (n,) the prompt group of each pair.
    """
    c, r, g = (np.asarray(x) for x in (chosen_scores, rejected_scores, groups))
    correct = _agree(c.astype(np.float64), r.astype(np.float64))
    if truth is not None:
        t = np.asarray(truth, dtype=np.float64)
        keep = np.isfinite(t) & (t != 0)
        correct = np.where(t > 0, correct, 1.0 - correct)[keep]
        g = g[keep]
    if len(correct) == 0:
        return {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n_pairs": 0, "n_groups": 0}
    lo, hi = bootstrap_groups_ci(g, lambda rows: correct[rows].mean(), n_boot, level, seed)
    return {"mean": float(correct.mean()), "ci95": [lo, hi], "n_pairs": int(len(correct)),
            "n_groups": int(len(np.unique(g)))}


def _ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of (n,) values, ties given their average rank (as scipy.stats.rankdata's default)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    return (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]


def spearman(scores, gold) -> float:
    """Spearman's rho of two (n,) arrays (Pearson's r of their average ranks, as scipy.stats.spearmanr,
    without its per-call overhead: the bootstrap calls this thousands of times); NaN when either is
    constant or n < 3."""
    s, t = np.asarray(scores, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if len(s) < 3 or np.ptp(s) == 0 or np.ptp(t) == 0:
        return float("nan")
    rs, rt = _ranks(s), _ranks(t)
    rs, rt = rs - rs.mean(), rt - rt.mean()
    return float(np.clip((rs @ rt) / np.sqrt((rs @ rs) * (rt @ rt)), -1.0, 1.0))


def spearman_ci(scores, gold, groups, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict:
    """{"mean", "ci95", "n_responses", "n_groups"}: Spearman of ``scores`` with ``gold`` and its CI over groups.

    Rows with a NaN gold reward are left out (an external file without an overseer has none).
    """
    s, t, g = (np.asarray(x) for x in (scores, gold, groups))
    keep = np.isfinite(t.astype(np.float64))
    s, t, g = s[keep], t[keep], g[keep]
    lo, hi = bootstrap_groups_ci(g, lambda rows: spearman(s[rows], t[rows]), n_boot, level, seed)
    return {"mean": spearman(s, t), "ci95": [lo, hi], "n_responses": int(len(s)), "n_groups": int(len(np.unique(g)))}


def heldout_responses(pairs: pd.DataFrame) -> pd.DataFrame:
    """The distinct responses of the pairs: prompt, response, reward (the overseer's), group."""
    both = pd.concat([
        pairs[["prompt", "chosen", "chosen_reward", "group"]].set_axis(["prompt", "response", "reward", "group"], axis=1),
        pairs[["prompt", "rejected", "rejected_reward", "group"]].set_axis(["prompt", "response", "reward", "group"],
                                                                           axis=1)])
    return both.drop_duplicates(["group", "prompt", "response"]).reset_index(drop=True)


def accuracy_report(score, pairs: pd.DataFrame, *, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """(summary, per-pair table) of a reward model on held-out ``pairs`` (a preference table).

    ``score(prompts, responses)`` -> (N,) scores of prompt + response. The per-pair table adds
    ``chosen_score``, ``rejected_score`` and ``correct`` (agreement with the overseer's preference,
    or with the label where the overseer's rewards are missing) to the pair columns.
    """
    responses = heldout_responses(pairs)
    scores = np.asarray(score(list(responses.prompt), list(responses.response)), dtype=np.float64)
    responses["score"] = scores
    lookup = {(g, p, r): s for g, p, r, s in zip(responses.group, responses.prompt, responses.response, scores)}
    table = pairs.copy()
    table["chosen_score"] = [lookup[k] for k in zip(table.group, table.prompt, table.chosen)]
    table["rejected_score"] = [lookup[k] for k in zip(table.group, table.prompt, table.rejected)]
    truth = (table.chosen_reward - table.rejected_reward).to_numpy(dtype=np.float64)
    has_gold = bool(np.isfinite(truth).any())
    agree = _agree(table.chosen_score.to_numpy(), table.rejected_score.to_numpy())
    table["correct"] = np.where(truth < 0, 1.0 - agree, agree) if has_gold else agree
    common = {"n_boot": n_boot, "level": level, "seed": seed}
    summary = {
        "pair_accuracy": pair_accuracy(table.chosen_score, table.rejected_score, table.group,
                                       truth=truth if has_gold else None, **common),
        "label_accuracy": pair_accuracy(table.chosen_score, table.rejected_score, table.group, **common),
        "spearman": spearman_ci(responses.score, responses.reward, responses.group, **common),
        "n_pairs": int(len(table)), "n_groups": int(table.group.nunique()), "bootstrap": n_boot, "ci_level": level,
        "against": "overseer rewards" if has_gold else "file labels (no overseer rewards)",
    }
    acc = summary["pair_accuracy"]
    summary["beats_chance"] = bool(acc["ci95"][0] > 0.5) if np.isfinite(acc["ci95"][0]) else False
    return summary, table
