"""configs/learned_rm.yaml in small, by `rule all`: preference pairs from a planted overseer, the plain reward
model and SARM with their held-out accuracy side by side, SARM's read-off and its latents explained, PPO against
each with the overseer as gold, the gold-vs-proxy figures and the reward-model report page; no interpretation
chain (interpret_rewards: [])."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from snakemake_helpers import REPO, snakemake

pytestmark = pytest.mark.workflow

TARGETS = []  # rule all, as the shipped config is run


def planted_table(tokenizer, path):
    """A word,utility CSV over the tokenizer's whole-word tokens with seeded utilities in [-2, 2]: a tiny random
    model's responses are random tokens, which VADER would score 0 (all ties); this overseer separates them."""
    from rlhf_lens.rewards.utility_table import words_with_spans

    vocab = {w for t in tokenizer.get_vocab() for w, _ in words_with_spans(tokenizer.convert_tokens_to_string([t]))}
    vocab = sorted(w for w in vocab if w.isalpha() and "," not in w)
    rng = np.random.default_rng(0)
    pd.DataFrame({"word": vocab, "utility": np.round(rng.uniform(-2, 2, len(vocab)), 2)}).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def learned_run(tmp_path_factory, tiny_model_dir, tokenizer):
    workdir = tmp_path_factory.mktemp("workflow_learned_rm")
    table = planted_table(tokenizer, workdir / "planted.csv")
    shipped = yaml.safe_load((REPO / "configs/learned_rm.yaml").read_text())
    config = {**shipped, "run": "tiny", "model": {"name": "tiny", "spec": str(tiny_model_dir)},
              "prompts": {"max_texts": 40}, "sae": {"k": 8},  # k <= d_model 32, or validation refuses it
              "rewards": {"utility": {"type": "utility_table", "table": str(table)},
                          "rm": {"type": "reward_model", "path": "results/tiny/reward_models/plain"},
                          "sarm": {"type": "reward_model", "path": "results/tiny/reward_models/sarm"}},
              # PPO against both learned RMs (the shipped config trains SARM's policy only)
              "train_rewards": ["rm", "sarm"],
              "preferences": {**shipped["preferences"], "prompts": 20, "samples_per_prompt": 3,
                              "heldout_fraction": 0.25},
              "plain_rm": {"epochs": 1, "learning_rate": 1e-3, "batch_size": 8, "bootstrap": 200,
                           "checkpoint_every": 2},
              "sarm": {**shipped["sarm"], "enabled": True, "sae_multiple": 2, "k": 4, "sae_epochs": 3, "epochs": 5, "bootstrap": 100,
                       "analysis": {"shift_latents": 2, "recovery_min_tokens": 1, "recovery_shuffles": 50,
                                    "example_latents": 2, "bootstrap": 100}},
              "autointerp": {"explain_max_tokens": 12, "cache_dir": "llm_cache"},
              "rl": {"gold": "utility",
                     "ppo": {"steps": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1,
                             "response_min_tokens": 6, "response_max_tokens": 6},
                     "eval": {"prompts": 3, "samples_per_prompt": 2, "bootstrap": 200}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    # targets first (--configfile takes a list); rule all is ~18 short jobs, so allow for a loaded machine
    proc = snakemake(*TARGETS, "--configfile", "config.yaml", cwd=workdir, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"tiny learned-RM workflow: {time.perf_counter() - start:.1f} s")
    return workdir


def _overseer(workdir):
    from rlhf_lens.rewards.utility_table import UtilityTableReward, load_table

    return UtilityTableReward(load_table(str(workdir / "planted.csv")), name="utility")


def test_preference_pairs_are_the_overseers_labels_held_out_by_prompt(learned_run):
    from rlhf_lens.preferences.table import COLUMNS

    out = learned_run / "results/tiny/preferences/utility"
    train, held = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "heldout.parquet")
    assert list(train.columns[:len(COLUMNS)]) == list(COLUMNS) and len(train) > 0 and len(held) > 0
    assert set(train.group).isdisjoint(held.group)
    both = pd.concat([train, held])
    overseer = _overseer(learned_run)
    assert np.allclose(overseer.score(list(both.prompt), list(both.chosen)).numpy(), both.chosen_reward, atol=1e-5)
    assert (both.chosen_reward > both.rejected_reward).all() and (both.p_chosen == 1.0).all()  # tau 0


def test_reward_model_accuracy_is_a_valid_estimate_on_the_heldout_pairs(learned_run):
    rm = learned_run / "results/tiny/reward_models/plain"
    assert json.loads((rm / "config.json").read_text())["architectures"] == ["LlamaForSequenceClassification"]
    acc = json.loads((rm / "accuracy.json").read_text())
    held = pd.read_parquet(learned_run / "results/tiny/preferences/utility/heldout.parquet")
    for key in ("pair_accuracy", "label_accuracy"):
        lo, hi = acc[key]["ci95"]
        assert 0 <= lo <= acc[key]["mean"] <= hi <= 1
    rho = acc["spearman"]
    assert -1 <= rho["ci95"][0] <= rho["mean"] <= rho["ci95"][1] <= 1
    assert acc["n_pairs"] == len(held) and acc["n_groups"] == held.group.nunique()
    scores = pd.read_parquet(rm / "pair_scores.parquet")
    assert scores.correct.mean() == pytest.approx(acc["pair_accuracy"]["mean"])


def test_rl_against_the_reward_model_logs_and_evaluates_the_gold_reward(learned_run):
    from rlhf_lens.rewards import build_reward

    out = learned_run / "results/tiny/rl/rm"
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert metrics.gold_reward_mean.notna().all() and len(metrics) == 2
    table = pd.read_parquet(out / "eval.parquet")
    # gold = the overseer's reward of the saved responses, proxy = the reward model's
    overseer = _overseer(learned_run)
    assert np.allclose(overseer.score(list(table.prompt), list(table.response)).numpy(), table.gold, atol=1e-5)
    rm = build_reward("rm", {"rm": {"type": "reward_model",
                                    "path": str(learned_run / "results/tiny/reward_models/plain")}})
    assert np.allclose(rm.score(list(table.prompt), list(table.response)).numpy(), table.reward, atol=1e-4)
    summary = json.loads((out / "eval_summary.json").read_text())
    assert summary["gold"] == "utility" and summary["reward"] == "rm"
    per_prompt = table.pivot_table(index="prompt_index", columns="model", values="gold", aggfunc="mean")
    assert summary["gold_difference"] == pytest.approx((per_prompt.policy - per_prompt.base).mean())
    lo, hi = summary["gold_difference_ci95"]
    assert lo <= summary["gold_difference"] <= hi
    assert (out / "gold_vs_proxy.png").read_bytes()[:4] == b"\x89PNG"


def test_sarm_next_to_the_plain_rm_and_read_off_in_the_report(learned_run):
    from rlhf_lens.reward_models.sarm_autointerp import OUTPUT_COLUMNS

    rms = learned_run / "results/tiny/reward_models"
    comparison = pd.read_parquet(rms / "comparison.parquet").set_index("model")
    assert list(comparison.index) == ["plain", "sarm", "sarm - plain"]
    for name in ("plain", "sarm"):  # each row is that model's accuracy.json
        acc = json.loads((rms / name / "accuracy.json").read_text())
        assert comparison.loc[name, "pair_accuracy"] == pytest.approx(acc["pair_accuracy"]["mean"])
    assert comparison.loc["sarm - plain", "pair_accuracy"] == pytest.approx(
        comparison.loc["sarm", "pair_accuracy"] - comparison.loc["plain", "pair_accuracy"])
    explained = pd.read_parquet(rms / "sarm/autointerp.parquet")
    examples = pd.read_parquet(rms / "sarm/examples.parquet")
    assert list(explained.columns) == OUTPUT_COLUMNS and explained.feature.tolist() == examples.feature.tolist()
    page = (learned_run / "results/tiny/report/reward_models.md").read_text()
    for heading in ("Against the overseer", "reward-carrying latents", "Preference shift", "Overseer recovery",
                    "Over-optimisation"):
        assert heading in page
    assert "sarm - plain" in page and "../rl/sarm/gold_vs_proxy.png" in page
    assert (learned_run / "results/tiny/rl/sarm/gold_vs_proxy.png").is_file()
    # interpret_rewards: [] leaves the interpretation chain out of rule all
    assert not (learned_run / "results/tiny/features").exists()


def test_rerun_has_nothing_to_do(learned_run):
    proc = snakemake(*TARGETS, "--dry-run", "--configfile", "config.yaml", cwd=learned_run)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout[-2000:]


def test_shipped_config_plans_both_rms_and_rl_against_sarm_without_interpretation(tmp_path):
    from snakemake_helpers import planned_jobs

    proc = snakemake("--dry-run", "--configfile", str(REPO / "configs/learned_rm.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc)
    for rule in ("preferences", "plain_rm", "sarm", "sarm_analysis", "sarm_autointerp", "rm_comparison",
                 "reward_model_report"):
        assert jobs.get(rule) == 1, rule
    assert jobs["rl"] == jobs["rl_eval"] == jobs["gold_vs_proxy"] == 1  # SARM (train_rewards)
    assert not {"activations", "sae", "features", "autointerp", "scoring"} & set(jobs)
