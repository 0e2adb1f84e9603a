"""Planted utility tables: the secret table nobody can guess and the shuffled-VADER null, drawn with the run's
seed, materialised before RL, and the one table every later stage reads."""

from __future__ import annotations

from collections import Counter
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest
import yaml
from scipy.stats import spearmanr
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from rlhf_lens.config import ConfigError, job_rewards, reward_params, validate_config
from rlhf_lens.model_parts import token_texts
from rlhf_lens.rewards import RewardError
from rlhf_lens.rewards.planted_tables import (MIN_PROMPTS, balanced_shuffle, min_prompts, resolved_table,
                                              secret_candidates, secret_table, shuffled_vader, table_file,
                                              table_path, vocabulary_words, write_table_csv, written_correlation)
from rlhf_lens.rewards.utility_table import load_csv_table, load_table, load_vader, words_with_spans
from snakemake_helpers import REPO, planned_jobs, snakemake

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def vader():
    return load_vader()


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return vocabulary_words(token_texts(tokenizer))


@pytest.fixture(scope="module")
def corpus_words():
    """word -> number of built-in prompts that contain it: a realistic pool of words written for many prompts."""
    text = resources.files("rlhf_lens.data").joinpath("builtin_reviews.txt").read_text()
    return Counter(w for line in text.splitlines() for w in {w for w, _ in words_with_spans(line)})


# --------------------------------------------------------------------------- vader_shuffled


def test_shuffled_vader_has_vaders_words_and_values_on_other_words(vader):
    shuffled = shuffled_vader(0)
    assert set(shuffled) == set(vader)
    assert sorted(shuffled.values()) == sorted(vader.values())  # the same multiset: same scale, same distribution
    moved = sum(shuffled[w] != vader[w] for w in vader) / len(vader)
    assert moved > 0.9
    words = sorted(vader)
    rho = spearmanr([vader[w] for w in words], [shuffled[w] for w in words]).statistic
    assert abs(rho) < 0.05  # the null: its values say nothing about VADER's
    assert shuffled_vader(0) == shuffled
    assert shuffled_vader(1) != shuffled


def test_written_correlation_on_known_answers():
    vader = {"good": 2.0, "bad": -2.0, "fine": 1.0, "unwritten": 3.0}
    written = {"good": 3, "bad": 1, "fine": 2, "the": 9}  # "the" is no lexicon word: left out
    assert written_correlation(vader, vader, written) == pytest.approx(1.0)
    assert written_correlation({w: -v for w, v in vader.items()}, vader, written) == pytest.approx(-1.0)
    # by hand: weights 3, 1, 2 on x = (2, -2, 1), y = (1, 0, 0); weighted means 5/6 and 1/2
    x, y, w = [2, -2, 1], [1, 0, 0], [3, 1, 2]
    mx, my = sum(a * b for a, b in zip(w, x)) / 6, sum(a * b for a, b in zip(w, y)) / 6
    cov = sum(c * (a - mx) * (b - my) for a, b, c in zip(x, y, w))
    var_x, var_y = (sum(c * (a - m) ** 2 for a, c in zip(v, w)) for v, m in ((x, mx), (y, my)))
    table = {"good": 1.0, "bad": 0.0, "fine": 0.0}
    assert written_correlation(table, vader, written) == pytest.approx(cov / (var_x * var_y) ** 0.5)
    assert written_correlation(table, vader, {"good": 4}) == 0.0  # one word: no correlation to speak of


def test_balanced_shuffle_is_a_null_on_the_words_the_model_writes(vader, corpus_words):
    """A plain permutation is a null over the lexicon but not always over the few words a policy writes; the
    balanced one is, for every seed, and is still a permutation of VADER's values."""
    plain = [abs(written_correlation(shuffled_vader(seed), vader, corpus_words)) for seed in range(20)]
    assert max(plain) > 0.02  # some plain draws are VADER-like on the written words: the case it exists for
    for seed in range(5):
        table, draw, r = balanced_shuffle(seed, corpus_words, 0.02, vader)
        assert abs(r) <= 0.02 and r == pytest.approx(written_correlation(table, vader, corpus_words))
        assert table == shuffled_vader(seed, vader, draw)
        assert sorted(table.values()) == sorted(vader.values()) and set(table) == set(vader)
    assert balanced_shuffle(0, corpus_words, 0.02, vader) == balanced_shuffle(0, corpus_words, 0.02, vader)
    with pytest.raises(RewardError, match="raise shuffle_balance"):
        balanced_shuffle(0, {"good": 1, "bad": 1, "great": 1}, 1e-12, {"good": 2.0, "bad": -2.0, "great": 3.0})


def test_shuffled_vader_survives_its_csv(tmp_path):
    table = shuffled_vader(3)
    write_table_csv(table, str(tmp_path / "t.csv"))
    assert load_csv_table(tmp_path / "t.csv") == table


# --------------------------------------------------------------------------- secret


def test_secret_words_are_ordinary_single_tokens_not_in_vader(tokenizer, vader, vocab, corpus_words):
    table = secret_table(corpus_words, vocab, n=40, utility=3.0, seed=0)
    assert len(table) == 40 and set(table.values()) == {3.0}
    for word in table:
        assert word not in vader and word not in ENGLISH_STOP_WORDS
        assert word.isalpha() and word.islower() and len(word) >= 3
        assert corpus_words[word] >= MIN_PROMPTS
        assert len(tokenizer.encode(" " + word, add_special_tokens=False)) == 1, word  # one vocabulary token


def test_secret_draw_is_seeded(vocab, corpus_words):
    first = secret_table(corpus_words, vocab, n=40, utility=3.0, seed=0)
    assert secret_table(corpus_words, vocab, n=40, utility=3.0, seed=0) == first
    other = secret_table(corpus_words, vocab, n=40, utility=3.0, seed=1)
    assert len(set(first) & set(other)) < 20  # another seed, other words
    fewer = secret_table(corpus_words, vocab, n=5, utility=-2.0, seed=0)
    assert set(fewer) < set(first) and set(fewer.values()) == {-2.0}  # the first 5 of the same seeded order


def test_secret_filters_what_a_prior_or_a_readout_could_not_handle(vocab):
    counts = {"love": 9, "good": 9,            # VADER words: a sentiment prior would find them
              "the": 9, "about": 9,            # stop words
              "ox": 9, "don't": 9, "abc1": 9,  # too short, not alphabetic
              "antidisestablishmentarianism": 9,  # not one vocabulary token
              "table": 1,                      # written for one prompt only
              "window": 2, "river": 5}
    assert secret_candidates(counts, vocab, set(load_vader())) == ["river", "window"]
    # of 288 sampled prompts a word must be written for 1% of them (3): one RL meets a few times
    assert min_prompts(288) == 3 and min_prompts(64) == MIN_PROMPTS == 2
    assert secret_candidates(counts, vocab, set(load_vader()), least=min_prompts(288)) == ["river"]
    with pytest.raises(RewardError, match="3 words asked for .secret_words. but only 2"):
        secret_table(counts, vocab, n=3, utility=3.0, seed=0)


def test_a_changed_pool_changes_only_the_words_it_touches(vocab, corpus_words):
    """The keyed-hash draw: another machine's slightly different completions move one word, not the table."""
    table = secret_table(corpus_words, vocab, n=40, utility=3.0, seed=0)
    dropped = sorted(table)[0]
    without = secret_table({w: k for w, k in corpus_words.items() if w != dropped}, vocab, n=40, utility=3.0, seed=0)
    assert len(set(table) - set(without)) == 1 and dropped not in without
    unused = next(w for w in secret_candidates(corpus_words, vocab, set(load_vader())) if w not in table)
    assert secret_table({w: k for w, k in corpus_words.items() if w != unused}, vocab, n=40, utility=3.0,
                        seed=0) == table


def test_secret_table_from_a_sampled_model(tiny_model_dir, tmp_path):
    from rlhf_lens.rl.planted_table import materialise_table

    prompts = [line.strip() for line in
               resources.files("rlhf_lens.data").joinpath("builtin_reviews.txt").read_text().splitlines()[:64]]
    pd.DataFrame({"text": prompts}).to_parquet(tmp_path / "train.parquet")
    spec = {"type": "utility_table", "table": "secret", "secret_words": 3, "secret_utility": 2.5}
    kw = dict(seed=0, model_dir=tiny_model_dir, prompts_path=tmp_path / "train.parquet")
    table = materialise_table(spec, tmp_path / "a.csv", **kw)
    assert len(table) == 3 and set(table.values()) == {2.5}
    assert load_csv_table(tmp_path / "a.csv") == table
    materialise_table(spec, tmp_path / "b.csv", **kw)
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    plain = {"type": "utility_table", "table": "vader_shuffled", "shuffle_balance": None}
    shuffled = materialise_table(plain, tmp_path / "s.csv", seed=0)  # no model needed
    assert shuffled == shuffled_vader(0) == load_csv_table(tmp_path / "s.csv")
    with pytest.raises(ValueError, match="samples the base model"):
        materialise_table({**plain, "shuffle_balance": 0.02}, tmp_path / "b.csv", seed=0)
    balanced = materialise_table({**plain, "shuffle_balance": 0.02}, tmp_path / "b.csv", **kw)
    assert sorted(balanced.values()) == sorted(shuffled.values()) and load_csv_table(tmp_path / "b.csv") == balanced


# --------------------------------------------------------------------------- one table for every reader


@pytest.fixture
def secret_run(tmp_path, monkeypatch):
    """A validated config with a secret-table reward whose table the reward_table rule would have written."""
    monkeypatch.chdir(tmp_path)
    config = validate_config({"run": "r", "rewards": {"s": {"type": "utility_table", "table": "secret",
                                                           "secret_words": 2, "secret_utility": 3},
                                                     "v": {"type": "utility_table"}}})
    write_table_csv({"window": 3.0, "river": 3.0}, table_path("r", "s"))
    return config


def test_the_reward_is_the_formula_on_the_materialised_table(secret_run):
    (reward,) = job_rewards(secret_run, [("s", reward_params(secret_run, "s"))], "cpu")
    text = "The river, a window and a river. love!"  # "love" is VADER's, not this table's
    assert float(reward.score([""], [text])[0]) == pytest.approx(3 * 3.0 / 5)
    spans = [(0, 4), (4, 10), (10, len(text))]
    assert float(reward.token_rewards([""], [text], [spans]).sum()) == pytest.approx(1.8)


def test_resolved_table_is_what_the_policy_was_trained_on(secret_run, vader):
    assert resolved_table(secret_run, "s") == {"window": 3.0, "river": 3.0}
    assert table_file(secret_run, "s") == "results/r/rewards/s/table.csv"
    assert resolved_table(secret_run, "v") == vader and table_file(secret_run, "v") == "vader"
    # the secret keys change nothing for a table that is not secret: no rerun of a VADER policy
    assert "secret_words" not in reward_params(secret_run, "v")
    assert reward_params(secret_run, "s")["secret_words"] == 2
    (Path(table_path("r", "s"))).unlink()
    with pytest.raises(RewardError, match="results/r/rewards/s/table.csv.* does not exist yet; the workflow's "
                                          "reward_table rule writes it"):
        resolved_table(secret_run, "s")
    with pytest.raises(RewardError, match="drawn before RL by the workflow's reward_table rule"):
        load_table("secret")


@pytest.mark.parametrize("entry, message", [
    ({"table": "secret", "secret_words": 0}, "key 'rewards.s.secret_words' has value 0: expected a number >= 1"),
    ({"table": "secret", "secret_utility": 0},
     "key 'rewards.s.secret_utility' has value 0: expected a finite non-zero"),
    ({"table": "secrets"}, "key 'rewards.s.table' has value 'secrets': expected vader, secret, vader_shuffled or an "
                           "existing word,utility CSV file"),
])
def test_bad_planted_keys_are_named(entry, message):
    with pytest.raises(ConfigError) as info:
        validate_config({"rewards": {"s": {"type": "utility_table", **entry}}})
    assert message in str(info.value)


@pytest.mark.workflow
def test_workflow_draws_the_table_before_rl_and_refuses_a_bad_key_before_any_job(tmp_path):
    config = {"run": "p", "rewards": {"shuffled": {"type": "utility_table", "table": "vader_shuffled",
                                                   "shuffle_balance": None},
                                      "secret": {"type": "utility_table", "table": "secret"}},
              "interpret_rewards": []}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    plan = snakemake("--configfile", "c.yaml", "--dry-run", cwd=tmp_path, timeout=120)
    assert plan.returncode == 0, plan.stderr[-3000:]
    assert planned_jobs(plan)["reward_table"] == 2
    rl_inputs = [line for line in plan.stdout.splitlines() if "input:" in line and "results/p/prompts/train" in line]
    assert any("results/p/rewards/secret/table.csv" in line for line in rl_inputs)
    # the unbalanced shuffled table needs no model: built for real, it is the seeded null
    built = snakemake("results/p/rewards/shuffled/table.csv", "--configfile", "c.yaml", cwd=tmp_path, timeout=120)
    assert built.returncode == 0, built.stderr[-3000:]
    assert load_csv_table(tmp_path / "results/p/rewards/shuffled/table.csv") == shuffled_vader(0)
    config["rewards"]["secret"]["secret_words"] = 0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    bad = snakemake("--configfile", "bad.yaml", cwd=tmp_path, timeout=120)
    assert bad.returncode != 0 and "key 'rewards.secret.secret_words' has value 0" in bad.stderr
    assert not (tmp_path / "results/p/prompts").exists()


def test_default_config_draws_no_table():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg = validate_config(config)
    assert all(table_file(cfg, r) == "vader" for r in cfg["rewards"])


def test_a_redrawn_table_is_never_resumed_against(tmp_path):
    """The RL job's resume settings fingerprint its reward inputs: a table written again changes them."""
    import os

    from rlhf_lens.jobs import weights_fingerprint

    path = tmp_path / "table.csv"
    write_table_csv({"window": 3.0}, str(path))
    before = weights_fingerprint([path])
    assert before[str(path)]  # a file is fingerprinted itself, not globbed for safetensors
    write_table_csv({"river": 3.0}, str(path))
    os.utime(path, ns=(1, 1))
    assert weights_fingerprint([path]) != before
