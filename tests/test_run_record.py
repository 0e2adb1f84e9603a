"""``rlhf-lens record-run``: a finished run's headline numbers become a record, read from a planted run folder
whose numbers are known."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhf_lens.cli import main
from rlhf_lens.records import END, START, load_records, render_all
from rlhf_lens.report.run_record import record_run

ENV = {"platform": "Linux", "python": "3.11.2", "cpu_model": "Planted CPU", "cores": 2, "gpus": [],
       "versions": {"torch": "2.13.0"}, "commit": "abc1234", "dirty": False}


def write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def planted_run(run: Path) -> Path:
    write(run / "rl/utility/eval_summary.json",
          {"reward_difference": 1.27, "reward_difference_ci95": [1.14, 1.40], "kl_mean": 6.99, "n_prompts": 72,
           "samples_per_prompt": 8})
    write(run / "divergence/utility_layers.json", {"ranked": [28, 20], "layers": [20, 28], "top_n": 2, "n_blocks": 30})
    for role, layer, name, ev, dead in (("base", 20, "topk_1x", 0.62, 0.0), ("rlhf", 28, "topk_1x", 0.907, 0.024),
                                        ("base", 20, "topk_2x", 0.70, 0.01), ("base", 20, "topk_1x_seed1", 0.1, 0.9)):
        write(run / f"sae/utility/{role}/layer{layer}/{name}/metrics.json",
              {"layer": layer, "explained_variance": ev, "dead_fraction": dead})
    write(run / "scores/utility_stats.json", {"ci_level": 0.95, "table3": {"difference": {
        "rlhf_minus_base": -0.13, "ci": [-5.41, 5.35], "p_value": 0.98}}, "token_utility": {"difference": {
        "rlhf_minus_base": 0.3, "ci": [0.1, 0.5], "p_value": 0.01}}})
    folder = run / "diffing/utility/logit_shift"
    write(folder / "readout.json", {"readout": {
        "n_units": 24, "unit": "prompt_group", "n_truth_words": 2337, "n_positive": 1138, "base_rate": 0.0362,
        "metrics": {"spearman": {"value": 0.735, "ci": [0.724, 0.744]}, "precision@50": {"value": 0.92, "ci": [0.9, 0.92]},
                    "recall@50": {"value": 0.04, "ci": [0.04, 0.04]}, "auroc": {"value": 0.86}}},
        "depth_profile": [{"block": b, "spearman": 0.1 * b, "precision@50": 0.2 * b} for b in range(8)]})
    write(folder / "extra.json", {})
    import pandas as pd

    pd.DataFrame({"word": ["love", "beautiful"], "score": [2.7, 2.2], "rank": [1, 2]}).to_parquet(folder / "words.parquet")
    return run


def test_record_run_reads_the_planted_numbers(tmp_path):
    run = planted_run(tmp_path / "results" / "default")
    path = record_run(run, "planted_run", "make run", root=tmp_path, env=ENV)
    record = json.loads(path.read_text())
    values = {v["name"]: v for v in record["values"]}
    gain = values["RL: held-out reward, policy - base"]
    assert (gain["value"], gain["ci"]) == (1.27, [1.14, 1.4]) and "significant" in gain["reading"]
    assert values["RL: mean KL to the base model"]["value"] == 6.99
    assert values["blocks that moved most (divergence)"]["value"] == "28, 20 of 30"
    # seed replicas are not the run's SAEs; ranges are per dictionary size over (role, block)
    assert values["SAE topk_1x: held-out explained variance"]["value"] == [0.62, 0.907]
    assert "dead <= 2.4%" in values["SAE topk_1x: held-out explained variance"]["reading"]
    assert values["SAE topk_2x: held-out explained variance"]["value"] == [0.7, 0.7]
    table3 = values["sum of |utility| of the explanations (Table 3), RLHF - base"]
    assert table3["ci"] == [-5.41, 5.35] and "no effect at this size" in table3["reading"]
    assert values["mean |token utility|, RLHF - base"]["reading"].startswith("significant")
    assert not any("unembedding" in name for name in values)  # not in the planted stats: left out
    spearman = values["diffing logit_shift: spearman"]
    assert (spearman["value"], spearman["ci"]) == (0.735, [0.724, 0.744]) and "2337" in spearman["reading"]
    assert "base rate 0.036" in values["diffing logit_shift: precision@50"]["reading"]
    assert values["diffing logit_shift: words ranked first"]["value"] == "love, beautiful"
    assert values["diffing logit_shift: first block whose readout has spearman >= 0.5"]["value"] == "block 5 of 8"
    assert values["diffing logit_shift: first block whose readout has precision@50 >= 0.5"]["value"] == "block 3 of 8"
    assert record["commit"] == "abc1234" and record["command"] == "make run"
    (tmp_path / "README.md").write_text(f"{START}\n{END}\n")
    assert load_records(tmp_path)[0]["name"] == "planted_run" and render_all(tmp_path)


def test_record_run_cli_and_an_unevaluated_run(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="not been evaluated"):
        record_run(tmp_path / "empty", "x", "make run", root=tmp_path, env=ENV)
    run = planted_run(tmp_path / "results" / "two")
    write(run / "rl/other/eval_summary.json", {"reward_difference": 0.5, "reward_difference_ci95": [-0.1, 1.1]})
    assert main(["record-run", str(run), "--name", "two_rewards", "--run-command", "snakemake --cores 2", "--notes", "n1",
                 "--root", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "docs/results/records/two_rewards.json").read_text())
    names = [v["name"] for v in record["values"]]
    assert "other: RL: held-out reward, policy - base" in names and "utility: RL: mean KL to the base model" in names
    assert record["command"] == "snakemake --cores 2" and "two_rewards.json" in capsys.readouterr().out
    assert record["notes"] == "n1"


def test_record_run_adds_the_calibration_recovery_beyond_each_arms_own_readout(tmp_path):
    import pandas as pd

    run = planted_run(tmp_path / "results" / "calibration")
    nan = float("nan")
    rows = [
        {"arm": "kl020", "method": "logit_shift", "truth": "own", "spearman": 0.7},  # in the diffing folders already
        {"arm": "shuffled", "method": "logit_shift", "truth": "vader", "spearman": 0.01, "spearman_null_abs_95": 0.04,
         "precision@50": 0.5, "precision@50_lexicon_range_low": 0.36, "precision@50_lexicon_range_high": 0.64,
         "precision@50_chance_range_low": 0.0, "precision@50_chance_range_high": 0.1, "recall@50": nan},
        {"arm": "secret", "method": "logit_shift", "truth": "learned", "n_learned": 14, "n_planted": 40,
         "spearman": nan, "precision@50": 0.24, "precision@50_chance_range_low": 0.0,
         "precision@50_chance_range_high": 0.02, "recall@50": 0.857, "recall@50_chance_range_low": 0.0,
         "recall@50_chance_range_high": 0.0714}]
    (run / "calibration").mkdir()
    pd.DataFrame(rows).to_parquet(run / "calibration" / "recovery.parquet")
    record = json.loads(record_run(run, "cal", "snakemake", root=tmp_path, env=ENV).read_text())
    values = {v["name"]: v for v in record["values"]}
    null = values["shuffled, logit_shift, against VADER (the like-for-like null): spearman"]
    assert null["value"] == 0.01 and "permutation null |rho| 95%: 0.040" in null["reading"]
    p50 = values["shuffled, logit_shift, against VADER (the like-for-like null): precision@50"]
    assert "random lexicon words: [0.360, 0.640]" in p50["reading"]
    learned = "secret, logit_shift, against the 14 of its 40 table words its policy learned to write"
    assert values[f"{learned}: recall@50"]["value"] == 0.857
    assert "random ranking: [0.000, 0.071]" in values[f"{learned}: recall@50"]["reading"]
    assert f"{learned}: spearman" not in values and not any(name.startswith("kl020,") for name in values)
