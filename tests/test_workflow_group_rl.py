"""The rl and rl_eval rules with rl.algorithm: rloo on the tiny Llama: group statistics in the metrics, no
value head, the held-out evaluation, and params that rerun the policy only for settings RLOO reads."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from snakemake_helpers import planned_jobs, snakemake

pytestmark = pytest.mark.workflow

OUT = "results/tiny/rl/utility"


@pytest.fixture(scope="module")
def rloo_run(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("workflow_rloo")
    config = {"run": "tiny", "model": {"name": "tiny", "spec": str(tiny_model_dir)}, "prompts": {"max_texts": 30},
              "sae": {"k": 8},  # k <= the tiny model's d_model 32, or validation refuses it
              "rl": {"algorithm": "rloo",
                     "ppo": {"steps": 2, "batch_size": 6, "mini_batch_size": 3, "group_size": 3, "ppo_epochs": 1,
                             "response_min_tokens": 4, "response_max_tokens": 4, "checkpoint_every": 0},
                     "eval": {"prompts": 3, "samples_per_prompt": 2, "bootstrap": 200}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    # only the rl stage (the default target would go on to activations and SAEs)
    proc = snakemake(f"{OUT}/metrics.parquet", f"{OUT}/eval_summary.json", "--configfile", "config.yaml", cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def test_rloo_metrics_have_the_group_statistics(rloo_run):
    from transformers import AutoModelForCausalLM

    out = rloo_run / OUT
    AutoModelForCausalLM.from_pretrained(out / "policy")
    metrics = pd.read_parquet(out / "metrics.parquet")
    assert metrics["step"].tolist() == [0, 1]
    for col in ("reward_mean", "kl_mean", "policy_loss", "clip_frac", "grad_norm", "group_reward_std",
                "zero_std_groups"):
        assert metrics[col].notna().all(), col
    assert metrics["value_loss"].isna().all() and metrics["value_mean"].isna().all()  # no value head
    # 6 rollouts = 2 prompts x 3 samples: the fraction of all-equal groups is 0, 1/2 or 1
    assert set(metrics["zero_std_groups"]) <= {0.0, 0.5, 1.0} and (metrics["group_reward_std"] >= 0).all()
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert "RLOO" in (rloo_run / "logs/tiny/rl/utility.log").read_text()


def test_rloo_policy_is_evaluated(rloo_run):
    out = rloo_run / OUT
    table = pd.read_parquet(out / "eval.parquet")
    assert sorted(table["model"].unique()) == ["base", "policy"] and len(table) == 2 * 3 * 2
    summary = json.loads((out / "eval_summary.json").read_text())
    lo, hi = summary["reward_difference_ci95"]
    assert lo <= summary["reward_difference"] <= hi


def _dry_run_with(workdir, tmp_path, ppo_change):
    override = tmp_path / "change.yaml"
    override.write_text(yaml.safe_dump({"rl": {"ppo": ppo_change}}))
    proc = snakemake(f"{OUT}/metrics.parquet", "--configfile", "config.yaml", str(override), "--dry-run",
                     cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return planned_jobs(proc)


def test_only_settings_rloo_reads_rerun_its_policy(rloo_run, tmp_path):
    # GAE, value-head and GRPO-only settings are not params of an RLOO run; its group size is
    assert _dry_run_with(rloo_run, tmp_path, {"vf_coef": 0.5, "lam": 0.5, "scale_rewards": "none"}) == {}
    assert _dry_run_with(rloo_run, tmp_path, {"group_size": 2}).get("rl") == 1
