"""Example selection for autointerp: global maximum, per-group top windows, explanation and scoring
windows from disjoint prompt groups, no repeated window, rare features flagged."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.autointerp.examples import ExampleConfig, explain_side, select_examples


def corpus(n_docs=30, length=20, seed=0):
    rng = np.random.default_rng(seed)
    tokens = pd.DataFrame({"doc_id": np.repeat(np.arange(n_docs), length),
                           "token_text": [f"t{i}" for i in range(n_docs * length)]})
    acts = np.where(rng.random(n_docs * length) < 0.1, rng.random(n_docs * length), 0.0)
    return tokens, acts


def _side_of_doc(tokens, seed=0):
    side = explain_side(tokens["doc_id"].to_numpy(), seed)
    return dict(zip(tokens["doc_id"], side))


def test_top_windows_are_the_best_groups_of_each_side():
    tokens, acts = corpus()
    side = _side_of_doc(tokens)
    explain_doc = next(d for d, e in side.items() if e)
    score_doc = next(d for d, e in side.items() if not e)
    acts[explain_doc * 20 + 5] = 5.0
    acts[explain_doc * 20 + 7] = 4.0  # the same document again: must not take a second top slot
    acts[score_doc * 20 + 5] = 3.0
    ex = select_examples(tokens, acts, feature=0, cfg=ExampleConfig(n_top=4, n_quantiles=0, n_random=0))
    assert ex.max_activation == 5.0
    assert max(ex.explain[0].activations) == 5.0  # the best explanation-side group
    assert max(ex.score[0].activations) == 3.0    # the best scoring-side group, not the first one's second peak
    assert ex.score_kinds == ["top", "top"] and len(ex.explain) == 2
    assert sum(max(w.activations) == 4.0 for w in ex.explain + ex.score) == 0


def test_explanation_and_scoring_windows_come_from_disjoint_prompt_groups():
    """Documents of one prompt share its prefix (4 samples x 2 models per prompt): a window on that prefix
    is the same in each of them. Explanation and held-out windows must never share a group."""
    rng = np.random.default_rng(1)
    n_groups, per_group, length = 12, 8, 10
    groups = np.repeat(np.arange(n_groups), per_group * length)
    tokens = pd.DataFrame({"doc_id": np.repeat(np.arange(n_groups * per_group), length), "group": groups,
                           "token_text": [f"g{g}_{i % length}" for i, g in enumerate(groups)]})
    acts = np.where(rng.random(len(tokens)) < 0.3, rng.random(len(tokens)) + 0.01, 0.0)
    ex = select_examples(tokens, acts, 2, ExampleConfig(n_top=8, n_quantiles=3, per_quantile=2, n_random=3))
    group_of = {w: int(w.split("_")[0][1:]) for w in tokens["token_text"]}
    explain_groups = {group_of[t] for w in ex.explain for t in w.tokens}
    held_groups = {group_of[t] for w in ex.score for t in w.tokens}
    assert explain_groups and held_groups and not explain_groups & held_groups
    # Same prefix in 8 documents of a group: no window twice.
    every = [tuple(w.tokens) for w in ex.explain + ex.score]
    assert len(every) == len(set(every))


def test_windows_stay_inside_their_document():
    tokens, acts = corpus(length=5)
    acts[:] = 0
    acts[5] = 1.0  # first token of doc 1
    ex = select_examples(tokens, acts, 0, ExampleConfig(n_top=2, n_quantiles=0, n_random=2, before=3, after=3))
    [window] = [w for w in ex.explain + ex.held_out if max(w.activations) == 1.0]
    assert window.tokens == ["t5", "t6", "t7", "t8"]
    assert ex.score_kinds.count("random") == 2
    assert all(max(w.activations) == 0 for w in ex.silent)


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
