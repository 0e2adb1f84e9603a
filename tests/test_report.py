"""The report stage: feature cards (escaping, structure), the summary's wording, tables, plots, workflow.rst."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.features import summarise
from rlhf_lens.report import (RewardResults, feature_cards, load_reward_results, mmcs_vs_noise_floor,
                              sae_metrics_table, summary_markdown, write_summary)
from rlhf_lens.report.cards import histogram_svg
from rlhf_lens.report.plots import (plot_divergence, plot_max_cosine_histograms, plot_mmcs_vs_baseline, plot_rl_curves,
                                    plot_utilities)
from rlhf_lens.report.wording import effect_words, fmt, is_significant, md_escape

EVIL = "</div><script>alert(1)</script>"
EVIL_TOKENS = ["<b>", "&amp", "a\nb", "\t", '"q"', " the"]


# ---------------------------------------------------------------- fixtures shaped like the real writers


def window(tokens, acts, kind=None, predicted=None):
    w = {"tokens": tokens, "activations": acts}
    if kind is not None:
        w.update(kind=kind, predicted=predicted)
    return w


def autointerp_row(role, layer, feature, *, selected=True, rank=1, status="ok", explanation="This feature fires on "
                   "praise.", score=0.5, tokens=None, rare=False, fired=True, predicted=True):
    """One row as autointerp.stage writes it (OUTPUT_COLUMNS; examples and histogram as JSON strings)."""
    tokens = tokens or ["Ġgreat", "Ġfilm", "!"]
    acts = [2.0, 0.5, 0.0]
    if fired:
        n = len(tokens)
        examples = {"explain": [window(tokens, (acts * n)[:n]), window(tokens, [0.1] * n)],
                    "score": [window(tokens, (acts * n)[:n], "top", [8.0, 3.0, None][:n] + [1.0] * (n - 3)
                                     if predicted else None),
                              window(tokens, [0.0] * n, "random", [0.5] * n if predicted else None)]}
        hist = {"edges": [0.0, 0.5, 1.0, 1.5, 2.0], "counts": [7, 3, 0, 1]}
    else:
        examples, hist = {"explain": [], "score": []}, {"edges": [], "counts": []}
    ok = status == "ok"
    return {"role": role, "layer": layer, "dictionary": "relu_1x", "feature": feature, "selected": selected,
            "rank": rank, "max_cosine": 0.93, "match": feature + 100, "max_activation": 2.0 if fired else 0.0,
            "n_active": 11 if fired else 0, "n_tokens": 500, "rare": rare, "explanation": explanation if ok else None,
            "score": score if ok else None, "score_top": 0.6 if ok else None, "score_quantile": None,
            "detection_auroc": 0.8 if ok else None, "status": status,
            "reason": "" if ok else "LLMError: endpoint <http://x> said `no` | retry", "prompt_tokens": 120,
            "completion_tokens": 30, "examples": json.dumps(examples), "histogram": json.dumps(hist)}


@pytest.fixture
def autointerp() -> pd.DataFrame:
    rows = [
        autointerp_row("base", 3, 7, rank=1, explanation=EVIL, tokens=EVIL_TOKENS),
        autointerp_row("base", 3, 9, rank=2, status="failed", predicted=False),
        autointerp_row("base", 3, 40, selected=False, rank=200, score=0.1),
        autointerp_row("rlhf", 3, 2, rank=1, score=0.7, explanation="Fires on `love` | and *joy*"),
        autointerp_row("rlhf", 5, 4, rank=1, status="failed", fired=False, rare=True),
        autointerp_row("rlhf", 5, 8, rank=2, score=None),
        autointerp_row("rlhf", 5, 33, selected=False, rank=150, score=-0.05),
    ]
    return pd.DataFrame(rows)


@pytest.fixture
def scores(autointerp) -> pd.DataFrame:
    """scores/{reward}.parquet: one row per (role, layer, dictionary, feature), utilities null when failed."""
    s = autointerp[["role", "layer", "dictionary", "feature", "selected", "n_active"]].copy()
    s["explained"] = autointerp["status"] == "ok"
    s["explanation"] = autointerp["explanation"]
    s["explanation_utility"] = np.where(s["explained"], 0.4321, np.nan)
    s["token_utility"] = 0.123
    s["unembed_utility"] = -0.0456
    return s


class TagCounter(HTMLParser):
    def __init__(self):
        super().__init__()
        self.opened, self.closed = {}, {}

    def handle_starttag(self, tag, attrs):
        self.opened[tag] = self.opened.get(tag, 0) + 1

    def handle_endtag(self, tag):
        self.closed[tag] = self.closed.get(tag, 0) + 1


def parse(page: str) -> TagCounter:
    counter = TagCounter()
    counter.feed(page)
    return counter


# ---------------------------------------------------------------- feature cards


def test_cards_escape_untrusted_text_and_keep_structure(tmp_path, autointerp, scores):
    out = tmp_path / "cards.html"
    n = feature_cards(autointerp, scores, out, title="cards <of> utility")
    page = out.read_text()
    assert n == 5 == page.count('<div class="card"')  # selected rows only, failed ones included
    tags = parse(page)
    assert "script" not in tags.opened
    assert tags.opened["div"] == tags.closed["div"]
    assert "&lt;/div&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>cards &lt;of&gt; utility</title>" in page
    # Tokens: markup escaped, newline/tab shown as marks, never raw inside a window.
    assert ">&lt;b&gt;</span>" in page and ">&amp;amp</span>" in page and "&quot;q&quot;" in page
    assert "a<span class=\"ws\">\u21b5</span>b" in page and "<span class=\"ws\">\u21e5</span>" in page
    for win in re.findall(r'<div class="win">(.*?)</div>', page):
        assert "\n" not in win and "\t" not in win
    # Grouped by role and layer, in order.
    assert re.findall(r"<h2>(.*?)</h2>", page) == ["base · layer 3", "rlhf · layer 3", "rlhf · layer 5"]
    assert "external" not in page and "http" not in page.replace("http://www.w3.org/2000/svg", "").replace(
        "&lt;http://x&gt;", "")


def test_card_contents(tmp_path, autointerp, scores):
    out = tmp_path / "cards.html"
    feature_cards(autointerp, scores, out, title="t")
    cards = re.split(r'(?=<div class="card")', out.read_text())[1:]
    first, failed, _, never_fired, _ = cards
    # Numbers: simulation, detection, utilities from the scores table, activity, large-dictionary match.
    assert "overall 0.5 · top 0.6 · quantile n/a" in first
    assert "explanation 0.432 · token 0.123 · unembed -0.0456" in first
    assert "11 of 500 tokens (2.2%)" in first and "best match #107, cosine 0.93" in first
    # Shading: activation / max_activation (2.0 / 2.0 -> 1, 0.5 / 2.0 -> 0.25) with the value as title.
    assert 'style="background:rgba(255,127,14,1.00)" title="activation: 2"' in first
    assert 'style="background:rgba(255,127,14,0.25)" title="activation: 0.5"' in first
    # Held-out: true on the 0-10 scale vs simulated; a token without a prediction is unshaded.
    assert 'title="true: 10"' in first and 'title="simulated: 8"' in first and 'title="simulated: n/a"' in first
    assert first.count("<svg") == 1 and first.count("<rect") == 4
    # A failed feature: badge, escaped reason, no explanation, no utility for the explanation.
    assert 'class="badge failed">failed<' in failed and "no explanation" in failed
    assert "LLMError: endpoint &lt;http://x&gt; said `no` | retry" in failed
    assert "explanation n/a" in failed
    # A feature that never fired: no histogram, no windows, flagged rare.
    assert "<svg" not in never_fired and "no nonzero activations" in never_fired
    assert "badge rare" in never_fired and 'class="win"' not in never_fired


def test_cards_without_scores(tmp_path, autointerp):
    out = tmp_path / "cards.html"
    assert feature_cards(autointerp, None, out, title="t") == 5
    page = out.read_text()
    assert page.count("<th>utility</th><td>not scored</td>") == 5


def test_cards_reject_malformed_inputs(tmp_path, autointerp, scores):
    with pytest.raises(ValueError, match="lacks columns \\['histogram'\\]"):
        feature_cards(autointerp.drop(columns="histogram"), None, tmp_path / "x.html", "t")
    with pytest.raises(ValueError, match="more than one row"):
        feature_cards(autointerp, pd.concat([scores, scores]), tmp_path / "x.html", "t")
    bad = autointerp.copy()
    bad.loc[0, "examples"] = "{not json"
    with pytest.raises(ValueError, match="feature=7: column 'examples' is not valid JSON"):
        feature_cards(bad, None, tmp_path / "x.html", "t")
    assert not (tmp_path / "x.html").exists()


def test_histogram_svg_known_answer():
    svg = histogram_svg({"edges": [0, 1, 2, 3], "counts": [1, 4, 2]}, width=300, height=70)
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert heights == [14.0, 56.0, 28.0]  # plot height 56 for the largest bin
    assert histogram_svg({"edges": [], "counts": []}) == ""
    assert histogram_svg({"edges": [0, 1], "counts": [1, 2]}) == ""  # edges and counts disagree


# ---------------------------------------------------------------- wording


@pytest.mark.parametrize("ci, p, tested, significant", [
    ([0.1, 0.4], 0.01, True, True),
    ([0.1, 0.4], 0.049, True, True),
    ([0.1, 0.4], 0.05, True, False),      # p must be below 0.05
    ([0.1, 0.4], None, True, False),      # a test was run but gave no p
    ([0.0, 0.4], 0.01, True, False),      # 0 on the boundary is inside the CI
    ([-0.4, -0.1], 0.01, True, True),
    ([-0.4, 0.1], 0.01, True, False),
    ([0.1, 0.4], None, False, True),      # CI only (no test): the CI decides
    (None, 0.01, True, False),
    ([None, 0.3], None, False, False),
    ([float("nan"), 0.3], None, False, False),
])
def test_significance_rule(ci, p, tested, significant):
    assert is_significant(ci, p, tested) is significant
    words = effect_words(ci, 0.95, p, tested)
    assert words.startswith("significant") is significant
    assert words.startswith("not significant") is (not significant)
    if ci is not None and ci[0] is not None and ci[0] <= 0 <= ci[1]:
        assert "includes 0" in words and "no effect at this size" in words


def test_fmt_and_md_escape():
    assert fmt(None) == fmt(float("nan")) == fmt("x") == "n/a"
    assert fmt(0.95436) == "0.954" and fmt(0.18, signed=True) == "+0.18" and fmt(12345.6) == "12,346"
    assert fmt(np.int64(3)) == "3" and fmt(True) == "n/a"
    assert (md_escape("a | b `c` *d* <script>&\n# h\t[x](y)")
            == "a \\| b \\`c\\` \\*d\\* &lt;script&gt;&amp; # h \\[x\\](y)")
    assert md_escape("relu_1x _em_ __b__") == "relu_1x \\_em\\_ \\__b_\\_"
    assert md_escape(None) == ""


# ---------------------------------------------------------------- summary


def eval_summary(diff, ci):
    """rl/{reward}/eval_summary.json as rl.evaluate.evaluate_policy writes it."""
    return {"bootstrap": 2000, "difference_ci_excludes_zero": ci[0] > 0 or ci[1] < 0, "kl_ci95": [1.2, 2.1],
            "kl_mean": 1.7, "n_prompts": 72, "response_tokens": 16, "reward": "utility",
            "reward_base_ci95": [0.09, 0.17], "reward_base_mean": 0.13, "reward_difference": diff,
            "reward_difference_ci95": ci, "reward_policy_ci95": [0.25, 0.37], "reward_policy_mean": 0.13 + diff,
            "samples_per_prompt": 4, "seed": 0}


def scoring_stats(diff_ci, p, *, null=False):
    """The scoring stage's statistics JSON (shape from the brief); ``null``: every number null."""
    def v(x):
        return None if null else x

    def mean_measure(b, r):
        return {role: {"mean_abs": v(x), "ci": [v(x - 0.05), v(x + 0.05)], "n_features": v(50), "random_mean_abs":
                       v(0.1), "random_ci": [v(0.08), v(0.12)]} for role, x in (("base", b), ("rlhf", r))} | {
            "difference": {"rlhf_minus_base": v(r - b), "ci": [v(diff_ci[0] / 100), v(diff_ci[1] / 100)],
                           "p_value": v(p)}}

    table3 = {role: {"sum_abs_utility": v(x), "ci": [v(x - 8), v(x + 8)], "n_features": v(50), "n_failed": v(2),
                     "random_baseline": {"sum_abs_utility": v(9.0), "ci": [v(6.0), v(12.0)], "n_features": v(10)}}
              for role, x in (("base", 58.1), ("rlhf", 90.9))}
    table3["difference"] = {"rlhf_minus_base": v(32.8), "ci": [v(diff_ci[0]), v(diff_ci[1])], "p_value": v(p)}
    return {"table3": table3, "token_utility": mean_measure(0.3, 0.5), "unembed_utility": mean_measure(0.2, 0.21),
            "ci_level": 0.95, "n_boot": 1000, "n_permutations": 2000, "seed": 0}


def features_json(path: Path, layer: int, mmcs_ci, baseline_ci):
    """features/{reward}/{role}/layer{L}.json as features.features_stage writes it."""
    base = {"hungarian_ci": [0.1, 0.2], "hungarian_mean_cosine": 0.15, "mmcs": sum(baseline_ci) / 2,
            "mmcs_ci": baseline_ci}
    kind = {"ci_level": 0.95, "hungarian_mean_cosine": 0.5, "large": "relu_2x", "mmcs_large_to_small": 0.4,
            "mmcs_small_to_large": sum(mmcs_ci) / 2, "mmcs_small_to_large_ci": mmcs_ci, "n_large": 64, "n_small": 32,
            "seed_baselines": {"1x_vs_seed1": base}, "small": "relu_1x", "top_k": 4, "top_k_features": [1, 2, 3, 4],
            "top_k_mean_cosine": 0.9, "mean_max_activation_correlation_small_to_large": 0.6}
    path.write_text(json.dumps({"kinds": {"relu": kind}, "layer": layer, "site": "mlp_out"}))
    return path


@pytest.fixture
def features_summary(tmp_path) -> pd.DataFrame:
    """features/{reward}/summary.parquet built by the real features.summarise."""
    paths = {("base", 3): features_json(tmp_path / "b3.json", 3, [0.60, 0.66], [0.40, 0.45]),
             ("rlhf", 3): features_json(tmp_path / "r3.json", 3, [0.42, 0.50], [0.40, 0.45]),
             ("rlhf", 5): features_json(tmp_path / "r5.json", 5, [0.30, 0.35], [0.40, 0.45])}
    return summarise(paths, tmp_path / "summary.parquet")


SAE_METRICS = {  # the keys sae.fit.fit_saes writes (after metrics.finite)
    "ce_clean": 5.99, "ce_loss_score_mean": 0.52, "ce_loss_score_zero": 0.79, "ce_mean_ablation": 6.10,
    "ce_sae": 6.04, "ce_tokens": 191, "ce_zero_ablation": 6.22, "cosine": 0.89, "d_in": 32, "d_sae": 32,
    "dead_fraction": 0.0, "dense_fraction": 0.25, "dense_threshold": 0.1, "explained_variance": 0.766,
    "explained_variance_legacy_around_zero": 0.81, "final_epoch": {"epoch": 2, "l1": 1.0, "loss": 4.7, "mse": 3.5},
    "kind": "relu", "kl_sae": 0.05, "l0": 30.5, "l2_ratio": 0.9, "layer": 3, "mse": 3.3, "n_tokens": 772,
    "seed": 0, "site": "mlp_out", "size": "relu_1x", "train_seconds": 4.5, "train_tokens": 3132,
    "train_tokens_per_second": 2089.0,
}


def write_sae_metrics(root: Path, role: str, layer: int, name: str, **changes) -> Path:
    folder = root / "sae" / "utility" / role / f"layer{layer}" / name
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({**SAE_METRICS, "layer": layer, "size": name, **changes}))
    return folder / "metrics.json"


@pytest.fixture
def sae_paths(tmp_path) -> list[Path]:
    return [write_sae_metrics(tmp_path, "rlhf", 3, "relu_2x", explained_variance=0.8, d_sae=64),
            write_sae_metrics(tmp_path, "base", 3, "relu_1x"),
            write_sae_metrics(tmp_path, "base", 3, "relu_1x_seed1", seed=1),
            write_sae_metrics(tmp_path, "base", 3, "relu_2x", ce_loss_score_mean=None, ce_mean_ablation=None).parent]


def section(text: str, title: str) -> str:
    """The body of the ### section whose title starts with ``title``."""
    m = re.search(rf"^### {re.escape(title)}[^\n]*\n(.*?)(?=^###|^## |\Z)", text, re.S | re.M)
    assert m, f"no section {title!r} in:\n{text}"
    return m.group(1)


def full_results(autointerp, features_summary, sae_paths, stats, rl) -> RewardResults:
    return RewardResults(reward="utility", rl_eval=rl, rl_metrics=pd.DataFrame(
        {"step": [1, 2], "reward_mean": [0.1, 0.3], "kl_mean": [0.0, 1.5]}),
        layers={"layers": [3, 5], "ranked": [5, 3], "top_n": 2, "n_blocks": 8}, sae=sae_metrics_table(sae_paths),
        features=features_summary, autointerp=autointerp, stats=stats)


def test_summary_says_significant_when_numbers_support_it(autointerp, features_summary, sae_paths):
    text = summary_markdown("default", [full_results(autointerp, features_summary, sae_paths, scoring_stats(
        [20.0, 45.0], 0.002), eval_summary(0.18, [0.12, 0.24]))])
    rl = section(text, "RL")
    assert "Policy − base = +0.18: significant: the 95% CI excludes 0 (95% CI [0.12, 0.24])" in rl
    assert "scores higher than the base model" in rl and "Mean KL(policy ‖ base) = 1.7 nats" in rl
    assert "Training ran 2 PPO steps" in rl
    t3 = section(text, "Utility of the explanations (Table 3)")
    assert "RLHF − base = +32.8: significant: the 95% CI excludes 0 (95% CI [20, 45], p = 0.002)" in t3
    assert "not significant" not in t3 and "carry more of this measure" in t3
    assert ("base: sum of |utility| of the explanations (Table 3) = 58.1 (95% CI [50.1, 66.1]) over 50 features "
            "(2 failed)") in t3
    # Random baseline with a different feature count: compared per feature, not by CI overlap.
    assert "random features: 9 [6, 12] over 10 features. Per feature: 1.16 vs 0.9 random" in t3
    tok = section(text, "LLM-free measures: token utility")
    assert "above the random baseline (CIs do not overlap)" in tok and "p = 0.002" in tok
    assert "Blocks studied: the top 2 of 8 by parameter divergence (sum of ||Δθ||_F), highest first: 5, 3." in text


def test_summary_says_not_significant_otherwise(autointerp, features_summary, sae_paths):
    text = summary_markdown("default", [full_results(autointerp, features_summary, sae_paths, scoring_stats(
        [-5.0, 60.0], 0.3), eval_summary(0.05, [-0.02, 0.11]))])
    rl = section(text, "RL")
    assert "not significant: the 95% CI includes 0 (95% CI [-0.02, 0.11]), no effect at this size" in rl
    assert "scores higher" not in rl
    t3 = section(text, "Utility of the explanations (Table 3)")
    assert "not significant: the 95% CI includes 0 (95% CI [-5, 60], p = 0.3), no effect at this size" in t3
    assert "carry more" not in t3
    # CI excludes 0 but p is not below 0.05: still not significant.
    text = summary_markdown("r", [RewardResults("utility", stats=scoring_stats([1.0, 60.0], 0.08))])
    assert "not significant: p = 0.08 is not below 0.05" in section(text, "Utility of the explanations")


def test_summary_mmcs_and_sae_tables(autointerp, features_summary, sae_paths):
    text = summary_markdown("default", [full_results(autointerp, features_summary, sae_paths,
                                                     scoring_stats([1, 2], 0.01), eval_summary(0.1, [0.05, 0.2]))])
    mmcs = section(text, "Do the small and large dictionaries agree?")
    rows = [line for line in mmcs.splitlines() if line.startswith("| base") or line.startswith("| rlhf")]
    assert rows[0].endswith("above the noise floor (CIs do not overlap) |")
    assert rows[1].endswith("not above the noise floor (CIs overlap) |")
    assert rows[2].endswith("below the noise floor (CIs do not overlap) |")
    assert "1 of 3 (role, layer, kind) are above the noise floor" in mmcs
    sae = section(text, "SAE quality")
    assert "| base | 3 | relu_1x | 0.766 | 30.5 | 0 | 0.25 | 0.79 | 0.52 | 0.05 |" in sae
    assert "| base | 3 | relu_2x | 0.766 | 30.5 | 0 | 0.25 | 0.79 | n/a | 0.05 |" in sae
    assert "relu_1x_seed1" not in sae and "Seed replicas (1)" in sae
    auto = section(text, "Autointerp")
    assert "| base | selected (top-k matched) | 1 | 1 | 0.5 | 0.8 |" in auto
    assert "| rlhf | selected (top-k matched) | 2 | 1 | 0.7 | 0.8 |" in auto  # a null score is not averaged in
    assert "| rlhf | random baseline | 1 | 0 | -0.05 | 0.8 |" in auto
    # Model text in Markdown: escaped, pipes and backticks neutralised, no raw HTML.
    assert "Fires on \\`love\\` \\| and \\*joy\\*" in auto
    assert "&lt;/div&gt;&lt;script&gt;" in auto and "<script>" not in text
    assert "LLMError: endpoint &lt;http://x&gt; said \\`no\\` \\| retry" in auto


def test_summary_handles_missing_and_null_parts(tmp_path):
    text = summary_markdown("run|x", [RewardResults("utility"),
                                      RewardResults("sentiment", stats=scoring_stats([0, 0], 0, null=True))])
    assert text.startswith("# rlhf-lens results: run run\\|x")
    assert text.count("Not available") == 8 + 5  # every part of the first reward, all but the stats of the second
    t3 = section(text.split("## Reward: sentiment")[1], "Utility of the explanations")
    assert "n/a" in t3 and "not significant: no confidence interval could be estimated" in t3
    assert "significant: the" not in t3


def test_write_summary_from_files(tmp_path, autointerp, features_summary, sae_paths):
    rl = tmp_path / "eval_summary.json"
    rl.write_text(json.dumps(eval_summary(0.18, [0.12, 0.24])))
    layers = tmp_path / "utility_layers.json"
    layers.write_text(json.dumps({"layers": [3, 5], "ranked": [5, 3], "top_n": 2, "n_blocks": 8}))
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps(scoring_stats([20.0, 45.0], 0.002)))
    parts = []
    for (role, layer), g in autointerp.groupby(["role", "layer"]):
        parts.append(tmp_path / f"{role}{layer}.parquet")
        g.to_parquet(parts[-1], index=False)
    results = load_reward_results("utility", rl_eval=rl, layers=layers, sae_metrics=sae_paths,
                                  features=tmp_path / "summary.parquet", autointerp=parts, stats=stats)
    out = tmp_path / "run" / "summary.md"
    text = write_summary("default", [results], out)
    assert out.read_text() == text and "## Reward: utility" in text
    assert "Not available" not in text and "Training ran" not in text  # RL metrics were not given
    assert len(results.autointerp) == len(autointerp)


# ---------------------------------------------------------------- tables and plots


def test_sae_metrics_table(sae_paths, tmp_path):
    table = sae_metrics_table(sae_paths)
    assert list(zip(table["role"], table["layer"], table["sae"])) == [
        ("base", 3, "relu_1x"), ("base", 3, "relu_1x_seed1"), ("base", 3, "relu_2x"), ("rlhf", 3, "relu_2x")]
    assert set(table["reward"]) == {"utility"}
    assert table.loc[3, "explained_variance"] == 0.8 and table.loc[3, "d_sae"] == 64
    assert pd.isna(table.loc[2, "ce_loss_score_mean"]) and table.loc[1, "seed"] == 1
    bad = tmp_path / "elsewhere" / "metrics.json"
    bad.parent.mkdir()
    bad.write_text("{}")
    with pytest.raises(ValueError, match="elsewhere/metrics.json: expected a path like"):
        sae_metrics_table([bad])
    wrong = write_sae_metrics(tmp_path, "base", 7, "relu_1x")
    wrong.write_text(json.dumps({**SAE_METRICS, "layer": 2}))
    with pytest.raises(ValueError, match="metrics say layer 2 but the folder is layer7"):
        sae_metrics_table([wrong])


def test_mmcs_noise_floor_picks_the_highest_baseline(features_summary):
    df = features_summary.copy()
    df["baseline_2x_vs_seed1_mmcs"] = 0.55
    df["baseline_2x_vs_seed1_ci_low"], df["baseline_2x_vs_seed1_ci_high"] = 0.5, 0.61
    table = mmcs_vs_noise_floor(df)
    assert list(table["baseline"]) == ["2x_vs_seed1"] * 3
    assert list(table["above_noise_floor"]) == [False, False, False]  # 0.60 <= 0.61: overlap
    no_base = mmcs_vs_noise_floor(features_summary.filter(regex="^(?!baseline)"))
    assert set(no_base["verdict"]) == {"no seed baseline: cannot tell"}
    assert no_base["above_noise_floor"].isna().all()


def test_plots_write_pngs(tmp_path, features_summary):
    plot_mmcs_vs_baseline(features_summary, tmp_path / "mmcs.png")
    plot_utilities(scoring_stats([1, 2], 0.01), tmp_path / "u.png")
    plot_utilities(scoring_stats([1, 2], 0.01, null=True), tmp_path / "null.png")
    plot_utilities({}, tmp_path / "empty.png")
    # The stages' figures, drawn by their rule scripts.
    plot_divergence(pd.DataFrame({"layer": [0, 1, 2], "divergence": [0.1, 0.5, 0.2]}), [1], tmp_path / "div.png")
    rng = np.random.default_rng(0)
    plot_max_cosine_histograms([("layer 1, relu", {"1x vs 2x": rng.random(50), "1x seed vs seed1": rng.random(50)})],
                               tmp_path / "hist.png")
    plot_rl_curves(pd.DataFrame({"step": [0, 1, 2], "reward_mean": [0.1, 0.3, 0.2], "kl_mean": [0.0, 0.1, 0.2],
                                 "kl_coef": [0.05, 0.05, 0.06]}), tmp_path / "curves.png", title="PPO")
    for name in ("mmcs.png", "u.png", "null.png", "empty.png", "div.png", "hist.png", "curves.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


# ---------------------------------------------------------------- workflow.rst


def test_workflow_rst_renders_like_snakemake_report(repo_root):
    """Render as Snakemake 9's report does (jinja2 with snakemake.config, then docutils to HTML)."""
    from docutils.core import publish_parts
    from jinja2 import Environment

    from rlhf_lens.config import validate_config

    import yaml

    config = validate_config(yaml.safe_load((repo_root / "config.yaml").read_text()))

    class Snakemake:
        pass

    Snakemake.config = config
    rst = (repo_root / "report" / "workflow.rst").read_text()
    rendered = Environment(trim_blocks=True, lstrip_blocks=True).from_string(rst).render(snakemake=Snakemake)
    assert f"Run **{config['run']}**" in rendered and "reward(s) utility" in rendered
    assert "at\n   1x and 2x the model width" in rendered
    body = publish_parts(rendered, writer="html", settings_overrides={"report_level": 2, "halt_level": 5})[
        "html_body"]
    assert "system-message" not in body and "problematic" not in body
    assert "<h1" in body or "title" in body


def test_a_significant_difference_that_random_features_match_is_not_called_an_effect():
    """The statistics rule's third condition: RLHF's selected features must beat its random ones."""
    from rlhf_lens.report.summary import measure_section

    stats = scoring_stats([10.0, 50.0], 0.001)
    stats["table3"]["rlhf_vs_random"] = {"selected_minus_random_mean": 0.02, "ci": [-0.3, 0.4], "p_value": 0.8}
    stats["table3"]["effect"] = False
    text = measure_section("table3", stats)
    assert "significant: the 95% CI excludes 0" in text
    assert "Not an effect by the report's rule" in text and "no effect at this size" in text
    assert "carry more" not in text
    stats["table3"]["rlhf_vs_random"] = {"selected_minus_random_mean": 1.2, "ci": [0.8, 1.6], "p_value": 0.001}
    stats["table3"]["effect"] = True
    text = measure_section("table3", stats)
    assert "carry more of this measure" in text and "Not an effect" not in text


def test_kl_bins_are_quantiles_of_near_equal_size_in_kl_order():
    from rlhf_lens.report.plots import kl_bins

    kl = np.array([5.0, 0.1, 3.0, 0.2, 4.0, 1.0, 2.0, 0.3, 6.0, 0.4])  # 10 steps, not in KL order
    bins = kl_bins(kl)
    assert np.bincount(bins).tolist() == [4, 3, 3]  # 10 // 3 = 3 bins of at least 3 steps
    order = np.argsort(kl)
    assert (np.diff(bins[order]) >= 0).all()  # a higher KL never falls in a lower bin
    assert kl_bins(np.arange(30.0)).tolist() == [i // 6 for i in range(30)]  # 5 bins of 6
    assert kl_bins(np.array([1.0, 2.0])).tolist() == [0, 0]
