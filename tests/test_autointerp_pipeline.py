"""Explain -> simulate -> score with the real default model, its cache, and the failure path."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.autointerp.examples import ExampleConfig, select_examples
from rlhf_lens.autointerp.llm import CachedLLM, LocalChatLLM, OpenAICompatibleLLM
from rlhf_lens.autointerp.pipeline import SimulationConfig, explain_and_score
from rlhf_lens.data import builtin_texts

POSITIVE = {"great", "good", "love", "loved", "beautiful", "wonderful", "best", "fun", "charming", "brilliant"}
SMALL = ExampleConfig(n_top=2, n_quantiles=0, n_random=1, before=5, after=1)


@pytest.fixture(scope="module")
def planted(tokenizer):
    """A corpus of review openings and a feature that fires exactly on positive words."""
    rows = []
    for doc, text in enumerate(builtin_texts()[:120]):
        for pos, tid in enumerate(tokenizer(text)["input_ids"]):
            rows.append({"doc_id": doc, "position": pos, "token_text": tokenizer.decode([tid])})
    tokens = pd.DataFrame(rows)
    acts = np.array([1.0 if t.strip().lower() in POSITIVE else 0.0 for t in tokens["token_text"]])
    assert acts.sum() >= 3, "the corpus needs some positive words"
    return tokens, acts


@pytest.mark.slow
def test_real_model_explains_and_scores_with_cache(smollm2_dir, planted, tmp_path):
    tokens, acts = planted
    examples = select_examples(tokens, acts, feature=7, cfg=SMALL)
    llm = CachedLLM(LocalChatLLM(smollm2_dir), tmp_path / "cache")
    row = explain_and_score(llm, examples, SimulationConfig(explain_max_tokens=24))
    assert row["feature"] == 7 and row["n_score"] == 2
    assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0
    if row["status"] == "ok":
        assert isinstance(row["explanation"], str) and len(row["explanation"]) <= 300
        assert row["score"] is None or -1.0 <= row["score"] <= 1.0
    else:  # a 135M model may answer with nothing usable; that must be recorded, not raised
        assert row["reason"]
    calls = llm.misses
    again = explain_and_score(llm, examples, SimulationConfig(explain_max_tokens=24))
    assert llm.misses == calls and llm.hits >= 1  # a rerun is answered from the cache
    assert again == row


def test_unreachable_endpoint_marks_the_feature_failed(planted):
    tokens, acts = planted
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{port}/v1", "m", timeout_s=2, max_retries=0)
    row = explain_and_score(llm, select_examples(tokens, acts, 0, SMALL), SimulationConfig())
    assert row["status"] == "failed" and "LLMError" in row["reason"] and row["explanation"] is None


def test_silent_feature_is_failed_with_reason(planted):
    tokens, _ = planted
    row = explain_and_score(None, select_examples(tokens, np.zeros(len(tokens)), 0, SMALL), SimulationConfig())
    assert row["status"] == "failed" and "never fired" in row["reason"]
