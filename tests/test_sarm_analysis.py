"""SARM read-off on planted cases: attribution sums to the reward, the preference shift moves the target set
and not its complement, overseer recovery finds a planted weight-utility relation and its shuffled baseline
does not; the whole stage on a tiny SARM."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.reward_models.sarm_analysis import (SARMAnalysisConfig, attribution_table, feature_examples,
                                                   overseer_recovery, preference_shift, sarm_analysis_stage)

pytestmark = pytest.mark.usefixtures("one_thread")


def sparse_latents(n: int, m: int, rng, p: float = 0.3) -> np.ndarray:
    return rng.uniform(0.5, 2.0, (n, m)) * (rng.random((n, m)) < p)


def test_attribution_lists_the_largest_terms_and_they_sum_to_the_reward():
    z = np.array([[0.0, 2.0, 1.0, 0.0], [3.0, 0.0, 0.0, 1.0]])
    w = np.array([1.0, -0.5, 4.0, 0.1])
    meta = pd.DataFrame({"response": [0, 1], "group": [7, 8]})
    t = attribution_table(z, w, meta, top_n=2)
    first = t[t.response == 0].sort_values("rank")
    assert first.latent.tolist() == [2, 1] and first.contribution.tolist() == [4.0, -1.0]
    assert first.reward.iloc[0] == pytest.approx(3.0) and first.rest.iloc[0] == pytest.approx(0.0)
    second = t[t.response == 1].sort_values("rank")
    assert second.latent.tolist() == [0, 3] and second.group.tolist() == [8, 8]
    assert (t.groupby("response").contribution.sum() + t.groupby("response").rest.first()).tolist() == \
        pytest.approx((z * w).sum(1).tolist())


def test_preference_shift_moves_the_target_set_and_not_its_complement():
    rng = np.random.default_rng(0)
    z = sparse_latents(400, 6, rng)
    w = np.array([1.5, -0.4, 0.3, 0.0, 0.8, -1.0])
    groups = np.repeat(np.arange(100), 4)
    t = preference_shift(z, w, groups, [0, 5], [0.0, 2.0], n_boot=500)
    for latent in (0, 5):
        fires = z[:, latent] > 0
        for alpha in (0.0, 2.0):
            target = t[(t.latent == latent) & (t.alpha == alpha) & (t.set == "target")].iloc[0]
            complement = t[(t.latent == latent) & (t.alpha == alpha) & (t.set == "complement")].iloc[0]
            # Known answer: the change is (alpha - 1) w_i z_i on the target, nothing elsewhere.
            expected = pd.Series((alpha - 1) * w[latent] * z[fires, latent]).groupby(groups[fires]).mean().mean()
            assert target.mean_change == pytest.approx(expected)
            assert target.n_responses == fires.sum() and complement.n_responses == (~fires).sum()
            assert target.ci_lo > 0 or target.ci_hi < 0  # the target moves, with a CI excluding 0
            assert complement.mean_change == 0 and complement.max_abs_change == 0
            assert complement.ci_lo == 0 and complement.ci_hi == 0


def test_preference_shift_reports_the_pair_accuracy_it_changes():
    z = np.array([[1.0, 0.0], [0.0, 1.0]])
    w = np.array([1.0, 0.5])
    t = preference_shift(z, w, np.array([0, 0]), [0], [0.0], pairs=(np.array([0]), np.array([1])), n_boot=0)
    assert t.accuracy_before.iloc[0] == 1.0 and t.accuracy_after.iloc[0] == 0.0  # removing latent 0 flips the pair


def planted_tokens(n_texts: int, m: int, utility_of_latent: np.ndarray, rng):
    """Texts of 20 tokens; each token fires 2 random latents and its utility is the mean planted
    utility of the latents it fires, plus noise."""
    lat, util = [], []
    for _ in range(n_texts):
        z = np.zeros((20, m))
        u = np.zeros(20)
        for t in range(20):
            on = rng.choice(m, 2, replace=False)
            z[t, on] = rng.uniform(0.5, 2, 2)
            u[t] = utility_of_latent[on].mean() + rng.normal(0, 0.3)
        lat.append(z)
        util.append(u)
    return lat, util


def test_overseer_recovery_finds_the_planted_relation_and_the_shuffled_baseline_does_not():
    rng = np.random.default_rng(1)
    m = 40
    utility = rng.normal(0, 2, m)
    lat, util = planted_tokens(60, m, utility, rng)
    weights = utility + rng.normal(0, 0.5, m)  # the RM learned the utility table, with some noise
    result = overseer_recovery(weights, lat, util, min_tokens=5, n_shuffles=500, seed=0)
    assert result["n_latents_used"] == m
    assert result["spearman"] > 0.8
    assert abs(result["baseline_mean"]) < 0.05
    assert result["baseline_ci95"][0] < 0 < result["baseline_ci95"][1] and result["baseline_ci95"][1] < 0.5
    assert result["p_value"] == pytest.approx(1 / 501)
    # Weights unrelated to the utilities: no recovery, a large p-value.
    unrelated = overseer_recovery(rng.normal(size=m), lat, util, min_tokens=5, n_shuffles=500, seed=0)
    assert abs(unrelated["spearman"]) < 0.4 and unrelated["p_value"] > 0.05


def test_recovery_leaves_out_latents_that_rarely_fire():
    lat = [np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 1.0, 0.0]])]
    result = overseer_recovery(np.array([1.0, 2.0, 3.0]), lat, [np.array([1.0, 2.0, 3.0])], min_tokens=1,
                               n_shuffles=10)
    assert [r["latent"] for r in result["latents"]] == [0, 1]
    assert [r["mean_utility"] for r in result["latents"]] == [2.0, 2.5]
    assert result["spearman"] is None and "fewer than 3" in result["reason"]


def test_the_stage_on_a_tiny_sarm(tiny_model_dir, tmp_path):
    from test_sarm import WORDS, utility_pairs

    from rlhf_lens.reward_models.sarm import SARMConfig, save_sarm, train_sarm
    from rlhf_lens.rewards import UtilityTableReward

    train, heldout = utility_pairs(16, seed=0), utility_pairs(8, seed=1)
    train.to_parquet(tmp_path / "train.parquet")
    heldout.to_parquet(tmp_path / "heldout.parquet")
    sarm = train_sarm(tiny_model_dir, train, SARMConfig(sae_multiple=4, k=4, sae_epochs=5, epochs=5), seed=0)
    save_sarm(sarm, tmp_path / "sarm")
    out = {k: tmp_path / f"{k}.{ext}" for k, ext in
           (("attribution", "parquet"), ("shift", "parquet"), ("recovery", "json"), ("examples", "parquet"))}
    overseer = UtilityTableReward(dict(WORDS), name="words")
    sarm_analysis_stage(tmp_path / "sarm", tmp_path / "train.parquet", tmp_path / "heldout.parquet", overseer,
                        SARMAnalysisConfig(shift_latents=2, example_latents=3, recovery_min_tokens=1,
                                           recovery_shuffles=50, bootstrap=50),
                        out_attribution=out["attribution"], out_shift=out["shift"], out_recovery=out["recovery"],
                        out_examples=out["examples"])
    attribution = pd.read_parquet(out["attribution"])
    texts = list(dict.fromkeys((heldout.prompt + heldout.chosen).tolist() + (heldout.prompt + heldout.rejected).tolist()))
    scores = sarm.score(texts).numpy()
    assert attribution.response.nunique() == len(texts)
    total = attribution.groupby("response").contribution.sum() + attribution.groupby("response").rest.first()
    assert np.allclose(total.to_numpy(), scores, atol=1e-5)
    # the gold column is the overseer's reward of the response
    assert set(attribution.gold.round(6)) <= set(np.round(np.r_[heldout.chosen_reward, heldout.rejected_reward], 6))
    shift = pd.read_parquet(out["shift"])
    assert (shift[shift.set == "complement"].max_abs_change == 0).all()  # TopK head: silent latents add nothing
    recovery = json.loads(out["recovery"].read_text())
    assert recovery["overseer"] == "words" and recovery["n_tokens"] > 0
    # tokens' utilities: only "great"/"awful" carry any, so the used latents' means lie within +-3/5 (float32)
    assert all(abs(r["mean_utility"]) <= 0.6 + 1e-6 for r in recovery["latents"])
    # and some latent fires on the planted word's tokens alone (its mean is the word's 3/5): with TopK taken over
    # the positions instead of each position's latents, none did
    assert any(abs(r["mean_utility"]) > 0.6 - 1e-6 for r in recovery["latents"])
    examples = pd.read_parquet(out["examples"])
    assert len(examples) == min(3, int((sarm.weight != 0).sum()))
    records = [feature_examples(examples.iloc[i]) for i in range(len(examples))]
    assert [r.feature for r in records] == examples.feature.tolist()
    # a latent that fires on too few tokens is marked rare and may have no explain windows; the others have them
    assert all(r.explain for r in records if not r.rare) and any(r.explain for r in records)
    assert all(len(w.tokens) == len(w.activations) for r in records for w in r.explain)
