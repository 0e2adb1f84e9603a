"""The diffing methods on a tiny model with a planted answer, and on null policies.

The "base" is a tiny random Llama (SmolLM2's tokenizer) whose unembedding rows of five planted words all
point along one unit direction u. Its "policy" is the same model plus (a) a logit bias on those five tokens
and (b) u added to the output of block 1: both methods must rank exactly those five tokens first. Null
policies (the base itself; the base with every weight jittered) must read at chance.
"""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lens.diffing.base import CorpusConfig, DiffContext
from rlhf_lens.diffing.registry import get_method_class, methods
from rlhf_lens.diffing.stage import ReadoutConfig, StageSettings, diffing_stage, method_config
from rlhf_lens.diffing.truth import table_truth
from rlhf_lens.diffing.vocab import word_of, word_vocab
from rlhf_lens.rewards.utility_table import UtilityTableReward, load_vader

pytestmark = pytest.mark.usefixtures("one_thread")

PLANTED = ["love", "wonderful", "happy", "beautiful", "joy"]
TEXTS = ["The movie was long and the plot went nowhere fast.", "I watched it on a rainy evening with friends.",
         "Nobody in the cast seemed to know what film they were in.", "The music was loud, the lights were bright.",
         "It opens in a small town where nothing much happens.", "Halfway through, the story takes a turn.",
         "The director has made three films before this one.", "My brother fell asleep before the ending.",
         "There is a long scene on a train at night.", "The dialogue is mostly about the weather.",
         "A dog runs across the street in the first minute.", "Critics wrote about the costumes and the sets."]
READOUT = ReadoutConfig(n_boot=100, n_perm=100)


@pytest.fixture(scope="module")
def vocab(tokenizer):
    return word_vocab(tokenizer)


@pytest.fixture(scope="module")
def planted_ids(vocab):
    ids = vocab.set_index("word").loc[PLANTED, "token_id"].to_numpy().copy()
    assert all(vocab.set_index("word").loc[PLANTED, "token_text"].str.startswith(" "))
    return ids


@pytest.fixture(scope="module")
def models(tokenizer, planted_ids):
    """(base, planted policy, jittered null policy)."""
    from tiny_models import tiny_llama

    base = tiny_llama(len(tokenizer), layers=3, hidden=32, seed=0)
    u = torch.zeros(32)
    u[3] = 1.0
    with torch.no_grad():
        base.lm_head.weight[torch.as_tensor(planted_ids)] = 3.0 * u  # tied: the embedding rows too
    policy = copy.deepcopy(base)
    head = torch.nn.Linear(32, len(tokenizer), bias=True)
    head.weight = policy.lm_head.weight
    with torch.no_grad():
        head.bias.zero_()
        head.bias[torch.as_tensor(planted_ids)] = 2.0
    policy.lm_head = head
    policy.model.layers[1].register_forward_hook(lambda _m, _i, out: (out[0] + u, *out[1:]) if isinstance(out, tuple)
                                                 else out + u)
    null = copy.deepcopy(base)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in null.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=gen))
    return base, policy.eval(), null.eval()


def context(tokenizer, base, policy, reward=None, **kw) -> DiffContext:
    corpus = pd.DataFrame({"text": TEXTS, "group": np.arange(len(TEXTS)) // 2,
                           "prompt_chars": [len(t.split()[0]) if i % 3 == 0 else 0 for i, t in enumerate(TEXTS)]})
    return DiffContext(base_dir=None, policy_dir=None, corpus=corpus, reward=reward,
                       corpus_cfg=CorpusConfig(max_length=16, batch_size=4), _models=(base, policy, tokenizer), **kw)


def test_word_rule_and_one_token_per_word(tokenizer, vocab):
    assert word_of(" Love") == word_of("love") == "love"
    assert word_of(" a") is None and word_of(" don't") is None and word_of("123") is None and word_of("  love") is None
    assert vocab["word"].is_unique and len(vocab) > 20000
    row = vocab.set_index("word").loc["love"]
    assert row["token_text"] == " love"


def test_registry_has_the_corpus_methods():
    assert {"logit_shift", "activation_lens"} <= set(methods())
    assert get_method_class("logit_shift").name == "logit_shift"
    with pytest.raises(ValueError, match="unknown key"):
        method_config("logit_shift", {"no_such_key": 1})


@pytest.mark.parametrize("method", ["logit_shift", "activation_lens"])
def test_planted_tokens_come_out_first(tmp_path, tokenizer, models, planted_ids, method):
    base, policy, _ = models
    reward = UtilityTableReward({w: 3.0 for w in PLANTED} | {"boring": -2.0, "long": -1.0}, name="planted")
    settings = StageSettings(corpus=CorpusConfig(max_length=16, batch_size=4), readout=READOUT,
                             method={"steer_prompts": 4, "steer_tokens": 8} if method == "activation_lens" else {})
    report = diffing_stage(context(tokenizer, base, policy, reward=reward), method, settings, tmp_path / method,
                           truth_reward=reward, reward_name="planted")
    words = pd.read_parquet(tmp_path / method / "words.parquet")
    assert list(words.columns[:5]) == ["token_id", "token_text", "word", "score", "rank"]
    assert set(words["token_id"].head(len(PLANTED))) == set(planted_ids.tolist())
    assert words["rank"].tolist() == list(range(1, len(words) + 1))
    r = report["readout"]
    assert r["unit"] == "prompt_group" and r["n_units"] == 6 and r["n_positive"] == len(PLANTED)
    m = r["metrics"]
    assert m["recall@50"]["value"] == 1.0 and m["recall@50"]["ci"] == [1.0, 1.0]
    assert m["precision@20"]["value"] == pytest.approx(len(PLANTED) / 20)
    assert m["auroc"]["ci"][0] > 0.99
    on_disk = json.loads((tmp_path / method / "readout.json").read_text())
    assert on_disk["readout"]["metrics"]["recall@50"]["value"] == 1.0
    extra = json.loads((tmp_path / method / "extra.json").read_text())
    if method == "logit_shift":
        top_count = words.sort_values("topk_count", ascending=False)["token_id"].head(len(PLANTED))
        assert set(top_count) == set(planted_ids.tolist())
        assert report["variants"]["topk_count"]["metrics"]["recall@50"]["value"] == 1.0
    else:
        profile = {row["block"]: row for row in report["depth_profile"]}
        assert set(profile) == {0, 1, 2}
        assert profile[0]["recall@50"] < 0.5  # nothing differs before the planted block
        assert set(profile[1]["top_words"][:len(PLANTED)]) == set(PLANTED)
        assert extra["block"] == 1 and extra["difference_norm"]["positions_1_k"][0] == pytest.approx(0.0, abs=1e-6)
        assert extra["difference_norm"]["positions_1_k"][1] == pytest.approx(1.0, abs=1e-4)
        assert report["variants"]["policy_unembed"]["metrics"]["recall@50"]["value"] == 1.0
        steering = extra["steering"]
        assert steering["gain"] > 0 and steering["gain_ci"][0] > 0, steering


@pytest.mark.parametrize("method", ["logit_shift", "activation_lens"])
def test_identical_policy_reads_at_the_base_rate(tmp_path, tokenizer, models, method):
    base, _, _ = models
    vader = UtilityTableReward(load_vader(), name="vader")
    settings = StageSettings(corpus=CorpusConfig(max_length=16, batch_size=4), readout=READOUT,
                             method={"steer": False} if method == "activation_lens" else {})
    report = diffing_stage(context(tokenizer, base, base), method, settings, tmp_path / method, truth_reward=vader)
    r = report["readout"]
    for k in (20, 50):
        m = r["metrics"][f"precision@{k}"]
        assert m["value"] == pytest.approx(r["base_rate"]) and m["ci"][0] <= r["base_rate"] <= m["ci"][1]
    assert r["metrics"]["auroc"]["value"] == 0.5
    assert r["metrics"]["spearman"]["value"] is None  # a constant score has no rank correlation


@pytest.mark.parametrize("method", ["logit_shift", "activation_lens"])
def test_jittered_policy_reads_at_chance(tmp_path, tokenizer, models, method):
    base, _, null = models
    vader = UtilityTableReward(load_vader(), name="vader")
    settings = StageSettings(corpus=CorpusConfig(max_length=16, batch_size=4), readout=READOUT,
                             method={"steer": False} if method == "activation_lens" else {})
    report = diffing_stage(context(tokenizer, base, null), method, settings, tmp_path / method, truth_reward=vader)
    r = report["readout"]
    sp = r["metrics"]["spearman"]
    assert abs(sp["value"]) < 0.1 and sp["p_perm"] > 0.05
    assert abs(r["metrics"]["auroc"]["value"] - 0.5) < 0.05
    assert r["metrics"]["precision@50"]["value"] <= 4 * r["base_rate"]


def test_without_a_truth_the_table_and_profile_are_still_written(tmp_path, tokenizer, models):
    base, policy, _ = models
    settings = StageSettings(corpus=CorpusConfig(max_length=16, batch_size=4), method={"steer": False})
    report = diffing_stage(context(tokenizer, base, policy), "activation_lens", settings, tmp_path / "adl")
    assert report["truth"] is None and "readout" not in report
    assert set(report["depth_profile"][1]["top_words"][:len(PLANTED)]) == set(PLANTED)
    words = pd.read_parquet(tmp_path / "adl" / "words.parquet")
    assert "truth" not in words.columns and set(words["word"].head(len(PLANTED))) == set(PLANTED)


def test_table_truth_of_the_planted_reward(vocab):
    truth = table_truth({w: 3.0 for w in PLANTED}, vocab)
    assert sorted(truth.planted_words) == sorted(PLANTED)


def test_config_validates_method_names_through_the_registry():
    from rlhf_lens.config import ConfigError, diffing_settings, validate_config
    from rlhf_lens.diffing.registry import available

    with pytest.raises(ConfigError, match="diffing.methods' has value 'no_such_method'"):
        validate_config({"diffing": {"methods": ["logit_shift", "no_such_method"]}})
    config = validate_config({"diffing": {"activation_lens": {"positions": 2}}})
    settings = diffing_settings(config, "activation_lens")
    assert method_config("activation_lens", settings.method).positions == 2
    assert settings.corpus == CorpusConfig() and settings.readout == ReadoutConfig()
    assert available("logit_shift") and available("activation_lens") and not available("no_such_method")


def test_cli_diffs_two_model_folders(tmp_path, tiny_model_dir, tokenizer, capsys):
    """``rlhf-lens diff`` on two model folders, a .txt corpus and a CSV truth: the method writes its folder and
    readout (the planted answers are checked above, on models built in memory)."""
    from rlhf_lens.cli import main
    from rlhf_lens.models import load_prepared

    model, _ = load_prepared(tiny_model_dir)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.add_(0.05)
    model.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    (tmp_path / "corpus.txt").write_text("\n".join(TEXTS[:6]) + "\n")
    (tmp_path / "truth.csv").write_text("word,utility\n" + "".join(f"{w},3\n" for w in PLANTED) + "boring,-2\n")
    (tmp_path / "cfg.yaml").write_text("diffing:\n  readout: {n_boot: 20, n_perm: 20}\n  activation_lens: {steer: false}\n")
    code = main(["diff", "--base", str(tiny_model_dir), "--policy", str(tmp_path / "policy"), "--corpus",
                 str(tmp_path / "corpus.txt"), "--table", str(tmp_path / "truth.csv"), "--config",
                 str(tmp_path / "cfg.yaml"), "--methods", "logit_shift", "--device", "cpu", "--out", str(tmp_path / "out")])
    assert code == 0
    out = capsys.readouterr().out
    assert "logit_shift:" in out and "Spearman" in out
    for method in ("logit_shift",):
        words = pd.read_parquet(tmp_path / "out" / method / "words.parquet")
        assert words["truth"].gt(0).sum() == len(PLANTED)
        readout = json.loads((tmp_path / "out" / method / "readout.json").read_text())["readout"]
        assert readout["n_units"] == 6 and readout["n_positive"] == len(PLANTED)
    assert main(["diff", "--base", "x", "--policy", "y", "--corpus", "z", "--methods", "sae_shift", "--out",
                 str(tmp_path / "o")]) == 1


def test_summary_section_lists_the_readout_top_words_and_depth_profile(tmp_path, vocab):
    """report.learned on a method folder written by the stage: the readout table, the truth-marked top words, the
    depth-profile plot, and the summary opening with the section."""
    from rlhf_lens.diffing.base import MethodResult
    from rlhf_lens.diffing.stage import write_outputs
    from rlhf_lens.report.learned import learned_section, load_diffing, plot_depth_profile
    from rlhf_lens.report.summary import RewardResults, summary_markdown

    rng = np.random.default_rng(0)
    truth = table_truth({w: 3.0 for w in PLANTED} | {"boring": -2.0}, vocab)
    n_vocab = int(vocab["token_id"].max()) + 1
    scores = rng.normal(0, 0.1, (4, n_vocab))
    planted = vocab.set_index("word").loc[PLANTED, "token_id"].to_numpy()
    scores[:, planted] += 5.0
    profile = {0: rng.normal(size=n_vocab), 1: scores.mean(0)}
    result = MethodResult(token_scores=scores, unit="prompt_group", depth_profile=profile,
                          extra={"steering": {"block": 1, "gain": 0.5, "gain_ci": [0.2, 0.8], "n_prompts": 4,
                                              "unsteered_mean": 0.1, "steered_mean": 0.6}})
    folder = tmp_path / "results/run/diffing/planted/activation_lens"
    report = write_outputs(result, "activation_lens", vocab, truth, folder, READOUT)
    assert plot_depth_profile(report, folder / "depth_profile.png") and (folder / "depth_profile.png").stat().st_size
    diffing = load_diffing({"activation_lens": folder})
    text = learned_section(diffing, tmp_path / "results/run")
    header, _, row = text.split("\n")[:3]
    assert row.startswith("| activation_lens | ") and row.count("|") == header.count("|")
    assert "| 0.25 [0.25, 0.25] | 0.1 [0.1, 0.1] | 1 [1, 1] | 1 [1, 1] |" in row  # p@20, p@50, AUROC, recall@50
    assert all(f"**{w}** (+3)" in text for w in PLANTED)
    assert "](diffing/planted/activation_lens/depth_profile.png)" in text and "+0.5 [0.2, 0.8]" in text
    summary = summary_markdown("run", [RewardResults(reward="planted", diffing=diffing)])
    assert summary.index("What the policy learned") < summary.index("RL: held-out reward")


def test_report_items_are_the_readout_per_method_and_each_depth_profile(tmp_path, vocab):
    """report.learned's Snakemake-report items for one reward: a CSV row per method with the readout, top words
    marked by the truth, and a depth_profiles folder holding a PNG for the methods that have a profile only."""
    from rlhf_lens.diffing.base import MethodResult
    from rlhf_lens.diffing.stage import write_outputs
    from rlhf_lens.report.learned import learned_report_assets, plot_depth_profile

    truth = table_truth({w: 3.0 for w in PLANTED} | {"boring": -2.0}, vocab)
    n_vocab = int(vocab["token_id"].max()) + 1
    scores = np.random.default_rng(0).normal(0, 0.1, (4, n_vocab))
    scores[:, vocab.set_index("word").loc[PLANTED, "token_id"].to_numpy()] += 5.0
    folders = {}
    for method, profile in (("logit_shift", {}), ("activation_lens", {0: scores.mean(0), 1: scores.mean(0)})):
        folders[method] = tmp_path / "diffing" / method
        report = write_outputs(MethodResult(token_scores=scores, unit="prompt_group", depth_profile=profile), method,
                               vocab, truth, folders[method], READOUT)
        assert plot_depth_profile(report, folders[method] / "depth_profile.png") == bool(profile)
    frame = learned_report_assets(folders, tmp_path / "report/learned.csv", tmp_path / "report/depth_profiles")
    csv = pd.read_csv(tmp_path / "report/learned.csv")
    assert csv["method"].tolist() == ["logit_shift", "activation_lens"] == frame["method"].tolist()
    assert csv["recall@50"].tolist() == [1.0, 1.0] and csv["auroc"].tolist() == [1.0, 1.0]
    assert csv["precision@20"].tolist() == [len(PLANTED) / 20] * 2
    assert csv["base_rate"].tolist() == pytest.approx([len(PLANTED) / len(vocab)] * 2, rel=1e-3)
    assert csv["unit"].eq("prompt_group").all() and csv["spearman_ci_low"].notna().all()
    top = csv.loc[0, "top_words"].split(", ")
    assert sorted(top[:len(PLANTED)]) == sorted(w + "+" for w in PLANTED) and not top[len(PLANTED)].endswith("+")
    assert sorted(p.name for p in (tmp_path / "report/depth_profiles").iterdir()) == ["activation_lens.png"]
