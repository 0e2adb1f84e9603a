"""Example selection for autointerp: global maximum, per-document top windows, rare features flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.autointerp.examples import ExampleConfig, select_examples


def corpus(n_docs=30, length=20, seed=0):
    rng = np.random.default_rng(seed)
    tokens = pd.DataFrame({"doc_id": np.repeat(np.arange(n_docs), length),
                           "token_text": [f"t{i}" for i in range(n_docs * length)]})
    acts = np.where(rng.random(n_docs * length) < 0.1, rng.random(n_docs * length), 0.0)
    return tokens, acts


def test_top_windows_are_the_best_documents_and_alternate():
    tokens, acts = corpus()
    acts[45] = 5.0  # doc 2
    acts[47] = 4.0  # doc 2 again: must not take a second top slot
    acts[300] = 3.0  # doc 15
    ex = select_examples(tokens, acts, feature=0, cfg=ExampleConfig(n_top=4, n_quantiles=0, n_random=0))
    assert ex.max_activation == 5.0
    assert max(ex.explain[0].activations) == 5.0  # rank 0 -> explanation set
    assert max(ex.score[0].activations) == 3.0    # rank 1 -> scoring set (doc 15, not doc 2's second peak)
    assert ex.score_kinds == ["top", "top"]
    assert len(ex.explain) == 2


def test_windows_stay_inside_their_document():
    tokens, acts = corpus(length=5)
    acts[:] = 0
    acts[5] = 1.0  # first token of doc 1
    ex = select_examples(tokens, acts, 0, ExampleConfig(n_top=1, n_quantiles=0, n_random=2, before=3, after=3))
    assert ex.explain[0].tokens == ["t5", "t6", "t7", "t8"]
    assert ex.score_kinds == ["random", "random"]
    assert all(max(w.activations) == 0 for w in ex.score)


def test_rare_feature_is_flagged_not_dropped():
    tokens, acts = corpus()
    acts[:] = 0
    acts[[10, 200]] = [0.5, 0.7]
    ex = select_examples(tokens, acts, 3, ExampleConfig(n_random=5))
    assert ex.rare and ex.n_active == 2
    assert len(ex.explain) + ex.score_kinds.count("top") == 2
    assert ex.score_kinds.count("random") == 5


def test_selection_is_seeded():
    tokens, acts = corpus()
    a = select_examples(tokens, acts, 1, ExampleConfig(), seed=0)
    b = select_examples(tokens, acts, 1, ExampleConfig(), seed=0)
    assert a == b
    assert {"quantile", "random", "top"} <= set(a.score_kinds)


def test_length_mismatch_is_an_error():
    tokens, acts = corpus()
    with pytest.raises(ValueError, match="activations"):
        select_examples(tokens, acts[:-1], 0, ExampleConfig())


def test_dense_features_are_left_out_before_ranking():
    """MMCS matching favours dense, always-on latents (the first wave selected features active on
    80-95% of tokens): with max_density they are dropped first, and the next-ranked ones selected."""
    import numpy as np
    import pandas as pd

    from rlhf_lens.autointerp.stage import choose_features

    matches = pd.DataFrame({"kind": "relu", "direction": "small_to_large", "feature": np.arange(8),
                            "rank": np.arange(1, 9), "top_k": np.arange(8) < 3, "max_cosine": np.linspace(0.9, 0.2, 8),
                            "match": np.arange(8)})
    n_active = np.array([900, 950, 40, 30, 20, 10, 0, 5])  # of 1,000 tokens: features 0 and 1 are dense
    chosen = choose_features(matches, "relu", 3, n_active, 2, seed=0, max_density=0.1, n_tokens=1000)
    selected = chosen[chosen["selected"]]
    assert selected["feature"].tolist() == [2, 3, 4]
    assert (selected["density"] <= 0.1).all() and selected["density"].tolist() == [0.04, 0.03, 0.02]
    random = chosen[~chosen["selected"]]
    assert len(random) == 2 and set(random["feature"]) <= {5, 7}  # live, not dense, not selected
    kept = choose_features(matches, "relu", 3, n_active, 0, seed=0, max_density=None, n_tokens=1000)
    assert kept["feature"].tolist() == [0, 1, 2]
