"""The calibration: reward gain next to every measure of the method, per reward strength."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rlhf_lens.config import ConfigError, load_config, rl_settings, validate_config
from rlhf_lens.report.calibration import MEASURES, calibration_stage
from snakemake_helpers import REPO, snakemake


def _stats(effect_key=None, diff=0.0):
    out = {}
    for key in MEASURES:
        hit = key == effect_key
        out[key] = {"difference": {"rlhf_minus_base": diff if hit else 0.01, "ci": [diff / 2, diff * 1.5] if hit
                                   else [-0.2, 0.2], "p_value": 0.001 if hit else 0.7}, "effect": hit}
    return out


def _write(tmp_path, name, gain, stats):
    rl = tmp_path / f"{name}_eval.json"
    rl.write_text(json.dumps({"reward_difference": gain, "reward_difference_ci95": [gain - 0.1, gain + 0.1],
                              "kl_mean": 10 * gain}))
    st = tmp_path / f"{name}_stats.json"
    st.write_text(json.dumps(stats))
    feats = tmp_path / f"{name}_features.parquet"
    pd.DataFrame([{"role": r, "layer": 3, "kind": "relu", "mmcs_small_to_large": 0.3, "mmcs_ci_low": 0.29,
                   "mmcs_ci_high": 0.31, "baseline_cross_seed_mmcs": 0.25, "baseline_cross_seed_ci_low": 0.24,
                   "baseline_cross_seed_ci_high": 0.26} for r in ("base", "rlhf")]).to_parquet(feats)
    return {"rl_eval": rl, "stats": st, "features": feats}


def test_the_table_puts_each_strength_beside_every_measure(tmp_path):
    entries = {"weak": _write(tmp_path, "weak", 0.5, _stats()),
               "strong": _write(tmp_path, "strong", 8.4, _stats("token_utility", 0.3))}
    out = [tmp_path / "t.parquet", tmp_path / "t.md", tmp_path / "f.png"]
    table = calibration_stage(entries, *out)
    assert table["reward"].tolist() == ["weak", "strong"]
    assert table["reward_gain"].tolist() == [0.5, 8.4]
    assert table["token_utility_effect"].tolist() == [False, True]
    assert table.loc[1, "token_utility_difference"] == pytest.approx(0.3)
    assert (table["mmcs_rlhf_above_floor"] == 1).all()
    md = out[1].read_text()
    assert "At the strongest reward (strong) the method detects the planted reward by: token utility." in md
    assert out[2].stat().st_size > 2000
    # Nothing detected at the strongest strength: said as a failure to detect.
    none = calibration_stage({"strong": _write(tmp_path, "s2", 8.4, _stats())}, *out)
    assert not none.filter(like="_effect").any(axis=None)
    assert "fails to detect the planted reward at this size" in out[1].read_text()


def test_planted_table_arms_are_marked_and_not_the_strongest(tmp_path):
    entries = {"weak": _write(tmp_path, "weak", 0.5, _stats()),
               "strong": _write(tmp_path, "strong", 8.4, _stats("token_utility", 0.3)),
               "secret": _write(tmp_path, "secret", 2.0, _stats()),
               "shuffled": _write(tmp_path, "shuffled", 1.0, _stats())}
    out = [tmp_path / "t.parquet", tmp_path / "t.md", tmp_path / "f.png"]
    tables = {"weak": "vader", "strong": "vader", "secret": "secret", "shuffled": "vader_shuffled"}
    table = calibration_stage(entries, *out, tables=tables)
    assert table["table"].tolist() == ["vader", "vader", "secret", "vader_shuffled"]
    md = out[1].read_text()
    assert "| secret (secret table) |" in md and "| shuffled (null: VADER shuffled) |" in md
    assert "At the strongest reward (strong) the method detects the planted reward by: token utility." in md
    assert out[2].stat().st_size > 2000


def test_crosscoder_columns_give_the_rlhf_only_count_and_their_utility_vs_shared(tmp_path):
    def xc_stats(n_only, diff, effect):
        comparison = {"difference": diff, "ci": [diff - 0.1, diff + 0.1] if diff is not None else [None, None],
                      "p_value": 0.01 if effect else None, "effect": effect}
        return {"n_rlhf_only": n_only, "n_rlhf_leaning": n_only + 2, "n_live": 100,
                "measures": {m: {"comparisons": {"rlhf_only_vs_shared": comparison}}
                             for m in ("token_utility", "unembed_utility")}}

    entries = {}
    for name, gain, stats in (("weak", 0.5, xc_stats(0, None, False)), ("strong", 8.4, xc_stats(3, 0.8, True))):
        entries[name] = _write(tmp_path, name, gain, _stats())
        (tmp_path / f"{name}_xc.json").write_text(json.dumps(stats))
        entries[name]["crosscoder"] = tmp_path / f"{name}_xc.json"
    out = [tmp_path / "t.parquet", tmp_path / "t.md", tmp_path / "f.png"]
    table = calibration_stage(entries, *out)
    assert table["xc_rlhf_only"].tolist() == [0, 3]
    assert table["xc_token_utility_effect"].tolist() == [False, True]
    assert table.loc[1, "xc_token_utility_vs_shared"] == pytest.approx(0.8) and pd.isna(
        table.loc[0, "xc_token_utility_vs_shared"])
    md = out[1].read_text()
    assert "crosscoder RLHF-only latents (of live)" in md and "+0.8 [0.7, 0.9], p 0.01: effect" in md
    # without crosscoder inputs the columns are left out
    calibration_stage({"weak": _write(tmp_path, "w2", 0.5, _stats())}, *out)
    assert "crosscoder" not in out[1].read_text()


def test_per_reward_overrides_and_their_validation():
    cfg = load_config(REPO / "configs/calibration.yaml")
    coefs = [rl_settings(cfg, r)[0].init_kl_coef for r in cfg["calibration"]["rewards"]]
    assert coefs == [0.2, 0.1, 0.05, 0.2, 0.1]  # secret at the default strength, the shuffled null at kl010's
    assert rl_settings(cfg)[0].init_kl_coef == 0.2  # without a reward: rl.ppo on the preset
    with pytest.raises(ConfigError) as err:
        validate_config({"rl": {"per_reward": {"nope": {"steps": 2}, "utility": {"mini_batch_size": 5}}},
                         "calibration": {"rewards": ["x"]}})
    text = str(err.value)
    assert "'rl.per_reward' names reward 'nope', which is not configured" in text
    assert "'calibration.rewards' names reward 'x'" in text
    assert "'rl.per_reward.utility.mini_batch_size' has value 5" in text


@pytest.mark.workflow
def test_the_calibration_config_plans_its_policies_and_the_table(tmp_path):
    proc = snakemake("--configfile", str(REPO / "configs/calibration.yaml"), "--dry-run", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for reward in ("kl020", "kl010", "kl005", "secret", "shuffled"):
        assert f"results/calibration/rl/{reward}/policy" in out
    # the planted arms' tables are drawn before their RL
    for reward in ("secret", "shuffled"):
        assert f"results/calibration/rewards/{reward}/table.csv" in out
    cfg = load_config(REPO / "configs/calibration.yaml")
    assert rl_settings(cfg, "secret")[0] == rl_settings(cfg, "kl020")[0]
    # the null gets kl010's coefficient to move the model nearer as far as kl020's policy; nothing else changes
    assert rl_settings(cfg, "shuffled")[0] == rl_settings(cfg, "kl010")[0] != rl_settings(cfg, "kl020")[0]
    assert "rule calibration:" in out or "localrule calibration:" in out
    assert "results/calibration/calibration/table.md" in out
    assert "results/calibration/crosscoder/kl005/utility.json" in out  # crosscoders run in the calibration
    # the recovery: every arm's diffing folders (each default method) -> recovery table and figure
    assert "rule calibration_recovery:" in out or "localrule calibration_recovery:" in out
    for what in ("recovery.md", "recovery.png", "recovery.parquet", "learned_words.parquet", "depth.png"):
        assert f"results/calibration/calibration/{what}" in out
    from rlhf_lens.diffing.registry import available

    methods = [m for m in cfg["diffing"]["methods"] if available(m)]
    assert methods, cfg["diffing"]["methods"]
    for reward in ("kl020", "kl005", "secret", "shuffled"):
        for method in methods:
            assert f"results/calibration/diffing/{reward}/{method}" in out
        assert f"results/calibration/report/{reward}/learned.csv" in out
