"""The rl and rl_eval rules end to end on a tiny model: artifacts with the agreed layout, resume after a kill."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from snakemake_helpers import run_config, snakemake

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def rl_run(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("workflow_rl")
    config = {"run": "tiny", "model": {"name": "tiny", "spec": str(tiny_model_dir)}, "prompts": {"max_texts": 30},
              "sae": {"k": 8},  # k <= the tiny model's d_model 32, or validation refuses it
              "rl": {"ppo": {"steps": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1,
                             "response_min_tokens": 4, "response_max_tokens": 4, "checkpoint_every": 1,
                             "keep_checkpoints": True},
                     "eval": {"prompts": 3, "samples_per_prompt": 2, "bootstrap": 200}}}
    return run_config(workdir, config)


def test_rl_artifacts(rl_run):
    from transformers import AutoModelForCausalLM

    out = rl_run / "results/tiny/rl/utility"
    AutoModelForCausalLM.from_pretrained(out / "policy")  # a plain HF folder, no value head inside
    assert not any("value" in p.name for p in (out / "policy").iterdir())
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert metrics["step"].tolist() == [0, 1]
    for col in ("reward_mean", "kl_mean", "entropy", "policy_loss", "value_loss", "clip_frac", "kl_coef", "seconds"):
        assert metrics[col].notna().all(), col
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    table = pd.read_parquet(out / "eval.parquet")
    assert {"prompt", "model", "sample", "response", "reward"} <= set(table.columns)
    assert sorted(table["model"].unique()) == ["base", "policy"] and len(table) == 2 * 3 * 2
    # Every stored reward is the overseer's score of the stored response (recomputed here), and the
    # summary's difference is the policy's mean minus the base's, from the table itself.
    from rlhf_lens.rewards import build_reward

    reward = build_reward("utility", {"utility": {"type": "utility_table"}})
    recomputed = reward.score(table["prompt"].tolist(), table["response"].tolist()).tolist()
    assert table["reward"].tolist() == pytest.approx(recomputed, abs=1e-6)
    summary = json.loads((out / "eval_summary.json").read_text())
    means = table.groupby("model")["reward"].mean()
    assert summary["reward_difference"] == pytest.approx(means["policy"] - means["base"], abs=1e-9)
    # no rl.gold: the outputs carry no gold columns or keys (as before gold existed)
    assert "gold" not in table.columns and "gold_reward_mean" not in metrics.columns
    assert not any(k.startswith("gold") for k in summary)
    lo, hi = summary["reward_difference_ci95"]
    assert lo <= summary["reward_difference"] <= hi
    # The KL is estimated on the policy's samples only: their log-probs under both models are finite and
    # the summary's KL is their prompt-mean; the base's samples are not scored (NaN).
    policy, base = table[table.model == "policy"], table[table.model == "base"]
    assert policy[["logp_policy", "logp_base", "kl"]].notna().all().all()
    assert base[["logp_policy", "logp_base", "kl"]].isna().all().all()
    assert policy["kl"].tolist() == pytest.approx((policy["logp_policy"] - policy["logp_base"]).tolist())
    assert summary["kl_mean"] == pytest.approx(policy.groupby("prompt_index")["kl"].mean().mean(), abs=1e-9)
    assert (out / "checkpoints/step_000001/state.pt").is_file()


def test_rerun_after_kill_resumes_from_checkpoint(rl_run):
    out = rl_run / "results/tiny/rl/utility"
    before = pd.read_parquet(out / "metrics.parquet")
    # what Snakemake leaves after killing the job at step 2: outputs gone, checkpoints kept
    for path in ("metrics.parquet", "curves.png"):
        (out / path).unlink()
    proc = snakemake("results/tiny/rl/utility/metrics.parquet", "--configfile", "config.yaml",
                     "--rerun-triggers", "mtime", cwd=rl_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (rl_run / "logs/tiny/rl/utility.log").read_text()
    assert "resuming from checkpoint" in log
    after = pd.read_parquet(out / "metrics.parquet")
    cols = [c for c in before.columns if "seconds" not in c]
    pd.testing.assert_frame_equal(before[cols], after[cols])


def test_unknown_reward_target_is_refused(rl_run):
    proc = snakemake("results/tiny/rl/nosuch/metrics.parquet", "--configfile", "config.yaml", "--dry-run",
                     cwd=rl_run)
    assert proc.returncode != 0
    assert "nosuch" in proc.stderr + proc.stdout  # the message names the reward that is not configured


def test_default_dag_has_rl_and_rl_eval(tmp_path, repo_root):
    proc = snakemake("--configfile", str(repo_root / "config.yaml"), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "rule rl:" in out and "rule rl_eval:" in out
    assert "results/default/rl/utility/eval_summary.json" in out
