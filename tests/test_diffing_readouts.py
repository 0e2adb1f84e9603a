"""The diffing readouts on known answers: every metric, its CI over units, the Spearman permutation null."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from rlhf_lens.diffing.readouts import (auroc, metric_names, point_metrics, precision_at_k, readout, recall_at_k,
                                        spearman, top_k_hits)
from rlhf_lens.diffing.truth import Truth, table_truth


def make_truth(values, in_truth=None) -> Truth:
    n = len(values)
    frame = pd.DataFrame({"token_id": np.arange(n) * 2, "token_text": [f" w{i}" for i in range(n)],
                          "word": [f"w{i}" for i in range(n)], "value": np.asarray(values, dtype=float),
                          "in_truth": np.ones(n, bool) if in_truth is None else np.asarray(in_truth)})
    return Truth(frame=frame, source="table", reward="test")


def test_top_k_counts_ties_at_their_expected_share():
    positive = np.array([1, 0, 1, 0, 0, 0], bool)
    assert top_k_hits(np.array([6, 5, 4, 3, 2, 1.0]), positive, 3) == 2
    # the k-th score is tied over 4 items of which 1 is positive: 1 strictly above (positive) + 2 of 4 tied
    assert top_k_hits(np.array([9, 1, 1, 1, 1, 0.0]), positive, 3) == pytest.approx(1 + 2 * 1 / 4)
    # a constant score gives exactly the base rate
    assert precision_at_k(np.zeros(6), positive, 3) == pytest.approx(2 / 6)


def test_precision_recall_auroc_spearman_known_answers():
    values = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0, 0.0, 0.0])
    positive = values > 0
    perfect = values.copy()
    assert precision_at_k(perfect, positive, 3) == 1.0
    assert precision_at_k(perfect, positive, 4) == 0.75
    assert precision_at_k(-perfect, positive, 3) == 0.0
    assert recall_at_k(perfect, positive, 2) == pytest.approx(2 / 3)
    assert recall_at_k(perfect, np.zeros(8, bool), 2) != recall_at_k(perfect, np.zeros(8, bool), 2)  # NaN
    assert auroc(perfect, positive) == 1.0
    assert auroc(-perfect, positive) == 0.0
    assert auroc(np.zeros(8), positive) == 0.5
    rng = np.random.default_rng(0)
    noisy, labels = np.round(rng.normal(size=300), 1), rng.random(300) < 0.2  # with ties
    assert auroc(noisy, labels) == pytest.approx(roc_auc_score(labels, noisy))
    assert spearman(np.arange(5.0), np.arange(5.0) ** 3) == pytest.approx(1.0)
    assert spearman(np.arange(5.0), -np.arange(5.0)) == pytest.approx(-1.0)
    assert np.isnan(spearman(np.zeros(5), np.arange(5.0)))


def test_spearman_uses_only_the_truths_words_and_the_rest_count_as_negatives():
    # three table words and two words outside the table (value 0): Spearman sees the table words only
    truth = make_truth([2.0, -1.0, -3.0, 0.0, 0.0], in_truth=[True, True, True, False, False])
    m = point_metrics(np.array([1.0, 0.0, -1.0, 5.0, 4.0]), truth)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["auroc"] == pytest.approx(2 / 4)  # the positive word is outranked by the two outside the table
    assert m["precision@20"] == pytest.approx(1 / 5)


def test_table_truth_marks_words_outside_the_table():
    vocab = pd.DataFrame({"token_id": [5, 7, 9], "token_text": [" love", " table", "hate"],
                          "word": ["love", "table", "hate"]})
    truth = table_truth({"love": 3.2, "hate": -2.7, "absent": 1.0}, vocab)
    assert truth.frame["value"].tolist() == [3.2, 0.0, -2.7]
    assert truth.frame["in_truth"].tolist() == [True, False, True]
    assert truth.planted_words == ["love"]


def test_readout_ci_over_units_covers_the_truth_signal_and_the_null_sits_at_chance():
    rng = np.random.default_rng(0)
    n_words, n_units = 400, 30
    values = np.where(rng.random(n_words) < 0.1, rng.uniform(0.5, 3, n_words), rng.normal(0, 0.3, n_words))
    values[values < 0.5] = np.minimum(values[values < 0.5], 0)  # ~10% positive, the rest <= 0
    truth = make_truth(values)
    vocab_size = 2 * n_words + 1
    signal = np.zeros((n_units, vocab_size))
    signal[:, truth.frame["token_id"]] = values + rng.normal(0, 1.0, (n_units, n_words))
    r = readout(signal, truth, n_boot=200, n_perm=200)
    assert set(r["metrics"]) == set(metric_names())
    assert r["n_units"] == n_units and r["unit"] == "prompt_group" and r["n_words"] == n_words
    sp = r["metrics"]["spearman"]
    assert sp["value"] > 0.5 and sp["ci"][0] > sp["null_abs_95"] and sp["p_perm"] < 0.01
    assert r["metrics"]["precision@20"]["ci"][0] > r["base_rate"]
    assert r["metrics"]["auroc"]["ci"][0] > 0.8

    null = np.zeros((n_units, vocab_size))
    null[:, truth.frame["token_id"]] = rng.normal(0, 1.0, (n_units, n_words))
    r0 = readout(null, truth, n_boot=200, n_perm=200)
    m = r0["metrics"]
    for k in (20, 50):
        lo, hi = m[f"precision@{k}"]["ci"]
        assert lo <= r0["base_rate"] <= hi
    assert m["auroc"]["ci"][0] <= 0.5 <= m["auroc"]["ci"][1]
    assert m["spearman"]["ci"][0] <= 0 <= m["spearman"]["ci"][1]
    assert abs(m["spearman"]["value"]) < m["spearman"]["null_abs_95"] and m["spearman"]["p_perm"] > 0.05


def test_readout_of_identical_models_is_the_base_rate_without_ci_for_one_unit():
    truth = make_truth([1.0, 0.0, -1.0, 2.0, 0.0])
    r = readout(np.zeros((1, 10)), truth)
    assert r["metrics"]["precision@20"]["value"] == pytest.approx(r["base_rate"]) == pytest.approx(2 / 5)
    assert r["metrics"]["auroc"]["value"] == 0.5
    assert r["metrics"]["spearman"]["value"] is None and r["metrics"]["spearman"]["p_perm"] is None
    assert all(m["ci"] is None for m in r["metrics"].values()) and r["n_boot"] == 0


def test_readout_rejects_scores_that_miss_token_ids():
    with pytest.raises(ValueError, match="do not cover"):
        readout(np.zeros((2, 3)), make_truth([1.0, 0.0, 1.0]))
