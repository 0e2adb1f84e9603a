"""Dense reward shaping: known answers of each attribution on rewards whose answer is known, and the
shaped reward's defining property (it sums to the sequence reward).

The utility table is additive in words, so its per-token form (each token its character share of
its word's utility) is what SHAP should recover; LIME should at least rank the high-utility words
first; integrated gradients must be complete on a tiny differentiable reward model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_lens.rewards.utility_table import UtilityTableReward
from rlhf_lens.rl.text import decode_with_spans
from rlhf_lens.shaping import ShapingConfig
from rlhf_lens.shaping.batching import BatchedScorer
from rlhf_lens.shaping.normalise import normalise, shaped_rewards
from rlhf_lens.shaping.shaped_reward import ShapedReward

pytestmark = pytest.mark.usefixtures("one_thread")

TABLE = {"great": 3.1, "wonderful": 2.7, "terrible": -2.5, "sad": -2.1, "good": 1.9, "awful": -2.0,
         "love": 3.2, "happy": 2.7, "bad": -2.5, "nice": 1.8, "boring": -1.3, "fine": 0.8}
TEXTS = [" The movie was great and the acting was wonderful, but the ending was terrible and sad.",
         " I love this happy place, the food is good and nice.",
         " A boring, bad film with an awful plot; the music was fine."]


@pytest.fixture(scope="module")
def responses(tokenizer):
    out = []
    for text in TEXTS:
        ids = torch.tensor(tokenizer(text, add_special_tokens=False).input_ids)
        out.append(decode_with_spans(tokenizer, ids))
    return [t for t, _ in out], [s for _, s in out]


@pytest.fixture(scope="module")
def utility():
    return UtilityTableReward(TABLE)


def test_normalise_sums_to_one_and_falls_back_to_uniform():
    e, fell = normalise(np.array([2.0, -1.0, 1.0]), r=3.0)
    assert not fell and e.sum() == pytest.approx(1.0) and e[1] < 0  # a negative attribution keeps its sign
    for a, r in [([0.0, 0.0], 1.0), ([1.0, -1.0], 1.0), ([-2.0, 0.5], 1.0), ([1.0, 2.0], 0.0), ([1.0, -0.95], 1.0)]:
        e, fell = normalise(np.array(a), r=r)
        assert fell and e.tolist() == [0.5, 0.5]
    assert normalise(np.zeros(0), 1.0)[0].shape == (0,)


def test_shaped_rewards_sum_to_the_sequence_reward_exactly():
    rng = np.random.default_rng(0)
    lengths, r = [5, 1, 9, 0], rng.normal(size=4) * 3
    shares = {k: [normalise(rng.normal(size=n), ri, 0.0)[0] for n, ri in zip(lengths, r)]
              for k in ("shap", "lime", "uniform")}
    shares["last_token"] = [np.eye(n)[-1] if n else np.zeros(0) for n in lengths]
    rows = shaped_rewards(shares, {"last_token": 0.2, "shap": 0.3, "lime": 0.1, "uniform": 0.4}, r)
    for row, n, ri in zip(rows, lengths, r):
        assert len(row) == n
        if n:
            assert row.sum() == ri  # exactly, in float64
    only_last = shaped_rewards(shares, {"last_token": 1.0}, r)
    assert only_last[0].tolist() == [0, 0, 0, 0, r[0]]


@pytest.mark.parametrize("name", ["last_token", "uniform"])
def test_share_components_keep_their_shape_for_negative_rewards(responses, utility, name):
    """last_token puts all of a negative reward on the last token too (it once fell back to uniform there:
    its "attribution" (0, ..., 1) has the other sign than r, which normalise reads as cancelling)."""
    texts, spans = responses
    shaped = ShapedReward(utility, ShapingConfig(weights={name: 1.0}))
    rows = shaped.token_rewards([""] * 3, texts, spans)
    r = utility.score([""] * 3, texts).double().numpy()
    assert r[2] < 0 < r[1]  # the third text is negative
    for row, n, ri in zip(rows.double().numpy(), map(len, spans), r):
        expected = np.eye(n)[-1] * ri if name == "last_token" else np.full(n, ri / n)
        np.testing.assert_allclose(row[:n], expected, rtol=1e-6, atol=1e-7)


def test_shap_recovers_each_tokens_share_of_the_utility(responses, utility):
    texts, spans = responses
    cfg = ShapingConfig(weights={"last_token": 0.5, "shap": 0.5}, shap_max_evals=200)
    shaped = ShapedReward(utility, cfg)
    prompts = [""] * len(texts)
    got = shaped.token_rewards(prompts, texts, spans)
    raw = shaped.last_raw["shap"]
    truth = utility.token_rewards(prompts, texts, spans)
    r = utility.score(prompts, texts)
    for i, s in enumerate(spans):
        assert np.corrcoef(raw[i], truth[i, :len(s)].numpy())[0, 1] >= 0.95
        assert raw[i].sum() == pytest.approx(float(r[i]), abs=1e-6)  # efficiency: f(all) - f(none), f(none) = 0
        assert float(got[i].sum()) == pytest.approx(float(r[i]), abs=1e-5)
    # half of each token's SHAP share of r, plus half of r on the last token
    half = 0.5 * raw[0] / raw[0].sum() * float(r[0])
    half[-1] += 0.5 * float(r[0])
    assert np.allclose(got[0, :len(spans[0])].numpy(), half, atol=1e-5)
    stats = shaped.step_stats()
    assert stats["shaping_shap_reward_texts"] > 0 and stats["shaping_shap_seconds"] > 0
    # the same responses again: every attribution comes from the cache, no reward call
    shaped.token_rewards(prompts, texts, spans)
    assert shaped.step_stats()["shaping_shap_reward_texts"] == 0


def test_lime_ranks_the_high_utility_words_first(responses, utility):
    texts, spans = responses
    lime = ShapedReward(utility, ShapingConfig(weights={"lime": 1.0}, lime_num_samples=300))
    lime.token_rewards([""] * len(texts), texts, spans)
    truth = utility.token_rewards([""] * len(texts), texts, spans)
    for i, s in enumerate(spans):
        a, u = lime.last_raw["lime"][i], truth[i, :len(s)].numpy()
        positive, negative = set(np.flatnonzero(u > 0)), set(np.flatnonzero(u < 0))
        assert set(np.argsort(-a)[:len(positive)]) == positive, (texts[i], a.round(2), u.round(2))
        assert set(np.argsort(a)[:len(negative)]) == negative, (texts[i], a.round(2), u.round(2))
        # and within the positive words, the larger utility ranks higher
        assert [t for t in np.argsort(-a) if t in positive] == sorted(positive, key=lambda t: -u[t])


@pytest.mark.parametrize("name", ["shap", "lime"])
def test_one_and_two_token_responses_are_explained(tokenizer, utility, name):
    # a one-token response crashed shap's Partition explainer (no clustering tree) in the full shaping run
    from rlhf_lens.shaping.lime_tokens import Lime
    from rlhf_lens.shaping.shap_tokens import Shap

    explainer = {"shap": Shap, "lime": Lime}[name](ShapingConfig(shap_max_evals=64, lime_num_samples=64), utility)
    scorer = BatchedScorer(utility)
    for text, words in ((" great", [" great"]), (" bad great", [" bad", " great"])):
        expect = utility.score([""] * len(words), words).numpy()  # additive in words: each word's own score
        ids = torch.tensor(tokenizer(text, add_special_tokens=False).input_ids)
        response, spans = decode_with_spans(tokenizer, ids)
        assert len(spans) == len(expect)
        values = explainer.attribute(scorer, [""], [response], [spans])[0]
        if name == "shap":  # exact: the utility is additive in words, f(masked) = 0
            assert np.allclose(values, expect, atol=1e-6), values
        else:
            assert np.all(np.sign(values) == np.sign(expect)), values
    assert explainer.attribute(scorer, [""], [""], [[]])[0].shape == (0,)


def test_batched_scoring_gives_the_one_at_a_time_values_in_fewer_calls(responses, utility):
    from rlhf_lens.shaping.shap_tokens import Shap

    texts, spans = responses
    cfg = ShapingConfig(shap_max_evals=120, shap_batch_size=10)
    alone, together = BatchedScorer(utility), BatchedScorer(utility)
    explainer = Shap(cfg, utility)
    one = [explainer.explain_one(alone.score, "", t, s) for t, s in zip(texts, spans)]
    calls_alone = alone.stats.calls
    both = explainer.attribute(together, [""] * len(texts), texts, spans)
    for a, b in zip(one, both):
        assert np.allclose(a, b, atol=1e-12)
    assert together.stats.calls < calls_alone


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from rlhf_lens.rewards.reward_model import RewardModelReward

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("rm") / "rm"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return RewardModelReward(str(path))


def test_integrated_gradients_are_complete(responses, tiny_rm):
    texts, spans = responses
    prompts = ["Review:", "Tell me about it.", "Well"]
    shaped = ShapedReward(tiny_rm, ShapingConfig(weights={"ig": 0.7, "last_token": 0.3}, ig_n_steps=64))
    rows = shaped.token_rewards(prompts, texts, spans)
    ig = shaped.explainers["ig"]
    sums = np.array([a.sum() for a in shaped.last_raw["ig"]])
    gap = ig.last_gap
    # completeness: the attributions of the response tokens add up to f(x) - f(blank response), within
    # 2% of the largest gap at 64 steps (captum's own delta says the same)
    tol = 0.02 * np.abs(gap).max()
    assert np.abs(sums - gap).max() <= tol, (sums, gap)
    assert np.abs(ig.last_delta).max() <= tol
    r = tiny_rm.score(prompts, texts)
    assert torch.allclose(rows.sum(1), r, atol=1e-5)


def test_integrated_gradients_need_a_differentiable_reward(responses, utility):
    from rlhf_lens.shaping import ShapingError

    texts, spans = responses
    with pytest.raises(ShapingError, match="integrated gradients"):
        ShapedReward(utility, ShapingConfig(weights={"ig": 1.0})).token_rewards([""], texts[:1], spans[:1])
