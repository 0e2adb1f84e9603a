"""Utility scoring: Table 3's explanation utility, token and unembedding utilities, the statistics."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lens.activations import ActivationsConfig, extract_activations, read_layer
from rlhf_lens.features import bootstrap_ci
from rlhf_lens.models import load_prepared
from rlhf_lens.rewards.utility_table import load_vader
from rlhf_lens.sae import build_sae
from rlhf_lens.sae.io import save_sae
from rlhf_lens.scoring import (LayerInputs, ScoringConfig, activation_weighted_utility, explanation_utility,
                               final_norm, measure_stats, quoted_explanation_utility, scoring_stage, table3_stats,
                               token_utilities, unembed_utility, vocab_utilities, word_utility)
from rlhf_lens.scoring.stats import paired_difference, stratified_permutation_p
from tiny_models import save_tiny_model, tiny_llama


@pytest.fixture(scope="module")
def vader():
    return load_vader()


def test_explanation_utility_is_the_mean_over_lexicon_words(vader):
    assert explanation_utility("great and happy", vader) == pytest.approx((vader["great"] + vader["happy"]) / 2)
    # Case and punctuation do not matter; words outside the lexicon do not dilute the mean.
    assert explanation_utility('This feature fires on "GREAT!" tokens.', vader) == pytest.approx(vader["great"])
    assert explanation_utility("fires on commas in lists", vader) == 0.0
    assert explanation_utility(None, vader) == 0.0 and explanation_utility("", vader) == 0.0
    # The answer frame is not content ("fire" is a VADER word): only "sad" counts.
    assert explanation_utility("The feature fire on sad endings", vader) == pytest.approx(vader["sad"])
    assert explanation_utility("This neuron activates on fire and smoke", vader) == pytest.approx(vader["fire"])


def test_word_utility_takes_exactly_one_word(vader):
    assert word_utility(" Good", vader) == vader["good"]
    assert word_utility("good bad", vader) == 0.0 and word_utility(",", vader) == 0.0


def test_token_utilities_follow_words_across_token_boundaries(vader):
    tokens = pd.DataFrame({"doc_id": [0, 0, 0, 0, 1, 1],
                           "token_text": ["I", " feel", " go", "od.", "Sad", " day"]})
    u = token_utilities(tokens, vader)
    # "good" is split over two tokens: both carry its utility; documents do not run together.
    assert u.tolist() == [0.0, 0.0, vader["good"], vader["good"], vader["sad"], 0.0]


def _identity_sae(d):
    sae = build_sae("relu", d, d)
    with torch.no_grad():
        sae.W.copy_(torch.eye(d))
        sae.b_enc.zero_()
        sae.b_dec.zero_()
    return sae


def test_activation_weighted_utility_known_answer():
    sae = _identity_sae(3)
    # Latent 0 fires (2.0 and 1.0) on tokens of utility 1.5 and 3.0; latent 1 on one token of 0; latent 2 never.
    x = torch.tensor([[2.0, 0, 0], [1.0, 0, 0], [0, 5.0, 0], [0, 0, -1.0]])
    util = np.array([1.5, 3.0, 0.0, -2.0])
    weighted, counts = activation_weighted_utility(sae, x, util, batch_size=3)
    assert weighted[0] == pytest.approx((2 * 1.5 + 1 * 3.0) / 3) and weighted[1] == 0.0 and np.isnan(weighted[2])
    assert counts.tolist() == [2, 1, 0]


def test_unembedding_utility_reads_the_promoted_tokens(tokenizer, vader):
    model = tiny_llama(len(tokenizer), hidden=32)
    vocab = vocab_utilities(tokenizer, vader)
    good = tokenizer(" good", add_special_tokens=False)["input_ids"]
    assert len(good) == 1
    atoms = torch.zeros(2, 32)
    atoms[0, 0] = atoms[1, 1] = 1.0
    with torch.no_grad():
        emb = model.get_output_embeddings().weight
        emb[:, 0] = 0.0
        emb[good[0], 0] = 10.0  # only " good" has a logit along atom 0
    u = unembed_utility(atoms, model, vocab, top_n=1)
    assert u[0] == pytest.approx(vader["good"])
    assert vocab[good[0]] == vader["good"]
    assert final_norm(model) is model.model.norm


def _one_token(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{text!r} is {len(ids)} tokens"
    return ids[0]


def test_unembedding_utility_applies_the_layernorm_weight_and_centring(tokenizer, vader):
    """GPT-NeoX (Pythia): the final LayerNorm's weight reorders tokens, and its centring removes
    any logit along the all-ones direction."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    d = 8
    torch.manual_seed(0)
    model = GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(tokenizer), hidden_size=d, intermediate_size=16,
                                             num_hidden_layers=1, num_attention_heads=2)).eval()
    norm = final_norm(model)
    assert norm is model.gpt_neox.final_layer_norm
    vocab = vocab_utilities(tokenizer, vader)
    good, happy, sad = (_one_token(tokenizer, w) for w in (" good", " happy", " sad"))
    with torch.no_grad():
        emb = model.get_output_embeddings().weight
        emb.zero_()
        emb[good] = 1.0       # all-ones row: logit sum(atom) without centring, exactly 0 with it
        emb[happy, 0] = 0.5   # along dimension 0
        emb[sad, 1] = 0.4     # along dimension 1
        norm.weight.fill_(1.0)
    atom = torch.zeros(1, d)
    atom[0, 0] = 1.0
    # Centred: happy 0.5 * (1 - 1/8) > 0 = good > sad (-0.4/8); uncentred good (1.0) would win.
    assert unembed_utility(atom, model, vocab, top_n=1)[0] == pytest.approx(vader["happy"])
    atom = torch.tensor([[0.5, 0.6] + [0.0] * (d - 2)])
    with torch.no_grad():
        emb[good] = 0.0
        norm.weight[0] = 3.0  # happy 3 * 0.5 * (0.5 - 1.1/8) beats sad 0.4 * (0.6 - 1.1/8) only with the weight
    assert unembed_utility(atom, model, vocab, top_n=1)[0] == pytest.approx(vader["happy"])
    with torch.no_grad():
        norm.weight[0] = 1.0
    assert unembed_utility(atom, model, vocab, top_n=1)[0] == pytest.approx(vader["sad"])
    # Only these two have positive logits (every other row is 0): top 2 is exactly them.
    assert unembed_utility(atom, model, vocab, top_n=2)[0] == pytest.approx((vader["sad"] + vader["happy"]) / 2)


def _p(a, b, n=500, seed=0, stat=np.mean, a_layers=None, b_layers=None):
    a_layers = np.zeros(len(a)) if a_layers is None else a_layers
    b_layers = np.zeros(len(b)) if b_layers is None else b_layers
    return stratified_permutation_p(a, a_layers, b, b_layers, n, seed, stat)


def test_permutation_test_and_bootstrap():
    rng = np.random.default_rng(0)
    a = rng.normal(0, 1, 40)
    assert _p(a, a.copy()) == pytest.approx(1.0)
    assert _p(a, a + 3.0) < 0.01
    lo, hi = bootstrap_ci(a, 500, 0.95, seed=0)
    assert lo < a.mean() < hi
    assert _p(np.array([]), a, 10) is None
    layers = np.zeros(40)
    d = paired_difference(a, layers, a + 3.0, layers, np.mean, ScoringConfig(bootstrap=500, permutations=200), seed=0)
    lo, hi = d["ci"]
    assert d["rlhf_minus_base"] == pytest.approx(3.0) and lo < 3.0 < hi and lo > 2.0 and d["p_value"] < 0.01


def test_permutation_p_matches_the_exact_answer():
    # 3 zeros vs 3 fives: of the C(6,3) = 20 splits, 2 are as extreme (all fives on either side): p = 0.1.
    assert _p(np.zeros(3), np.full(3, 5.0), 4000, seed=1) == pytest.approx(0.1, abs=0.02)
    assert _p(np.zeros(3), np.full(3, 5.0), 4000, seed=1, stat=np.sum) == pytest.approx(0.1, abs=0.02)


def test_labels_are_permuted_within_layers_only():
    """One feature per role in each of two layers, RLHF 10 above base in both. Within layers there are
    2 x 2 = 4 labellings, 2 as extreme as observed: p = 0.5. Pooling the layers would allow C(4,2) = 6
    splits, 2 as extreme: p = 1/3: features of different layers are not exchangeable."""
    a, b, layers = np.zeros(2), np.full(2, 10.0), np.array([0, 1])
    assert _p(a, b, 4000, seed=2, stat=np.sum, a_layers=layers, b_layers=layers) == pytest.approx(0.5, abs=0.03)
    assert _p(a, b, 4000, seed=2, stat=np.sum) == pytest.approx(1 / 3, abs=0.03)


def test_a_layer_confound_is_not_an_effect():
    """Utility differs between layers, not roles: a within-layer bootstrap keeps each layer's count, so
    the difference CI stays at 0, where pooled resampling of features would spread it wide."""
    cfg = ScoringConfig(bootstrap=500, permutations=500)
    base = rlhf = np.array([5.0, 5.0, 5.0, 0.0, 0.0, 0.0])
    layers = np.array([0, 0, 0, 1, 1, 1])
    d = paired_difference(base, layers, rlhf, layers, np.sum, cfg, seed=0)
    assert d["rlhf_minus_base"] == 0.0 and d["p_value"] == pytest.approx(1.0)
    assert d["ci"] == [0.0, 0.0]


def test_quoted_explanation_utility_counts_only_words_from_the_examples(vader):
    text = "This feature fires on good words, like positive ones"
    assert quoted_explanation_utility(text, "a good meal", vader) == pytest.approx(vader["good"])
    assert explanation_utility(text, vader) != pytest.approx(vader["good"])  # "like", "positive" count there
    assert quoted_explanation_utility(text, "nothing here", vader) == 0.0


def _rows(base_u, rlhf_u, random_u, rlhf_random_u=None):
    rows = []
    for role, us in (("base", base_u), ("rlhf", rlhf_u)):
        for i, u in enumerate(us):
            rows.append({"role": role, "layer": i % 2, "feature": i, "selected": True, "in_autointerp": True,
                         "explained": u is not None, "explanation_utility": np.nan if u is None else u,
                         "token_utility": u or 0.0, "n_active": 5})
        for j, u in enumerate(random_u if role == "base" or rlhf_random_u is None else rlhf_random_u):
            rows.append({"role": role, "layer": j % 2, "feature": 100 + j, "selected": False, "in_autointerp": True,
                         "explained": True, "explanation_utility": u, "token_utility": u, "n_active": 5})
    return pd.DataFrame(rows)


def test_table3_sums_absolute_utilities_and_scales_the_random_baseline():
    rows = _rows([1.0, -2.0, 0.0, None], [3.0, -3.0, 2.0, 1.0], [0.5, -0.5])
    stats = table3_stats(rows, ScoringConfig(bootstrap=200, permutations=200), seed=0)
    assert stats["base"]["sum_abs_utility"] == pytest.approx(3.0)
    # A failed explanation counts 0 and stays in n: both roles sum over the same number of features.
    assert stats["base"]["n_features"] == stats["rlhf"]["n_features"] == 4 and stats["base"]["n_failed"] == 1
    assert stats["rlhf"]["sum_abs_utility"] == pytest.approx(9.0)
    # The random features' mean |utility| (0.5) times the number of selected features.
    assert stats["base"]["random_baseline"]["sum_abs_utility"] == pytest.approx(0.5 * 4)
    assert stats["difference"]["rlhf_minus_base"] == pytest.approx(6.0)
    lo, hi = stats["rlhf"]["ci"]
    assert lo <= 9.0 <= hi
    # RLHF's selected features: mean 2.25 vs random 0.5.
    assert stats["rlhf_vs_random"]["selected_minus_random_mean"] == pytest.approx(2.25 - 0.5)


def test_an_rlhf_gain_that_its_random_features_match_is_not_an_effect():
    """RLHF's selected features score far above base's, but RLHF's random features score as high:
    the gain is in the whole dictionary (or the explainer), not in what the method selected."""
    cfg = ScoringConfig(bootstrap=300, permutations=300)
    base, rlhf = [0.0] * 12, [3.0, 3.2, 2.8, 3.1, 2.9, 3.0] * 2
    clear = table3_stats(_rows(base, rlhf, [0.1, 0.0] * 6), cfg, seed=0)
    assert clear["difference"]["p_value"] < 0.05 and clear["difference"]["ci"][0] > 0
    assert clear["effect"]
    matched = table3_stats(_rows(base, rlhf, [0.1, 0.0] * 6, rlhf_random_u=[3.0, 3.1] * 6), cfg, seed=0)
    assert matched["difference"]["p_value"] < 0.05 and matched["difference"]["ci"][0] > 0
    assert not matched["effect"]


def test_llm_free_measure_uses_the_unselected_features_as_baseline():
    rows = _rows([1.0, 1.0], [2.0, 2.0], [0.25, 0.75])
    stats = measure_stats(rows, "token_utility", ScoringConfig(bootstrap=200, permutations=200), seed=0)
    assert stats["base"]["mean_abs"] == pytest.approx(1.0) and stats["rlhf"]["mean_abs"] == pytest.approx(2.0)
    assert stats["base"]["random_mean_abs"] == pytest.approx(0.5)
    assert stats["difference"]["rlhf_minus_base"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------- the stage, end to end

TEXTS = ["The soup was good and warm.", "Rain all day, nothing to do", "We walked to the old harbour",
         "Numbers: 3, 4 and 5 in a list"]
LAYER = 1


def _store_and_sae(tmp_path, model_dir, role, tokenizer):
    """An activation store of ``TEXTS`` and a 6-latent relu SAE whose latent 0 fires on " good"
    only (its atom points at that token's activation, its threshold lies between that token's
    projection and every other token's) and whose latent 5 never fires."""
    model, tok = load_prepared(model_dir)
    store = tmp_path / "activations" / role
    extract_activations(model, tok, TEXTS, [LAYER], store,
                        ActivationsConfig(max_tokens=1000, max_length=16, batch_size=2, shard_tokens=9))
    rows, x = read_layer(store, LAYER, with_text=True)
    is_good = torch.tensor((rows["token_text"] == " good").to_numpy())
    assert is_good.sum().item() == 1
    direction = x[is_good][0] / x[is_good][0].norm()
    proj = x @ direction
    top_other = proj[~is_good].max().item()
    assert proj[is_good].item() > 1.01 * top_other, "precondition: ' good' must be separable along its own direction"
    sae = build_sae("relu", x.shape[1], 6)
    with torch.no_grad():
        sae.W[0] = direction
        sae.b_enc[0] = -(proj[is_good].item() + top_other) / 2
        sae.b_enc[5] = -1e6
    folder = tmp_path / "sae" / role / f"layer{LAYER}" / "relu_1x"
    folder.mkdir(parents=True)
    save_sae(sae, folder)
    return store, folder


def _autointerp(path, role, explained):
    """An autointerp table (the contract's columns the scoring reads, and a few more)."""
    windows = json.dumps({"explain": [{"tokens": ["The", " soup", " was", " good"], "activations": [0, 0, 0, 10]}],
                          "score": []})
    rows = [{"role": role, "layer": LAYER, "dictionary": "relu_1x", "feature": f, "selected": sel,
             "explanation": text, "status": "ok" if text is not None else "failed",
             "reason": "" if text is not None else "no answer", "examples": windows}
            for f, sel, text in explained]
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


def test_scoring_stage_end_to_end(tmp_path, tiny_model_dir, tokenizer, vader):
    rlhf_dir = save_tiny_model(tmp_path / "rlhf_model", tokenizer, seed=1)
    parts = []
    explained = {
        "base": [(0, True, "This feature fires on good food"), (1, True, "great and happy"), (2, True, None),
                 (3, False, "sad stuff")],
        "rlhf": [(0, True, "terrible"), (1, True, "commas, in lists"), (4, False, "love")],
    }
    for role, model_dir in (("base", tiny_model_dir), ("rlhf", rlhf_dir)):
        store, sae_dir = _store_and_sae(tmp_path, model_dir, role, tokenizer)
        table = _autointerp(tmp_path / f"{role}_layer{LAYER}.parquet", role, explained[role])
        parts.append(LayerInputs(role=role, layer=LAYER, store=store, sae_dir=sae_dir, model_dir=model_dir,
                                 autointerp=table))
    out = tmp_path / "scores"
    paths = [out / "r.parquet", out / "r_table3.csv", out / "r_table3.md", out / "r_stats.json"]
    cfg = ScoringConfig(bootstrap=200, permutations=200, top_n_tokens=5)
    scoring_stage(parts, *paths, cfg, seed=3)

    scores = pd.read_parquet(paths[0])
    assert len(scores) == 12 and set(scores["dictionary"]) == {"relu_1x"}
    assert {"role", "layer", "dictionary", "feature", "selected", "explained", "explanation", "explanation_utility",
            "token_utility", "unembed_utility", "n_active"} <= set(scores.columns)
    base = scores[scores["role"] == "base"].set_index("feature")
    # Latent 0 fires on the one " good" token only: its token utility is that word's.
    assert base.loc[0, "n_active"] == 1 and base.loc[0, "token_utility"] == pytest.approx(vader["good"])
    assert base.loc[5, "n_active"] == 0 and math.isnan(base.loc[5, "token_utility"])
    assert scores["unembed_utility"].notna().all()
    assert base["selected"].tolist() == [True, True, True, False, False, False]
    assert base["explained"].tolist() == [True, True, False, True, False, False]
    assert base.loc[0, "explanation_utility"] == pytest.approx(vader["good"])  # the frame is not content
    assert math.isnan(base.loc[2, "explanation_utility"]) and math.isnan(base.loc[4, "explanation_utility"])

    def no_nan(token):
        raise AssertionError(f"{token} in the stats JSON")

    stats = json.loads(paths[3].read_text(), parse_constant=no_nan)
    role_keys = {"sum_abs_utility", "ci", "n_features", "n_failed", "random_baseline"}
    measure_keys = {"mean_abs", "ci", "n_features", "random_mean_abs", "random_ci"}
    diff_keys = {"rlhf_minus_base", "ci", "p_value"}
    assert set(stats) == {"table3", "table3_quoted", "token_utility", "unembed_utility", "ci_level", "n_boot",
                          "n_permutations", "seed"}
    assert (stats["ci_level"], stats["n_boot"], stats["n_permutations"], stats["seed"]) == (0.95, 200, 200, 3)
    t3 = stats["table3"]
    assert set(t3) == {"base", "rlhf", "difference", "rlhf_vs_random", "effect"} and set(t3["difference"]) == diff_keys
    for role in ("base", "rlhf"):
        assert set(t3[role]) == role_keys
        assert set(t3[role]["random_baseline"]) == {"sum_abs_utility", "ci", "n_features"}
    for measure in ("token_utility", "unembed_utility"):
        assert set(stats[measure]) == {"base", "rlhf", "difference", "rlhf_vs_random", "effect"}
        assert set(stats[measure]["base"]) == set(stats[measure]["rlhf"]) == measure_keys
        assert set(stats[measure]["difference"]) == diff_keys
    # By hand: base |good| + |mean(great, happy)| + 0 for the failed one over 3 features; random |sad| x 3.
    base_sum = abs(vader["good"]) + abs((vader["great"] + vader["happy"]) / 2)
    assert t3["base"]["sum_abs_utility"] == pytest.approx(base_sum)
    assert (t3["base"]["n_features"], t3["base"]["n_failed"]) == (3, 1)
    assert t3["base"]["random_baseline"]["sum_abs_utility"] == pytest.approx(abs(vader["sad"]) * 3)
    # Quoted words only: "good" is in the examples shown, "great" and "happy" are not.
    assert stats["table3_quoted"]["base"]["sum_abs_utility"] == pytest.approx(abs(vader["good"]))
    assert t3["rlhf"]["sum_abs_utility"] == pytest.approx(abs(vader["terrible"]))  # "commas, in lists": 0
    assert t3["rlhf"]["random_baseline"]["sum_abs_utility"] == pytest.approx(abs(vader["love"]) * 2)
    assert t3["difference"]["rlhf_minus_base"] == pytest.approx(abs(vader["terrible"]) - base_sum)
    lo, hi = t3["base"]["ci"]
    assert lo <= base_sum <= hi

    table3 = pd.read_csv(paths[1])
    assert table3["role"].tolist() == ["base", "rlhf", "rlhf - base"]
    assert table3.loc[0, "sum_abs_utility"] == pytest.approx(base_sum)
    md = paths[2].read_text().splitlines()
    assert len(md) == 5 and md[2].startswith("| base |")


# ---------------------------------------------------------------- shared plumbing (missing values, table files)

def test_missing_values_have_one_rule():
    from rlhf_lens.missing import as_float, is_missing, json_safe, nan_to_none

    assert [is_missing(x) for x in (None, float("nan"), np.float32("nan"), pd.NA, 0.0, "nan", [])] == \
        [True, True, True, True, False, False, False]
    assert nan_to_none(float("nan")) is None and nan_to_none(2) == 2 and as_float(np.int64(3)) == 3.0
    nested = {"a": [np.float64(1.5), float("nan"), (np.int64(2), None)], "b": float("inf")}
    assert json_safe(nested) == {"a": [1.5, None, [2, None]], "b": float("inf")}
    assert json_safe(nested, finite=True)["b"] is None


def test_table_files_are_read_by_suffix(tmp_path):
    from rlhf_lens.tables_io import TABLE_SUFFIXES, read_table

    frame = pd.DataFrame({"text": ["a b", "c"], "label": [1, 0]})
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    for suffix in TABLE_SUFFIXES:
        pd.testing.assert_frame_equal(read_table(tmp_path / f"t{suffix}"), frame)
    with pytest.raises(ValueError, match="parquet"):
        read_table(tmp_path / "t.tsv")
