"""The calibration's recovery table and figure, on hand-made diffing folders with known readouts, and the shuffled
null's second readout against VADER on a planted words.parquet."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from rlhf_lens.report.recovery import METRICS, learned_words, null_verdict, recovery_stage, vader_readout

# A word-like vocabulary of 400 tokens; the "VADER" stand-in: w0..w59 positive (+2), w60..w119 negative (-2),
# so 60 positives of 400 word-like tokens (base rate 0.15) and 60 of the 120 lexicon words (lexicon rate 0.5).
N_WORDS = 400
WORDS = [f"w{i}" for i in range(N_WORDS)]
VADER = {**{f"w{i}": 2.0 for i in range(60)}, **{f"w{i}": -2.0 for i in range(60, 120)}}


def _words(scores: np.ndarray) -> pd.DataFrame:
    """words.parquet as the diffing stage writes it: sorted by score, token ids 10.. (not the row order)."""
    frame = pd.DataFrame({"token_id": np.arange(10, 10 + N_WORDS), "token_text": [" " + w for w in WORDS],
                          "word": WORDS, "score": scores})
    frame = frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
    frame["rank"] = np.arange(1, len(frame) + 1)
    return frame


def _clean_null_scores() -> np.ndarray:
    """What a readout of a policy trained on a shuffled table gives: its own table's positives, 30 VADER-positive
    (w0..w29) and 30 VADER-negative (w60..w89) words, tied at score 1; everything else 0."""
    s = np.zeros(N_WORDS)
    s[0:30] = s[60:90] = 1.0
    return s


def _leaky_scores() -> np.ndarray:
    """A readout that sees VADER itself (a null that is no null)."""
    return np.array([VADER.get(w, 0.0) for w in WORDS])


def test_the_null_readout_against_vader_has_its_known_point_values():
    r = vader_readout(_words(_clean_null_scores()), VADER, n_perm=200, seed=0)
    m = r["metrics"]
    assert r["base_rate"] == pytest.approx(60 / 400) and r["lexicon_rate"] == pytest.approx(0.5)
    # 60 tied tokens, 30 positive: any top 20 or 50 of them holds half positives (ties at their expected share)
    assert m["precision@20"]["value"] == pytest.approx(0.5) and m["precision@50"]["value"] == pytest.approx(0.5)
    assert m["recall@50"]["value"] == pytest.approx(25 / 60)
    # Spearman over the 120 lexicon words: the scored half is balanced between VADER's signs
    assert m["spearman"]["value"] == pytest.approx(0.0, abs=1e-12)
    assert all(m[k]["ci"] is None for k in METRICS)  # mean scores only: no CI, said so
    assert "point values" in r["ci_note"]
    # a random pick of lexicon words: precision@50 ~ hypergeometric(120, 60, 50) / 50, centred on 0.5
    low, high = m["precision@50"]["lexicon_range"]
    assert low < 0.5 < high and high - low < 0.4
    # a random pick of any word-like tokens: centred on the base rate, far below the lexicon's share
    assert m["precision@50"]["chance_range"][1] < 0.5
    assert m["spearman"]["null_abs_95"] > 0 and m["spearman"]["p_perm"] > 0.5

    leaky = vader_readout(_words(_leaky_scores()), VADER, n_perm=200, seed=0)["metrics"]
    assert leaky["precision@20"]["value"] == leaky["precision@50"]["value"] == pytest.approx(1.0)
    assert leaky["spearman"]["value"] == pytest.approx(1.0) and leaky["recall@50"]["value"] == pytest.approx(50 / 60)


def _readout(values: dict[str, float], base_rate: float, ci: float = 0.05) -> dict:
    """readout.json's content with the given metric values (CIs ± ``ci``)."""
    chance = {"spearman": 0.0, "precision@20": base_rate, "precision@50": base_rate, "auroc": 0.5,
              "recall@50": 50 / N_WORDS}
    metrics = {k: {"value": v, "ci": [v - ci, v + ci], "chance": chance[k]} for k, v in values.items()}
    metrics["spearman"].update({"null_abs_95": 0.03, "p_perm": 0.001})
    return {"method": "m", "unit": "prompt_group", "n_units": 12, "truth": "table",
            "readout": {"base_rate": base_rate, "n_units": 12, "unit": "prompt_group", "n_perm": 200,
                        "ci_level": 0.95, "metrics": metrics}}


def _arm(tmp_path, arm, gain, table, methods: dict[str, tuple[dict, np.ndarray]]):
    rl = tmp_path / f"{arm}_eval.json"
    rl.write_text(json.dumps({"reward_difference": gain, "reward_difference_ci95": [gain - 0.2, gain + 0.2]}))
    diffing = {}
    for method, (readout, scores) in methods.items():
        folder = tmp_path / "diffing" / arm / method
        folder.mkdir(parents=True)
        (folder / "readout.json").write_text(json.dumps(readout))
        _words(scores).to_parquet(folder / "words.parquet")
        diffing[method] = folder
    return {"rl_eval": rl, "table": table, "diffing": diffing}


def _values(p20, p50, rho, rec):
    return {"precision@20": p20, "precision@50": p50, "spearman": rho, "auroc": 0.7, "recall@50": rec}


def test_recovery_rows_figure_and_marked_nulls(tmp_path):
    noise = np.linspace(1, 0, N_WORDS)  # the strengths' words.parquet is not read: any scores
    arms = {}
    for arm, gain, p20 in (("kl020", 0.5, 0.3), ("kl010", 1.5, 0.6), ("kl005", 7.0, 0.9)):
        arms[arm] = _arm(tmp_path, arm, gain, None, {
            "logit_shift": (_readout(_values(p20, p20 - 0.1, p20 / 2, p20 / 3), 0.04), noise),
            "sae_shift": (_readout(_values(0.05, 0.04, 0.01, 0.02), 0.04), noise)})
    arms["secret"] = _arm(tmp_path, "secret", 2.0, "secret", {
        "logit_shift": (_readout(_values(1.0, 0.7, 0.2, 0.875), 0.001), noise),
        "sae_shift": (_readout(_values(0.0, 0.0, 0.0, 0.0), 0.001), noise)})
    arms["shuffled"] = _arm(tmp_path, "shuffled", 1.8, "vader_shuffled", {
        "logit_shift": (_readout(_values(0.95, 0.9, 0.7, 0.5), 0.04), _clean_null_scores()),
        "sae_shift": (_readout(_values(0.5, 0.4, 0.3, 0.2), 0.04), _leaky_scores())})
    # a method without a truth is left out
    (tmp_path / "nt").mkdir()
    (tmp_path / "nt/readout.json").write_text(json.dumps({"method": "x", "unit": "seed", "n_units": 1, "truth": None}))
    arms["kl020"]["diffing"]["notruth"] = tmp_path / "nt"
    out = [tmp_path / "recovery.parquet", tmp_path / "recovery.md", tmp_path / "recovery.png"]
    table = recovery_stage(arms, *out, vader=VADER, seed=0)

    # one row per arm and method (own table), two more for the null against VADER, in calibration order
    key = list(zip(table["arm"], table["method"], table["truth"]))
    assert key == [(a, m, "own") for a in ("kl020", "kl010", "kl005", "secret", "shuffled")
                   for m in ("logit_shift", "sae_shift")][:8] + [
        ("shuffled", "logit_shift", "own"), ("shuffled", "logit_shift", "vader"),
        ("shuffled", "sae_shift", "own"), ("shuffled", "sae_shift", "vader")]
    assert table["null"].tolist() == [False] * 9 + [True, False, True]
    assert table["kind"].tolist() == ["strength"] * 6 + ["secret"] * 2 + ["null"] * 4
    ls = table[(table["method"] == "logit_shift") & (table["truth"] == "own")]
    assert ls["reward_gain"].tolist() == [0.5, 1.5, 7.0, 2.0, 1.8]
    assert ls["precision@20"].tolist() == pytest.approx([0.3, 0.6, 0.9, 1.0, 0.95])
    assert ls["precision@20_ci_low"].tolist() == pytest.approx([0.25, 0.55, 0.85, 0.95, 0.9])
    assert ls["precision@20_chance"].tolist() == pytest.approx([0.04, 0.04, 0.04, 0.001, 0.04])
    assert table["has_ci"].tolist() == [True] * 9 + [False, True, False]
    # the null against VADER: recomputed from words.parquet
    null = table[table["null"]].set_index("method")
    assert null.loc["logit_shift", "precision@50"] == pytest.approx(0.5)
    assert null.loc["logit_shift", "spearman"] == pytest.approx(0.0, abs=1e-12)
    assert null.loc["sae_shift", "precision@50"] == pytest.approx(1.0)
    assert null.loc["logit_shift", "base_rate"] == pytest.approx(0.15)
    assert np.isnan(null.loc["logit_shift", "precision@50_ci_low"])

    md = out[1].read_text()
    assert "| kl005 | its table (VADER) | +7 [6.8, 7.2] | logit_shift | 0.9 [0.85, 0.95] | 0.8 [0.75, 0.85] |" in md
    assert "| secret (secret table) | its own table |" in md
    assert md.count("| shuffled (null: VADER shuffled) | **VADER: the null (must sit at chance)** |") == 2
    assert "0.5† (random lexicon words: [" in md and "no CI (the per-unit scores are not saved)" in md
    assert "shuffled, logit_shift: at chance against VADER, as a null must be" in md
    assert "shuffled, sae_shift: NOT at chance against VADER" in md and "precision@50 1 is ABOVE" in md
    assert out[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out[2].stat().st_size > 10000
    assert not list(tmp_path.glob(".*.tmp"))


def test_without_a_readout_the_recovery_says_so(tmp_path):
    arms = {"kl020": {"rl_eval": tmp_path / "e.json", "table": None, "diffing": {}}}
    (tmp_path / "e.json").write_text(json.dumps({"reward_difference": 0.1}))
    out = [tmp_path / "r.parquet", tmp_path / "r.md", tmp_path / "r.png"]
    assert recovery_stage(arms, *out, vader=VADER).empty
    assert "nothing to recover" in out[1].read_text() and out[2].is_file()


def _samples(n_prompts: int = 10, per_prompt: int = 4) -> pd.DataFrame:
    """eval.parquet's rows: the policy writes "w1" twice in every sample (the base never), "w2" as often as the
    base, and "w3" five times in every sample of one prompt only; "w61" (a negative word) rises too."""
    rows = []
    for p in range(n_prompts):
        for k in range(per_prompt):
            rows.append({"prompt_index": p, "model": "base", "response": "w2 and w61, then w2."})
            policy = "W1 w1! w2 w61 w61 w2" + (" w3" * 5 if p == 0 else "")
            rows.append({"prompt_index": p, "model": "policy", "response": policy})
    return pd.DataFrame(rows)


def test_learned_words_are_the_table_words_the_policy_writes_more_for_most_prompts():
    found = learned_words(_samples(), VADER, n_boot=500, seed=0).set_index("word")
    assert len(found) == 60  # the table's positive words only: w61 is never a learned word
    assert found.loc["w1", "change"] == pytest.approx(2.0) and found.loc["w1", "base"] == 0.0
    assert found.loc["w1", "ci_low"] == pytest.approx(2.0) and found.loc["w1", "learned"]
    assert found.loc["w2", "change"] == 0.0 and not found.loc["w2", "learned"]
    # +5 per sample, but for one prompt of ten: the prompt is the unit, so its CI reaches 0
    assert found.loc["w3", "change"] == pytest.approx(0.5) and found.loc["w3", "ci_low"] == 0.0
    assert found["learned"].sum() == 1


def test_recovery_scores_each_arm_against_the_words_its_policy_learned(tmp_path):
    scores = np.zeros(N_WORDS)
    scores[1] = 3.0  # the learned word ranks first; w0 (planted, never learned) scores nothing
    readout = _readout(_values(0.05, 0.02, 0.1, 0.5), 0.15)
    readout["depth_profile"] = [{"block": b, "spearman": rho, "precision@50": p50, "recall@50": 0.0, "top_words": []}
                                for b, rho, p50 in ((0, 0.1, 0.2), (1, 0.6, 0.4), (2, 0.7, 0.55), (3, 0.65, 0.5))]
    arm = _arm(tmp_path, "secret", 2.0, "secret", {"activation_lens": (readout, scores)})
    samples = tmp_path / "eval.parquet"
    _samples().to_parquet(samples)
    arm.update(samples=samples, words={"w0": 3.0, "w1": 3.0, "w2": 3.0, "w3": 3.0})
    out = [tmp_path / "r.parquet", tmp_path / "r.md", tmp_path / "r.png", tmp_path / "learned.parquet",
           tmp_path / "depth.png"]
    table = recovery_stage({"secret": arm}, *out, vader=VADER, seed=0)
    assert table["truth"].tolist() == ["own", "learned"]
    learned = table[table["truth"] == "learned"].iloc[0]
    assert learned["n_learned"] == 1 and learned["n_planted"] == 4
    assert learned["recall@50"] == pytest.approx(1.0) and learned["precision@20"] == pytest.approx(1 / 20)
    assert learned["precision@20_chance"] == pytest.approx(1 / N_WORDS) and not learned["has_ci"]
    assert table[table["truth"] == "own"].iloc[0]["recall@50"] == pytest.approx(0.5)  # readout.json's own value
    md = out[1].read_text()
    assert "| secret (secret table) | the words its policy learned to write (1 of 4) |" in md
    assert "1† (random ranking: [" in md and "- secret: 1 of 4: w1 (+2.00)" in md
    assert pd.read_parquet(out[3])["learned"].tolist() == [False, True, False, False]
    # the depth profile: Spearman readable from block 1, precision@50 from block 2 (its best)
    assert "| secret | +2 | activation_lens | block 1 | block 2 | 0.55 (block 2 of 4) |" in md
    assert out[4].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_null_that_learned_nothing_is_at_chance_and_one_above_the_lexicons_range_is_not():
    row = {"arm": "shuffled", "method": "m", "spearman": -0.03, "spearman_null_abs_95": 0.04,
           "precision@50": 0.04, "precision@50_chance_range_low": 0.0, "precision@50_chance_range_high": 0.1,
           "precision@50_lexicon_range_low": 0.36, "precision@50_lexicon_range_high": 0.62}
    # at the base rate: below the random-lexicon range, inside a random ranking's: chance, not a failure
    assert "at chance against VADER, as a null must be" in null_verdict(row)
    assert "precision@50 0.04 is inside chance [0, 0.62]" in null_verdict(row)
    assert "NOT at chance" in null_verdict({**row, "precision@50": 0.7})
    assert "NOT at chance" in null_verdict({**row, "spearman": -0.09})  # anti-correlated sees VADER too
    assert "no readout to judge" in null_verdict({"arm": "a", "method": "m"})
