"""Utility scoring: Table 3's explanation utility, token and unembedding utilities, the statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lens.rewards.utility_table import load_vader
from rlhf_lens.sae import build_sae
from rlhf_lens.scoring import (ScoringConfig, activation_weighted_utility, bootstrap_ci, explanation_utility,
                               measure_stats, permutation_p, table3_stats, token_utilities, unembed_utility,
                               vocab_utilities, word_utility)
from tiny_models import tiny_llama


@pytest.fixture(scope="module")
def vader():
    return load_vader()


def test_explanation_utility_is_the_mean_over_lexicon_words(vader):
    assert explanation_utility("great and happy", vader) == pytest.approx((vader["great"] + vader["happy"]) / 2)
    # Case and punctuation do not matter; words outside the lexicon do not dilute the mean.
    assert explanation_utility('This feature fires on "GREAT!" tokens.', vader) == pytest.approx(vader["great"])
    assert explanation_utility("fires on commas in lists", vader) == 0.0
    assert explanation_utility(None, vader) == 0.0 and explanation_utility("", vader) == 0.0
    # The answer frame is not content ("fire" is a VADER word): only "sad" counts.
    assert explanation_utility("The feature fire on sad endings", vader) == pytest.approx(vader["sad"])
    assert explanation_utility("This neuron activates on fire and smoke", vader) == pytest.approx(vader["fire"])


def test_word_utility_takes_exactly_one_word(vader):
    assert word_utility(" Good", vader) == vader["good"]
    assert word_utility("good bad", vader) == 0.0 and word_utility(",", vader) == 0.0


def test_token_utilities_follow_words_across_token_boundaries(vader):
    tokens = pd.DataFrame({"doc_id": [0, 0, 0, 0, 1, 1],
                           "token_text": ["I", " feel", " go", "od.", "Sad", " day"]})
    u = token_utilities(tokens, vader)
    # "good" is split over two tokens: both carry its utility; documents do not run together.
    assert u.tolist() == [0.0, 0.0, vader["good"], vader["good"], vader["sad"], 0.0]


def _identity_sae(d):
    sae = build_sae("relu", d, d)
    with torch.no_grad():
        sae.W.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_activation_weighted_utility_known_answer():
    sae = _identity_sae(3)
    # Latent 0 fires (2.0 and 1.0) on tokens of utility 1.5 and 3.0; latent 1 on one token of 0; latent 2 never.
    x = torch.tensor([[2.0, 0, 0], [1.0, 0, 0], [0, 5.0, 0], [0, 0, -1.0]])
    util = np.array([1.5, 3.0, 0.0, -2.0])
    weighted, counts = activation_weighted_utility(sae, x, util, batch_size=3)
    assert weighted[0] == pytest.approx((2 * 1.5 + 1 * 3.0) / 3) and weighted[1] == 0.0 and np.isnan(weighted[2])
    assert counts.tolist() == [2, 1, 0]


def test_unembedding_utility_reads_the_promoted_tokens(tokenizer, vader):
    model = tiny_llama(len(tokenizer), hidden=32)
    vocab = vocab_utilities(tokenizer, vader)
    good = tokenizer(" good", add_special_tokens=False)["input_ids"]
    assert len(good) == 1
    atoms = torch.zeros(2, 32)
    atoms[0, 0] = atoms[1, 1] = 1.0
    with torch.no_grad():
        emb = model.get_output_embeddings().weight
        emb[:, 0] = 0.0
        emb[good[0], 0] = 10.0  # only " good" has a logit along atom 0
    u = unembed_utility(atoms, model, vocab, top_n=1)
    assert u[0] == pytest.approx(vader["good"])
    assert vocab[good[0]] == vader["good"]


def test_permutation_test_and_bootstrap():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 40)
    assert permutation_p(a, a.copy(), 500, seed=0) == pytest.approx(1.0)
    assert permutation_p(a, a + 3.0, 500, seed=0) < 0.01
    lo, hi = bootstrap_ci(a, np.mean, 500, 0.95, seed=0)
    assert lo < a.mean() < hi
    assert permutation_p(np.array([]), a, 10, seed=0) is None


def _rows(base_u, rlhf_u, random_u):
    rows = []
    for role, us in (("base", base_u), ("rlhf", rlhf_u)):
        for i, u in enumerate(us):
            rows.append({"role": role, "feature": i, "selected": True, "explained": u is not None,
                         "explanation_utility": np.nan if u is None else u, "token_utility": u or 0.0,
                         "n_active": 5})
        for j, u in enumerate(random_u):
            rows.append({"role": role, "feature": 100 + j, "selected": False, "explained": True,
                         "explanation_utility": u, "token_utility": u, "n_active": 5})
    return pd.DataFrame(rows)


def test_table3_sums_absolute_utilities_and_scales_the_random_baseline():
    rows = _rows([1.0, -2.0, 0.0, None], [3.0, -3.0, 2.0, 1.0], [0.5, -0.5])
    stats = table3_stats(rows, ScoringConfig(bootstrap=200, permutations=200), seed=0)
    assert stats["base"]["sum_abs_utility"] == pytest.approx(3.0)
    assert stats["base"]["n_features"] == 3 and stats["base"]["n_failed"] == 1
    assert stats["rlhf"]["sum_abs_utility"] == pytest.approx(9.0)
    # The random features' mean |utility| (0.5) times the number of selected, explained features.
    assert stats["base"]["random_baseline"]["sum_abs_utility"] == pytest.approx(0.5 * 3)
    assert stats["difference"]["rlhf_minus_base"] == pytest.approx(6.0)
    lo, hi = stats["rlhf"]["ci"]
    assert lo <= 9.0 <= hi


def test_llm_free_measure_uses_the_unselected_features_as_baseline():
    rows = _rows([1.0, 1.0], [2.0, 2.0], [0.25, 0.75])
    stats = measure_stats(rows, "token_utility", ScoringConfig(bootstrap=200, permutations=200), seed=0)
    assert stats["base"]["mean_abs"] == pytest.approx(1.0) and stats["rlhf"]["mean_abs"] == pytest.approx(2.0)
    assert stats["base"]["random_mean_abs"] == pytest.approx(0.5)
    assert stats["difference"]["rlhf_minus_base"] == pytest.approx(1.0)
