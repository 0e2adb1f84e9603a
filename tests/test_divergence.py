"""Layer divergence: zero against itself, largest (and exact) in the block a test perturbs."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import torch

from rlhf_lens.divergence import block_divergence, divergence_stage, top_layers
from rlhf_lens.report.plots import plot_divergence
from tiny_models import tiny_llama


def test_divergence_of_a_model_with_itself_is_zero():
    model = tiny_llama(100, layers=3)
    table = block_divergence(model, copy.deepcopy(model))
    assert list(table["layer"]) == [0, 1, 2]
    assert (table["divergence"] == 0).all()


def test_perturbed_block_has_the_known_largest_divergence():
    base = tiny_llama(100, layers=3)
    rlhf = copy.deepcopy(base)
    with torch.no_grad():
        w = rlhf.model.layers[1].mlp.up_proj.weight   # (64, 32)
        w += 0.5                                       # ||delta||_F = 0.5 * sqrt(64 * 32)
        rlhf.model.layers[2].input_layernorm.weight += 0.1  # (32,): 0.1 * sqrt(32)
    table = block_divergence(base, rlhf)
    assert table.loc[1, "divergence"] == pytest.approx(0.5 * (64 * 32) ** 0.5, rel=1e-6)
    assert table.loc[2, "divergence"] == pytest.approx(0.1 * 32 ** 0.5, rel=1e-5)
    assert table.loc[0, "divergence"] == 0
    assert top_layers(table, 2) == [1, 2]
    assert top_layers(table, 10) == [1, 2, 0]  # capped at the depth


def test_a_block_sums_the_norms_of_all_its_tensors():
    """Two tensors of one block moved: the block's divergence is the sum of their Frobenius norms
    (not the norm of the concatenation, and not only the first tensor found)."""
    base = tiny_llama(100, layers=2)
    rlhf = copy.deepcopy(base)
    with torch.no_grad():
        rlhf.model.layers[0].mlp.up_proj.weight += 0.5        # (64, 32): 0.5 * sqrt(2048)
        rlhf.model.layers[0].self_attn.q_proj.weight -= 0.2   # (32, 32): 0.2 * sqrt(1024)
    table = block_divergence(base, rlhf)
    assert table.loc[0, "divergence"] == pytest.approx(0.5 * 2048 ** 0.5 + 0.2 * 1024 ** 0.5, rel=1e-6)
    assert table.loc[1, "divergence"] == 0


def test_stage_writes_table_layers_and_plot(tmp_path, tiny_model_dir, tokenizer):
    from rlhf_lens.models import load_prepared

    model, _ = load_prepared(tiny_model_dir)
    with torch.no_grad():
        model.model.layers[0].self_attn.q_proj.weight.mul_(1.5)
    model.save_pretrained(tmp_path / "policy")
    layers = divergence_stage(tiny_model_dir, tmp_path / "policy", 5, tmp_path / "d.parquet", tmp_path / "l.json")
    assert layers == [0, 1]
    # The stage draws nothing; the rule script plots what it wrote.
    assert not list(tmp_path.glob("*.png"))
    plot_divergence(pd.read_parquet(tmp_path / "d.parquet"), layers, tmp_path / "d.png")
    saved = json.loads((tmp_path / "l.json").read_text())
    assert saved["layers"] == [0, 1] and saved["ranked"][0] == 0
    assert pd.read_parquet(tmp_path / "d.parquet")["selected"].all()
    assert (tmp_path / "d.png").stat().st_size > 1000
