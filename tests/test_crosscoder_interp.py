"""What RLHF added, through the crosscoder: the latent choice for autointerp, the utility comparison of
RLHF-only latents against shared and random ones (known answer: a direction planted on the tokens of
a positive word set in the second model makes an RLHF-only latent whose token utility is that word
set's, beyond the shared latents'), and the (base, base) null, which has nothing to compare."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rlhf_lens.autointerp.crosscoder import choose_latents, latent_groups
from rlhf_lens.sae import SAETrainConfig, train_sae
from rlhf_lens.sae.diffing import diff_table
from rlhf_lens.scoring import ScoringConfig
from rlhf_lens.scoring.crosscoder import (comparison_frame, comparison_markdown, crosscoder_latent_utilities,
                                          latent_table, utility_comparison)

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = [f"w{i}" for i in range(50)]
PLANTED = {3: "delight", 7: "superb", 11: "wonderful"}  # token id -> word; the word set the second model marks
TABLE = {"delight": 2.9, "superb": 2.9, "wonderful": 2.7, "w20": -1.5, "w21": 1.0, "w22": -2.0}
"""A utility table: the planted words and a few others (so shared latents have utilities too)."""
CFG = dict(d_sae=64, k=4, epochs=20, lr=3e-3, batch_size=128, seed=0, dead_after=1000)
STATS = ScoringConfig(bootstrap=500, permutations=500)


def _planted(seed=0, n=6000, d=16, m_true=48, magnitude=2.0):
    """(x_base, x_rlhf, tokens): base activations as sparse sums of unit atoms (about 3 per token);
    the second model's are the same plus ``magnitude`` times one fixed direction on the tokens of
    the planted words; ``tokens``: doc_id and token_text of each row (documents of 20 tokens)."""
    g = torch.Generator().manual_seed(seed)
    atoms = torch.nn.functional.normalize(torch.randn(m_true, d, generator=g), dim=1)
    on = torch.rand(n, m_true, generator=g) < 3 / m_true
    xb = (on * (0.5 + 1.5 * torch.rand(n, m_true, generator=g))) @ atoms
    token = torch.randint(0, len(WORDS), (n,), generator=g)
    planted = torch.isin(token, torch.tensor(list(PLANTED)))
    v = torch.nn.functional.normalize(torch.randn(d, generator=g), dim=0)
    texts = [" " + PLANTED.get(int(t), WORDS[int(t)]) for t in token]
    tokens = pd.DataFrame({"doc_id": np.arange(n) // 20, "token_text": texts})
    return xb, xb + magnitude * planted[:, None] * v, tokens


def _rows(xb, xr, tokens):
    x = torch.cat([xb, xr], 1)
    xc, _ = train_sae(x, SAETrainConfig(kind="crosscoder_batchtopk", **CFG), progress=False)
    diff = diff_table(xc, x)
    utilities = crosscoder_latent_utilities(xc, x, tokens, TABLE, None, None, 0)
    return latent_table(1, diff, utilities, None, TABLE)


def test_planted_rlhf_only_latent_carries_the_word_sets_utility_beyond_shared_and_random_latents():
    """Known answer: the one RLHF-only latent's token utility is about the planted words' mean (2.83),
    shared latents fire on every word alike (mean |utility| ~ 0.1); the comparison's CI excludes 0 and
    its permutation p is below 0.05 (one latent among ~60: p ~ 1/60 at best)."""
    rows = _rows(*_planted())
    only = rows[rows["live"] & (rows["group"] == "rlhf_only")]
    assert len(only) == 1
    assert only["token_utility"].iloc[0] == pytest.approx(np.mean(list(TABLE.values())[:3]), abs=0.1)
    stats = utility_comparison(rows, STATS, seed=0, measures=("token_utility",))["token_utility"]
    for name in ("rlhf_only_vs_shared", "rlhf_only_vs_random"):
        c = stats["comparisons"][name]
        assert c["effect"] and c["difference"] > 2.0 and c["ci"][0] > 2.0 and c["p_value"] < 0.05, c
    assert stats["groups"]["shared"]["mean_abs"] < 0.5 and stats["groups"]["shared"]["n"] >= 20
    frame = comparison_frame({"measures": {"token_utility": stats}})
    text = comparison_markdown(frame, n_rlhf_only=1)
    assert "they differ from the baseline by: token utility" in text


def test_null_has_no_rlhf_only_latent_and_the_comparison_says_there_is_nothing_to_compare():
    xb, _, tokens = _planted()
    rows = _rows(xb, xb, tokens)
    assert not (rows["group"] == "rlhf_only").any()
    stats = utility_comparison(rows, STATS, seed=0, measures=("token_utility",))
    c = stats["token_utility"]["comparisons"]["rlhf_only_vs_shared"]
    assert c["difference"] is None and c["p_value"] is None and not c["effect"]
    text = comparison_markdown(comparison_frame({"measures": stats}), n_rlhf_only=0)
    assert "no RLHF-only latent" in text and "n/a" in text


def test_choose_latents_takes_rlhf_only_then_leaning_by_dn_and_baselines_from_live_latents_only():
    dn = np.array([0.95, 0.99, 0.7, 0.8, 0.65, 0.5, 0.45, 0.55, 0.2, 0.05, 0.97, 0.5])
    live = np.array([True] * 10 + [False, False])  # the last two: a dead RLHF-only and a dead shared latent
    freq = np.where(live, 0.01, 0.0)
    freq[4] = 0.5  # dense: left out
    from rlhf_lens.sae.diffing import dn_bin
    diff = pd.DataFrame({"latent": np.arange(12), "dn": dn, "bin": dn_bin(dn), "live": live, "frequency": freq})
    assert list(latent_groups(diff)) == ["rlhf_only", "rlhf_only", "rlhf_leaning", "rlhf_leaning", "rlhf_leaning",
                                         "shared", "shared", "shared", "", "", "", ""]
    chosen = choose_latents(diff, n_per_group=2, n_random=2, seed=0, max_density=0.1)
    by_group = chosen.groupby("group")["latent"].apply(list).to_dict()
    assert by_group["rlhf_only"] == [1, 0] and by_group["rlhf_leaning"] == [3, 2]
    assert set(by_group["shared"]) <= {5, 6, 7} and len(by_group["shared"]) == 2
    assert set(by_group["random"]) <= {8, 9, *({5, 6, 7} - set(by_group["shared"]))}
    assert chosen["selected"].tolist() == [g in ("rlhf_only", "rlhf_leaning") for g in chosen["group"]]
    assert not chosen["latent"].isin([4, 10, 11]).any()


def test_card_draws_both_models_writes_on_the_same_window(tmp_path):
    """An RLHF-only latent (base decoder norm 0): the base row is blank, the RLHF row shaded by the activation."""
    import json

    from rlhf_lens.report.crosscoder_cards import crosscoder_cards

    window = {"tokens": [" a", " <b>great</b>", " c"], "activations": [0.0, 2.0, 1.0]}
    row = {"role": "crosscoder", "layer": 1, "dictionary": "layer1", "feature": 5, "group": "rlhf_only",
           "selected": True, "rank": 0, "dn": 1.0, "bin": "rlhf_only", "norm_base": 0.0, "norm_rlhf": 0.5,
           "decoder_cosine": 0.0, "nu_error": 0.01, "nu_reconstruction": 0.02, "rlhf_specific": True,
           "max_activation": 2.0, "n_active": 2, "n_tokens": 3, "explanation": "praise", "status": "ok",
           "reason": "", "score": 0.9, "examples": json.dumps({"explain": [window], "score": []}),
           "histogram": json.dumps({"edges": [1.0, 2.0], "counts": [2]})}
    out = tmp_path / "cards.html"
    n = crosscoder_cards(pd.DataFrame([row, {**row, "feature": 6, "group": "shared", "selected": False}]), None,
                         None, out, title="t")
    page = out.read_text()
    assert n == 1 and "latent 5" in page and "latent 6" not in page
    assert "&lt;b&gt;great&lt;/b&gt;" in page and "<b>great" not in page  # corpus text escaped
    base_row, rlhf_row = page.split('<span class="lbl">base</span>')[1], page.split('<span class="lbl">rlhf</span>')[1]
    assert "rgba(44,160,44,0.00)" in base_row.split("</div>")[0] and "44,160,44,1.00" not in base_row.split("</div>")[0]
    assert "rgba(255,127,14,1.00)" in rlhf_row.split("</div>")[0]  # 2.0 * 0.5 over the largest write 2.0 * 0.5
