"""Activation store: right values at each hook site, no special tokens, same streams, early stop, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lens.activations import (ActivationsConfig, ActivationStoreError, capture, extract_activations, read_corpus,
                                   read_docs, read_layer)
from rlhf_lens.models import load_prepared

TEXTS = ["The film was a quiet delight.", "Dull, and far too long<|im_end|> really", "I loved every minute",
         "Not my kind of story at all, sadly"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    return load_prepared(tiny_model_dir)


def _store(tmp_path, model, tok, site="mlp_out", layers=(0, 1), shard_tokens=7, name="store"):
    cfg = ActivationsConfig(site=site, max_tokens=1000, max_length=16, batch_size=3, shard_tokens=shard_tokens)
    extract_activations(model, tok, TEXTS, list(layers), tmp_path / name, cfg)
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
    df = pd.DataFrame({"prompt": ["A", "A", "B"], "model": ["base", "base", "policy"], "sample": [0, 0, 0],
                       "response": [" good", " good", " bad"], "reward": [1.0, 1.0, -1.0]})
    df.to_parquet(tmp_path / "eval.parquet")
    assert read_corpus(tmp_path / "eval.parquet") == ["A good", "B bad"]
    with pytest.raises(ActivationStoreError, match="no column 'body'"):
        read_corpus(tmp_path / "eval.parquet", corpus="file", text_column="body")
    assert np.isfinite(len(read_corpus(tmp_path / "eval.parquet", max_docs=1)))
