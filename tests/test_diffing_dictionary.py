"""The dictionary diffing methods (sae_shift, diff_sae) on a planted case with a known answer.

A tiny model's base activation store; "policy" stores made from it: the planted one adds a direction v
(plus small isotropic noise everywhere) to the activations of three words' tokens; the nulls add only
the noise, or nothing. The unembedding maps v to those three words. Each method must find v as one
latent, decode it to the three words, and rank those words first; on the nulls nothing may stand out.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rlhf_lens.activations import ActivationsConfig, extract_activations, read_layer
from rlhf_lens.diffing.base import DiffContext
from rlhf_lens.diffing.diff_sae import DiffSAEConfig
from rlhf_lens.diffing.registry import get_method_class
from rlhf_lens.diffing.sae_shift import SAEShiftConfig
from rlhf_lens.sae import build_sae
from rlhf_lens.sae.io import save_sae
from tiny_models import tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = (" love", " happy", " wonderful")
LAYER = 1
D = 64
FILLERS = ["The film was long and the {} ending came late", "I went to the shop and felt {} about it",
           "A story of two towns, one river and a {} dog", "We watched it twice; the second time was {}",
           "Nobody in the room said a word, then {} music", "The actors read their lines in a {} way"]


def _one_token(tokenizer, word):
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"precondition: {word!r} must be one token, got {ids}"
    return ids[0]


def _write_policy(base_store, out, change):
    """A copy of ``base_store`` whose layer-``LAYER`` vectors are ``change(x, token_ids)``."""
    shutil.copytree(base_store, out)
    for shard in sorted((out / f"layer{LAYER}").glob("part-*.parquet")):
        table = pq.read_table(shard)
        x = table.column("vector").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
        x = np.ascontiguousarray(change(x, table.column("token_id").to_numpy()), dtype=np.float32)
        offsets = pa.array(np.arange(0, (len(x) + 1) * D, D, dtype=np.int32))
        vectors = pa.ListArray.from_arrays(offsets, pa.array(x.reshape(-1)))
        pq.write_table(table.set_column(table.schema.get_field_index("vector"), "vector", vectors), shard)
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("diffing_dictionary")
    word_ids = [_one_token(tokenizer, w) for w in WORDS]
    v = torch.nn.functional.normalize(torch.randn(D, generator=torch.Generator().manual_seed(7)), dim=0)
    model = tiny_llama(len(tokenizer), hidden=D, seed=0)
    with torch.no_grad():  # tied embeddings: the unembedding maps v to exactly these three words
        model.model.embed_tokens.weight[word_ids] = 2.0 * v
    model.save_pretrained(root / "model", safe_serialization=True)
    tokenizer.save_pretrained(root / "model")
    rng = np.random.default_rng(0)
    texts = [FILLERS[i % len(FILLERS)].format(WORDS[rng.integers(3)].strip()) + f" ({i})" for i in range(36)]
    extract_activations(model, tokenizer, texts, [LAYER], root / "base",
                        ActivationsConfig(max_tokens=100_000, max_length=32, batch_size=12, shard_tokens=128))
    _, x = read_layer(root / "base", LAYER)
    scale = float(x.norm(dim=1).mean())
    noise = lambda x: x + rng.normal(0, 0.3 * scale / np.sqrt(D), x.shape)  # noqa: E731
    vn = v.numpy()
    stores = {
        "planted": _write_policy(root / "base", root / "planted",
                                 lambda x, t: noise(x) + 3 * scale * np.isin(t, word_ids)[:, None] * vn),
        "noise": _write_policy(root / "base", root / "noise", lambda x, t: noise(x)),
        "same": _write_policy(root / "base", root / "same", lambda x, t: x),
    }
    # A base SAE: latent 0's atom is v, silent on every base token; the others random directions.
    sae = build_sae("relu", D, D)
    with torch.no_grad():
        sae.W.copy_(torch.randn(D, D, generator=torch.Generator().manual_seed(1)))
        sae.W[0] = v
        sae.b_enc.zero_()
        sae.b_enc[0] = -float((x @ v).max()) - 0.1 * scale
    (root / "sae").mkdir()
    save_sae(sae, root / "sae")
    return {"root": root, "v": v, "word_ids": word_ids, "stores": stores, "texts": texts}


def _ctx(planted, policy, work_dir=None):
    root = planted["root"]
    corpus = pd.DataFrame({"text": planted["texts"], "group": np.arange(len(planted["texts"])), "prompt_chars": 0})
    return DiffContext(base_dir=root / "model", policy_dir=root / "model", corpus=corpus, layers=[LAYER],
                       stores={"base": root / "base", "rlhf": planted["stores"][policy]},
                       sae_dirs={LAYER: root / "sae"}, work_dir=work_dir)


def _top_ids(scores, n=3):
    return set(np.argsort(-scores)[:n].tolist())


# --------------------------------------------------------------------------- decoding


def test_decoding_reads_through_the_final_norm_weight(tokenizer):
    """A direction v is read through the final norm's weight g: a token whose embedding is orthogonal to
    g * v gets nothing, however much it points along v itself; tokens along v / g get the most."""
    from rlhf_lens.diffing.dictionary_readout import unembed_directions

    model = tiny_llama(len(tokenizer), hidden=16, seed=0)
    gen = torch.Generator().manual_seed(3)
    g = 0.2 + 1.8 * torch.rand(16, generator=gen)
    v = torch.nn.functional.normalize(torch.randn(16, generator=gen), dim=0)
    u = v - (v @ (g * v)) / (g * v).norm() ** 2 * (g * v)  # orthogonal to g * v, not to v
    with torch.no_grad():
        model.model.norm.weight.copy_(g)
        model.model.embed_tokens.weight[[10, 11]] = torch.stack([v / g, v / g])
        model.model.embed_tokens.weight[12] = 5 * u / (u @ v)  # v . e = 5: the top token if g were ignored
    logits = unembed_directions(v[None], model, len(tokenizer))[0]
    assert set(logits.topk(2).indices.tolist()) == {10, 11}
    assert abs(float(logits[12] - logits.mean())) < 0.05 * float(logits[10] - logits.mean())
    assert abs(float(logits.mean())) < 1e-5  # centred over the vocabulary


def test_latent_token_utility_is_the_mean_truth_of_the_decoded_tokens():
    from rlhf_lens.diffing.dictionary_readout import latent_token_utility

    truth = np.zeros(10)
    truth[[2, 3]] = [3.0, 1.0]
    latents = pd.DataFrame({"decoded_ids": [[2, 3], [3, 5, 7, 9], []]})
    np.testing.assert_allclose(latent_token_utility(latents, truth), [2.0, 0.25, 0.0])


# --------------------------------------------------------------------------- sae_shift


def test_sae_shift_ranks_the_planted_latent_first_and_decodes_it_to_the_words(planted):
    method = get_method_class("sae_shift")()
    result = method.run(_ctx(planted, "planted"), SAEShiftConfig())
    lat = result.latents
    top = lat.iloc[0]
    assert top["latent"] == 0 and top["rank"] == 0
    assert top["change"] > 2 * lat["change"].abs().iloc[1:].max(), lat.head()
    assert top["change_z"] > 10
    assert set(top["top_tokens"]) <= set(WORDS) and set(top["top_shift_tokens"]) <= set(WORDS)
    assert set(top["decoded_words"][:3]) == set(WORDS)
    assert np.isnan(top["relative_change"])  # silent on the base model: no relative change
    assert result.unit == "prompt_group" and result.token_scores.shape[0] == len(planted["texts"])
    assert _top_ids(result.mean_scores) == set(planted["word_ids"])


def test_sae_shift_null_has_no_latent_that_stands_out(planted):
    method = get_method_class("sae_shift")()
    noise = method.run(_ctx(planted, "noise"), SAEShiftConfig()).latents
    assert noise["change_z"].abs().max() < 5, noise.head()
    same = method.run(_ctx(planted, "same"), SAEShiftConfig())
    assert (same.latents["change"] == 0).all() and not same.token_scores.any()


# --------------------------------------------------------------------------- diff_sae

DIFF_CFG = DiffSAEConfig(seeds=(0,), k=4, epochs=40, batch_size=64, dead_after=512, eval_fraction=0.25)


def _row_cosines(work_dir, latents, v, seed=0):
    """(cosine of each raw atom with v, cosine of each table row's atom (its members' mean) with v)."""
    from rlhf_lens.diffing.dictionary_readout import latent_directions
    from rlhf_lens.sae.io import load_sae

    sae, _ = load_sae(work_dir / "diff_sae" / f"block{LAYER}_seed{seed}")
    atoms = latent_directions(sae)[0]
    rows = torch.stack([torch.nn.functional.normalize(atoms[m].mean(0), dim=0) for m in latents["members"]])
    return atoms @ v, rows @ v


def test_diff_sae_isolates_the_planted_direction_in_one_latent(planted, tmp_path):
    result = get_method_class("diff_sae")().run(_ctx(planted, "planted", tmp_path), DIFF_CFG)
    lat = result.latents.query("latent >= 0")
    _, rows = _row_cosines(tmp_path, lat, planted["v"])
    # Among the latents that fire on held-out tokens (a dead atom half-pulled towards v by the AuxK loss
    # carries nothing), exactly one points along v: the top one, the k copies TopK learns merged into it.
    fires = torch.as_tensor(lat["firing_rate"].to_numpy() > 0)
    assert ((rows.abs() > 0.5) & fires).sum() == 1 and rows[0] > 0.9, (rows.topk(3), lat.head())
    top = lat.iloc[0]
    assert top["rank"] == 0 and top["carried"] > 3 * lat["carried"].iloc[1]
    assert set(top["top_tokens"]) <= set(WORDS)
    assert set(top["decoded_words"][:3]) == set(WORDS)
    assert result.unit == "seed" and result.token_scores.shape[0] == 1
    assert _top_ids(result.mean_scores) == set(planted["word_ids"])


def test_diff_sae_null_has_no_latent_that_stands_out(planted, tmp_path):
    result = get_method_class("diff_sae")().run(_ctx(planted, "noise", tmp_path), DIFF_CFG)
    lat = result.latents.query("latent >= 0")
    raw, _ = _row_cosines(tmp_path, lat, planted["v"])
    assert raw.abs().max() < 0.7
    assert lat["carried"].iloc[0] < 2 * lat["carried"].iloc[1], lat.head()


def test_diff_sae_one_row_per_seed_and_reuses_what_it_trained(planted, tmp_path):
    cfg = DiffSAEConfig(**{**DIFF_CFG.__dict__, "seeds": (0, 1), "epochs": 5})
    first = get_method_class("diff_sae")().run(_ctx(planted, "planted", tmp_path), cfg)
    assert first.token_scores.shape[0] == 2 and set(first.latents["seed"]) == {0, 1}
    again = get_method_class("diff_sae")().run(_ctx(planted, "planted", tmp_path), cfg)
    assert all(f["train_seconds"] == 0 for f in again.extra["fits"])
    np.testing.assert_allclose(again.token_scores, first.token_scores, rtol=1e-4, atol=1e-9)


# --------------------------------------------------------------------------- crosscoder


def _planted_crosscoder(planted, folder):
    """A (base, rlhf) crosscoder whose latent 0 is RLHF-only with atom v, read from the policy's v minus
    the base's v (so it fires where v was planted); the others shared random directions."""
    from rlhf_lens.sae.crosscoder_fit import DIFF_FILE, read_paired
    from rlhf_lens.sae.diffing import diff_table

    root, v = planted["root"], planted["v"]
    gen = torch.Generator().manual_seed(2)
    xc = build_sae("crosscoder_l1", 2 * D, 8)
    shared = torch.nn.functional.normalize(torch.randn(8, D, generator=gen), dim=1)
    with torch.no_grad():
        xc.W_dec.copy_(torch.cat([shared, shared], dim=1))
        xc.W_dec[0] = torch.cat([torch.zeros(D), v])
        xc.W_enc.copy_(xc.W_dec.T)
        xc.W_enc[:, 0] = torch.cat([-v, v])
    _, (xb, xp) = read_paired([root / "base", planted["stores"]["planted"]], LAYER)
    with torch.no_grad():  # latent 0 fires where 3 x the mean norm was planted along v, not on the noise
        xc.b_enc.fill_(0.0)
        xc.b_enc[0] = -1.5 * float(xb.norm(dim=1).mean())
    folder.mkdir(parents=True)
    save_sae(xc, folder)
    diff_table(xc, torch.cat([xb, xp], dim=1)).to_parquet(folder / DIFF_FILE, index=False)
    return folder


def test_crosscoder_reads_the_rlhf_only_latent_as_the_planted_words(planted, tmp_path):
    from rlhf_lens.diffing.crosscoder import CrosscoderMethodConfig

    folder = _planted_crosscoder(planted, tmp_path / "xc")
    ctx = _ctx(planted, "planted")
    ctx.crosscoder_dirs = {LAYER: folder}
    result = get_method_class("crosscoder")().run(ctx, CrosscoderMethodConfig())
    lat = result.latents
    assert lat["latent"].tolist() == [0] and lat["bin"].iloc[0] == "rlhf_only"  # the shared ones are not read
    assert set(lat["top_tokens"].iloc[0]) <= set(WORDS)
    assert set(lat["decoded_words"].iloc[0][:3]) == set(WORDS)
    assert _top_ids(result.mean_scores) == set(planted["word_ids"])
    same = _ctx(planted, "same")
    same.crosscoder_dirs = {LAYER: folder}
    assert not get_method_class("crosscoder")().run(same, CrosscoderMethodConfig()).token_scores.any()


# --------------------------------------------------------------------------- paper


def test_paper_counts_the_lexicon_words_of_selected_explained_features(planted, tmp_path):
    from rlhf_lens.diffing.paper import PaperConfig
    from rlhf_lens.rewards.utility_table import UtilityTableReward

    table = pd.DataFrame({"feature": [0, 1, 2, 3],
                          "selected": [True, True, False, True],
                          "status": ["ok", "ok", "ok", "error"],
                          "explanation": ["This feature fires on love and happy words", "Love, mostly love",
                                          "terrible things", "wonderful"]})
    path = tmp_path / "layer1.parquet"
    table.to_parquet(path)
    ctx = _ctx(planted, "same")
    ctx.autointerp_tables = {LAYER: path}
    ctx.reward = UtilityTableReward({"love": 3.2, "happy": 2.7, "terrible": -2.1, "wonderful": 2.7, "fire": -1.4})
    result = get_method_class("paper")().run(ctx, PaperConfig())
    love, happy = (planted["word_ids"][WORDS.index(w)] for w in (" love", " happy"))
    scores = result.token_scores[0]
    assert scores[love] == 3 and scores[happy] == 1 and scores.sum() == 4  # "words", "mostly": not in the table
    assert result.latents["feature"].tolist() == [0, 1]
    every = get_method_class("paper")().run(ctx, PaperConfig(lexicon_only=False)).token_scores[0]
    assert every.sum() == 7  # love x3, happy, and, words, mostly; the answer frame is left out
