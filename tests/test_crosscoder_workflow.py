"""The crosscoder stage as Snakemake runs it, on the tiny Llama and the interpretation test's stand-in
RL outputs (a copy of the tiny model with block 1 perturbed): crosscoder.enabled adds, per selected
layer, the (base, rlhf) crosscoder, its (base, base) null and one summary with the dn histograms."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

import snakemake_helpers
from test_interp_workflow import CONFIG, _workdir, snakemake

pytestmark = pytest.mark.workflow

CROSSCODER = {"enabled": True, "k": 4, "epochs": 3, "batch_size": 32, "ce_eval_tokens": 16}


def _config(workdir, tiny_model_dir, **crosscoder):
    config = {**CONFIG, "model": {"name": "tiny", "spec": str(tiny_model_dir)}, "crosscoder": crosscoder}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def crosscoder_run(tmp_path_factory, tiny_model_dir):
    workdir = _workdir(tmp_path_factory.mktemp("crosscoder"), tiny_model_dir)
    _config(workdir, tiny_model_dir, **CROSSCODER)
    proc = snakemake("results/tiny/crosscoder/utility/summary.parquet", "results/tiny/crosscoder/utility/cards.html",
                     "--rerun-triggers", "mtime", cwd=workdir)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return workdir


def test_crosscoder_and_null_folders_load_and_hold_metrics_and_diff(crosscoder_run):
    from rlhf_lens.sae import load_sae
    from rlhf_lens.sae.diffing import DIFF_COLUMNS

    root = crosscoder_run / "results/tiny/crosscoder/utility"
    for name, models in (("layer1", ["base", "rlhf"]), ("layer1_null", ["base", "base_copy"])):
        xc, cfg = load_sae(root / name)
        assert cfg["rlhf_lens"]["models"] == models and xc.d == 2 * 32 and xc.m == 2 * 32
        metrics = json.loads((root / name / "metrics.json").read_text())
        for model in models:
            assert 0 < metrics[f"explained_variance_{model}"] <= 1
            assert metrics[f"ce_sae_{model}"] >= 0 and metrics[f"kl_sae_{model}"] >= 0
        assert 0 < metrics["l0"] and 0 <= metrics["dead_fraction"] < 1
        table = pd.read_parquet(root / name / "diff.parquet")
        assert list(table.columns) == DIFF_COLUMNS and len(table) == xc.m
    assert not list(root.glob(".*ckpt*"))


def test_null_finds_no_model_specific_latent_and_the_summary_sets_them_side_by_side(crosscoder_run):
    root = crosscoder_run / "results/tiny/crosscoder/utility"
    null = pd.read_parquet(root / "layer1_null/diff.parquet")
    live = null[null["live"]]
    # Tolerance: no live latent in a one-model bin. This tiny run (18 steps from independent initial atoms)
    # leaves the null's dn within about 0.42-0.58; the well-trained null of test_crosscoder.py stays in 0.47-0.53.
    assert len(live) > 0 and live["dn"].between(0.1, 0.9).all()
    summary = pd.read_parquet(root / "summary.parquet")
    assert sorted(zip(summary["layer"], summary["pair"])) == [(1, "null"), (1, "rlhf")]
    row = summary.set_index("pair").loc["null"]
    assert row["n_rlhf_only"] == row["n_base_only"] == 0
    assert (root / "dn_histogram.png").stat().st_size > 1000


def test_every_live_latent_is_scored_and_the_page_holds_the_comparison_and_the_null_histogram(crosscoder_run):
    root = crosscoder_run / "results/tiny/crosscoder/utility"
    explained = pd.read_parquet(root / "autointerp/layer1.parquet")
    diff = pd.read_parquet(root / "layer1/diff.parquet")
    # every explained latent is live and in the group its dn says; the baselines are explained too
    groups = explained.set_index("feature")["group"]
    assert diff.set_index("latent").loc[groups.index, "live"].all()
    assert {"shared", "random"} <= set(groups) or diff.loc[diff["live"], "bin"].ne("shared").all()
    scores = pd.read_parquet(root / "scores.parquet")
    assert len(scores) == len(diff) and scores.loc[scores["live"], "token_utility"].notna().all()
    assert scores["unembed_utility"].notna().all()
    stats = json.loads((root / "utility.json").read_text())
    assert stats["n_live"] == int(diff["live"].sum())
    assert set(stats["measures"]["token_utility"]["comparisons"]) == {
        "rlhf_only_vs_shared", "rlhf_only_vs_random", "rlhf_leaning_vs_shared"}
    page = (root / "cards.html").read_text()
    assert "Utilities of RLHF-only latents vs shared and random latents" in page and "data:image/png;base64," in page
    assert "Latents per dn bin: crosscoder vs its null" in page and "(base, base) null" in page


def test_disabled_crosscoders_are_not_in_the_default_target_and_enabled_ones_are(crosscoder_run, tiny_model_dir):
    _config(crosscoder_run, tiny_model_dir, **{**CROSSCODER, "enabled": False})
    off = snakemake_helpers.planned_jobs(snakemake("--dry-run", "--rerun-triggers", "mtime", cwd=crosscoder_run))
    _config(crosscoder_run, tiny_model_dir, **CROSSCODER)
    on = snakemake_helpers.planned_jobs(snakemake("--dry-run", "--rerun-triggers", "mtime", cwd=crosscoder_run))
    assert "crosscoder" not in off and "crosscoder_summary" not in off
    assert "crosscoder_summary" not in on  # built already, and the switch is no param of the jobs
    assert set(on) - set(off) <= {"crosscoder", "crosscoder_null", "crosscoder_summary", "crosscoder_autointerp",
                                  "crosscoder_scoring", "crosscoder_cards"}


def test_bad_crosscoder_kind_fails_before_any_job(crosscoder_run, tiny_model_dir):
    _config(crosscoder_run, tiny_model_dir, **{**CROSSCODER, "kind": "topk"})
    proc = snakemake("--dry-run", cwd=crosscoder_run)
    _config(crosscoder_run, tiny_model_dir, **CROSSCODER)
    assert proc.returncode != 0
    assert "'crosscoder.kind' has value 'topk': expected one of crosscoder_batchtopk, crosscoder_l1" in proc.stderr


@pytest.mark.workflow
def test_the_crosscoder_config_adds_crosscoders_to_the_default_run(tmp_path):
    from snakemake_helpers import planned_jobs

    repo = snakemake_helpers.REPO
    proc = snakemake_helpers.snakemake("--configfile", str(repo / "configs/crosscoder.yaml"), "--dry-run",
                                       cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc)
    # the per-block crosscoders follow the divergence checkpoint; the reward's summary and cards are planned,
    # on top of the default's own chain
    assert jobs["crosscoder_summary"] == jobs["crosscoder_cards"] == 1 and jobs["features_summary"] == 1
    assert "results/default/crosscoder/utility/cards.html" in proc.stdout
