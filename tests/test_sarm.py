"""SARM: the head finds the latent that carries a planted reward; truncation reads the right block;
save/load gives identical scores; bad input fails before training with a message naming file or key."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lens.reward_models.accuracy import pair_accuracy
from rlhf_lens.reward_models.sarm import (SARMConfig, SARMError, LastTokenReader, SparseRewardHead, fit_reward_head,
                                          load_sarm, pretrain_sae, read_pairs, read_weights, save_sarm, standardise,
                                          train_sarm)

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = {"great": 3.0, "awful": -3.0}
FILL = ["the", "movie", "was", "a", "film", "story", "plot", "long"]


def utility_pairs(n_prompts: int, seed: int = 0) -> pd.DataFrame:
    """Preference pairs labelled by a two-word utility table (the overseer), in the preference-file layout."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_prompts):
        responses = []
        for word in (rng.choice(list(WORDS)), "good"):
            words = list(rng.choice(FILL, 4))
            words.insert(int(rng.integers(0, 5)), word)
            responses.append(" " + " ".join(words) + ".")
        u = [sum(WORDS.get(w.strip("."), 0.0) for w in r.split()) for r in responses]
        c, r = (0, 1) if u[0] > u[1] else (1, 0)
        rows.append({"prompt": f"Review {p}:", "chosen": responses[c], "rejected": responses[r],
                     "chosen_reward": u[c], "rejected_reward": u[r], "p_chosen": 1.0, "prompt_index": p, "group": p})
    return pd.DataFrame(rows)


def planted_states(n: int, d: int, n_atoms: int, rng):
    """States built from orthonormal atoms: atom 0 with coefficient U(0, 3) in half the samples (the reward),
    plus two other atoms with coefficients U(1, 3). Returns (x (n, d), atoms (n_atoms, d), reward (n,))."""
    q, _ = np.linalg.qr(rng.normal(size=(d, n_atoms)))
    atoms = torch.as_tensor(q.T, dtype=torch.float32)
    coef = torch.zeros(n, n_atoms)
    reward = torch.as_tensor(rng.uniform(0, 3, n) * (rng.random(n) < 0.5), dtype=torch.float32)
    coef[:, 0] = reward
    for i in range(n):
        others = rng.choice(np.arange(1, n_atoms), 2, replace=False)
        coef[i, others] = torch.as_tensor(rng.uniform(1, 3, 2), dtype=torch.float32)
    return coef @ atoms, atoms, reward


def random_pairs(reward: torch.Tensor, n_pairs: int, rng):
    a, b = rng.integers(0, len(reward), n_pairs), rng.integers(0, len(reward), n_pairs)
    keep = reward[a] != reward[b]
    a, b = a[keep.numpy()], b[keep.numpy()]
    higher = (reward[a] > reward[b]).numpy()
    return np.where(higher, a, b), np.where(higher, b, a)


def test_head_puts_its_largest_weight_on_the_latent_that_carries_the_reward():
    rng = np.random.default_rng(0)
    x, atoms, reward = planted_states(3000, 32, 24, rng)
    cfg = SARMConfig(sae_multiple=2, k=3, sae_epochs=30, sae_lr=3e-3, sae_batch_size=128, epochs=30, lr=1e-3)
    sae, _, _ = pretrain_sae(x[:2000], cfg, seed=0)
    head = SparseRewardHead(sae, "topk")
    chosen, rejected = random_pairs(reward[:2000], 3000, rng)
    fit_reward_head(head, chosen, rejected, cfg, seed=0, cached=x[:2000])
    w = head.weight.detach()
    top = int(w.abs().argmax())
    cos = torch.nn.functional.normalize(sae.W_dec, dim=1) @ atoms[0]
    assert int(cos.argmax()) == top and cos[top] > 0.99, (top, cos.max())
    assert w[top] > 0 and w[top] > 1.3 * w.abs().sort().values[-2]
    # Held-out samples (never seen by the SAE or the head): pair accuracy near 1.
    xs, rs = x[2000:], reward[2000:]
    hc, hr = random_pairs(rs, 2000, rng)
    with torch.no_grad():
        scores = head(xs).numpy()
    acc = pair_accuracy(scores[hc], scores[hr], np.arange(len(hc)), n_boot=200)
    assert acc["mean"] > 0.95 and acc["ci95"][0] > 0.9


def test_read_weights_of_last_and_mean_pooling():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert torch.equal(read_weights(mask, "last"), torch.tensor([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 0, 0, 1.0]]))
    # mean: every position but the first (the sink), padding never; a one-token text keeps its only token
    assert torch.allclose(read_weights(mask, "mean"), torch.tensor([[0, 0.5, 0.5, 0], [1.0, 0, 0, 0],
                                                                    [0, 1 / 3, 1 / 3, 1 / 3]]))
    with pytest.raises(SARMError, match="'sarm.pool' has value 'max'"):
        read_weights(mask, "max")


def test_mean_pooling_finds_a_reward_spread_over_the_tokens_that_the_last_token_misses():
    # Planted: texts of 6 positions; the reward counts the positions carrying atom 0, which the last
    # position carries no more often than any other. The last-token head sees one position of six (pair
    # accuracy well below the mean head's); the mean head reads the count itself (accuracy near 1).
    rng = np.random.default_rng(1)
    n, t = 600, 6
    x, atoms, _ = planted_states(n * t, 32, 24, rng)
    x = (x - (x @ atoms[0])[:, None] * atoms[0]).reshape(n, t, -1)  # atom 0 only where planted below
    carries = torch.as_tensor(rng.random((n, t)) < 0.4)
    x = x + 2.0 * carries[..., None] * atoms[0]
    reward = carries[:, 1:].sum(1).float()  # position 0 is the sink the mean leaves out
    cfg = SARMConfig(sae_multiple=2, k=4, sae_epochs=20, sae_lr=3e-3, sae_batch_size=128, epochs=30, lr=3e-3)
    sae, _, _ = pretrain_sae(x[:400].reshape(-1, x.shape[-1]), cfg, seed=0)
    train_c, train_r = random_pairs(reward[:400], 2000, rng)
    test_c, test_r = random_pairs(reward[400:], 1000, rng)
    acc = {}
    for pool in ("last", "mean"):
        head = SparseRewardHead(sae, "topk")
        w = read_weights(torch.ones(n, t, dtype=torch.long), pool)
        fit_reward_head(head, train_c, train_r, cfg, seed=0, cached=(x[:400], w[:400]))
        with torch.no_grad():
            scores = head(x[400:], w[400:]).numpy()
        acc[pool] = pair_accuracy(scores[test_c], scores[test_r], np.arange(len(test_c)), n_boot=200)["mean"]
    assert acc["mean"] > 0.95 and acc["last"] < 0.75, acc


def test_standardise_is_per_token_over_the_hidden_dimension():
    h = torch.tensor([[1.0, 2.0, 3.0, 6.0], [10.0, 10.0, 10.0, 14.0]])
    x = standardise(h)
    assert torch.allclose(x.mean(1), torch.zeros(2), atol=1e-6)
    assert torch.allclose(x.std(1), torch.ones(2), atol=1e-5)
    assert torch.allclose(standardise(h * 7 + 3), x, atol=1e-5)  # a token's scale and offset do not matter


def test_reader_reads_the_output_of_the_chosen_block(tiny_model_dir):
    from rlhf_lens.models import load_prepared

    full, tok = load_prepared(tiny_model_dir)
    model, tok2 = load_prepared(tiny_model_dir)
    reader = LastTokenReader(model, tok2, block=0, max_length=32)
    assert len(reader.body.layers) == 1
    texts = ["A short one.", "A somewhat longer text than that."]
    got = reader.last(texts)
    for i, text in enumerate(texts):
        ids = tok(text, return_tensors="pt").input_ids
        with torch.no_grad():
            hs = full(ids, output_hidden_states=True).hidden_states
        assert torch.allclose(got[i], standardise(hs[1][0, -1]), atol=1e-5)  # hidden_states[1]: block 0's output


@pytest.mark.parametrize("train", ["head", "all"])
def test_save_load_round_trip_gives_identical_scores(tiny_model_dir, tmp_path, train):
    pairs = utility_pairs(12)
    cfg = SARMConfig(sae_multiple=2, k=4, sae_epochs=2, epochs=2, train=train)
    sarm = train_sarm(tiny_model_dir, pairs, cfg, seed=0, work_dir=tmp_path / "work")
    texts = (pairs["prompt"] + pairs["chosen"]).tolist() + ["An unseen text!"]
    before = sarm.score(texts)
    save_sarm(sarm, tmp_path / "sarm")
    assert (tmp_path / "sarm" / "lm.safetensors").is_file() == (train == "all")
    loaded = load_sarm(tmp_path / "sarm")
    assert torch.equal(loaded.score(texts), before)
    assert torch.allclose(loaded.contributions(texts).sum(1), before, atol=1e-5)
    assert loaded.info["block"] == 0 and loaded.info["architecture"] == "sarm"


def test_token_latents_are_each_positions_own_topk_latents(tiny_model_dir, tmp_path):
    # every position's latents are its own state's TopK (k of m nonzero at a live position), the same as the
    # last-token path gives the last position; TopK over the positions instead failed with k > T and was
    # silently wrong with k < T
    pairs = utility_pairs(12)
    cfg = SARMConfig(sae_multiple=2, k=4, sae_epochs=2, epochs=2)
    sarm = train_sarm(tiny_model_dir, pairs, cfg, seed=0, work_dir=tmp_path / "work")
    texts = ["A long text of well over four tokens, so that T > k and T < k both appear.", "Hi"]
    per_token = sarm.token_latents(texts)
    last = sarm.latents(texts)
    for (ids, z), z_last in zip(per_token, last):
        assert z.shape == (len(ids), sarm.head.sae.m)
        assert ((z != 0).sum(1) <= cfg.k).all()
        assert torch.allclose(z[-1], z_last, atol=1e-5)


def test_mean_pooled_sarm_scores_the_mean_of_its_token_rewards_and_round_trips(tiny_model_dir, tmp_path):
    pairs = utility_pairs(12)
    cfg = SARMConfig(sae_multiple=2, k=4, sae_epochs=2, epochs=3, pool="mean", sae_tokens="all")
    sarm = train_sarm(tiny_model_dir, pairs, cfg, seed=0, work_dir=tmp_path / "work")
    texts = (pairs["prompt"] + pairs["chosen"]).tolist()[:4] + ["Hi"]
    w = sarm.weight.detach()
    for (ids, z), score in zip(sarm.token_latents(texts), sarm.score(texts)):
        per_token = z @ w  # each position's own reward
        expect = per_token[1:].mean() if len(ids) > 1 else per_token[0]
        assert torch.allclose(score, expect, atol=1e-5)
    assert sarm.score(texts).abs().sum() > 0
    save_sarm(sarm, tmp_path / "sarm")
    loaded = load_sarm(tmp_path / "sarm")
    assert loaded.pool == "mean" and torch.equal(loaded.score(texts), sarm.score(texts))
    assert torch.allclose(loaded.contributions(texts).sum(1), loaded.score(texts), atol=1e-5)


def test_training_is_seeded(tiny_model_dir, tmp_path):
    pairs = utility_pairs(8)
    cfg = SARMConfig(sae_multiple=2, k=4, sae_epochs=2, epochs=3)
    a = train_sarm(tiny_model_dir, pairs, cfg, seed=3).weight
    b = train_sarm(tiny_model_dir, pairs, cfg, seed=3).weight
    assert torch.equal(a, b) and a.abs().sum() > 0


def test_a_block_beyond_the_depth_fails_before_training(tiny_model_dir):
    with pytest.raises(SARMError, match=r"'sarm.block' has value 5: the model has 2 blocks, expected an integer in 0..1"):
        train_sarm(tiny_model_dir, utility_pairs(4), SARMConfig(block=5))


def test_bad_preference_files_are_named(tmp_path):
    good = utility_pairs(3)
    path = tmp_path / "train.parquet"
    good.drop(columns=["p_chosen", "group"]).to_parquet(path)
    with pytest.raises(SARMError, match=r"train.parquet' lacks column\(s\) p_chosen, group: expected prompt, chosen"):
        read_pairs(path)
    good.iloc[:0].to_parquet(path)
    with pytest.raises(SARMError, match="has no rows"):
        read_pairs(path)
    same = good.copy()
    same.loc[1, "rejected"] = same.loc[1, "chosen"]
    same.to_parquet(path)
    with pytest.raises(SARMError, match="row 1: chosen is identical to rejected"):
        read_pairs(path)
    with pytest.raises(SARMError, match="does not exist"):
        read_pairs(tmp_path / "nope.parquet")


def test_a_folder_of_another_architecture_is_refused(tmp_path):
    (tmp_path / "cfg.json").write_text('{"architecture": "topk"}')
    with pytest.raises(SARMError, match=r"key 'architecture' has value 'topk': expected 'sarm'"):
        load_sarm(tmp_path)
