"""The Bayesian search of the shaping weights: the simplex map, and resume after a kill without repeating trials."""

from __future__ import annotations

import numpy as np
import pytest

from rlhf_lens.shaping_study.search import WeightSearch, simplex_from_free

COMPONENTS = ("last_token", "shap", "lime")
TARGET = np.array([0.2, 0.7, 0.1])


def objective(weights, k, calls):
    calls.append(k)
    w = np.array([weights[c] for c in COMPONENTS])
    return float(-np.sum((w - TARGET) ** 2)), {"steps": 3}


def test_simplex_map_is_onto_and_uniform():
    rng = np.random.default_rng(0)
    w = np.array([simplex_from_free(z) for z in rng.uniform(size=(4000, 2))])
    assert np.allclose(w.sum(1), 1.0) and (w >= 0).all()
    assert np.allclose(w.mean(0), 1 / 3, atol=0.02)  # Dirichlet(1): each weight has mean 1/d
    assert simplex_from_free([1.0, 0.3]) == pytest.approx([1.0, 0.0, 0.0])
    assert simplex_from_free([0.0, 0.0]) == pytest.approx([0.0, 0.0, 1.0])


def test_killed_search_resumes_without_repeating_finished_trials(tmp_path):
    def search(folder):
        return WeightSearch(COMPONENTS, tmp_path / folder, n_trials=6, n_initial=3, seed=1)

    calls_full: list[int] = []
    full = search("full").run(lambda w, k: objective(w, k, calls_full))
    assert calls_full == list(range(6))

    calls: list[int] = []

    def killed_at_4(w, k):
        if k == 4:
            raise KeyboardInterrupt  # the job is killed during trial 4
        return objective(w, k, calls)

    with pytest.raises(KeyboardInterrupt):
        search("killed").run(killed_at_4)
    assert calls == [0, 1, 2, 3]
    calls.clear()
    resumed = search("killed").run(lambda w, k: objective(w, k, calls))
    assert calls == [4, 5]  # trials 0-3 are not run again
    for k in range(6):  # the same points and values as the search that was never killed
        assert resumed[k]["weights"] == pytest.approx(full[k]["weights"], abs=1e-12)
        assert resumed[k]["value"] == pytest.approx(full[k]["value"], abs=1e-12)
    # the GP trials moved towards the optimum: the best beats the random initial ones
    best = WeightSearch.best(resumed)
    assert best["value"] >= max(resumed[k]["value"] for k in range(3))


def test_initial_trials_are_independent_of_each_other(tmp_path):
    s = WeightSearch(COMPONENTS, tmp_path, n_trials=5, n_initial=3, seed=2)
    assert s.needs(2) == [] and s.needs(3) == [0, 1, 2]
    alone = s.propose(2, history={})
    assert alone["weights"] == pytest.approx(s.propose(2, history={0: {"z": {"z0": 0.5, "z1": 0.5}, "value": 1.0}})["weights"])
    with pytest.raises(ValueError, match="needs the results of trials"):
        s.propose(3, history={})
