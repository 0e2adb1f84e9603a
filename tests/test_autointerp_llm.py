"""LLM backends: the local transformers chat model, the disk cache, and endpoint failures."""

from __future__ import annotations

import math
import socket

import pytest

from rlhf_lens.autointerp.llm import CachedLLM, LocalChatLLM, LLMError, OpenAICompatibleLLM

MESSAGES = [{"role": "system", "content": "You explain neurons."}, {"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def local_llm(tiny_model_dir):
    return LocalChatLLM(tiny_model_dir)


def test_local_chat_is_deterministic_with_probabilities(local_llm):
    first = local_llm.chat(MESSAGES, max_tokens=5, top_logprobs=3)
    second = local_llm.chat(MESSAGES, max_tokens=5, top_logprobs=3)
    assert first == second
    assert 0 < first.completion_tokens <= 5 and first.prompt_tokens > 5
    assert len(first.top_logprobs) == first.completion_tokens
    for top in first.top_logprobs:
        assert len(top) <= 3 and all(v <= 0 for v in top.values())
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-5
    # Greedy decoding: the first emitted token is the most likely one (later steps may be barred by the
    # no-repeat rule, which the raw log-probs do not show).
    top0 = first.top_logprobs[0]
    assert first.text.lstrip().startswith(max(top0, key=top0.get).strip())


def test_cache_answers_repeats_from_disk(local_llm, tmp_path):
    cached = CachedLLM(local_llm, tmp_path / "cache")
    a = cached.chat(MESSAGES, max_tokens=4)
    b = cached.chat(MESSAGES, max_tokens=4)
    assert (cached.misses, cached.hits) == (1, 1)
    assert not a.cached and b.cached and b.text == a.text
    cached.chat(MESSAGES, max_tokens=3)  # other parameters: another entry
    assert cached.misses == 2
    again = CachedLLM(local_llm, tmp_path / "cache")  # a rerun in a new process reads the same files
    assert again.chat(MESSAGES, max_tokens=4).cached and again.misses == 0


def test_missing_api_key_is_caught_before_any_call(monkeypatch):
    monkeypatch.delenv("RLHF_LENS_TEST_KEY", raising=False)
    with pytest.raises(LLMError, match="RLHF_LENS_TEST_KEY"):
        OpenAICompatibleLLM("http://127.0.0.1:9/v1", "m", api_key_env="RLHF_LENS_TEST_KEY")


def test_unreachable_endpoint_fails_with_reason_after_retries():
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2, max_retries=1, backoff_s=0.01)
    with pytest.raises(LLMError, match="failed after 2 tries"):
        llm.check()


def test_cache_identity_follows_the_weights_not_the_folder_name(tmp_path, tokenizer):
    """Two runs' "policy" folders (same name, other weights) must not share cached answers; the same
    weights in another folder of that name do."""
    from rlhf_lens.autointerp.llm import model_fingerprint

    from tiny_models import save_tiny_model

    a = save_tiny_model(tmp_path / "run_a" / "policy", tokenizer, seed=0)
    b = save_tiny_model(tmp_path / "run_b" / "policy", tokenizer, seed=1)
    same = save_tiny_model(tmp_path / "run_c" / "policy", tokenizer, seed=0)
    assert model_fingerprint(a) != model_fingerprint(b)
    assert model_fingerprint(a) == model_fingerprint(same)


def test_value_reads_equal_plain_forwards_per_position(local_llm):
    """Both reads of the one-pass method equal, at every position, a plain forward without a cache:
    the candidates' probabilities at the position (prompt + reply before it), and the tokens after the
    branch written there (prompt + reply before it + the branch token)."""
    import torch

    llm = local_llm
    reply = " The\tunknown\n film\tunknown\n was\tunknown\n"
    positions = [i + 1 for i, ch in enumerate(reply) if ch == "\t"]
    digits = [str(d) for d in range(10)]
    got = llm.value_logprobs(MESSAGES, reply, positions, digits, "1", ["0", "\n"])
    prompt = llm.tokenizer.apply_chat_template(MESSAGES, add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)["input_ids"]
    answer = llm.tokenizer(reply, add_special_tokens=False, return_offsets_mapping=True)
    starts = {s: j for j, (s, _) in enumerate(answer["offset_mapping"])}
    ids_of = {t: llm.tokenizer(t, add_special_tokens=False)["input_ids"][0] for t in digits + ["\n"]}

    def last_logp(ids):
        with torch.no_grad():
            return torch.log_softmax(llm.model(ids[None]).logits[0, -1].float(), dim=-1)

    assert len(got) == len(positions) == 3
    for pos, (here, after_one) in zip(positions, got):
        before = torch.cat([prompt[0], torch.tensor(answer["input_ids"][:starts[pos]])])
        plain = last_logp(before)
        for d in digits:
            assert here[d] == pytest.approx(float(plain[ids_of[d]]), abs=1e-4)
        branched = last_logp(torch.cat([before, torch.tensor([ids_of["1"]])]))
        assert after_one["0"] == pytest.approx(float(branched[ids_of["0"]]), abs=1e-4)
        assert after_one["\n"] == pytest.approx(float(branched[ids_of["\n"]]), abs=1e-4)
    with pytest.raises(ValueError, match="does not start a token"):
        llm.value_logprobs(MESSAGES, reply, [2], digits, "1", ["0"])


def test_cached_value_reads_round_trip(local_llm, tmp_path):
    """A cached read comes back equal (tuples of dicts) and costs no model call."""
    cached = CachedLLM(local_llm, tmp_path / "cache")
    reply = " The\tunknown\n"
    args = (MESSAGES, reply, [5], ["0", "1"], "1", ["0", "\n"])
    first = cached.value_logprobs(*args)
    second = cached.value_logprobs(*args)
    assert first == second and (cached.misses, cached.hits) == (1, 1)


def test_value_reads_after_a_shared_prefix_equal_a_fresh_model(tiny_model_dir):
    """The second window of a feature starts its pass after the prompt it shares with the first (the cache
    of the first, cut back); its reads equal those of a model that computes everything anew, and a call
    that shares less (another system prompt) or follows a read of other text is not misled by the cache."""
    digits = [str(d) for d in range(10)]
    reply = " The\tunknown\n film\tunknown\n"
    positions = [i + 1 for i, ch in enumerate(reply) if ch == "\t"]
    system = {"role": "system", "content": "You explain neurons. " * 4}
    calls = [[system, {"role": "user", "content": "Explanation: colours.\n\nTokens:\nThe\t\nfilm\t"}],
             [system, {"role": "user", "content": "Explanation: colours.\n\nTokens:\nA\t\nday\t"}],
             [system, {"role": "user", "content": "Explanation: sport.\n\nTokens:\nThe\t\nfilm\t"}],
             MESSAGES,
             [system, {"role": "user", "content": "Explanation: colours.\n\nTokens:\nA\t\nday\t"}]]
    reusing = LocalChatLLM(tiny_model_dir)
    for i, messages in enumerate(calls):
        before = reusing.reused_tokens
        got = reusing.value_logprobs(messages, reply, positions, digits, "1", ["0", "\n"])
        want = LocalChatLLM(tiny_model_dir).value_logprobs(messages, reply, positions, digits, "1", ["0", "\n"])
        for (here, after), (here_w, after_w) in zip(got, want):
            assert here == pytest.approx(here_w, abs=1e-4) and after == pytest.approx(after_w, abs=1e-4)
        if i in (1, 2):  # the system prompt (and in call 1 the explanation) was computed before
            assert reusing.reused_tokens - before >= 16
        if i in (0, 3):  # nothing before it, or another system prompt
            assert reusing.reused_tokens == before
    assert reusing.reused_tokens > 0
