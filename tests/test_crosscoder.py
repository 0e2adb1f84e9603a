"""Crosscoders: known answers of the metrics and the diffing, files and resume, and the two controls
that make a claim possible: the (base, base) null finds no model-specific latent, and a direction
planted on the tokens of a word set in the second model comes out as a second-model-only latent that
fires on exactly those tokens."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from rlhf_lens.activations import ActivationsConfig, extract_activations, read_layer
from rlhf_lens.sae import SAETrainConfig, build_sae, load_sae, save_sae, train_sae
from rlhf_lens.sae.crosscoder_fit import CrosscoderDataError, CrosscoderStageConfig, fit_crosscoder, read_paired
from rlhf_lens.sae.crosscoder_metrics import CrosscoderSplice, crosscoder_reconstruction_metrics
from rlhf_lens.sae.diffing import DIFF_COLUMNS, diff_summary, diff_table, dn_bin, latent_scaling, relative_decoder_norm
from rlhf_lens.sae.metrics import spliced_losses
from rlhf_lens.sae.registry import architectures

pytestmark = pytest.mark.usefixtures("one_thread")

KINDS = ["crosscoder_batchtopk", "crosscoder_l1"]


def _set(xc, **tensors):
    with torch.no_grad():
        for name, value in tensors.items():
            getattr(xc, name).copy_(value)


def test_crosscoders_are_registered_apart_from_the_one_model_saes():
    assert architectures() == ("relu", "topk")  # what sae.kinds accepts: a crosscoder needs two stores
    assert architectures(models=2) == tuple(KINDS)
    assert set(architectures(models=None)) == {"relu", "topk", *KINDS}


# --------------------------------------------------------------------------- known answers


def test_relative_decoder_norm_on_hand_made_decoders():
    xc = build_sae("crosscoder_l1", 2 * 3, 6)
    base = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.2, 0.0])
    rlhf = torch.tensor([0.0, 1.0, 1.0, 0.5, 1.0, 0.0])
    e = torch.tensor([1.0, 0.0, 0.0])
    _set(xc, W_dec=torch.cat([base[:, None] * e, rlhf[:, None] * e], 1))
    norms = xc.decoder_norms().detach()
    assert torch.allclose(norms, torch.stack([base, rlhf]))
    dn = relative_decoder_norm(norms[0], norms[1])
    np.testing.assert_allclose(dn[:5], [0.0, 1.0, 0.5, 0.25, 0.9], atol=1e-7)
    assert np.isnan(dn[5])  # no atom in either model
    assert list(dn_bin([0.05, 0.1, 0.4, 0.5, 0.6, 0.75, 0.9, 0.95])) == [
        "base_only", "base_leaning", "shared", "shared", "shared", "rlhf_leaning", "rlhf_leaning", "rlhf_only"]


def _positive(n=500, d=3, seed=0):
    return torch.rand(n, d, generator=torch.Generator().manual_seed(seed)) + 5.0  # a large mean offset


def test_explained_variance_per_model_of_a_perfect_and_of_the_mean_reconstruction():
    """The perfect crosscoder's scales are powers of 2, so its reconstruction is exact on any CPU (EV 1 exactly). The
    mean reconstruction's b_dec is a float32 mean (vectorised differently per CPU), read against the metrics'
    float64 mean: EV = -12 x the mean squared error of that mean (the data's variance is 1/12), -2.2e-12 (measured
    at commit 201ec3d on an AMD EPYC Zen 4 under the default, avx2 and no-SIMD kernels); abs 1e-9 would take an
    error of ~19 float32 ulps, while the legacy variant's 0.9 shows what a wrong centring gives."""
    xb, xr = _positive(seed=0), _positive(seed=1)
    perfect = build_sae("crosscoder_l1", 6, 6)
    _set(perfect, W_enc=torch.eye(6), W_dec=torch.eye(6), b_enc=torch.zeros(6), b_dec=torch.zeros(6))
    perfect.set_input_scale([2.0, 0.5])  # raw in, raw out whatever the training space was
    _set(perfect, W_enc=torch.diag(torch.tensor([1 / 2.0] * 3 + [1 / 0.5] * 3)),
         W_dec=torch.diag(torch.tensor([2.0] * 3 + [0.5] * 3)))
    res = crosscoder_reconstruction_metrics(perfect, [xb, xr], ["base", "rlhf"], batch_size=97)
    assert res["explained_variance_base"] == pytest.approx(1.0, abs=1e-9)
    assert res["explained_variance_rlhf"] == pytest.approx(1.0, abs=1e-9)
    assert res["l0"] == pytest.approx(6.0) and res["dead_fraction"] == 0.0
    mean = build_sae("crosscoder_l1", 6, 6)
    _set(mean, W_dec=torch.zeros(6, 6), b_dec=torch.cat([xb.mean(0), xr.mean(0)]))
    res = crosscoder_reconstruction_metrics(mean, [xb, xr], ["base", "rlhf"], batch_size=64)
    assert abs(res["explained_variance_base"]) < 1e-9 and abs(res["explained_variance_rlhf"]) < 1e-9
    assert res["explained_variance_legacy_around_zero_base"] > 0.9  # the inflated variant, for contrast


def _scaling_case(beta: float, decoupled: bool):
    """Latents 0-3 copy the RLHF model's coordinates; latent 0 has no base atom although the base model
    holds beta * its direction. With ``decoupled`` a fifth latent reads and writes that base
    coordinate, so the base reconstruction holds it (decoupling); without, the base error does
    (complete shrinkage)."""
    dm, m = 4, 5
    g = torch.Generator().manual_seed(0)
    f = (torch.rand(800, dm, generator=g) < 0.3) * (0.5 + torch.rand(800, dm, generator=g))
    xr = f.clone()
    xb = f.clone()
    xb[:, 0] *= beta
    W_enc = torch.zeros(2 * dm, m)
    W_enc[dm:, :dm] = torch.eye(dm)                # latents 0-3 read the RLHF coordinates
    W_dec = torch.zeros(m, 2 * dm)
    W_dec[:dm, dm:] = torch.eye(dm)                # their RLHF atoms: the coordinates
    W_dec[1:dm, 1:dm] = torch.eye(dm - 1)          # base atoms of latents 1-3; latent 0 has none
    if decoupled:
        W_enc[0, 4] = 1.0                          # latent 4 reads base coordinate 0 ...
        W_dec[4, 0] = 1.0                          # ... and writes it in the base model only
    xc = build_sae("crosscoder_l1", 2 * dm, m)
    _set(xc, W_enc=W_enc, W_dec=W_dec, b_enc=torch.zeros(m), b_dec=torch.zeros(2 * dm))
    return xc, torch.cat([xb, xr], 1)


@pytest.mark.parametrize("beta", [0.3, 0.8])
def test_latent_scaling_recovers_a_planted_scale(beta):
    xc, x = _scaling_case(beta, decoupled=False)
    ls = latent_scaling(xc, x, batch_size=128)
    assert ls["beta_error_0"][0] == pytest.approx(beta, abs=1e-6)     # the base error holds beta * d
    assert ls["beta_error_1"][0] == pytest.approx(1.0, abs=1e-6)      # the RLHF model's own contribution
    assert ls["beta_reconstruction_0"][0] == pytest.approx(0.0, abs=1e-9)
    assert ls["beta_reconstruction_1"][0] == pytest.approx(1.0, abs=1e-6)
    table = diff_table(xc, x)
    assert table.loc[0, "dn"] == 1.0 and table.loc[0, "nu_error"] == pytest.approx(beta)
    assert bool(table.loc[0, "complete_shrinkage"]) == (beta > 0.5)

    xc, x = _scaling_case(beta, decoupled=True)
    table = diff_table(xc, x)
    assert table.loc[0, "beta_error_base"] == pytest.approx(0.0, abs=1e-9)  # latent 4 reconstructs it
    assert table.loc[0, "nu_reconstruction"] == pytest.approx(beta)
    assert bool(table.loc[0, "latent_decoupling"]) == (beta > 0.5) and not table.loc[0, "complete_shrinkage"]
    assert table.loc[4, "bin"] == "base_only"


# --------------------------------------------------------------------------- files and training


def _pair(n=1200, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    xb = torch.randn(n, d, generator=g) + 1.0
    return torch.cat([xb, 3.0 * xb + 0.1 * torch.randn(n, d, generator=g)], 1)


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_keeps_the_function_and_the_per_model_layout(tmp_path, kind):
    x = _pair()
    xc, _ = train_sae(x, SAETrainConfig(kind=kind, d_sae=16, k=4, epochs=1, batch_size=64, seed=1), progress=False)
    xc.set_input_scale([0.7, 0.2])
    save_sae(xc, tmp_path, hook_name="blocks.1.hook_mlp_out")
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert tensors["W_enc"].shape == (2, 8, 16) and tensors["W_dec"].shape == (2, 16, 8)
    assert tensors["b_dec"].shape == (2, 8) and torch.equal(tensors["input_scale"], torch.tensor([0.7, 0.2]))
    assert torch.equal(tensors["W_dec"][1], xc.model_decoders()[1].detach())  # model 1's atoms, (m, d_model)
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["rlhf_lens"]["architecture"] == kind and cfg["d_in"] == 16
    back, _ = load_sae(tmp_path)
    with torch.no_grad():
        assert torch.allclose(back.encode(x), xc.encode(x)) and torch.allclose(back(x)[0], xc(x)[0])
        assert torch.equal(back.decoder_norms(), xc.decoder_norms())


@pytest.mark.parametrize("kind", KINDS)
def test_training_is_seeded_and_resumes_to_the_same_weights(tmp_path, kind):
    x = _pair()
    cfg = SAETrainConfig(kind=kind, d_sae=16, k=4, epochs=2, batch_size=64, seed=3, dead_after=100)
    full, _ = train_sae(x, cfg, progress=False)
    again, _ = train_sae(x, cfg, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    train_sae(x, cfg, checkpoint=ckpt, progress=False, stop_after=25)  # killed inside epoch 1
    resumed, _ = train_sae(x, cfg, checkpoint=ckpt, progress=False)
    for name, t in full.state_dict().items():
        assert torch.equal(t, again.state_dict()[name]), name
        assert torch.equal(t, resumed.state_dict()[name]), name


def test_batchtopk_threshold_keeps_about_k_latents_per_token_at_inference():
    x = _pair(n=3000)
    xc, _ = train_sae(x, SAETrainConfig(kind="crosscoder_batchtopk", d_sae=32, k=4, epochs=4, batch_size=128, seed=0),
                      progress=False)
    assert float(xc.threshold) > 0
    with torch.no_grad():
        l0_inference = float((xc.encode(x) > 0).sum(1).float().mean())
        l0_batch = float((xc.encode_batch(x[:128]) > 0).sum(1).float().mean())
    assert l0_batch <= 4.0 + 1e-9
    assert 2.0 <= l0_inference <= 8.0


# --------------------------------------------------------------------------- the controls


def _sparse_activations(seed=0, n=6000, d=16, m_true=48, vocab=50, words=(3, 7, 11), magnitude=2.0):
    """Base activations as sparse sums of 48 unit atoms (about 3 per token); the second model's are the
    same plus ``magnitude`` times one fixed unit direction on the tokens whose id is in ``words``."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(m_true, d, generator=g), dim=1)
    on = torch.rand(n, m_true, generator=g) < 3 / m_true
    xb = (on * (0.5 + 1.5 * torch.rand(n, m_true, generator=g))) @ atoms
    token = torch.randint(0, vocab, (n,), generator=g)
    planted = torch.isin(token, torch.tensor(words))
    v = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    return xb, xb + magnitude * planted[:, None] * v, planted


PLANTED_CFG = dict(d_sae=64, k=4, l1=0.3, epochs=20, lr=3e-3, batch_size=128, seed=0, dead_after=1000)


@pytest.mark.parametrize("kind", KINDS)
def test_null_crosscoder_on_base_base_finds_no_model_specific_latent(kind):
    """Tolerance: none of the live latents may leave the shared bin (0.4 <= dn <= 0.6); measured, the
    null's live dn lie within 0.47-0.53."""
    xb, _, _ = _sparse_activations()
    x = torch.cat([xb, xb], 1)
    xc, _ = train_sae(x, SAETrainConfig(kind=kind, **PLANTED_CFG), progress=False)
    summary = diff_summary(diff_table(xc, x))
    assert summary["n_live"] >= 20
    assert summary["n_shared"] == summary["n_live"]
    assert summary["n_rlhf_only"] == summary["n_base_only"] == summary["n_rlhf_leaning"] == 0


def test_planted_direction_yields_a_second_model_only_latent_on_exactly_those_tokens():
    """BatchTopK: exactly one latent has dn > 0.9; it fires on the word-set tokens with precision and
    recall >= 0.95 (measured: 1.00 and 1.00), and Latent Scaling finds the base model without it."""
    xb, xr, planted = _sparse_activations()
    x = torch.cat([xb, xr], 1)
    xc, _ = train_sae(x, SAETrainConfig(kind="crosscoder_batchtopk", **PLANTED_CFG), progress=False)
    table = diff_table(xc, x)
    only = table[table["live"] & (table["dn"] > 0.9)]
    assert len(only) == 1, table.loc[table["live"], ["dn"]].describe()
    j = int(only["latent"].iloc[0])
    with torch.no_grad():
        fires = xc.encode(x)[:, j] > 0
    hits = int((fires & planted).sum())
    precision, recall = hits / max(int(fires.sum()), 1), hits / int(planted.sum())
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    row = only.iloc[0]
    assert abs(row["nu_error"]) < 0.2 and abs(row["nu_reconstruction"]) < 0.2 and row["rlhf_specific"]
    # every other live latent is shared: the planted direction is the only difference
    assert (table.loc[table["live"] & (table["latent"] != j), "bin"] == "shared").all()


# --------------------------------------------------------------------------- stores and the splice


TEXTS = ["The film was a quiet delight and I loved it", "Dull, and far too long for a story so thin",
         "I loved every minute of the acting", "Not my kind of story at all, sadly", "What a wonderful surprise",
         "The plot made no sense whatsoever", "A fine cast wasted on a poor script", "Honestly the best film this year"]


def _stores(tmp_path, tiny_model_dir, texts_rlhf=TEXTS):
    from rlhf_lens.models import load_prepared

    model, tok = load_prepared(tiny_model_dir)
    cfg = ActivationsConfig(max_tokens=2000, max_length=16, batch_size=4, shard_tokens=64)
    extract_activations(model, tok, TEXTS, [1], tmp_path / "base", cfg)
    policy = tmp_path / "policy"
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.add_(0.05)
    model.save_pretrained(policy)
    tok.save_pretrained(policy)
    extract_activations(model, tok, texts_rlhf, [1], tmp_path / "rlhf", cfg)
    return tmp_path / "base", tmp_path / "rlhf", policy


def test_stores_of_other_tokens_fail_clearly(tmp_path, tiny_model_dir):
    base, rlhf, _ = _stores(tmp_path, tiny_model_dir, texts_rlhf=TEXTS[::-1])
    with pytest.raises(CrosscoderDataError, match=r"layer 1 (row 0 is \(doc_id, position, token_id\)|holds)"):
        read_paired([base, rlhf], 1)
    with pytest.raises(CrosscoderDataError, match="docs.parquet differs"):
        fit_crosscoder([base, rlhf], 1, tmp_path / "out", CrosscoderStageConfig(epochs=1), seed=0, progress=False)


def test_splice_encodes_the_other_models_activations_of_the_same_tokens(tiny_model_dir, tokenizer):
    """A crosscoder whose model-0 output is model 1's input: on (base, base) it is the identity, so the
    spliced CE equals the clean CE only if the recorded activations belong to the spliced tokens."""
    from rlhf_lens.model_parts import find_blocks, site_module
    from rlhf_lens.models import load_prepared

    model, tok = load_prepared(tiny_model_dir)
    dm = model.config.hidden_size
    xc = build_sae("crosscoder_l1", 2 * dm, 2 * dm)
    W_enc = torch.zeros(2 * dm, 2 * dm)
    W_enc[dm:, :dm], W_enc[dm:, dm:] = torch.eye(dm), -torch.eye(dm)  # relu(x1), relu(-x1)
    W_dec = torch.cat([torch.eye(dm), -torch.eye(dm)], 0).repeat(1, 2)  # both models write x1
    _set(xc, W_enc=W_enc, W_dec=W_dec, b_enc=torch.zeros(2 * dm), b_dec=torch.zeros(2 * dm))
    docs = [tok(t)["input_ids"] for t in TEXTS[:4]]
    module = site_module(find_blocks(model)[1], "mlp_out", 1)
    splice = CrosscoderSplice(xc, 0, {1: (model, 1, "mlp_out")})
    res = spliced_losses(model, module, splice, docs, exclude=set(tok.all_special_ids), batch_size=3)
    assert res["ce_sae"] == pytest.approx(res["ce_clean"], abs=1e-6) and res["kl_sae"] < 1e-9
    # the same splice fed another document's activations is not the identity
    shifted = CrosscoderSplice(xc, 0, {1: (model, 1, "mlp_out")})
    original = shifted.prepare_batch
    shifted.prepare_batch = lambda ids, attn, content: original(ids.flip(0), attn.flip(0), content.flip(0))
    res = spliced_losses(model, module, shifted, [docs[0][:6], docs[1][:6]], exclude=set(tok.all_special_ids))
    assert res["kl_sae"] > 1e-6  # the tiny model's MLP output is small: misaligned gives 2e-5, aligned < 1e-9


def test_fit_crosscoder_writes_a_loadable_folder_with_metrics_and_diff(tmp_path, tiny_model_dir):
    base, rlhf, policy = _stores(tmp_path, tiny_model_dir)
    cfg = CrosscoderStageConfig(k=4, epochs=2, batch_size=32, ce_eval_tokens=16)
    out = tmp_path / "crosscoder" / "layer1"
    out.parent.mkdir()
    metrics = fit_crosscoder([base, rlhf], 1, out, cfg, seed=0, model_dirs=[tiny_model_dir, policy], progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["cfg.json", "diff.parquet", "metrics.json",
                                                     "sae_weights.safetensors"]
    assert not list(out.parent.glob(".*ckpt*"))
    xc, cfg_json = load_sae(out)
    assert cfg_json["rlhf_lens"]["models"] == ["base", "rlhf"] and xc.d == 2 * xc.d_model
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("explained_variance_base", "explained_variance_rlhf", "l0", "dead_fraction", "ce_clean_base",
                "ce_sae_rlhf", "kl_sae_base", "kl_sae_rlhf", "ce_loss_score_zero_rlhf", "train_tokens_per_second"):
        assert key in saved, key
    assert saved["diff"]["n_latents"] == 2 * xc.d_model
    # the scales are each model's own (the policy's activations differ in norm)
    _, xb = read_layer(base, 1)
    assert saved["activation_scales"][0] != saved["activation_scales"][1]
    table = pd.read_parquet(out / "diff.parquet")
    assert list(table.columns) == DIFF_COLUMNS and len(table) == xc.m
    assert metrics["eval_tokens"] + metrics["train_tokens"] == len(xb)
