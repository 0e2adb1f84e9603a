"""SAE architectures, SAELens-layout files, deterministic resumable training, planted-direction recovery."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from rlhf_lens.features import max_cosine
from rlhf_lens.sae import SAEFormatError, SAETrainConfig, build_sae, load_sae, save_sae, train_sae


@pytest.mark.parametrize("kind", ["relu", "topk"])
def test_save_load_roundtrip_in_saelens_layout(tmp_path, kind):
    torch.manual_seed(0)
    sae = build_sae(kind, 8, 16, k=4)
    save_sae(sae, tmp_path, hook_name="blocks.1.hook_mlp_out")
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    assert {k: tuple(v.shape) for k, v in tensors.items()} == {"W_enc": (8, 16), "W_dec": (16, 8), "b_enc": (16,),
                                                                 "b_dec": (8,)}
    cfg = json.loads((tmp_path / "cfg.json").read_text())
    assert cfg["d_in"] == 8 and cfg["d_sae"] == 16
    back, _ = load_sae(tmp_path)
    x = torch.randn(20, 8)
    with torch.no_grad():
        assert torch.allclose(back(x)[0], sae(x)[0], atol=1e-6)


def test_tied_sae_stores_the_normalised_atoms_both_ways(tmp_path):
    sae = build_sae("relu", 4, 6)
    with torch.no_grad():
        sae.W.mul_(7.0)
    t = sae.saelens_tensors()
    assert torch.allclose(t["W_enc"], t["W_dec"].T)
    assert torch.allclose(t["W_dec"].norm(dim=1), torch.ones(6))


def _saved(tmp_path):
    save_sae(build_sae("relu", 8, 16), tmp_path)
    return tmp_path


def test_missing_tensor_is_named(tmp_path):
    folder = _saved(tmp_path)
    t = load_file(str(folder / "sae_weights.safetensors"))
    del t["b_enc"]
    save_file(t, str(folder / "sae_weights.safetensors"))
    with pytest.raises(SAEFormatError, match=r"sae_weights.safetensors: missing tensor\(s\) b_enc"):
        load_sae(folder)


def test_wrong_shape_is_named(tmp_path):
    folder = _saved(tmp_path)
    t = load_file(str(folder / "sae_weights.safetensors"))
    t["W_enc"] = t["W_enc"].T.contiguous()
    save_file(t, str(folder / "sae_weights.safetensors"))
    with pytest.raises(SAEFormatError, match=r"W_enc has shape \(16, 8\): expected \(8, 16\)"):
        load_sae(folder)


def test_missing_file_and_truncated_weights(tmp_path):
    folder = _saved(tmp_path)
    weights = folder / "sae_weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:40])
    with pytest.raises(SAEFormatError, match="cannot be read as safetensors"):
        load_sae(folder)
    (folder / "cfg.json").unlink()
    with pytest.raises(SAEFormatError, match="cfg.json: missing"):
        load_sae(folder)


def _x(n=600, d=8, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)) + 1.0


@pytest.mark.parametrize("kind", ["relu", "topk"])
def test_training_is_deterministic_and_resumes_to_the_same_weights(tmp_path, kind):
    cfg = SAETrainConfig(kind=kind, d_sae=16, k=4, epochs=2, batch_size=64, seed=3, dead_after=100)
    x = _x()
    a, _ = train_sae(x, cfg, progress=False)
    b, _ = train_sae(x, cfg, progress=False)
    ckpt = tmp_path / "ckpt.pt"
    partial, _ = train_sae(x, cfg, checkpoint=ckpt, progress=False, stop_after=13)  # mid-epoch 2 of 10 steps each
    assert ckpt.is_file()
    resumed, _ = train_sae(x, cfg, checkpoint=ckpt, progress=False)
    for name, t in a.saelens_tensors().items():
        assert torch.equal(t, b.saelens_tensors()[name]), name
        assert torch.equal(t, resumed.saelens_tensors()[name]), name
    other, _ = train_sae(x, SAETrainConfig(**{**cfg.__dict__, "seed": 4}), progress=False)
    assert not torch.equal(other.saelens_tensors()["W_dec"], a.saelens_tensors()["W_dec"])


def _planted(n=2000, d=16, m_true=24, active=3, seed=0):
    """Tokens that are sparse non-negative combinations of m_true unit directions."""
    g = torch.Generator().manual_seed(seed)
    truth = torch.nn.functional.normalize(torch.randn(m_true, d, generator=g), dim=1)
    codes = torch.zeros(n, m_true)
    idx = torch.rand(n, m_true, generator=g).argsort(dim=1)[:, :active]  # `active` distinct directions per token
    codes.scatter_(1, idx, torch.rand(n, active, generator=g) * 2 + 0.5)
    return codes @ truth, truth


@pytest.mark.parametrize("kind,extra", [("relu", {"l1": 0.05, "epochs": 16}), ("topk", {"k": 3, "epochs": 10}),
                                        ("topk", {"k": 3, "epochs": 10, "decoder": "free"}),
                                        ("topk", {"k": 3, "epochs": 10, "decoder": "free", "autocast": "bfloat16"})])
def test_sae_recovers_planted_sparse_directions(kind, extra):
    x, truth = _planted()
    cfg = SAETrainConfig(kind=kind, d_sae=32, lr=1e-2, batch_size=64, seed=0, dead_after=2000, **extra)
    sae, _ = train_sae(x, cfg, progress=False)
    best, _ = max_cosine(truth, sae.atoms().detach())
    assert best.mean() > 0.9, best
    assert (best > 0.7).mean() > 0.9


def test_topk_training_loss_is_the_loss_of_its_forward():
    """The rearranged training step (no dense b_dec gradient, AuxK on dead columns only) computes
    the same MSE as decode(encode(x)) and the same AuxK as the textbook dense formulation."""
    torch.manual_seed(0)
    sae = build_sae("topk", 12, 40, k=5, dead_after=1)
    with torch.no_grad():
        sae.b_dec.normal_()
        sae.b_enc.normal_(std=0.1)
    x = torch.randn(64, 12) * 2 + 1
    _, first = sae.loss(x)  # with dead_after=1 every latent not chosen for any of these tokens is dead
    assert first["mse"] == pytest.approx(torch.nn.functional.mse_loss(sae(x)[0], x).item(), rel=1e-5)
    loss, parts = sae.loss(x)
    dead = sae.since_fired >= 1
    assert parts["dead"] == int(dead.sum()) > 0
    with torch.no_grad():
        x_hat, _ = sae(x)
        pre = sae.pre_acts(x).masked_fill(~dead, 0.0)
        vals, idx = pre.topk(min(sae.aux_k, int(dead.sum())), dim=1)
        aux = torch.nn.functional.mse_loss(torch.zeros_like(pre).scatter(1, idx, vals) @ sae.W_dec, x - x_hat)
    assert parts["aux"] == pytest.approx(aux.item(), rel=1e-5)
    assert loss.item() == pytest.approx(parts["mse"] + sae.aux_coef * parts["aux"], rel=1e-5)


def test_small_and_large_dictionaries_do_not_share_their_initialisation():
    x = _x()
    cfg = dict(kind="relu", epochs=1, batch_size=600, lr=1e-12, seed=0)
    small, _ = train_sae(x, SAETrainConfig(d_sae=16, **cfg), progress=False)
    large, _ = train_sae(x, SAETrainConfig(d_sae=32, **cfg), progress=False)
    best, _ = max_cosine(small.atoms().detach(), large.atoms().detach())
    assert best.mean() < 0.9  # identical starting atoms would give 1.0


@pytest.mark.parametrize("kind", ["relu", "topk"])
def test_folding_the_input_scale_is_exact(kind):
    from rlhf_lens.sae import activation_scale, fold_input_scale

    x, _ = _planted(n=200)
    x = 37.0 * x  # raw activations far from unit scale
    c = activation_scale(x)
    assert abs((c * x).norm(dim=1).mean().item() - x.shape[1] ** 0.5) < 1e-3
    sae = build_sae(kind, 16, 32, k=3)
    with torch.no_grad():
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    x_hat_scaled, f_scaled = sae(c * x)
    fold_input_scale(sae, c)
    x_hat, f = sae(x)
    # On raw x the folded SAE gives the scaled SAE's latents and reconstruction divided by c.
    assert torch.allclose(f, f_scaled / c, atol=1e-4) and torch.allclose(x_hat, x_hat_scaled / c, atol=1e-3)


def test_l1_means_the_same_whatever_the_activation_scale(tmp_path):
    """Training on c * x after scaling: the same sparsity for x and 100 x."""
    from rlhf_lens.sae import activation_scale, fold_input_scale

    x, _ = _planted(n=1000)
    l0 = []
    for factor in (1.0, 100.0):
        raw = factor * x
        c = activation_scale(raw)
        sae, _ = train_sae(raw * c, SAETrainConfig(kind="relu", d_sae=32, l1=0.05, epochs=4, lr=1e-2, batch_size=64),
                           progress=False)
        fold_input_scale(sae, c)
        l0.append((sae.encode(raw) > 0).float().sum(1).mean().item())
    assert abs(l0[0] - l0[1]) < 0.05 * l0[0], l0


@pytest.mark.parametrize("kind", ["relu", "topk"])
def test_the_loss_allocates_on_the_input_device(kind):
    """SAEs train on the job's device (a GPU when the rule asks for one). Checked on the CPU: with
    "meta" as torch's default device, any tensor the loss makes without an explicit device lands on
    meta and the step fails (TopK's loss once built its masks on the CPU whatever the input's device)."""
    torch.manual_seed(0)
    sae = build_sae(kind, 8, 16, k=4, dead_after=1)
    x = torch.randn(2, 8)  # 2 tokens x k 4 fire at most 8 of 16 latents
    sae.loss(x)  # one step first, so that TopK's dead-latent (AuxK) branch runs below
    with torch.device("meta"):
        loss, parts = sae.loss(x)
        loss.backward()
    assert loss.device.type == "cpu" and torch.isfinite(loss)
    assert kind == "relu" or parts["dead"] > 0


def test_train_sae_returns_the_sae_on_the_device_it_trained_on():
    x = torch.randn(64, 8)
    sae, _ = train_sae(x, SAETrainConfig(kind="topk", d_sae=16, k=4, epochs=1, batch_size=32), progress=False,
                       device="cpu")
    assert {p.device.type for p in sae.parameters()} == {"cpu"}


@pytest.mark.parametrize("kind", ["topk", "relu"])
def test_decoder_bias_starts_at_the_data_mean_or_zero(kind):
    """b_dec_init: mean starts the decoder bias at the training activations' mean (a large offset here),
    zeros at 0; a vanishing learning rate keeps the starting point visible after a step."""
    torch.manual_seed(0)
    x = torch.randn(512, 16) + torch.linspace(5, 20, 16)
    for init, expected in (("mean", x.mean(0)), ("zeros", torch.zeros(16))):
        cfg = SAETrainConfig(kind=kind, d_sae=32, k=4, lr=1e-12, epochs=1, batch_size=256, b_dec_init=init)
        sae, _ = train_sae(x, cfg, progress=False)
        torch.testing.assert_close(sae.b_dec.detach(), expected, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="b_dec_init 'median'"):
        train_sae(x, SAETrainConfig(kind=kind, d_sae=32, k=4, b_dec_init="median"), progress=False)


def test_learning_rate_is_constant_then_falls_linearly_to_zero():
    """lr_decay 0.3: full rate for the first 70% of the steps, then linear to 0 (known values)."""
    from rlhf_lens.sae.train import _set_lr

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    cfg = SAETrainConfig(lr=0.003, lr_decay=0.3)
    for progress, expected in ((0.0, 0.003), (0.69, 0.003), (0.85, 0.0015), (1.0, 0.0)):
        _set_lr(opt, cfg, progress)
        assert opt.param_groups[0]["lr"] == pytest.approx(expected)
    _set_lr(opt, SAETrainConfig(lr=0.003, lr_decay=0.0), 0.99)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.003)


def _free_topk(d=12, m=40, k=5, **kw):
    """A TopK SAE with free atom norms, trained a few steps so that the norms differ from each other."""
    torch.manual_seed(0)
    x = torch.randn(256, d) * 2 + 1
    sae, _ = train_sae(x, SAETrainConfig(kind="topk", d_sae=m, k=k, epochs=3, batch_size=32, lr=1e-2,
                                         decoder="free", **kw), progress=False)
    return sae, x


def test_free_decoder_starts_at_norm_one_tenth_and_learns_the_norms():
    torch.manual_seed(0)
    fresh = build_sae("topk", 12, 40, k=5, decoder="free")
    torch.testing.assert_close(fresh.W_dec.norm(dim=1), torch.full((40,), 0.1))
    torch.testing.assert_close(fresh.W_enc, fresh.W_dec.T)
    sae, _ = _free_topk()
    norms = sae.W_dec.norm(dim=1)
    assert norms.std() > 0.01 and (norms - 0.1).abs().max() > 0.02  # not renormalised after the steps
    with pytest.raises(ValueError, match="decoder 'tied': expected one of unit, free"):
        build_sae("topk", 12, 40, k=5, decoder="tied")


def test_free_decoder_loss_is_the_loss_of_its_forward():
    """The training step selects TopK of pre_i * n_i and decodes through W_dec_i / n_i, as encode/decode do."""
    sae, x = _free_topk()
    _, parts = sae.loss(x)
    with torch.no_grad():
        x_hat, f = sae(x)
        manual_pre = torch.relu(((x - sae.b_dec) @ sae.W_enc + sae.b_enc) * sae.W_dec.norm(dim=1))
        vals, idx = manual_pre.topk(5, dim=1)
        manual = torch.zeros_like(manual_pre).scatter(1, idx, vals) @ torch.nn.functional.normalize(sae.W_dec, dim=1)
    assert parts["mse"] == pytest.approx(torch.nn.functional.mse_loss(x_hat, x).item(), rel=1e-5)
    torch.testing.assert_close(x_hat, manual + sae.b_dec, atol=1e-5, rtol=1e-5)
    assert int((f > 0).sum(1).max()) <= 5


def test_free_decoder_is_saved_as_a_plain_topk_sae(tmp_path):
    """The norms are folded into the encoder when saved: unit atoms, and a plain (unit) TopK SAE built from the
    file gives the same latents and reconstruction, so SAELens (rescale_acts_by_decoder_norm false) reads it."""
    sae, x = _free_topk()
    save_sae(sae, tmp_path, hook_name="blocks.1.hook_mlp_out")
    tensors = load_file(str(tmp_path / "sae_weights.safetensors"))
    torch.testing.assert_close(tensors["W_dec"].norm(dim=1), torch.ones(40), atol=1e-5, rtol=0)
    plain = build_sae("topk", 12, 40, k=5)
    plain.load_saelens_tensors(tensors)
    back, _ = load_sae(tmp_path)
    with torch.no_grad():
        want_hat, want_f = sae(x)
        for other in (plain, back):
            got_hat, got_f = other(x)
            torch.testing.assert_close(got_f, want_f, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(got_hat, want_hat, atol=1e-4, rtol=1e-4)
    assert json.loads((tmp_path / "cfg.json").read_text())["rescale_acts_by_decoder_norm"] is False


def test_free_decoder_input_scale_folds_exactly():
    from rlhf_lens.sae import fold_input_scale

    sae, x = _free_topk()
    with torch.no_grad():
        x_hat_scaled, f_scaled = sae(3.0 * x)
        fold_input_scale(sae, 3.0)
        x_hat, f = sae(x)
    torch.testing.assert_close(f, f_scaled / 3.0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(x_hat, x_hat_scaled / 3.0, atol=1e-4, rtol=1e-4)


def test_autocast_settings_resolve_and_bad_ones_are_named():
    from rlhf_lens.sae.precision import autocast_dtype, native_bfloat16

    assert autocast_dtype("off", "cpu") is None
    assert autocast_dtype("bfloat16", "cpu") is torch.bfloat16
    assert autocast_dtype("auto", "cpu") is (torch.bfloat16 if native_bfloat16("cpu") else None)
    with pytest.raises(ValueError, match="sae.autocast 'fp8'.*auto, bfloat16, off"):
        autocast_dtype("fp8", "cpu")


def test_bfloat16_products_train_in_bfloat16_and_reconstruct_as_well_as_float32():
    """The setting reaches the step (the products round to bfloat16, so the weights differ from float32's),
    the parameters stay float32, and held-out reconstruction of planted data is as good."""
    from rlhf_lens.sae.metrics import explained_variance

    x, _ = _planted(n=3000, d=32, m_true=48, active=4)
    train, held = x[:2400], x[2400:]
    base = dict(kind="topk", d_sae=64, k=4, lr=1e-2, batch_size=64, epochs=6, seed=0, dead_after=2000, decoder="free")
    full, _ = train_sae(train, SAETrainConfig(**base, autocast="off"), progress=False)
    half, _ = train_sae(train, SAETrainConfig(**base, autocast="bfloat16"), progress=False)
    assert all(p.dtype == torch.float32 for p in half.parameters())
    assert not torch.equal(full.W_dec, half.W_dec)
    with torch.no_grad():
        ev_full = explained_variance(held, full(held)[0])
        ev_half = explained_variance(held, half(held)[0])
    assert ev_full > 0.85
    assert ev_half > ev_full - 0.01, (ev_half, ev_full)


def test_every_step_trains_on_a_full_batch(monkeypatch):
    """A last partial batch would get a full-size Adam step from a few tokens (2 of 25,602 cost 0.016 held-out
    EV on a default-run store): each epoch takes only the full batches of its shuffle, a different remainder
    left out each time."""
    import rlhf_lens.sae.train as train

    seen = []
    step = train._optimiser_step

    def spy(sae, opt, xb, *args):
        seen.append(xb.detach().clone())
        return step(sae, opt, xb, *args)

    monkeypatch.setattr(train, "_optimiser_step", spy)
    x = torch.arange(600, dtype=torch.float32)[:, None].repeat(1, 8)  # token i is the vector (i, ..., i)
    train_sae(x, SAETrainConfig(kind="topk", d_sae=16, k=4, epochs=3, batch_size=64, seed=0), progress=False)
    assert [len(b) for b in seen] == [64] * 27  # 600 // 64 = 9 steps per epoch, none of 24 tokens
    left_out = [set(range(600)) - {int(v) for b in seen[9 * e:9 * e + 9] for v in b[:, 0]} for e in range(3)]
    assert all(len(s) == 600 - 9 * 64 for s in left_out)
    assert len(set(map(frozenset, left_out))) == 3  # another remainder each epoch
    seen.clear()
    train_sae(x[:40], SAETrainConfig(kind="topk", d_sae=16, k=4, epochs=2, batch_size=64, seed=0), progress=False)
    assert [len(b) for b in seen] == [40, 40]  # fewer tokens than a batch: one batch of all
