"""Rules sarm and sarm_analysis end to end on the tiny Llama, from preference files put where rule
preferences writes them; config errors about SARM before any job."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.config import ConfigError, validate_config
from snakemake_helpers import run_config
from test_sarm import utility_pairs

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def sarm_run(tmp_path_factory, tiny_model_dir):
    workdir = tmp_path_factory.mktemp("workflow_sarm")
    (workdir / "words.csv").write_text("word,utility\ngreat,3\nawful,-3\n")
    # Pairs from a file, relabelled by the overseer and split by prompt in rule preferences (as for the plain RM).
    utility_pairs(34, seed=0).to_parquet(workdir / "pairs.parquet")
    config = {"run": "tiny", "model": {"name": "tiny", "spec": str(tiny_model_dir)}, "sae": {"k": 8},
              "rewards": {"words": {"type": "utility_table", "table": str(workdir / "words.csv")}},
              "preferences": {"source": str(workdir / "pairs.parquet"), "overseer": "words"},
              "sarm": {"enabled": True, "sae_multiple": 4, "k": 4, "sae_epochs": 5, "epochs": 5, "bootstrap": 100,
                       "analysis": {"shift_latents": 2, "recovery_min_tokens": 1, "recovery_shuffles": 50,
                                    "example_latents": 2, "bootstrap": 100}}}
    return run_config(workdir, config, "--printshellcmds", "results/tiny/reward_models/sarm/recovery.json",
                      "results/tiny/reward_models/sarm/accuracy.json")


def test_sarm_artifacts(sarm_run):
    from rlhf_lens.reward_models.sarm import load_sarm

    out = sarm_run / "results/tiny/reward_models/sarm"
    cfg = json.loads((out / "cfg.json").read_text())
    assert cfg["architecture"] == "sarm" and cfg["block"] == 0 and cfg["sae"]["d_sae"] == 4 * 32
    accuracy = json.loads((out / "accuracy.json").read_text())
    pair = accuracy["pair_accuracy"]
    heldout = pd.read_parquet(sarm_run / "results/tiny/preferences/words/heldout.parquet")
    assert pair["n_pairs"] == len(heldout) > 0 and pair["n_groups"] == heldout["group"].nunique()
    assert 0 <= pair["ci95"][0] <= pair["mean"] <= pair["ci95"][1] <= 1
    assert -1 <= accuracy["spearman"]["mean"] <= 1 and accuracy["against"] == "overseer rewards"
    # the per-pair scores are the loaded model's scores of the held-out texts
    scores = pd.read_parquet(out / "pair_scores.parquet")
    sarm = load_sarm(out)
    assert sarm.score((heldout.prompt + heldout.chosen).tolist()).numpy() == pytest.approx(
        scores.chosen_score.to_numpy(), abs=1e-5)
    # accuracy against the overseer's preference (the higher overseer reward), as for the plain RM
    c, r = scores.chosen_score.to_numpy(), scores.rejected_score.to_numpy()
    agree = (c > r) + 0.5 * (c == r)
    right = np.where(scores.chosen_reward > scores.rejected_reward, agree, 1 - agree)
    assert pair["mean"] == pytest.approx(right.mean())
    shift = pd.read_parquet(out / "shift.parquet")
    assert (shift[shift.set == "complement"].max_abs_change == 0).all()
    recovery = json.loads((out / "recovery.json").read_text())
    assert recovery["overseer"] == "words" and recovery["shuffles"] == 50
    assert set(pd.read_parquet(out / "attribution.parquet").columns) >= {"response", "latent", "contribution", "gold"}


def test_sarm_needs_the_preferences_overseer():
    with pytest.raises(ConfigError, match="key 'sarm.enabled' is true but 'preferences.overseer' is not set"):
        validate_config({"sarm": {"enabled": True}})


def test_sarm_block_beyond_the_depth_fails_at_validation(tiny_model_dir):
    with pytest.raises(ConfigError, match=r"key 'sarm.block' has value 2: the model 'tiny' has 2 blocks"):
        validate_config({"model": {"name": "tiny", "spec": str(tiny_model_dir)},
                         "preferences": {"overseer": "utility"}, "sarm": {"enabled": True, "block": 2}})
