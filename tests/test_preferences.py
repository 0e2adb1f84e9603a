"""Preference pairs: Bradley-Terry labels with known answers, ties dropped, held out by prompt, sampling
from a tiny model labelled by a planted overseer, and external files (good and bad)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.preferences.sample import PreferencesConfig, bt_labels, external_pairs, label_pairs, write_splits
from rlhf_lens.rewards import Reward
from rlhf_lens.preferences.table import COLUMNS, PreferenceError, check_pairs, read_external, split_by_prompt

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tau_zero_picks_the_higher_reward_with_probability_one():
    chosen_a, p, flipped = bt_labels(np.array([1.0, -2.0, 3.0]), np.array([0.0, 5.0, 2.9]), 0.0, 0.0,
                                     np.random.default_rng(0))
    assert chosen_a.tolist() == [True, False, True] and p.tolist() == [1.0, 1.0, 1.0] and not flipped.any()


def test_bradley_terry_labels_follow_sigmoid_of_the_reward_gap():
    """With tau = 1 and a gap of 1, P(a chosen) = sigmoid(1) = 0.731; the recorded p is that of the label drawn."""
    n = 40000
    chosen_a, p, _ = bt_labels(np.ones(n), np.zeros(n), 1.0, 0.0, np.random.default_rng(1))
    expected = 1 / (1 + np.exp(-1))
    assert chosen_a.mean() == pytest.approx(expected, abs=0.01)
    assert np.allclose(p[chosen_a], expected) and np.allclose(p[~chosen_a], 1 - expected)


def test_flip_rate_flips_that_fraction_of_deterministic_labels():
    n = 40000
    chosen_a, p, flipped = bt_labels(np.ones(n), np.zeros(n), 0.0, 0.2, np.random.default_rng(2))
    assert flipped.mean() == pytest.approx(0.2, abs=0.01)
    assert (chosen_a == ~flipped).all() and (p == 1.0).all()  # p is the label's probability before the flip


def test_label_pairs_drops_ties_and_identical_texts():
    prompts = ["p0", "p1"]
    responses = [[("base", " good"), ("base", " bad"), ("base", " meh")], [("base", " x"), ("base", " x")]]
    rewards = [np.array([2.0, -1.0, 2.0]), np.array([1.0, 0.0])]
    df = label_pairs(prompts, responses, rewards, PreferencesConfig(overseer="u"), seed=0)
    # p0: (good, bad) and (bad, meh) kept, (good, meh) a tie; p1: identical texts
    assert len(df) == 2 and set(df.prompt) == {"p0"}
    assert (df.chosen_reward > df.rejected_reward).all() and set(df.chosen) == {" good", " meh"}
    assert list(df.columns[:len(COLUMNS)]) == list(COLUMNS)
    assert str(df.chosen_reward.dtype) == "float64" and str(df.prompt_index.dtype) == "int64"
    assert (df.group == df.prompt_index).all()


def test_heldout_split_is_by_prompt():
    groups = np.repeat(np.arange(20), 3)
    held = split_by_prompt(groups, 0.25, seed=0)
    assert len(set(groups[held]) & set(groups[~held])) == 0
    assert len(set(groups[held])) == 5


class LetterCount(Reward):
    """reward = the number of letters e in the response."""

    name = "chars"

    def score(self, prompts, responses):
        import torch

        return torch.tensor([float(t.count("e")) for t in responses])


def test_sampled_pairs_from_a_tiny_model_are_labelled_by_the_overseer(tiny_model_dir, tmp_path):
    """Every pair's rewards are the overseer's rewards of its texts, and chosen is the higher one (tau 0)."""
    from rlhf_lens.preferences.sample import sampled_pairs
    from rlhf_lens.rl.config import ppo_config

    prompts = tmp_path / "prompts.parquet"
    pd.DataFrame({"text": [f"The film number {i} was" for i in range(6)]}).to_parquet(prompts)
    overseer = LetterCount()  # a planted overseer that separates random texts (a word table would tie them)
    ppo = ppo_config(overrides={"response_max_tokens": 8, "response_min_tokens": 8, "query_min_tokens": 4,
                                "query_max_tokens": 6})
    cfg = PreferencesConfig(overseer="chars", samples_per_prompt=3, batch_size=5)
    df = sampled_pairs({"base": tiny_model_dir}, prompts, overseer, ppo, cfg, seed=0)
    assert len(df) > 0
    assert (df.chosen.str.count("e") == df.chosen_reward).all() and (df.rejected.str.count("e") == df.rejected_reward).all()
    assert (df.chosen_reward > df.rejected_reward).all() and (df.p_chosen == 1.0).all()
    assert df.prompt_index.max() < 6 and (df.chosen_model == "base").all()
    again = sampled_pairs({"base": tiny_model_dir}, prompts, overseer, ppo, cfg, seed=0)
    pd.testing.assert_frame_equal(df, again)  # seeded


def test_external_file_keeps_its_labels_and_groups_by_prompt(tmp_path):
    path = tmp_path / "prefs.jsonl"
    pd.DataFrame({"prompt": ["a", "a", "b"], "chosen": [" good", " fine", " nice"],
                  "rejected": [" bad", " awful", " poor"]}).to_json(path, orient="records", lines=True)
    df = external_pairs(PreferencesConfig(source=str(path)), overseer=None)
    assert df.group.tolist() == [0, 0, 1] and df.chosen.tolist() == [" good", " fine", " nice"]
    assert df.chosen_reward.isna().all() and (df.p_chosen == 1.0).all()
    train, held = write_splits(df, tmp_path / "t.parquet", tmp_path / "h.parquet", 0.5, seed=0)
    assert set(train.group).isdisjoint(held.group) and len(train) + len(held) == 3


@pytest.mark.parametrize("frame,message", [
    (pd.DataFrame({"chosen": ["a"]}), "missing column.*rejected"),
    (pd.DataFrame({"chosen": [], "rejected": []}), "holds no preference pairs"),
    (pd.DataFrame({"chosen": ["a", "same"], "rejected": ["b", "same"]}), "1 pair.*chosen identical to rejected.*row 1"),
])
def test_bad_external_files_fail_naming_file_and_expectation(tmp_path, frame, message):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(PreferenceError, match=message) as err:
        read_external(str(path))
    assert "preferences.source" in str(err.value) and "bad.csv" in str(err.value)


def test_check_pairs_names_the_source():
    with pytest.raises(PreferenceError, match="my file.*missing column"):
        check_pairs(pd.DataFrame({"chosen": ["a"], "rejected": ["b"]}), "my file")
