"""The OpenAI-compatible backend against a real llama.cpp server on loopback (not a mock)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.autointerp.examples import ExampleConfig, select_examples
from rlhf_lens.autointerp.llm import CachedLLM, LLMError, OpenAICompatibleLLM
from rlhf_lens.autointerp.pipeline import NO_VALUES, SimulationConfig, explain_and_score
from rlhf_lens.model_specs import resolve_spec

from llama_server import llama_server
from tiny_models import DEFAULT_SPEC

pytestmark = pytest.mark.llama_server


@pytest.fixture(scope="module")
def server_url():
    with llama_server(Path(resolve_spec(DEFAULT_SPEC).location)) as url:
        yield url


def test_chat_with_token_probabilities(server_url):
    llm = OpenAICompatibleLLM(server_url, "smollm2")
    llm.check()
    answer = llm.chat([{"role": "user", "content": "Count: 1, 2, 3,"}], max_tokens=6, top_logprobs=3)
    assert answer.text and answer.completion_tokens > 0 and answer.prompt_tokens > 0
    assert answer.top_logprobs and all(len(t) <= 3 and all(v <= 0 for v in t.values()) for t in answer.top_logprobs)


def test_api_key_from_environment_and_refusals(server_url, monkeypatch):
    monkeypatch.setenv("RLHF_LENS_TEST_KEY", "sk-test-not-logged")
    llm = OpenAICompatibleLLM(server_url, "smollm2", api_key_env="RLHF_LENS_TEST_KEY")
    llm.check()
    # The key never enters the cache key (and so no cache file or log line derived from it).
    assert "sk-test" not in llm.cache_identity
    with pytest.raises(LLMError):
        OpenAICompatibleLLM(server_url.replace("/v1", "/nothing"), "smollm2", max_retries=0).check()


def test_feature_explained_and_scored_through_the_server(server_url, tmp_path):
    rng = np.random.default_rng(0)
    words = ["the", "film", "was", "great", "dull", "and", "I", "loved", "it", "plot"]
    tokens = pd.DataFrame({"doc_id": np.repeat(np.arange(20), 8),
                           "token_text": [f" {words[i]}" for i in rng.integers(0, len(words), 160)]})
    acts = np.array([1.0 if t.strip() in {"great", "loved"} else 0.0 for t in tokens["token_text"]])
    examples = select_examples(tokens, acts, 0, ExampleConfig(n_top=4, n_quantiles=0, n_random=2, before=5, after=1))
    llm = CachedLLM(OpenAICompatibleLLM(server_url, "smollm2"), tmp_path / "cache")
    row = explain_and_score(llm, examples, SimulationConfig(explain_max_tokens=32, top_logprobs=5))
    assert row["prompt_tokens"] > 0 and row["n_score"] == len(row["predicted"] or examples.score)
    values = [v for w in row["predicted"] or [] for v in w if v is not None]
    if row["status"] == "ok":  # a usable simulation: values on the 0-10 scale, one list per scoring window
        assert values and all(0.0 <= v <= 10.0 for v in values)
        assert [len(w) for w in row["predicted"]] == [len(w.tokens) for w in examples.score]
    else:  # SmolLM2-135M through llama.cpp answers the simulation prompt without numbers: said, not scored
        assert row["reason"] == NO_VALUES and not values and isinstance(row["explanation"], str)
        assert row["score"] is None and row["detection_auroc"] is None
    again = explain_and_score(llm, examples, SimulationConfig(explain_max_tokens=32, top_logprobs=5))
    assert again == row and llm.hits >= 1
