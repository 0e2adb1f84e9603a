"""The diffing rules as Snakemake runs them, on a tiny model and a stand-in for the RL stage's outputs.

As in test_interp_workflow: the RL stage's artifacts (rl/{reward}/policy/ and rl/{reward}/eval.parquet) are
written by hand after the rule's inputs, so they count as up to date; then each diffing folder is asked for by
its path.
"""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import torch
import yaml

import snakemake_helpers

pytestmark = pytest.mark.workflow

CONFIG = {
    "run": "tiny", "model": {"name": "tiny"}, "prompts": {"max_texts": 40},
    "sae": {"k": 8},  # k <= d_model 32, or validation refuses it (the default k is sized for SmolLM2)
    "diffing": {"methods": ["logit_shift", "activation_lens"], "corpus": {"max_texts": 8, "max_length": 24},
                "readout": {"n_boot": 50, "n_perm": 50},
                "activation_lens": {"steer_prompts": 2, "steer_samples": 1, "steer_tokens": 4}},
}
METHODS = CONFIG["diffing"]["methods"]


def snakemake(*args, cwd):
    return snakemake_helpers.snakemake(*args, "--configfile", "config.yaml", cwd=cwd)


@pytest.fixture(scope="module")
def diffing_run(tmp_path_factory, tiny_model_dir):
    from rlhf_lens.models import load_prepared

    path = tmp_path_factory.mktemp("diffing")
    (path / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "model": {"name": "tiny", "spec": str(tiny_model_dir)}}))
    proc = snakemake("resources/models/tiny", "results/tiny/prompts/train.parquet", cwd=path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rl = path / "results/tiny/rl/utility"
    model, tok = load_prepared(tiny_model_dir)
    with torch.no_grad():
        model.model.layers[1].mlp.up_proj.weight.add_(0.05)
    model.save_pretrained(rl / "policy")
    tok.save_pretrained(rl / "policy")
    prompts = ["The movie was", "I thought the acting", "What a", "This film is", "Honestly the plot"] * 2
    rows = [{"prompt": p, "model": m, "prompt_index": i % 5, "sample": i // 5,
             "response": f" {w} and {m} sample {i} of a story", "reward": 0.1 * i}
            for i, p in enumerate(prompts) for m, w in (("base", "fine"), ("policy", "great"))]
    pd.DataFrame(rows).to_parquet(rl / "eval.parquet")
    targets = [f"results/tiny/diffing/utility/{m}" for m in METHODS]
    proc = snakemake(*targets, "--rerun-triggers", "mtime", cwd=path)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return path


@pytest.mark.parametrize("method", METHODS)
def test_each_method_writes_its_table_and_readout(diffing_run, method):
    folder = diffing_run / "results/tiny/diffing/utility" / method
    words = pd.read_parquet(folder / "words.parquet")
    assert list(words.columns[:5]) == ["token_id", "token_text", "word", "score", "rank"]
    assert {"truth", "in_truth"} <= set(words.columns) and words["word"].is_unique
    readout = json.loads((folder / "readout.json").read_text())
    r = readout["readout"]
    # 8 texts: the base completions of 4 of the 5 held-out prompts (two samples each, whole prompts first)
    assert r["unit"] == "prompt_group" and r["n_units"] == 4 and r["truth_source"] == "table"
    assert set(r["metrics"]) == {"spearman", "precision@20", "precision@50", "auroc", "recall@50"}
    extra = json.loads((folder / "extra.json").read_text())
    assert extra["n_texts"] == 8
    if method == "activation_lens":
        assert [row["block"] for row in readout["depth_profile"]] == [0, 1]
        assert extra["steering"]["n_prompts"] == 2


def test_default_dry_run_plans_only_available_methods(diffing_run):
    from rlhf_lens.diffing.registry import available

    from rlhf_lens.config import validate_config

    # the default methods named outright: an empty diffing section would keep the workdir's config.yaml's list
    # (Snakemake merges --configfile into the Snakefile's configfile)
    default = validate_config({})["diffing"]["methods"]
    (diffing_run / "dry.yaml").write_text(yaml.safe_dump({**CONFIG, "diffing": {"methods": default},
                                                          "model": {"name": "tiny"}}))
    proc = snakemake_helpers.snakemake("-n", "--configfile", "dry.yaml", "--rerun-triggers", "mtime",
                                       cwd=diffing_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for method in ("sae_shift", "diff_sae"):
        assert (f"diffing/utility/{method}" in proc.stdout) == available(method)


def test_the_report_opens_with_what_the_policy_learned(diffing_run):
    """Rule learned_report: the readout table and the depth profiles become the Snakemake report's items under
    "What the policy learned" (one per method that has a profile)."""
    target = "results/tiny/report/utility/learned.csv"
    proc = snakemake(target, "--rerun-triggers", "mtime", cwd=diffing_run)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = pd.read_csv(diffing_run / target)
    assert table["method"].tolist() == METHODS and table["precision@50"].notna().all()
    depth = diffing_run / "results/tiny/report/utility/depth_profiles"
    assert [p.name for p in depth.glob("*.png")] == ["activation_lens.png"]  # logit_shift reads no blocks
    # the stand-in RL stage wrote no curves, which rule rl marks for the report: any PNG will do
    shutil.copyfile(depth / "activation_lens.png", diffing_run / "results/tiny/rl/utility/curves.png")
    proc = snakemake("--report", "report.html", target, "--rerun-triggers", "mtime", cwd=diffing_run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = (diffing_run / "report.html").read_text(errors="replace")
    assert "What the policy learned" in html and "learned.csv" in html and "activation_lens.png" in html
    assert "depth profile: activation_lens" in html
