"""Rewards: utility-table values of hand-written strings, per-token shares, classifier logits, bad input."""

from __future__ import annotations

import pytest
import torch

from rlhf_lens.rewards import RewardError, build_reward
from rlhf_lens.rewards.utility_table import UtilityTableReward, load_csv_table, load_vader, words_with_spans


@pytest.fixture(scope="module")
def vader():
    return UtilityTableReward(load_vader())


def test_vader_lexicon_is_read_from_the_package():
    table = load_vader()
    assert len(table) > 7000
    assert table["good"] == 1.9 and table["bad"] == -2.5 and table["love"] == 3.2


@pytest.mark.parametrize("text, expected", [
    ("good", 1.9 / 5),
    ("Good, GOOD! good.", 3 * 1.9 / 5),              # case and surrounding punctuation
    ("(love)", 3.2 / 5),
    ("good-ish zxqv florb", 0.0),                     # inner punctuation kept: not in the table; unknown words 0
    ("good bad", (1.9 - 2.5) / 5),
    ("", 0.0),
    ("... !!! ,", 0.0),
])
def test_utility_of_hand_written_strings(vader, text, expected):
    assert vader.score([""], [text])[0].item() == pytest.approx(expected, abs=1e-6)


def test_clipping_at_plus_minus_ten(vader):
    # 3.2 / 5 = 0.64 per "love": 20 of them sum to 12.8 -> clipped to 10.
    assert vader.score([""], ["love " * 20])[0].item() == pytest.approx(10.0)
    assert vader.score([""], ["hate " * 30])[0].item() == pytest.approx(-10.0)


def test_scope_response_ignores_prompt_and_prompt_and_response_counts_it():
    table = {"good": 2.0, "bad": -1.0}
    response_only = UtilityTableReward(table, scope="response")
    both = UtilityTableReward(table, scope="prompt_and_response")
    assert response_only.score(["bad bad"], [" good"])[0].item() == pytest.approx(0.4)
    assert both.score(["bad bad"], [" good"])[0].item() == pytest.approx(0.0)


def test_words_with_spans_strip_punctuation():
    assert words_with_spans(' "Great," she said.') == [("great", (2, 7)), ("she", (10, 13)), ("said", (14, 18))]


def test_token_rewards_split_a_word_by_characters():
    reward = UtilityTableReward({"goodness": 4.0, "bad": -5.0})
    text = " goodness bad"
    # tokens: " good" (1..5 covers 4 of 8 chars), "ness" (5..9, 4 of 8), " bad" (9..13)
    spans = [(0, 5), (5, 9), (9, 13)]
    out = reward.token_rewards([""], [text], [spans])
    assert torch.allclose(out, torch.tensor([[0.4, 0.4, -1.0]]))
    assert out.sum().item() == pytest.approx(reward.score([""], [text])[0].item())


def test_token_rewards_rows_sum_to_clipped_score_and_pad_with_zeros():
    reward = UtilityTableReward({"love": 30.0})
    out = reward.token_rewards(["", ""], [" love love", " x"], [[(0, 5), (5, 10)], [(0, 2)]])
    assert out.shape == (2, 2)
    assert out[0].tolist() == pytest.approx([5.0, 5.0])  # 12 -> clipped to 10, split evenly
    assert out[1].tolist() == [0.0, 0.0]


def test_token_rewards_on_real_tokenizer_offsets(tokenizer, vader):
    from rlhf_lens.rl.text import decode_with_spans

    ids = torch.tensor(tokenizer(" What a wonderful, lovely film! Terrible ending.").input_ids)
    text, spans = decode_with_spans(tokenizer, ids)
    out = vader.token_rewards([""], [text], [spans])
    assert out.shape == (1, len(ids))
    assert out.sum().item() == pytest.approx(vader.score([""], [text])[0].item(), abs=1e-5)
    # every token that carries utility lies inside a lexicon word
    for t in out[0].nonzero().flatten().tolist():
        piece = text[spans[t][0]:spans[t][1]].strip(" ,.!").lower()
        assert piece and any(piece in w for w in ("wonderful", "lovely", "terrible"))


def test_token_spans_never_overlap_when_a_character_spans_two_tokens(tokenizer):
    from rlhf_lens.rl.text import decode_with_spans

    # the emoji is two byte-level tokens: the first decodes to U+FFFD, the second completes it; both once
    # claimed it, and LIME's segmentation failed on the repeated piece in the full shaping run
    ids = torch.tensor(tokenizer(" a caf\u00e9 \U0001F600 ok", add_special_tokens=False).input_ids)
    text, spans = decode_with_spans(tokenizer, ids)
    assert text == " a caf\u00e9 \U0001F600 ok"
    assert all(s <= e for s, e in spans) and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    assert "".join(text[s:e] for s, e in spans) == text
    assert "\U0001F600" in [text[s:e].strip() for s, e in spans]


def test_csv_table(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("word,utility\nFoo,2\nbar,-1.5\n")
    assert load_csv_table(path) == {"foo": 2.0, "bar": -1.5}
    reward = build_reward("u", {"u": {"type": "utility_table", "table": str(path), "scope": "response"}})
    assert reward.score([""], ["foo, BAR! baz"])[0].item() == pytest.approx(0.1)


@pytest.mark.parametrize("content, message", [
    ("word,value\nfoo,1\n", "expected a header row 'word,utility'"),
    ("word,utility\nfoo,abc\n", "line 2: expected word,number"),
    ("word,utility\n", "holds no entries"),
])
def test_malformed_table_names_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(RewardError, match="rewards.u.table") as err:
        build_reward("u", {"u": {"type": "utility_table", "table": str(path)}})
    assert message in str(err.value) and str(path) in str(err.value)


def test_missing_table_and_unknown_reward(tmp_path):
    with pytest.raises(RewardError, match="does not exist"):
        build_reward("u", {"u": {"type": "utility_table", "table": str(tmp_path / "none.csv")}})
    with pytest.raises(RewardError, match="unknown reward 'nope'.*utility"):
        build_reward("nope", {"utility": {"type": "utility_table"}})


def test_malformed_vader_lexicon(tmp_path):
    path = tmp_path / "lex.txt"
    path.write_text("good\t1.9\t0.1\t[]\nbroken line without tabs\n")
    with pytest.raises(RewardError, match="line 2"):
        load_vader(path)


@pytest.fixture(scope="module")
def tiny_classifier_dir(tmp_path_factory, tokenizer):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, num_labels=2,
                         id2label={0: "NEGATIVE", 1: "POSITIVE"}, label2id={"NEGATIVE": 0, "POSITIVE": 1},
                         pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("clf") / "clf"
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_classifier_reward_is_the_label_logit(tiny_classifier_dir):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    reward = build_reward("s", {"s": {"type": "classifier", "model": str(tiny_classifier_dir), "label": "POSITIVE"}})
    texts = [" a fine film", " dull and long, very long indeed"]
    got = reward.score(["p1", "p2"], texts)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_classifier_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_classifier_dir)
    with torch.no_grad():  # one text at a time: no padding involved
        want = torch.stack([model(**tok(t, return_tensors="pt")).logits[0, 1] for t in texts])
    assert torch.allclose(got, want, atol=1e-5)
    per_token = reward.token_rewards(["p1", "p2"], texts, [[(0, 2), (2, 7)], [(0, 5)]])
    assert per_token[0].tolist() == pytest.approx([0.0, got[0].item()], abs=1e-6)
    assert per_token[1].tolist() == pytest.approx([got[1].item(), 0.0], abs=1e-6)


def test_classifier_label_the_model_lacks(tiny_classifier_dir):
    with pytest.raises(RewardError, match="rewards.s.label.*'JOY'.*NEGATIVE, POSITIVE"):
        build_reward("s", {"s": {"type": "classifier", "model": str(tiny_classifier_dir), "label": "JOY"}})
