"""SARM vs plain side by side: known answers (same model, reversed model), the paired difference finds a
planted gap, each model's row equals its own accuracy_report, mismatched pairs fail."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.reward_models.accuracy import accuracy_report
from rlhf_lens.reward_models.comparison import compare_reward_models


def _pairs(n_groups: int = 40, seed: int = 0) -> pd.DataFrame:
    """Three responses per prompt, all three pairs; the overseer's reward is a random number per response."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        rewards = rng.normal(size=3)
        for a, b in ((0, 1), (0, 2), (1, 2)):
            c, r = (a, b) if rewards[a] > rewards[b] else (b, a)
            rows.append({"prompt": f"p{g} ", "chosen": f"r{c}", "rejected": f"r{r}", "chosen_reward": rewards[c],
                         "rejected_reward": rewards[r], "group": g})
    return pd.DataFrame(rows)


def _table(pairs, score):
    """The per-pair table accuracy_report writes for a scorer score(prompt, response) -> float."""
    return accuracy_report(lambda ps, rs: np.array([score(p, r) for p, r in zip(ps, rs)]), pairs, n_boot=200)


def test_known_answers_and_rows_equal_accuracy_report():
    pairs = _pairs()
    gold = {(p, r): v for p, r, v in zip(pairs.prompt.tolist() * 2, pairs.chosen.tolist() + pairs.rejected.tolist(),
                                         pairs.chosen_reward.tolist() + pairs.rejected_reward.tolist())}
    exact_summary, exact = _table(pairs, lambda p, r: gold[p, r])
    _, reverse = _table(pairs, lambda p, r: -gold[p, r])
    table = compare_reward_models({"plain": exact, "same": exact, "reverse": reverse}, n_boot=200)
    rows = table.set_index("model")
    assert rows.loc["plain", "pair_accuracy"] == 1.0 and rows.loc["reverse", "pair_accuracy"] == 0.0
    assert rows.loc["same - plain", ["pair_accuracy", "pair_accuracy_lo", "pair_accuracy_hi"]].tolist() == [0, 0, 0]
    assert rows.loc["reverse - plain", "pair_accuracy"] == -1.0
    assert rows.loc["reverse - plain", "spearman"] == pytest.approx(-2.0)
    # each model alone: the numbers of its accuracy.json (same seed, same resamples)
    assert rows.loc["plain", "spearman"] == pytest.approx(exact_summary["spearman"]["mean"])
    noisy_summary, noisy = _table(pairs, lambda p, r: gold[p, r] + np.random.default_rng(hash((p, r)) % 2**32).normal())
    row = compare_reward_models({"noisy": noisy}, n_boot=200).iloc[0]
    assert [row.pair_accuracy_lo, row.pair_accuracy_hi] == pytest.approx(noisy_summary["pair_accuracy"]["ci95"])
    assert [row.spearman_lo, row.spearman_hi] == pytest.approx(noisy_summary["spearman"]["ci95"])


def test_paired_difference_finds_a_planted_gap_and_not_an_absent_one():
    pairs = _pairs(60, seed=1)
    gold = dict(zip(zip(pairs.prompt, pairs.chosen), pairs.chosen_reward)) | dict(
        zip(zip(pairs.prompt, pairs.rejected), pairs.rejected_reward))

    def noisy(scale, seed):
        return lambda p, r: gold[p, r] + scale * np.random.default_rng([seed, hash((p, r)) % 2**32]).normal()

    _, good = _table(pairs, noisy(0.1, 0))
    _, bad = _table(pairs, noisy(3.0, 1))
    _, good2 = _table(pairs, noisy(0.1, 2))
    rows = compare_reward_models({"good": good, "bad": bad, "good2": good2}, n_boot=200).set_index("model")
    assert rows.loc["bad - good", "pair_accuracy_hi"] < 0 and rows.loc["bad - good", "spearman_hi"] < 0
    lo, hi = rows.loc["good2 - good", ["pair_accuracy_lo", "pair_accuracy_hi"]]
    assert lo <= 0 <= hi


def test_spearman_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    from rlhf_lens.reward_models.accuracy import spearman

    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 50).astype(float), rng.normal(size=50)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_different_pairs_fail():
    _, a = _table(_pairs(5, seed=0), lambda p, r: 0.0)
    _, b = _table(_pairs(5, seed=3), lambda p, r: 0.0)
    b = b.iloc[:-1]
    with pytest.raises(ValueError, match="hold different held-out pairs"):
        compare_reward_models({"plain": a, "sarm": b})
