"""The interpretation stage as Snakemake runs it, on a tiny model and a stand-in for the RL stage's outputs.

The RL stage's artifacts (rl/{reward}/policy/ and rl/{reward}/eval.parquet) are written here
by hand after the rule's inputs: a copy of the tiny model with block 1 perturbed, and a few eval
rows. Being newer than the rl rule's inputs, they count as up to date.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

import snakemake_helpers

pytestmark = pytest.mark.workflow

CONFIG = {
    "run": "tiny", "model": {"name": "tiny"}, "prompts": {"max_texts": 40},
    "divergence": {"top_n": 1},
    "activations": {"max_tokens": 300, "batch_size": 8, "shard_tokens": 128},
    "sae": {"kinds": ["relu"], "sizes": [1, 2], "k": 4, "epochs": 1, "batch_size": 64, "ce_eval_tokens": 32,
            "baseline_seeds": [1, 2]},
    "features": {"top_k": 3, "bootstrap": 50},
    # A tiny random SAE's latents are mostly dense: keep them, so the selection is the top-k matches.
    "autointerp": {"random_features": 1, "explain_max_tokens": 12, "cache_dir": "llm_cache", "max_density": None,
                   "examples": {"n_top": 4, "n_quantiles": 2, "per_quantile": 2, "n_random": 2}},
}


def snakemake(*args, cwd):
    """snakemake with the work directory's config.yaml (the test config)."""
    return snakemake_helpers.snakemake(*args, "--configfile", "config.yaml", cwd=cwd)


def _workdir(path: Path, tiny_model_dir: Path) -> Path:
    from rlhf_lens.models import load_prepared

    (path / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "model": {"name": "tiny", "spec": str(tiny_model_dir)}}))
    # Build the RL stage's inputs first, so the stand-in outputs written next are newer and the
    # rl rule has nothing to redo (--rerun-triggers mtime below: no metadata exists for them).
    proc = snakemake("resources/models/tiny", "results/tiny/prompts/train.parquet", cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rl = path / "results/tiny/rl/utility"
    model, tok = load_prepared(tiny_model_dir)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.add_(0.05)
    model.save_pretrained(rl / "policy")
    tok.save_pretrained(rl / "policy")
    prompts = ["The movie was", "I thought the acting", "What a", "This film is", "Honestly the plot"] * 2
    # As rl/evaluate.py writes it: 5 prompts x 2 samples per model, prompt_index and sample per row.
    rows = [{"prompt": p, "model": m, "prompt_index": i % 5, "sample": i // 5,
             "response": f" {w} and {m} sample {i} of a story", "reward": 0.1 * i}
            for i, p in enumerate(prompts) for m, w in (("base", "fine"), ("policy", "great"))]
    pd.DataFrame(rows).to_parquet(rl / "eval.parquet")
    pd.DataFrame({"step": [0, 1], "reward_mean": [0.1, 0.3], "kl_mean": [0.0, 0.4]}).to_parquet(rl / "metrics.parquet")
    plot_utilities_placeholder(rl / "curves.png")
    (rl / "eval_summary.json").write_text(json.dumps({
        "n_prompts": 5, "samples_per_prompt": 2, "bootstrap": 200, "reward_base_mean": 0.1, "reward_policy_mean": 0.2,
        "reward_base_ci95": [0.0, 0.2], "reward_policy_ci95": [0.1, 0.3], "reward_difference": 0.1,
        "reward_difference_ci95": [-0.05, 0.25], "kl_mean": 0.4, "kl_ci95": [0.3, 0.5]}))
    return path


def plot_utilities_placeholder(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0.1, 0.3])
    fig.savefig(path)
    plt.close(fig)


@pytest.fixture(scope="module")
def interp_run(tmp_path_factory, tiny_model_dir):
    workdir = _workdir(tmp_path_factory.mktemp("interp"), tiny_model_dir)
    proc = snakemake("--rerun-triggers", "mtime", cwd=workdir)  # the default target: everything
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return workdir


def test_divergence_picks_the_perturbed_block(interp_run):
    layers = json.loads((interp_run / "results/tiny/divergence/utility_layers.json").read_text())
    assert layers["ranked"] == [1] and layers["layers"] == [1]
    assert (interp_run / "results/tiny/divergence/utility.png").is_file()


def test_stores_hold_identical_tokens(interp_run):
    from rlhf_lens.activations import read_layer

    base, _ = read_layer(interp_run / "results/tiny/activations/utility/base", 1)
    rlhf, _ = read_layer(interp_run / "results/tiny/activations/utility/rlhf", 1)
    pd.testing.assert_frame_equal(base, rlhf)


def test_every_sae_has_saelens_files_and_metrics(interp_run):
    from rlhf_lens.sae import load_sae

    folders = sorted((interp_run / "results/tiny/sae/utility").glob("*/layer*/*"))
    assert len(folders) == 2 * 1 * 1 * (2 + 2)  # roles x layers x kinds x (sizes + two seed replicas of the small one)
    # One sae job per (role, layer) wrote every folder of it.
    assert sorted(p.name for p in (interp_run / "logs/tiny/sae/utility/rlhf").iterdir()) == ["layer1.log"]
    sae, cfg = load_sae(folders[0])
    metrics = json.loads((folders[0] / "metrics.json").read_text())
    for key in ("explained_variance", "explained_variance_legacy_around_zero", "l0", "dead_fraction",
                "dense_fraction", "cosine", "l2_ratio", "ce_clean", "ce_sae", "kl_sae", "ce_loss_score_zero",
                "ce_loss_score_mean"):
        assert key in metrics, key
    assert not list((interp_run / "results/tiny/sae/utility").rglob(".*ckpt*"))


def test_features_summary(interp_run):
    summary = pd.read_parquet(interp_run / "results/tiny/features/utility/summary.parquet")
    assert len(summary) == 2 * 1 * 1  # roles x layers x kinds
    assert ((summary["hungarian_mean_cosine"] <= summary["mmcs_small_to_large"] + 1e-9)).all()
    assert summary["baseline_cross_seed_mmcs"].between(-1, 1).all()
    table = pd.read_parquet(interp_run / "results/tiny/features/utility/rlhf/layer1.parquet")
    assert table.groupby(["kind", "direction"])["top_k"].sum().eq(3).all()


def test_autointerp_tables(interp_run):
    from rlhf_lens.autointerp.stage import OUTPUT_COLUMNS

    for role in ("base", "rlhf"):
        table = pd.read_parquet(interp_run / f"results/tiny/autointerp/utility/{role}/layer1.parquet")
        assert list(table.columns) == OUTPUT_COLUMNS
        matches = pd.read_parquet(interp_run / f"results/tiny/features/utility/{role}/layer1.parquet")
        top = matches[(matches["direction"] == "small_to_large") & matches["top_k"]]
        # The top-k matched features are explained, plus one random live feature outside them.
        assert sorted(table.loc[table["selected"], "feature"]) == sorted(top["feature"])
        assert (~table["selected"]).sum() == 1 and not table.loc[~table["selected"], "feature"].isin(top["feature"]).any()
        assert set(table["status"]) <= {"ok", "failed"}
        assert (table.loc[table["status"] == "failed", "reason"] != "").all()
        assert (table["role"] == role).all() and (table["dictionary"] == "relu_1x").all()
        for row in table.itertuples():
            examples = json.loads(row.examples)
            # A dead feature is still listed, marked failed; a live one has windows to explain.
            assert bool(examples["explain"]) == (row.n_active > 0)
            assert row.n_active > 0 or (row.status == "failed" and "never fired" in row.reason)
            assert all(len(w["tokens"]) == len(w["activations"]) for w in examples["score"])
            assert len(json.loads(row.histogram)["edges"]) == (21 if row.n_active else 0)
    # Every LLM answer went to the cache: a forced rerun of one job makes no new call.
    assert any((interp_run / "llm_cache").rglob("*.json"))


def test_scores_and_table3(interp_run):
    scores = pd.read_parquet(interp_run / "results/tiny/scores/utility.parquet")
    d_sae = json.loads((interp_run / "results/tiny/sae/utility/base/layer1/relu_1x/cfg.json").read_text())["d_sae"]
    assert len(scores) == 2 * d_sae  # roles x latents of the explained (1x) dictionary
    assert scores.groupby("role")["selected"].sum().eq(3).all()
    assert scores.loc[~scores["explained"], "explanation_utility"].isna().all()
    stats = json.loads((interp_run / "results/tiny/scores/utility_stats.json").read_text())
    assert set(stats) >= {"table3", "token_utility", "unembed_utility", "ci_level"}
    table3 = pd.read_csv(interp_run / "results/tiny/scores/utility_table3.csv")
    assert list(table3["role"]) == ["base", "rlhf", "rlhf - base"]


def test_summary_cards_and_snakemake_report(interp_run):
    summary = (interp_run / "results/tiny/summary.md").read_text()
    assert "Table 3" in summary and "not significant" in summary  # the stand-in RL CI includes 0
    cards = (interp_run / "results/tiny/report/utility/feature_cards.html").read_text()
    assert cards.count('class="card') >= 2 * 3
    proc = snakemake("--report", "report.html", "--rerun-triggers", "mtime", cwd=interp_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (interp_run / "report.html").read_text(errors="replace")
    assert "feature_cards.html" in html and "utility_table3.csv" in html


def test_one_sae_by_path_builds_just_what_it_needs(tmp_path, tiny_model_dir):
    workdir = _workdir(tmp_path, tiny_model_dir)
    proc = snakemake("results/tiny/sae/utility/rlhf/layer1/relu_2x", "--dry-run", "--rerun-triggers", "mtime",
                     cwd=workdir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    jobs = [line.split()[-1].rstrip(":") for line in out.splitlines() if line.startswith(("rule ", "checkpoint "))]
    assert sorted(jobs) == ["activations", "divergence", "sae"], out[-3000:]
