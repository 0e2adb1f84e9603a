"""configs/r2m.yaml in small: preference pairs from a planted overseer, the plain RM, RLOO against it and against
R2M over two seeds, and the comparison's table, verdict, detection and figure, by Snakemake. (The ablation
switches are unit-tested in test_r2m.py; one more arm here would add a minute.)"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest
import yaml

from snakemake_helpers import REPO, snakemake
from test_workflow_learned_rm import planted_table

pytestmark = pytest.mark.workflow

TARGETS = ["results/tiny/r2m/comparison.md"]
ARMS = [("rloo", "rm"), ("rloo", "r2m")]


@pytest.fixture(scope="module")
def r2m_run(tmp_path_factory, tiny_model_dir, tokenizer):
    workdir = tmp_path_factory.mktemp("workflow_r2m")
    table = planted_table(tokenizer, workdir / "planted.csv")
    shipped = yaml.safe_load((REPO / "configs/r2m.yaml").read_text())
    rm = "results/tiny/reward_models/plain"
    config = {**shipped, "run": "tiny", "model": {"name": "tiny", "spec": str(tiny_model_dir)},
              "prompts": {"max_texts": 40}, "sae": {"k": 8},  # k <= d_model 32, or validation refuses it
              "rewards": {"utility": {"type": "utility_table", "table": str(table)},
                          "rm": {"type": "reward_model", "path": rm},
                          "r2m": {"type": "r2m", "path": rm, "learning_rate": 1e-2, "width": 8}},
              "preferences": {**shipped["preferences"], "prompts": 16, "samples_per_prompt": 3,
                              "heldout_fraction": 0.25},
              "plain_rm": {"epochs": 1, "learning_rate": 1e-3, "batch_size": 8, "bootstrap": 100},
              "rl": {"algorithm": "rloo", "gold": "utility",
                     "ppo": {"steps": 2, "batch_size": 4, "mini_batch_size": 4, "ppo_epochs": 1, "group_size": 2,
                             "response_min_tokens": 5, "response_max_tokens": 5},
                     "eval": {"prompts": 4, "samples_per_prompt": 2, "bootstrap": 100}},
              "r2m": {"baseline": "rm", "methods": ["r2m"], "ablations": [], "algorithms": ["rloo"],
                      "seeds": [0, 1], "bootstrap": 200}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    proc = snakemake(*TARGETS, "--configfile", "config.yaml", cwd=workdir, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"tiny R2M workflow: {time.perf_counter() - start:.1f} s")
    return workdir


def test_every_arm_logs_gold_proxy_kl_and_r2m_losses_per_step(r2m_run):
    for alg, rew in ARMS:
        for seed in (0, 1):
            out = r2m_run / f"results/tiny/r2m/{alg}/{rew}/seed{seed}"
            m = pd.read_parquet(out / "metrics.parquet")
            assert len(m) == 2 and m[["gold_reward_mean", "reward_mean", "kl_mean"]].notna().all().all()
            assert ("r2m_loss" in m) == (rew != "rm")
            s = json.loads((out / "summary.json").read_text())
            assert s["seed"] == seed and s["algorithm"] == alg and s["steps"] == 2
            assert s["gold"]["ci95"][0] <= s["gold"]["mean"] <= s["gold"]["ci95"][1]
            if rew == "rm":  # the frozen RM does not change: same accuracy before and after
                assert s["accuracy_before"]["mean"] == s["accuracy_after"]["mean"]
    assert not (r2m_run / "results/tiny/r2m/.scratch/rloo/rm/seed0/policy").exists()


def test_samples_are_scored_like_for_like_by_the_frozen_rm_and_the_overseer(r2m_run):
    from rlhf_lens.rewards import build_reward

    samples = pd.read_parquet(r2m_run / "results/tiny/r2m/rloo/r2m/seed0/samples.parquet")
    rm = build_reward("rm", {"rm": {"type": "reward_model", "path": str(r2m_run / "results/tiny/reward_models/plain")}})
    assert np.allclose(rm.score(list(samples.prompt), list(samples.response)).numpy(), samples.proxy, atol=1e-4)
    overseer = build_reward("u", {"u": {"type": "utility_table", "table": str(r2m_run / "planted.csv")}})
    assert np.allclose(overseer.score(list(samples.prompt), list(samples.response)).numpy(), samples.gold, atol=1e-5)
    assert len(samples.hidden.iloc[0]) == 32  # the tiny policy's d_model


def test_the_comparison_table_verdict_and_figure(r2m_run):
    out = r2m_run / "results/tiny/r2m"
    table = pd.read_parquet(out / "comparison.parquet")
    assert list(zip(table.algorithm, table.reward)) == ARMS and (table.seeds == 2).all()
    r2m = table[table.reward == "r2m"].iloc[0]
    samples = {rew: pd.read_parquet(out / f"rloo/{rew}/seed0/samples.parquet").gold.mean() +
               pd.read_parquet(out / f"rloo/{rew}/seed1/samples.parquet").gold.mean() for rew in ("rm", "r2m")}
    assert r2m.gold_difference == pytest.approx((samples["r2m"] - samples["rm"]) / 2)
    lo, hi = r2m.gold_difference_ci95
    assert lo <= r2m.gold_difference <= hi and 0 < r2m.gold_difference_p <= 1
    md = (out / "comparison.md").read_text()
    assert "Under RLOO, R2M (r2m)" in md and ("significant" in md)
    det = pd.read_parquet(out / "detection.parquet")
    assert len(det) == 2 and ((det.auroc.between(0, 1)) | det.auroc.isna()).all()
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"


def test_shipped_config_plans_every_arm_and_the_default_run_plans_none(tmp_path):
    proc = snakemake("results/r2m/r2m/comparison.md", "--dry-run", "--configfile", str(REPO / "configs/r2m.yaml"),
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert out.count("rule r2m_arm:") == 24 and "rule r2m_compare:" in out
    proc = snakemake("--dry-run", "--configfile", str(REPO / "config.yaml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rule r2m_" not in proc.stdout + proc.stderr and "rule rl:" in proc.stdout + proc.stderr
