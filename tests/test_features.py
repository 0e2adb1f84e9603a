"""Known answers for dictionary matching: MMCS, Hungarian, bootstrap CIs, activation correlation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rlhf_lens.features import activation_correlation, bootstrap_ci, hungarian, max_cosine, mmcs
from rlhf_lens.sae import build_sae


def _dict(m=40, d=12, seed=0):
    return torch.randn(m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_mmcs_of_a_dictionary_with_itself_is_one():
    D = _dict()
    assert mmcs(D, D) == pytest.approx(1.0)
    assert mmcs(D * 3.0, D) == pytest.approx(1.0)  # atoms are unit-normalised first


def test_mmcs_is_invariant_to_permuting_either_dictionary():
    D, E = _dict(seed=0), _dict(m=60, seed=1)
    perm = torch.randperm(len(D), generator=torch.Generator().manual_seed(3))
    assert mmcs(D, D[perm]) == pytest.approx(1.0)
    assert mmcs(D[perm], E) == pytest.approx(mmcs(D, E))
    assert mmcs(D, E[torch.randperm(len(E))]) == pytest.approx(mmcs(D, E))


def test_hungarian_recovers_a_permutation():
    D = _dict()
    perm = torch.randperm(len(D), generator=torch.Generator().manual_seed(5))
    rows, cols, cos = hungarian(D, D[perm])
    assert np.allclose(cos, 1.0)
    assert (perm[cols].numpy() == rows).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hungarian_never_exceeds_max_cosine(seed):
    A, B = _dict(m=30, seed=seed), _dict(m=45, seed=seed + 10)
    rows, _, h = hungarian(A, B)
    best, _ = max_cosine(A, B)
    assert (h <= best[rows] + 1e-12).all()
    assert h.mean() <= best.mean() + 1e-12
    assert h.mean() < best.mean()  # random dictionaries collide, so one-to-one is strictly lower


def test_max_cosine_known_pair():
    A = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    B = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    best, idx = max_cosine(A, B)
    assert np.allclose(best, [2 ** -0.5, 2 ** -0.5]) and list(idx) == [0, 0]
    _, cols, h = hungarian(A, B)
    # One-to-one: giving B[0] to A[0] would force A[1] onto B[1] (cos -1); the optimum swaps them.
    assert np.allclose(h, [0.0, 2 ** -0.5]) and list(cols) == [1, 0]


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_data():
    rng = np.random.default_rng(0)
    small, large = rng.normal(0.5, 0.1, 50), rng.normal(0.5, 0.1, 5000)
    lo, hi = bootstrap_ci(small, 500, 0.95, 0)
    assert lo < small.mean() < hi
    lo2, hi2 = bootstrap_ci(large, 500, 0.95, 0)
    assert hi2 - lo2 < (hi - lo) / 5
    assert bootstrap_ci([0.3] * 10, 100) == (pytest.approx(0.3), pytest.approx(0.3))


def test_activation_correlation_of_an_sae_with_itself():
    torch.manual_seed(0)
    sae = build_sae("topk", 8, 16, k=4)
    x = torch.randn(400, 8)
    corr = activation_correlation(sae, sae, x, batch_size=64)
    live = sae.encode(x).std(0) > 0
    assert torch.allclose(corr.diagonal()[live], torch.ones(int(live.sum()), dtype=torch.float64))
    assert (corr.abs() <= 1 + 1e-9).all()


def test_stage_writes_table_and_summary_and_returns_the_histogram_panels(tmp_path, tiny_model_dir):
    import json

    import pandas as pd

    from rlhf_lens.activations import ActivationsConfig, extract_activations
    from rlhf_lens.features import features_stage
    from rlhf_lens.models import load_prepared
    from rlhf_lens.report.plots import plot_max_cosine_histograms
    from rlhf_lens.sae.io import save_sae

    model, tok = load_prepared(tiny_model_dir)
    texts = [f"review {i}: the film was {'good' if i % 2 else 'dull'} and long" for i in range(12)]
    extract_activations(model, tok, texts, [1], tmp_path / "store", ActivationsConfig())
    d = model.config.hidden_size
    dirs = {}
    for name, m, seed in (("relu_1x", 16, 0), ("relu_2x", 32, 1), ("relu_1x_seed1", 16, 2), ("relu_1x_seed2", 16, 3)):
        torch.manual_seed(seed)
        (tmp_path / name).mkdir()
        save_sae(build_sae("relu", d, m), tmp_path / name)
        dirs[name] = tmp_path / name
    summary, panels = features_stage(dirs, tmp_path / "store", 1, tmp_path / "m.parquet", tmp_path / "s.json",
                                     sizes=(1, 2), kinds=("relu",), baseline_seeds=(1, 2), top_k=3, n_boot=50,
                                     level=0.9, eval_fraction=0.5, seed=0)
    assert not list(tmp_path.glob("*.png"))  # the stage draws nothing
    assert json.loads((tmp_path / "s.json").read_text()) == summary
    assert len(pd.read_parquet(tmp_path / "m.parquet")) > 0
    [(title, series)] = panels
    assert title == "layer 1, relu" and list(series) == ["1x vs 2x", "1x seed1 vs 2x", "1x seed2 vs 2x"]
    floor = summary["kinds"]["relu"]["seed_baselines"]["cross_seed"]
    # Like for like: the floor's small dictionaries run their max over the large one's 32 atoms, as the headline.
    assert (floor["n_small"], floor["n_large"], floor["n_seeds"]) == (16, 32, 2)
    assert floor["mmcs"] == pytest.approx(np.mean(list(floor["per_seed"].values())))
    assert all(len(v) == 16 for v in series.values())
    plot_max_cosine_histograms(panels, tmp_path / "hist.png")
    assert (tmp_path / "hist.png").stat().st_size > 1000


def test_chance_mmcs_grows_with_the_pool_alone():
    """The first wave's floor compared a max over m atoms with a headline max over 2m: pool size alone
    moves it (d 576: 0.1285 vs 0.1367 for 576 vs 1,152 candidates, the numbers the review measured)."""
    from rlhf_lens.features import chance_mmcs

    same = chance_mmcs(576, 576, 576, seed=0)
    double = chance_mmcs(576, 1152, 576, seed=0)
    assert same == pytest.approx(0.1285, abs=0.004) and double == pytest.approx(0.1367, abs=0.004)
    assert double > same


def test_the_floor_is_like_for_like_and_its_interval_is_across_seeds():
    """Planted: the large dictionary holds the small one's atoms; a small dictionary of another seed
    holds unrelated ones. The floor compares each seed's small dictionary with the same large one, and
    its interval comes from the spread across seeds (t with n - 1 degrees of freedom)."""
    from scipy import stats

    from rlhf_lens.features import cross_seed_floor

    class Atoms(torch.nn.Module):
        def __init__(self, a):
            super().__init__()
            self.a = a

        def atoms(self):
            return self.a

    g = torch.Generator().manual_seed(0)
    large = Atoms(torch.randn(64, 16, generator=g))
    smalls = {s: Atoms(torch.randn(32, 16, generator=g)) for s in (1, 2, 3)}
    floor = cross_seed_floor(smalls, large, 0.95)
    vals = np.array([floor["per_seed"][k] for k in ("1", "2", "3")])
    half = stats.t.ppf(0.975, 2) * vals.std(ddof=1) / np.sqrt(3)
    assert floor["mmcs_ci"] == pytest.approx([vals.mean() - half, vals.mean() + half])
    assert (floor["n_small"], floor["n_large"]) == (32, 64)
    one = cross_seed_floor({1: smalls[1]}, large, 0.95)
    assert one["mmcs_ci"] == [None, None]  # one seed: no spread to estimate
