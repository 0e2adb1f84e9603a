"""The comparison's statistics on planted runs: a scheme that is better on every prompt is called significant,
one that is not is 'no effect at this size', and steps to the threshold are counted per seed."""

from __future__ import annotations

import numpy as np
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
