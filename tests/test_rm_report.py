"""SARM's latents through the autointerp pipeline (a simulator that knows the planted latent scores it high,
one that does not scores it low) and the reward-model report page (latents joined with their weight,
attribution, explanation and token utility; untrusted text escaped; missing parts said so)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.autointerp.examples import ExampleConfig
from rlhf_lens.autointerp.simulate import SimulationConfig
from rlhf_lens.report.reward_models import (NOT_AVAILABLE, RewardModelResults, latent_table, reward_model_markdown)
from rlhf_lens.reward_models.sarm_analysis import examples_table
from rlhf_lens.reward_models.sarm_autointerp import OUTPUT_COLUMNS, explain_sarm_latents

WORDS = ["the", " film", " was", " great", " dull", " and", " long", "."]


class _SimulatorLLM:
    """Explains with a fixed sentence; simulates 10 on tokens containing ``word`` and 0 elsewhere."""

    def __init__(self, word):
        self.word, self.cache_identity = word, f"simulator-{word}"

    def chat(self, messages, *, max_tokens, temperature=0.0, top_logprobs=0):
        from rlhf_lens.autointerp.llm import Completion

        if "predict" not in messages[0]["content"]:
            return Completion(text=f"Fires on the word {self.word.strip()}.", prompt_tokens=20, completion_tokens=6)
        lines = [line[:-1] for line in messages[-1]["content"].splitlines() if line.endswith("\t")]
        return Completion(text="".join(f"{t}\t{10 if self.word in t else 0}\n" for t in lines), prompt_tokens=4,
                          completion_tokens=len(lines))


@pytest.fixture(scope="module")
def examples(tmp_path_factory):
    """Two latents over a random corpus: latent 0 fires exactly on ' great', latent 1 on ' dull'."""
    rng = np.random.default_rng(0)
    vocab = {w: i for i, w in enumerate(WORDS)}
    ids = [rng.integers(0, len(WORDS), 12).tolist() for _ in range(60)]
    latents = []
    for row in ids:
        z = np.zeros((len(row), 2))
        z[:, 0] = [2.0 if t == vocab[" great"] else 0.0 for t in row]
        z[:, 1] = [1.5 if t == vocab[" dull"] else 0.0 for t in row]
        latents.append(z)
    table = examples_table(ids, latents, list(range(60)), lambda t: WORDS[t], [0, 1], np.array([0.8, -0.5]),
                           ExampleConfig(n_top=4, n_quantiles=2, per_quantile=2, n_random=2, before=3, after=1))
    path = tmp_path_factory.mktemp("sarm_examples") / "examples.parquet"
    table.to_parquet(path)
    return path


def test_a_simulator_that_knows_the_latent_scores_it_high_and_one_that_does_not_low(examples, tmp_path):
    cfg = SimulationConfig(top_logprobs=0)
    right = explain_sarm_latents(examples, tmp_path / "a.parquet", _SimulatorLLM(" great"), cfg)
    assert list(right.columns) == OUTPUT_COLUMNS and right.feature.tolist() == [0, 1]
    assert right.weight.tolist() == [0.8, -0.5] and (right.status == "ok").all()
    assert right.loc[0, "explanation"] == "Fires on the word great."
    assert right.loc[0, "score"] > 0.9 and right.loc[0, "detection_auroc"] > 0.9
    assert right.loc[1, "score"] < 0.3  # the same simulator read against the ' dull' latent
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "a.parquet"), right)


def _results(**kw) -> RewardModelResults:
    attribution = pd.DataFrame({"response": [0, 0, 1, 2], "latent": [3, 7, 3, 7], "activation": [1.0, 2.0, 3.0, 0.0],
                                "weight": [0.5, -1.0, 0.5, -1.0], "contribution": [0.5, -2.0, 1.5, 0.0]})
    explained = pd.DataFrame({"feature": [7, 3], "weight": [-1.0, 0.5],
                              "explanation": ["<b>awful</b> | words\nnew line", "praise"], "score": [0.4, 0.7],
                              "status": ["ok", "ok"], "reason": ["", ""]})
    recovery = {"spearman": 0.9, "baseline_mean": 0.01, "baseline_ci95": [-0.8, 0.8], "p_value": 0.02, "shuffles": 50,
                "n_latents_used": 2, "min_tokens": 1,
                "latents": [{"latent": 3, "weight": 0.5, "n_fired": 4, "mean_utility": 1.5},
                            {"latent": 7, "weight": -1.0, "n_fired": 2, "mean_utility": -2.0}]}
    return RewardModelResults(attribution=attribution, latent_explanations=explained, recovery=recovery, **kw)


def test_latent_table_joins_weight_attribution_explanation_and_utility():
    table = latent_table(_results()).set_index("latent")
    assert list(table.index) == [7, 3]  # largest |w| first
    assert table.loc[3, "mean_contribution"] == pytest.approx(1.0) and table.loc[3, "n_responses"] == 2
    assert table.loc[7, "n_responses"] == 1  # response 2 lists latent 7 with activation 0: it did not fire
    assert table.loc[7, "mean_utility"] == -2.0 and table.loc[3, "score"] == 0.7


def test_page_escapes_model_text_and_says_what_is_missing(tmp_path):
    page = reward_model_markdown("run", _results(), tmp_path)
    assert "<b>" not in page and "\\|" in page and "new line" in page
    assert "permutation p = 0.02: significant" in page
    assert page.count(NOT_AVAILABLE) >= 3  # accuracy, shift, policies, policy features
    empty = reward_model_markdown("run", RewardModelResults(), tmp_path)
    assert empty.count(NOT_AVAILABLE) == 6
