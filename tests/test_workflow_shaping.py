"""The shaping study on the tiny Llama (configs/shaping.yaml's tiny version): search trials as jobs of their
own, each scheme at each seed, and the comparison's table, figure and sentences; off by default."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from snakemake_helpers import planned_jobs, snakemake

pytestmark = pytest.mark.workflow

OUT = "results/tiny/shaping/utility"
REPO = Path(__file__).resolve().parents[1]


def tiny_config(model_dir) -> dict:
    config = yaml.safe_load((REPO / "configs" / "shaping.yaml").read_text())
    config.update({"run": "tiny", "model": {"name": "tiny", "spec": str(model_dir)}, "prompts": {"max_texts": 30},
                   "sae": {"k": 8}})  # k <= the tiny model's d_model 32, or validation refuses it
    config["rewards"] = {"utility": {"type": "utility_table", "table": "vader"}}
    config["rl"]["ppo"].update({"steps": 2, "batch_size": 4, "mini_batch_size": 2, "ppo_epochs": 1,
                                "response_min_tokens": 4, "response_max_tokens": 4, "checkpoint_every": 0})
    config["rl"]["shaping"].update({"shap_max_evals": 12, "lime_num_samples": 12})
    # one seed and two schemes keep it to 8 small jobs, two at a time (the real config has 3 seeds, 5 schemes)
    config["resources"] = {"threads": 1}
    config["rl"]["shaping"]["study"].update({"schemes": ["last_token", "bo_best"], "seeds": [0],
                                             "eval_prompts": 2, "eval_samples": 1, "bo_trials": 2, "bo_initial": 1,
                                             "bo_steps": 1, "bootstrap": 100})
    return config


@pytest.fixture(scope="module")
def shaping_run(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("workflow_shaping")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(tiny_model_dir)))
    proc = snakemake(f"{OUT}/comparison.md", "--configfile", "config.yaml", cwd=workdir, timeout=2400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def test_comparison_has_every_scheme_with_seeds_and_cis(shaping_run):
    out = shaping_run / OUT
    table = pd.read_parquet(out / "comparison.parquet")
    assert table["scheme"].tolist() == ["last_token", "bo_best"]
    assert (table["seeds"] == 1).all() and (table["prompts"] == 2).all()
    assert (table["gold_final_lo"] <= table["gold_final"]).all() and (table["gold_final"] <= table["gold_final_hi"]).all()
    # only the schemes that explain pay for reward calls
    assert table.set_index("scheme").loc["last_token", "reward_texts_per_step"] == 0
    assert table.set_index("scheme").loc["bo_best", "reward_texts_per_step"] > 0  # its weights include shap, lime
    curves = pd.read_parquet(out / "curves.parquet")
    assert sorted(curves.groupby("scheme").size().tolist()) == [2, 2]  # 1 seed x 2 steps each
    assert (out / "comparison.png").read_bytes()[:4] == b"\x89PNG"
    text = (out / "comparison.md").read_text()
    assert "**bo_best** vs last_token" in text and "Weight search" in text


def test_search_trials_are_listed_with_their_objective(shaping_run):
    out = shaping_run / OUT
    trials = pd.read_parquet(out / "bo_trials.parquet")
    assert trials["trial"].tolist() == [0, 1] and trials["value"].notna().all()
    w = trials[["w_last_token", "w_shap", "w_lime"]].to_numpy()
    assert abs(w.sum(1) - 1).max() < 1e-9
    best = json.loads((out / "bo_best.json").read_text())
    assert best["value"] == trials["value"].max()


def test_shaping_is_off_by_default(tmp_path, tiny_model_dir):
    config = {"run": "tiny", "model": {"name": "tiny", "spec": str(tiny_model_dir)}, "sae": {"k": 8}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("--configfile", "config.yaml", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not any(rule.startswith("shaping") for rule in planned_jobs(proc))
