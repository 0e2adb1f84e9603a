"""Known answers for the SAE metrics: explained variance, sparsity, cosine/l2 ratio, spliced CE/KL."""

from __future__ import annotations

import pytest
import torch

from rlhf_lens.model_parts import find_blocks, site_module
from rlhf_lens.sae.metrics import ReconstructionStats, explained_variance, spliced_losses


def _data(n=500, d=8, offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2, d, dtype=torch.float64) + offset


def test_identity_reconstruction_explains_everything():
    x = _data()
    assert explained_variance(x, x.clone()) == pytest.approx(1.0, abs=1e-15)


def test_predicting_the_mean_explains_nothing():
    x = _data(offset=3.0)
    x_hat = x.mean(0, keepdim=True).expand_as(x)
    assert explained_variance(x, x_hat, batch_size=64) == pytest.approx(0.0, abs=1e-12)


def test_large_mean_offset_is_measured_around_the_mean():
    x = _data(offset=1e4)
    noise = _data(seed=1) * 0.5
    x_hat = x + noise
    stats = ReconstructionStats(x.shape[1])
    for i in range(0, len(x), 37):
        stats.update(x[i:i + 37], x_hat[i:i + 37])
    r = stats.result()
    expected = 1 - (noise ** 2).sum() / ((x - x.mean(0)) ** 2).sum()
    assert r["explained_variance"] == pytest.approx(float(expected), rel=1e-9)
    assert r["explained_variance"] < 0.9
    # Around zero the same reconstruction looks perfect: the legacy variant is inflated.
    assert r["explained_variance_legacy_around_zero"] > 0.999999


@pytest.mark.parametrize("batch_size", [1, 7, 64, 499])
def test_explained_variance_does_not_depend_on_batch_size(batch_size):
    """Batched and whole are two float paths (a running mean merged per batch vs one pass), both in float64:
    they agree to rounding, 4.4e-16 relative at most (measured at commit 201ec3d on an AMD EPYC Zen 4 under the
    default, avx2 and no-SIMD kernels), so 1e-12 relative leaves room and a wrong merge formula (order 1) fails."""
    x = _data(offset=5.0)
    x_hat = x * 0.8 + 0.3
    whole = explained_variance(x, x_hat)
    assert explained_variance(x, x_hat, batch_size=batch_size) == pytest.approx(whole, rel=1e-12, abs=1e-14)


def test_sparsity_counts():
    # 10 tokens, 4 latents: latent 0 fires on every token, latent 1 on one token, 2 and 3 never.
    f = torch.zeros(10, 4)
    f[:, 0] = 1.0
    f[3, 1] = 2.0
    x = _data(n=10, d=3)
    stats = ReconstructionStats(3, 4)
    stats.update(x[:4], x[:4], f[:4])
    stats.update(x[4:], x[4:], f[4:])
    r = stats.result()
    assert r["l0"] == pytest.approx(1.1)
    assert r["dead_fraction"] == pytest.approx(0.5)
    # Latent 0 fires on 100% (> 10%), latent 1 on exactly 10% (not > 10%).
    assert r["dense_fraction"] == pytest.approx(0.25)


def test_cosine_and_l2_ratio():
    x = _data(n=50, d=6, offset=1.0)
    r_scaled = ReconstructionStats(6)
    r_scaled.update(x, 2 * x)
    out = r_scaled.result()
    assert out["cosine"] == pytest.approx(1.0)
    assert out["l2_ratio"] == pytest.approx(2.0)
    r_neg = ReconstructionStats(6)
    r_neg.update(x, -x)
    assert r_neg.result()["cosine"] == pytest.approx(-1.0)


class _Identity(torch.nn.Module):
    m = 1

    def forward(self, x):
        return x, x


class _Zero(torch.nn.Module):
    m = 1

    def forward(self, x):
        return torch.zeros_like(x), x


def test_spliced_identity_recovers_all_and_zero_recovers_none(tiny_model_dir, tokenizer):
    from rlhf_lens.models import load_prepared

    model, tok = load_prepared(tiny_model_dir)
    module = site_module(find_blocks(model)[0], "mlp_out", 0)
    docs = [tok("The film was a quiet delight")["input_ids"], tok("Dull and far too long")["input_ids"]]
    exclude = set(tok.all_special_ids)
    same = spliced_losses(model, module, _Identity(), docs, exclude=exclude, mean_vector=torch.zeros(32))
    assert same["ce_sae"] == pytest.approx(same["ce_clean"], abs=1e-5)
    assert same["kl_sae"] == pytest.approx(0.0, abs=1e-5)
    # A zero vector as the "mean" makes mean-ablation equal zero-ablation.
    assert same["ce_mean_ablation"] == pytest.approx(same["ce_zero_ablation"], abs=1e-5)
    assert same["ce_loss_score_zero"] == pytest.approx(1.0, abs=1e-3)
    zero = spliced_losses(model, module, _Zero(), docs, exclude=exclude)
    assert zero["ce_sae"] == pytest.approx(zero["ce_zero_ablation"], abs=1e-5)
    assert zero["ce_loss_score_zero"] == pytest.approx(0.0, abs=1e-3)
    assert zero["kl_sae"] > 0


def test_spliced_losses_of_several_saes_match_one_at_a_time(tiny_model_dir, tokenizer):
    from rlhf_lens.models import load_prepared

    model, tok = load_prepared(tiny_model_dir)
    module = site_module(find_blocks(model)[1], "mlp_out", 1)
    docs = [tok("A warm and funny film")["input_ids"], tok("Too long by an hour")["input_ids"]]
    exclude, mean = set(tok.all_special_ids), torch.full((32,), 0.1)
    both = spliced_losses(model, module, {"id": _Identity(), "zero": _Zero()}, docs, exclude=exclude, mean_vector=mean)
    for name, sae in (("id", _Identity()), ("zero", _Zero())):
        alone = spliced_losses(model, module, sae, docs, exclude=exclude, mean_vector=mean)
        assert both[name].keys() == alone.keys()
        for key, value in alone.items():
            assert both[name][key] == pytest.approx(value, abs=1e-6), (name, key)


class _Record(torch.nn.Module):
    """Identity SAE that records which rows (tokens) were spliced."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, x):
        self.seen.append(x.shape[0])
        return x, x


def test_spliced_losses_leave_out_the_first_positions(tiny_model_dir, tokenizer):
    """The store leaves out position 0 (the attention sink without BOS); the SAE never saw it, so
    the spliced evaluation neither replaces it nor scores it."""
    from rlhf_lens.models import load_prepared

    model, tok = load_prepared(tiny_model_dir)
    module = site_module(find_blocks(model)[0], "mlp_out", 0)
    docs = [tok("The film was a quiet delight")["input_ids"], tok("Dull and far too long")["input_ids"]]
    n_content = sum(len(d) for d in docs)
    for skip, spliced_rows in ((0, n_content), (1, n_content - 2), (2, n_content - 4)):
        sae = _Record()
        out = spliced_losses(model, module, sae, docs, exclude=set(tok.all_special_ids), skip_first=skip)
        assert sae.seen == [spliced_rows]
        assert out["ce_sae"] == pytest.approx(out["ce_clean"], abs=1e-5)
