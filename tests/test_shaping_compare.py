"""The comparison's statistics on planted runs: a scheme that is better on every prompt is called significant,
one that is not is 'no effect at this size', and steps to the threshold are counted per seed."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from rlhf_lens.report.shaping import shaping_markdown
from rlhf_lens.shaping_study.compare import comparison_table, curve_summary, curves


def _run(gold_per_step, prompt_gold, seed):
    rng = np.random.default_rng(seed)
    metrics = pd.DataFrame({"step": range(len(gold_per_step)), "gold_reward_mean": gold_per_step,
                            "kl_mean": 0.1, "shaping_shap_seconds": 0.5, "shaping_shap_reward_texts": 100.0})
    table = pd.DataFrame({"prompt_index": np.repeat(np.arange(len(prompt_gold)), 2),
                          "gold": np.repeat(prompt_gold, 2) + rng.normal(0, 0.01, 2 * len(prompt_gold)), "kl": 0.2})
    return metrics, table


def test_planted_differences_get_the_right_verdicts():
    base = np.linspace(0, 1, 20)
    runs = {}
    for seed in range(3):
        runs[("last_token", seed)] = _run([0.0, 0.2, 0.4, 0.6, 0.6, 0.6], base, seed)
        runs[("shap", seed)] = _run([0.0, 0.6, 0.6, 0.7, 0.7, 0.7], base + 0.5, seed)  # better on every prompt
        runs[("uniform", seed)] = _run([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], base, seed)  # the same held-out gold
    table, threshold = comparison_table(runs, n_boot=500)
    assert threshold == 0.6  # the sparse scheme's final level
    t = table.set_index("scheme")
    assert 0.45 < t.loc["shap", "gold_vs_sparse_lo"] < t.loc["shap", "gold_vs_sparse_hi"] < 0.55
    assert t.loc["shap", "steps_to_threshold"] == 2 and t.loc["last_token", "steps_to_threshold"] == 4
    assert t.loc["uniform", "reached"] == 0
    assert t.loc["shap", "attribution_seconds_per_step"] == 0.5
    text = shaping_markdown(table, threshold)
    shap_line = next(line for line in text.splitlines() if line.startswith("- **shap**"))
    uniform_line = next(line for line in text.splitlines() if line.startswith("- **uniform**"))
    assert "significant: the 95% CI excludes 0" in shap_line and "Shaping helped" in shap_line
    assert "no effect at this size" in uniform_line
    summary = curve_summary(curves(runs))
    row = summary[(summary.scheme == "shap") & (summary.step == 1)].iloc[0]
    assert row.gold_lo <= row.gold_mean <= row.gold_hi and row.seeds == 3


def test_seed_to_seed_spread_is_in_the_interval():
    # Each seed of "shap" is off the sparse scheme by a constant on every prompt: -1, 0 and +1. Averaging the
    # seeds first and bootstrapping prompts alone would give a CI of width ~0 around 0; seeds are the
    # independent unit of a trained run, so the interval must span most of their spread.
    base = np.linspace(0, 1, 20)
    runs = {}
    for seed, offset in enumerate([-1.0, 0.0, 1.0]):
        runs[("last_token", seed)] = _run([0.0, 0.5, 0.6], base, seed)
        runs[("shap", seed)] = _run([0.0, 0.5, 0.6], base + offset, seed)
    t = comparison_table(runs, n_boot=2000)[0].set_index("scheme")
    assert abs(t.loc["shap", "gold_vs_sparse"]) < 0.01
    assert t.loc["shap", "gold_vs_sparse_lo"] < -0.4 and t.loc["shap", "gold_vs_sparse_hi"] > 0.4
    assert t.loc["shap", "gold_final_hi"] - t.loc["shap", "gold_final_lo"] > 0.8
    # the sparse scheme's seeds agree, so its own interval is the prompts' (the gold spread over 20 prompts)
    assert t.loc["last_token", "gold_final_hi"] - t.loc["last_token", "gold_final_lo"] < 0.3


def test_two_level_bootstrap_known_answers():
    from rlhf_lens.bootstrap import bootstrap_ci, bootstrap_seeds_prompts_ci

    rng = np.random.default_rng(0)
    one_seed = rng.normal(size=(1, 200))
    # one seed: the bootstrap over prompts (same distribution; the interval agrees to resampling noise)
    lo, hi = bootstrap_seeds_prompts_ci([one_seed], n_boot=4000)
    ref_lo, ref_hi = bootstrap_ci(one_seed[0], 4000)
    assert abs(lo - ref_lo) < 0.03 and abs(hi - ref_hi) < 0.03
    # a difference of an arm with itself is exactly 0 in every resample when seeds cannot vary (one seed):
    # the prompts are drawn once for both arms
    assert bootstrap_seeds_prompts_ci([one_seed, one_seed], [1, -1], n_boot=200) == (0.0, 0.0)
    with pytest.raises(ValueError, match="same prompts"):
        bootstrap_seeds_prompts_ci([one_seed, one_seed[:, :10]])
