"""Learned reward models side by side on the same held-out pairs (SARM vs the plain RM, issue 13 item 4).

Input: each model's per-pair table (``pair_scores.parquet``, written by ``accuracy.accuracy_report``:
the pair columns plus ``chosen_score``, ``rejected_score`` and ``correct``, agreement with the overseer's
preference, a tie 1/2). The tables must hold the same pairs (same prompt, chosen, rejected and group),
which they do when both models were measured on the run's held-out file.

Output: one row per model (pair accuracy and Spearman with the overseer's reward over the distinct
held-out responses, each with a percentile bootstrap CI over prompt groups) and one row per later model
minus the first (the paired difference: every resample draws the same prompt groups for both models, so
the pairs' shared difficulty cancels). The difference is reported "significant" only when its CI
excludes 0. Same numbers as ``accuracy.accuracy_report`` for each model alone (same seed, same draws).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..bootstrap import bootstrap_groups_ci
from .accuracy import spearman

KEY = ["group", "prompt", "chosen", "rejected"]
"""Columns that name a pair."""

COLUMNS = ["model", "n_pairs", "n_responses", "n_groups", "pair_accuracy", "pair_accuracy_lo", "pair_accuracy_hi",
           "spearman", "spearman_lo", "spearman_hi"]


def _responses(table: pd.DataFrame) -> pd.DataFrame:
    """Distinct responses of a per-pair table: group, prompt, response, reward (the overseer's), score."""
    cols = ["group", "prompt", "response", "reward", "score"]
    both = pd.concat([
        table[["group", "prompt", "chosen", "chosen_reward", "chosen_score"]].set_axis(cols, axis=1),
        table[["group", "prompt", "rejected", "rejected_reward", "rejected_score"]].set_axis(cols, axis=1)])
    return both.drop_duplicates(["group", "prompt", "response"]).sort_values(["group", "prompt", "response"],
                                                                           kind="stable").reset_index(drop=True)


def compare_reward_models(tables: dict[str, pd.DataFrame], *, n_boot: int = 2000, level: float = 0.95,
                          seed: int = 0) -> pd.DataFrame:
    """The side-by-side table (``COLUMNS``) of the models in ``tables`` (name -> per-pair table), in order,
    then ``"<model> - <first>"`` rows of paired differences. ValueError if the tables' pairs differ."""
    names = list(tables)
    if not names:
        raise ValueError("compare_reward_models needs at least one model's pair table")
    first = tables[names[0]].sort_values(KEY, kind="stable").reset_index(drop=True)
    aligned = {names[0]: first}
    for name in names[1:]:
        t = tables[name].sort_values(KEY, kind="stable").reset_index(drop=True)
        if len(t) != len(first) or not t[KEY].equals(first[KEY]):
            raise ValueError(f"the pair tables of {names[0]!r} and {name!r} hold different held-out pairs: expected "
                             "both measured on the same preference file")
        aligned[name] = t
    groups = first["group"].to_numpy()
    responses = {n: _responses(t) for n, t in aligned.items()}
    r_groups = responses[names[0]]["group"].to_numpy()
    gold = responses[names[0]]["reward"].to_numpy(dtype=np.float64)
    keep = np.isfinite(gold)
    common = {"n_boot": n_boot, "level": level, "seed": seed}

    def rho(score):
        return lambda rows: spearman(score[keep][rows], gold[keep][rows])

    rows = []
    correct = {n: t["correct"].to_numpy(dtype=np.float64) for n, t in aligned.items()}
    scores = {n: r["score"].to_numpy(dtype=np.float64) for n, r in responses.items()}
    for n in names:
        acc_lo, acc_hi = bootstrap_groups_ci(groups, lambda idx, c=correct[n]: c[idx].mean(), **common)
        rho_lo, rho_hi = bootstrap_groups_ci(r_groups[keep], rho(scores[n]), **common)
        rows.append({"model": n, "pair_accuracy": float(correct[n].mean()), "pair_accuracy_lo": acc_lo,
                     "pair_accuracy_hi": acc_hi, "spearman": spearman(scores[n][keep], gold[keep]),
                     "spearman_lo": rho_lo, "spearman_hi": rho_hi})
    base = names[0]
    for n in names[1:]:
        diff = correct[n] - correct[base]
        acc_lo, acc_hi = bootstrap_groups_ci(groups, lambda idx, d=diff: d[idx].mean(), **common)
        a, b = rho(scores[n]), rho(scores[base])
        rho_lo, rho_hi = bootstrap_groups_ci(r_groups[keep], lambda idx, a=a, b=b: a(idx) - b(idx), **common)
        rows.append({"model": f"{n} - {base}", "pair_accuracy": float(diff.mean()), "pair_accuracy_lo": acc_lo,
                     "pair_accuracy_hi": acc_hi,
                     "spearman": spearman(scores[n][keep], gold[keep]) - spearman(scores[base][keep], gold[keep]),
                     "spearman_lo": rho_lo, "spearman_hi": rho_hi})
    for row in rows:
        row.update(n_pairs=len(first), n_responses=int(keep.sum()), n_groups=int(len(np.unique(groups))))
    return pd.DataFrame(rows, columns=COLUMNS)
