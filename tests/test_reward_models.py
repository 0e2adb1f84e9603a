"""The plain reward model and its accuracy: metrics with known answers, a planted overseer a tiny model can
learn, resume after a kill, the reward_model reward type, and bad input refused at config validation."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.config import ConfigError, validate_config
from rlhf_lens.preferences.table import as_pairs
from rlhf_lens.reward_models.accuracy import accuracy_report, pair_accuracy, spearman_ci

pytestmark = pytest.mark.usefixtures("one_thread")

UTILITY = {"good": 2.0, "great": 3.0, "bad": -2.0, "awful": -3.0}
FILLER = "the movie was seen by people on a day and it had some long scenes with music".split()


def utility(text: str) -> float:
    return sum(UTILITY.get(w, 0.0) for w in text.split())


def planted_pairs(n_prompts: int, seed: int = 0) -> pd.DataFrame:
    """Pairs of filler responses, most with one sentiment word, labelled by the utility table (tau 0)."""
    rng = np.random.default_rng(seed)

    def response():
        words = list(rng.choice(FILLER, 6))
        if rng.random() < 0.8:
            words.insert(int(rng.integers(0, 7)), str(rng.choice(list(UTILITY))))
        return " " + " ".join(words)

    rows = []
    for p in range(n_prompts):
        for _ in range(3):
            a, b = response(), response()
            if a == b or utility(a) == utility(b):
                continue
            c, r = (a, b) if utility(a) > utility(b) else (b, a)
            rows.append({"prompt": f"Review {p}:", "chosen": c, "rejected": r, "chosen_reward": utility(c),
                         "rejected_reward": utility(r), "p_chosen": 1.0, "prompt_index": p, "group": p})
    return as_pairs(pd.DataFrame(rows))


# --------------------------------------------------------------------------- metrics, known answers


def test_a_scorer_equal_to_the_overseer_is_perfect_and_a_reversed_one_is_perfectly_wrong():
    pairs = planted_pairs(30)
    exact, table = accuracy_report(lambda p, r: [utility(t) for t in r], pairs, n_boot=200)
    assert exact["pair_accuracy"]["mean"] == 1.0 and exact["pair_accuracy"]["ci95"] == [1.0, 1.0]
    assert exact["spearman"]["mean"] == pytest.approx(1.0) and exact["beats_chance"]
    assert (table.correct == 1.0).all()
    reverse, _ = accuracy_report(lambda p, r: [-utility(t) for t in r], pairs, n_boot=200)
    assert reverse["pair_accuracy"]["mean"] == 0.0 and reverse["spearman"]["mean"] == pytest.approx(-1.0)
    assert not reverse["beats_chance"]


def test_constant_scorer_is_at_chance_and_ties_count_half():
    acc = pair_accuracy(np.zeros(10), np.zeros(10), np.arange(10), n_boot=200)
    assert acc["mean"] == 0.5


def test_accuracy_against_the_overseer_differs_from_accuracy_against_flipped_labels():
    """A flipped label (chosen worse by the overseer) counts against the file's labels, not the overseer's."""
    pairs = planted_pairs(20)
    flipped = pairs.copy()
    k = len(pairs) // 4
    flipped.loc[:k - 1, ["chosen", "rejected"]] = pairs.loc[:k - 1, ["rejected", "chosen"]].to_numpy()
    flipped.loc[:k - 1, ["chosen_reward", "rejected_reward"]] = pairs.loc[:k - 1, ["rejected_reward",
                                                                                 "chosen_reward"]].to_numpy()
    summary, _ = accuracy_report(lambda p, r: [utility(t) for t in r], flipped, n_boot=200)
    assert summary["pair_accuracy"]["mean"] == 1.0
    assert summary["label_accuracy"]["mean"] == pytest.approx(1 - k / len(pairs))


def test_bootstrap_resamples_prompt_groups_not_pairs():
    """Two groups, one all right and one all wrong: a group bootstrap can only draw 0, 1/2 or 1 (weighted
    by pair counts), so its 95% interval reaches the extremes; a pair bootstrap's would be narrow."""
    groups = np.repeat([0, 1], 50)
    chosen = np.where(groups == 0, 1.0, -1.0)
    acc = pair_accuracy(chosen, np.zeros(100), groups, n_boot=2000, seed=0)
    assert acc["mean"] == 0.5 and acc["ci95"] == [0.0, 1.0]
    rho = spearman_ci(np.arange(10.0), np.arange(10.0), np.zeros(10), n_boot=100)
    assert rho["mean"] == pytest.approx(1.0) and rho["n_groups"] == 1


# --------------------------------------------------------------------------- training on a planted overseer


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tiny_model_dir):
    from rlhf_lens.reward_models.plain import PlainRMConfig, train_plain_rm

    root = tmp_path_factory.mktemp("planted_rm")
    pairs = planted_pairs(120)
    pairs[pairs.group < 90].to_parquet(root / "train.parquet")
    pairs[pairs.group >= 90].to_parquet(root / "heldout.parquet")
    cfg = PlainRMConfig(epochs=3, learning_rate=2e-3, batch_size=16, bootstrap=500, checkpoint_every=4)
    summary = train_plain_rm(tiny_model_dir, root / "train.parquet", cfg, out_dir=root / "rm",
                             checkpoint_dir=root / "ckpt", heldout_path=root / "heldout.parquet")
    return root, cfg, summary


def test_plain_rm_learns_a_planted_overseer_beyond_chance(planted):
    """A tiny random Llama learns which four words carry utility: held-out accuracy's CI excludes 0.5."""
    root, _, summary = planted
    acc = summary["pair_accuracy"]
    assert acc["mean"] > 0.7 and acc["ci95"][0] > 0.5 and summary["beats_chance"]
    assert summary["spearman"]["mean"] > 0.5 and summary["spearman"]["ci95"][0] > 0
    on_disk = json.loads((root / "rm/accuracy.json").read_text())
    assert on_disk["pair_accuracy"] == acc
    table = pd.read_parquet(root / "rm/pair_scores.parquet")
    assert table.correct.mean() == pytest.approx(acc["mean"])
    assert not (root / "ckpt").exists()  # checkpoints removed after success


def test_the_saved_folder_is_a_reward_model_that_the_reward_type_loads(planted):
    from transformers import AutoModelForSequenceClassification

    from rlhf_lens.rewards import build_reward

    root, _, _ = planted
    model = AutoModelForSequenceClassification.from_pretrained(root / "rm")
    assert model.config.num_labels == 1
    reward = build_reward("rm", {"rm": {"type": "reward_model", "path": str(root / "rm")}})
    table = pd.read_parquet(root / "rm/pair_scores.parquet")
    scores = reward.score(list(table.prompt), list(table.chosen)).numpy()
    assert np.allclose(scores, table.chosen_score, atol=1e-5)
    # prompt + response: the same response after another prompt scores differently in general
    assert reward.texts(["P:"], [" good"]) == ["P: good" + reward.tokenizer.eos_token]


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_one_does(planted, tmp_path,
                                                                                          tiny_model_dir, caplog,
                                                                                          capsys):
    from transformers import TrainerCallback

    from rlhf_lens.reward_models.plain import train_plain_rm

    root, cfg, _ = planted

    class Kill(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise KeyboardInterrupt("killed")

    common = {"checkpoint_dir": tmp_path / "ckpt", "heldout_path": root / "heldout.parquet"}
    with pytest.raises(KeyboardInterrupt):
        train_plain_rm(tiny_model_dir, root / "train.parquet", cfg, out_dir=tmp_path / "rm", callbacks=[Kill()],
                       **common)
    assert (tmp_path / "ckpt/checkpoint-4").is_dir() and not (tmp_path / "rm").exists()
    with caplog.at_level("INFO"):
        summary = train_plain_rm(tiny_model_dir, root / "train.parquet", cfg, out_dir=tmp_path / "rm", **common)
    assert "resuming from checkpoint" in caplog.text
    # the training's progress goes to the job's log (step of total, loss), not to the scheduler's stdout
    assert re.search(r"step \d+/\d+: .*'loss'", caplog.text) and "'loss'" not in capsys.readouterr().out
    resumed = pd.read_parquet(tmp_path / "rm/pair_scores.parquet")
    straight = pd.read_parquet(root / "rm/pair_scores.parquet")
    assert np.allclose(resumed.chosen_score, straight.chosen_score, atol=1e-4)
    assert summary["pair_accuracy"]["mean"] == pytest.approx(
        json.loads((root / "rm/accuracy.json").read_text())["pair_accuracy"]["mean"])


# --------------------------------------------------------------------------- bad input, before any job


def _config(tmp_path, **sections):
    base = {"rewards": {"utility": {"type": "utility_table"}}}
    base.update(sections)
    return base


def test_an_overseer_that_is_not_a_reward_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'preferences.overseer' names reward 'judge', which is not configured: "
                                          "expected one of utility"):
        validate_config(_config(tmp_path, preferences={"overseer": "judge"}))
    with pytest.raises(ConfigError, match="'rl.gold' names reward 'judge'"):
        validate_config(_config(tmp_path, rl={"gold": "judge"}))


def test_a_reward_model_folder_of_the_wrong_architecture_is_refused(tiny_model_dir, tmp_path):
    """A causal LM is not a reward model: the message names the key, the folder and what it must hold."""
    cfg = _config(tmp_path)
    cfg["rewards"]["rm"] = {"type": "reward_model", "path": str(tiny_model_dir)}
    with pytest.raises(ConfigError, match=r"'rewards.rm.path'.*LlamaForCausalLM.*ForSequenceClassification") as err:
        validate_config(cfg)
    assert str(tiny_model_dir) in str(err.value)
    cfg["rewards"]["rm"]["path"] = str(tmp_path)  # a folder with neither config.json nor cfg.json
    with pytest.raises(ConfigError, match="neither config.json nor cfg.json"):
        validate_config(cfg)


def test_a_reward_model_path_this_run_does_not_build_is_refused(tmp_path):
    cfg = _config(tmp_path)
    cfg["rewards"]["rm"] = {"type": "reward_model", "path": "results/default/reward_models/plain"}
    with pytest.raises(ConfigError, match="preferences.overseer is not set"):
        validate_config(cfg)
    cfg["preferences"] = {"overseer": "utility"}
    validate_config(cfg)  # now the run builds it
    cfg["rewards"]["rm"]["path"] = "results/other_run/reward_models/plain"
    with pytest.raises(ConfigError, match="does not exist and this run does not build it"):
        validate_config(cfg)


@pytest.mark.parametrize("frame,message", [
    (pd.DataFrame({"prompt": ["a"], "chosen": ["x"]}), "missing column.*rejected"),
    (pd.DataFrame({"chosen": [], "rejected": []}), "no preference pairs"),
    (pd.DataFrame({"chosen": ["x"], "rejected": ["x"]}), "chosen identical to rejected"),
])
def test_a_bad_preference_file_is_refused_at_validation(tmp_path, frame, message):
    path = tmp_path / "prefs.parquet"
    frame.to_parquet(path)
    with pytest.raises(ConfigError, match=message) as err:
        validate_config(_config(tmp_path, preferences={"source": str(path)}))
    assert "preferences.source" in str(err.value) and str(path) in str(err.value)


def test_sample_from_must_name_base_or_a_reward(tmp_path):
    with pytest.raises(ConfigError, match="'preferences.sample_from' names 'policy'"):
        validate_config(_config(tmp_path, preferences={"overseer": "utility", "sample_from": ["base", "policy"]}))
