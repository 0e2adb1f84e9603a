"""The Snakemake workflow itself: lint, a dry run of the full DAG, a real run on a tiny model, what reruns when."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from snakemake_helpers import REPO, planned_jobs, run_config, snakemake

pytestmark = pytest.mark.workflow


def test_lint_is_clean():
    proc = snakemake("--lint", cwd=REPO, cores=None, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dry_run_of_default_dag(tmp_path):
    proc = snakemake("--configfile", str(REPO / "config.yaml"), "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    for rule in ("prepare_model", "prompts", "all"):
        assert f"rule {rule}:" in out or f"localrule {rule}:" in out, rule


def test_paper_configuration_dry_run(tmp_path):
    """configs/paper.yaml (Pythia, IMDB from the hub, an OpenAI endpoint) plans every stage offline."""
    import os

    env = {**os.environ, "OPENAI_API_KEY": "sk-test-not-a-key"}
    args = ("--configfile", str(REPO / "configs/paper.yaml"), "--dry-run")
    proc = snakemake(*args, cwd=tmp_path, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for rule in ("prepare_model", "prompts", "rl", "rl_eval", "divergence", "activations", "scoring", "summary"):
        assert f"rule {rule}:" in proc.stdout or f"checkpoint {rule}:" in proc.stdout, rule
    assert "sk-test-not-a-key" not in proc.stdout + proc.stderr  # the key itself never shows
    # Without the key the run stops before any job, naming the variable.
    env.pop("OPENAI_API_KEY")
    proc = snakemake(*args, cwd=tmp_path, timeout=300, env=env)
    assert proc.returncode != 0 and "OPENAI_API_KEY" in proc.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    """A real run of the workflow on the tiny model, in its own working directory."""
    workdir = tmp_path_factory.mktemp("workflow")
    config = {"run": "tiny", "model": {"name": "tiny", "spec": str(tiny_model_dir)},
              "prompts": {"max_texts": 40}, "sae": {"k": 8},  # k <= d_model 32, or validation refuses it
              # the RL stage at its smallest: its own test (test_workflow_rl.py) exercises it
              "rl": {"ppo": {"steps": 1, "batch_size": 2, "mini_batch_size": 2, "response_min_tokens": 2,
                             "response_max_tokens": 2},
                     "eval": {"prompts": 2, "samples_per_prompt": 1, "bootstrap": 100}}}
    return run_config(workdir, config)


def test_the_whole_chain_runs_on_a_tiny_gpt_neox(tmp_path_factory, tiny_neox_dir):
    """The paper's model family (Pythia is GPT-NeoX: parallel attention and MLP, LayerNorm, an untied
    embed_out) through every stage, from RL to the summary, as the tiny Llama goes."""
    import json

    workdir = tmp_path_factory.mktemp("workflow_neox")
    config = {"run": "neox", "model": {"name": "tiny_neox", "spec": str(tiny_neox_dir)}, "prompts": {"max_texts": 40},
              "rl": {"ppo": {"steps": 1, "batch_size": 2, "mini_batch_size": 2, "response_min_tokens": 2,
                             "response_max_tokens": 2},
                     "eval": {"prompts": 2, "samples_per_prompt": 1, "bootstrap": 100}},
              "activations": {"max_tokens": 400}, "sae": {"epochs": 2, "ce_eval_tokens": 32, "k": 8},
              "autointerp": {"explain_max_tokens": 8}}
    run_config(workdir, config)
    results = workdir / "results/neox"
    layers = json.loads((results / "divergence/utility_layers.json").read_text())["layers"]
    assert layers
    for role in ("base", "rlhf"):
        metrics = json.loads((results / f"sae/utility/{role}/layer{layers[0]}/topk_1x/metrics.json").read_text())
        assert metrics["explained_variance"] is not None and metrics["ce_sae"] > 0  # spliced into a NeoX block
    scores = pd.read_parquet(results / "scores/utility.parquet")
    # Every latent's unembedding utility, through the final LayerNorm and the untied embed_out.
    assert len(scores) and scores["unembed_utility"].notna().all()
    assert json.loads((results / "scores/utility_stats.json").read_text())["table3"]["base"]["n_features"] >= 0
    assert (results / "summary.md").read_text().strip()


def test_tiny_run_produces_artifacts(tiny_run):
    assert (tiny_run / "resources/models/tiny/model.safetensors").is_file()
    train = pd.read_parquet(tiny_run / "results/tiny/prompts/train.parquet")
    evaluation = pd.read_parquet(tiny_run / "results/tiny/prompts/eval.parquet")
    assert len(train) + len(evaluation) == 40
    assert (tiny_run / "logs/prepare_model/tiny.log").read_text().strip()


def test_rerun_has_nothing_to_do(tiny_run):
    proc = snakemake("--configfile", "config.yaml", "--dry-run", cwd=tiny_run)
    assert proc.returncode == 0
    assert "Nothing to be done" in proc.stdout + proc.stderr


def dry_run_with(workdir, tmp_path, key, value):
    """Dry run of the default target with one config key (dotted, e.g. sae.l1) set to ``value``.

    The change comes as a second config file (merged into the first key by key): --config would
    pass a nested value as a string.
    """
    *sections, name = key.split(".")
    change = {name: value}
    for section in reversed(sections):
        change = {section: change}
    override = tmp_path / "change.yaml"
    override.write_text(yaml.safe_dump(change))
    return snakemake("--configfile", "config.yaml", str(override), "--dry-run", cwd=workdir)


# How a job runs, not what it writes (NOT_RESULT_KEYS in rules/common.smk, and device): no rule has
# them as params, so changing one reruns nothing. Each value differs from the tiny run's.
NOT_RESULT_CHANGES = {
    "device": "cpu",
    "activations.batch_size": 3,
    "activations.shard_tokens": 100,
    "autointerp.timeout_s": 5,
    "autointerp.max_retries": 0,
    "autointerp.cache_dir": "other_llm_cache",
    "rl.ppo.checkpoint_every": 0,
    "rl.ppo.keep_checkpoints": True,
    "diffing.corpus.batch_size": 3,
}


@pytest.mark.parametrize("key", sorted(NOT_RESULT_CHANGES))
def test_run_time_setting_reruns_nothing(tiny_run, tmp_path, key):
    proc = dry_run_with(tiny_run, tmp_path, key, NOT_RESULT_CHANGES[key])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert planned_jobs(proc) == {}, proc.stdout[-3000:]


# A key that changes a result reruns the rule that reads it and what depends on it, nothing upstream.
RESULT_CHANGES = {
    "sae.l1": (0.01, "sae", ["activations", "divergence", "rl"]),
    "activations.max_tokens": (500, "activations", ["divergence", "rl_eval"]),
    "autointerp.temperature": (0.5, "autointerp", ["features", "sae"]),
}


@pytest.mark.parametrize("key", sorted(RESULT_CHANGES))
def test_result_setting_reruns_its_rule(tiny_run, tmp_path, key):
    value, rule, upstream = RESULT_CHANGES[key]
    proc = dry_run_with(tiny_run, tmp_path, key, value)
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = planned_jobs(proc)
    assert rule in jobs and "summary" in jobs, jobs
    assert not set(upstream) & set(jobs), jobs


def test_one_artifact_rebuilds_by_path(tiny_run):
    target = tiny_run / "results/tiny/prompts/eval.parquet"
    before = pd.read_parquet(target)
    target.unlink()
    proc = snakemake("results/tiny/prompts/eval.parquet", "--configfile", "config.yaml", cwd=tiny_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "prepare_model" not in out
    pd.testing.assert_frame_equal(pd.read_parquet(target), before)


def test_changed_param_reruns_what_depends_on_it(tiny_run):
    proc = snakemake("--configfile", "config.yaml", "--config", "seed=7", "--dry-run", cwd=tiny_run)
    assert proc.returncode == 0
    out = proc.stdout + proc.stderr
    assert "rule prompts:" in out or "localrule prompts:" in out
    assert "prepare_model" not in out
