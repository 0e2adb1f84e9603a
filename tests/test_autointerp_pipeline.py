"""Explain -> simulate -> score with the real default model, its cache, and the failure path."""

from __future__ import annotations

import json
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
    # Greedy decoding makes the outcome fixed for this model: SmolLM2-135M writes a parseable one-sentence
    # explanation and simulates values for the scoring windows, so the feature must be scored, not failed.
    assert row["status"] == "ok", row["reason"]
    assert isinstance(row["explanation"], str) and 0 < len(row["explanation"]) <= 300
    assert np.isfinite(row["score"]) and -1.0 <= row["score"] <= 1.0
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


class _NumberlessLLM:
    """Explains, then answers the simulation prompt without any number (what a 135M chat model does)."""

    cache_identity = "numberless"

    def chat(self, messages, *, max_tokens, temperature=0.0, top_logprobs=0):
        from rlhf_lens.autointerp.llm import Completion

        if "predict" not in messages[0]["content"]:
            return Completion(text="This feature fires on film words.", prompt_tokens=20, completion_tokens=6)
        return Completion(text="This feature fires on film words.\nThe film", prompt_tokens=4, completion_tokens=9)


def test_a_simulation_without_numbers_fails_the_feature_instead_of_scoring_it(planted):
    from rlhf_lens.autointerp.pipeline import NO_VALUES

    tokens, acts = planted
    row = explain_and_score(_NumberlessLLM(), select_examples(tokens, acts, 0, SMALL), SimulationConfig(top_logprobs=0))
    assert row["status"] == "failed" and row["reason"] == NO_VALUES
    assert row["explanation"] == "This feature fires on film words."
    assert row["score"] is None and row["detection_auroc"] is None  # not 0.5 from all-zero predictions


class _ScriptedLLM:
    """Explains with a fixed sentence and simulates every token as 5 (no network, no model)."""

    cache_identity = "scripted"

    def chat(self, messages, *, max_tokens, temperature=0.0, top_logprobs=0):
        from rlhf_lens.autointerp.llm import Completion

        if "predict" not in messages[0]["content"]:
            return Completion(text="This feature fires on film words.", prompt_tokens=20, completion_tokens=6)
        lines = [line[:-1] for line in messages[-1]["content"].splitlines() if line.endswith("\t")]
        return Completion(text="".join(f"{t}\t5\n" for t in lines), prompt_tokens=4, completion_tokens=len(lines))


def test_stage_writes_one_row_per_chosen_feature(tmp_path, tiny_model_dir):
    import torch

    from rlhf_lens.activations import ActivationsConfig, extract_activations
    from rlhf_lens.autointerp.stage import OUTPUT_COLUMNS, AutointerpConfig, autointerp_stage
    from rlhf_lens.models import load_prepared
    from rlhf_lens.sae import build_sae
    from rlhf_lens.sae.io import save_sae

    model, tok = load_prepared(tiny_model_dir)
    extract_activations(model, tok, [f"review {i}: the film was {'good' if i % 2 else 'dull'}" for i in range(20)],
                        [1], tmp_path / "store", ActivationsConfig())
    torch.manual_seed(0)
    (tmp_path / "sae").mkdir()
    save_sae(build_sae("relu", model.config.hidden_size, 8), tmp_path / "sae")
    pd.DataFrame({"kind": "relu", "direction": "small_to_large", "feature": np.arange(8), "rank": np.arange(8),
                  "top_k": np.arange(8) < 3, "max_cosine": np.linspace(0.9, 0.2, 8),
                  "match": np.arange(8)}).to_parquet(tmp_path / "m.parquet")
    table = autointerp_stage(tmp_path / "store", 1, tmp_path / "sae", tmp_path / "m.parquet", tmp_path / "a.parquet",
                             _ScriptedLLM(), role="base", dictionary="relu_1x", kind="relu",
                             cfg=AutointerpConfig(features_per_layer=2, random_features=1, max_density=None), examples_cfg=SMALL,
                             simulation_cfg=SimulationConfig(top_logprobs=0), seed=0)
    assert list(table.columns) == OUTPUT_COLUMNS
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), table)
    assert table["selected"].tolist()[:2] == [True, True] and table["feature"].tolist()[:2] == [0, 1]
    ok = table[table["status"] == "ok"]
    assert len(ok) and (ok["explanation"] == "This feature fires on film words.").all()
    n_score = ok["examples"].map(lambda e: len(json.loads(e)["score"]))
    assert (ok["prompt_tokens"] == 20 + 4 * n_score).all()  # one explanation, one simulation per scoring window
