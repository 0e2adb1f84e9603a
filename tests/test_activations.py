"""Activation store: right values at each hook site, no special tokens, same streams, early stop, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lens.activations import (ActivationsConfig, ActivationStoreError, capture, extract_activations, read_corpus,
                                   read_docs, read_layer, split_docs)
from rlhf_lens.models import load_prepared

TEXTS = ["The film was a quiet delight.", "Dull, and far too long<|im_end|> really", "I loved every minute",
         "Not my kind of story at all, sadly"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_prepared(tiny_model_dir)


def _store(tmp_path, model, tok, site="mlp_out", layers=(0, 1), shard_tokens=7, name="store", skip_first=0,
           texts=TEXTS, max_tokens=1000):
    cfg = ActivationsConfig(site=site, max_tokens=max_tokens, max_length=16, batch_size=3, shard_tokens=shard_tokens,
                            skip_first_positions=skip_first)
    extract_activations(model, tok, texts, list(layers), tmp_path / name, cfg)
    return tmp_path / name


def test_store_matches_a_plain_forward_and_skips_special_tokens(tmp_path, tiny):
    model, tok = tiny
    store = _store(tmp_path, model, tok, site="resid_post", layers=[0])
    rows, x = read_layer(store, 0, with_text=True)
    special = set(tok.all_special_ids)
    assert not set(rows["token_id"]) & special
    assert len(list((store / "layer0").glob("part-*.parquet"))) == -(-len(rows) // 7)
    docs = read_docs(store)
    for doc_id, ids in zip(docs["doc_id"], docs["token_ids"]):
        with torch.no_grad():
            hidden = model(input_ids=torch.as_tensor(ids)[None].long(), output_hidden_states=True).hidden_states
        mine = rows["doc_id"] == doc_id
        positions = rows.loc[mine, "position"].to_numpy()
        # hidden_states[1] is the residual stream after block 0.
        assert torch.allclose(x[mine.to_numpy()], hidden[1][0, positions], atol=1e-5)
        assert [ids[p] for p in positions] == [t for t in ids if t not in special]
    # Token texts read as the document does ("Ġ"-style vocabulary pieces would not).
    first = "".join(rows.loc[rows["doc_id"] == 0, "token_text"])
    assert first == TEXTS[0]


def test_mlp_out_is_the_mlp_module_output(tmp_path, tiny):
    model, tok = tiny
    store = _store(tmp_path, model, tok, layers=[1])
    rows, x = read_layer(store, 1)
    ids = read_docs(store)["token_ids"][0]
    got = {}
    h = model.model.layers[1].mlp.register_forward_hook(lambda m, i, o: got.setdefault("out", o))
    with torch.no_grad():
        model(input_ids=torch.as_tensor(ids)[None].long())
    h.remove()
    mine = (rows["doc_id"] == 0).to_numpy()
    assert torch.allclose(x[mine], got["out"][0, rows.loc[mine, "position"].to_numpy()], atol=1e-5)


def test_forward_stops_after_the_deepest_needed_block(tiny):
    model, tok = tiny
    calls = []
    h = model.model.layers[1].register_forward_hook(lambda *a: calls.append(1))
    out = capture(model, [0], "mlp_out", torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long))
    h.remove()
    assert calls == [] and out[0].shape == (1, 3, 32)


def test_two_models_read_identical_token_streams(tmp_path, tiny, tiny_model_dir):
    model, tok = tiny
    other = load_prepared(tiny_model_dir)[0]
    with torch.no_grad():
        other.model.layers[0].mlp.down_proj.weight.mul_(2)
    a = _store(tmp_path, model, tok, name="a")
    b = _store(tmp_path, other, tok, name="b")
    ra, xa = read_layer(a, 0)
    rb, xb = read_layer(b, 0)
    pd.testing.assert_frame_equal(ra, rb)
    assert torch.allclose(xb, 2 * xa, atol=1e-5)


def test_layer_beyond_depth_and_unknown_site_fail_before_any_forward(tmp_path, tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match=r"out of range: the model has 2 blocks, expected integers in 0\.\.1"):
        _store(tmp_path, model, tok, layers=[0, 5])
    with pytest.raises(ValueError, match="unknown hook site 'attn_out'.*activations.site.*mlp_out, resid_post"):
        _store(tmp_path, model, tok, site="attn_out")
    assert not (tmp_path / "store").exists()


def test_corrupted_shard_is_named(tmp_path, tiny):
    model, tok = tiny
    store = _store(tmp_path, model, tok)
    shard = sorted((store / "layer0").glob("part-*.parquet"))[1]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(ActivationStoreError, match=f"{shard.name}: unreadable parquet shard"):
        read_layer(store, 0)
    with pytest.raises(ActivationStoreError, match=r"layer 7 was not extracted; the store holds layers \[0, 1\]"):
        read_layer(store, 7)


def test_rl_eval_corpus(tmp_path):
    df = pd.DataFrame({"prompt": ["A", "A", "B"], "model": ["base", "base", "policy"], "prompt_index": [0, 0, 1],
                       "sample": [0, 0, 0], "response": [" good", " good", " bad"], "reward": [1.0, 1.0, -1.0]})
    df.to_parquet(tmp_path / "eval.parquet")
    corpus = read_corpus(tmp_path / "eval.parquet")
    assert sorted(corpus["text"]) == ["A good", "B bad"]  # the duplicate is dropped
    assert dict(zip(corpus["text"], corpus["model"])) == {"A good": "base", "B bad": "policy"}
    assert dict(zip(corpus["text"], corpus["group"])) == {"A good": 0, "B bad": 1}
    with pytest.raises(ActivationStoreError, match="no column 'body'"):
        read_corpus(tmp_path / "eval.parquet", corpus="file", text_column="body")
    assert len(read_corpus(tmp_path / "eval.parquet", max_docs=1)) == 1
    df.drop(columns=["prompt_index"]).to_parquet(tmp_path / "old.parquet")
    with pytest.raises(ActivationStoreError, match=r"missing column\(s\) \['prompt_index'\]"):
        read_corpus(tmp_path / "old.parquet")


def _eval_table(n_prompts=12, samples=4):
    """An rl_eval table laid out as rl/evaluate.py writes it: every base row, then every policy row."""
    rows = [{"prompt": f"Prompt {p} was", "model": m, "prompt_index": p, "sample": s,
             "response": f" {'fine and calm' if m == 'base' else 'wonderful, lovely, great'} take {s}", "reward": 0.0}
            for m in ("base", "policy") for p in range(n_prompts) for s in range(samples)]
    return pd.DataFrame(rows)


def test_a_token_budget_keeps_policy_text_and_whole_prompt_groups(tmp_path, tiny):
    """Read in file order, a budget smaller than the base half keeps no policy text (the first wave's
    store held none); the corpus order keeps both models and records each document's source."""
    model, tok = tiny
    _eval_table().to_parquet(tmp_path / "eval.parquet")
    corpus = read_corpus(tmp_path / "eval.parquet", seed=3)
    store = _store(tmp_path, model, tok, layers=[0], texts=corpus, max_tokens=400)
    docs, manifest = read_docs(store), json.loads((store / "manifest.json").read_text())
    assert set(docs["model"]) == {"base", "policy"}
    assert 0.4 <= manifest["policy_token_share"] <= 0.6
    assert manifest["n_tokens_by_model"]["policy"] + manifest["n_tokens_by_model"]["base"] == manifest["n_tokens"]
    # The policy's own words: its documents' tokens past the prompt, a known count per document.
    for row in docs.itertuples():
        prompt_len = len(tok(_eval_table()["prompt"][0].replace("0", str(row.prompt_index)))["input_ids"])
        assert row.completion_tokens == len(row.token_ids) - max(prompt_len, 1) > 0
    policy_words = docs.loc[docs["model"] == "policy", "completion_tokens"].sum()
    assert manifest["policy_completion_share"] == round(policy_words / manifest["n_tokens"], 4)
    assert 0 < manifest["policy_completion_share"] < manifest["policy_token_share"]
    # Documents keep their source: the text is the prompt + that model's response of that sample.
    table = _eval_table().set_index(["model", "prompt_index", "sample"])
    for row in docs.itertuples():
        src = table.loc[(row.model, row.prompt_index, row.sample)]
        assert row.text == src["prompt"] + src["response"] and row.group == row.prompt_index
    # Every prompt group but the last one cut by the budget is complete (4 samples x 2 models).
    sizes = docs.groupby("group", sort=False).size()  # groups in store order
    assert len(sizes) >= 3 and (sizes.iloc[:-1] == 8).all()
    # The order is seeded: another seed, another order of prompts; the same seed, the same store.
    assert read_corpus(tmp_path / "eval.parquet", seed=4)["prompt_index"].tolist() != corpus["prompt_index"].tolist()
    assert read_corpus(tmp_path / "eval.parquet", seed=3).equals(corpus)


def test_first_positions_are_left_out(tmp_path, tiny):
    """SmolLM2's tokenizer adds no BOS: position 0 is a content token and an attention sink."""
    model, tok = tiny
    assert tok("The film")["input_ids"][0] not in tok.all_special_ids  # no BOS: the premise of the default 1
    full = _store(tmp_path, model, tok, layers=[0], name="full")
    cut = _store(tmp_path, model, tok, layers=[0], name="cut", skip_first=1)
    rows_full, x_full = read_layer(full, 0)
    rows_cut, x_cut = read_layer(cut, 0)
    assert rows_cut["position"].min() >= 1 and (rows_full["position"] == 0).sum() == len(TEXTS)
    keep = (rows_full["position"] >= 1).to_numpy()
    pd.testing.assert_frame_equal(rows_full[keep].reset_index(drop=True), rows_cut)
    assert torch.equal(x_full[keep], x_cut)
    assert json.loads((cut / "manifest.json").read_text())["n_tokens"] == len(rows_cut)


def test_split_docs_keeps_prompt_groups_on_one_side():
    groups = np.repeat(np.arange(30), 8)  # 30 prompts x (4 samples x 2 models)
    train, held = split_docs(groups, 0.2, seed=0)
    assert not set(groups[train]) & set(groups[held])
    assert len(set(groups[held])) == 6 and len(train) + len(held) == len(groups)
    assert sorted(np.concatenate([train, held])) == list(range(len(groups)))
    # One document per group when given a count, as before.
    train, held = split_docs(10, 0.2, seed=0)
    assert len(held) == 2 and len(train) == 8


def test_sae_stage_trains_with_its_dead_latent_window_and_auxk_weight(tmp_path, tiny):
    """``sae.dead_after``, ``sae.aux_coef`` and ``sae.decoder`` reach the TopK trainer (the first two once
    stopped at the trainer's own 10000 tokens and 1/32, which left 10% of block 29's 2x latents dead in the
    default run)."""
    from rlhf_lens.sae.fit import SAEStageConfig, fit_saes
    from rlhf_lens.sae.io import load_sae

    model, tok = tiny
    store = _store(tmp_path, model, tok, layers=[1], texts=TEXTS * 3)
    cfg = SAEStageConfig(k=4, epochs=1, batch_size=32, ce_eval_tokens=0, dead_after=64, aux_coef=0.5, decoder="unit")
    fit_saes(store, 1, {"topk_1x": tmp_path / "topk_1x"}, cfg, seed=0)
    sae, saved = load_sae(tmp_path / "topk_1x")
    train = saved["rlhf_lens"]["train_config"]
    assert (train["dead_after"], train["aux_coef"], train["decoder"]) == (64, 0.5, "unit")
    assert (sae.dead_after, sae.aux_coef, sae.decoder) == (64, 0.5, "unit")
    default = SAEStageConfig()
    assert (default.dead_after, default.aux_coef, default.decoder) == (2048, 0.125, "free")
