"""Which transformer blocks did RLHF move most? (Marks et al. 2023, layer choice.)

For block i: ``div_i = sum over the block's parameter tensors p of ||p_base - p_rlhf||_F``
(the Frobenius norm of each tensor's difference, summed; not the norm of the concatenation).
The top n blocks by divergence (n capped at the model's depth) are the layers every later
stage studies. Outputs: a per-block table and ``{reward}_layers.json``; the rule script draws the
bar plot from the table (``report.plots.plot_divergence``).
"""

from __future__ import annotations

import logging

import pandas as pd
import torch

from .model_parts import find_blocks
from .atomic import write_json, write_parquet

log = logging.getLogger(__name__)


@torch.no_grad()
def block_divergence(base, rlhf) -> pd.DataFrame:
    """Per-block divergence of two models of one architecture: columns layer, divergence, n_tensors, n_params."""
    b_blocks, r_blocks = find_blocks(base), find_blocks(rlhf)
    if len(b_blocks) != len(r_blocks):
        raise ValueError(f"base has {len(b_blocks)} blocks and the RLHF model {len(r_blocks)}: not the same architecture")
    rows = []
    for i, (bb, rb) in enumerate(zip(b_blocks, r_blocks)):
        b_params, r_params = dict(bb.named_parameters()), dict(rb.named_parameters())
        if b_params.keys() != r_params.keys():
            raise ValueError(f"block {i}: parameter names differ between base and RLHF model "
                             f"({sorted(b_params.keys() ^ r_params.keys())})")
        total, n_params = 0.0, 0
        for name, p in b_params.items():
            q = r_params[name]
            if p.shape != q.shape:
                raise ValueError(f"block {i}: parameter {name} has shape {tuple(p.shape)} in base and "
                                 f"{tuple(q.shape)} in the RLHF model")
            total += float(torch.linalg.norm((p.double() - q.double()).reshape(-1)))
            n_params += p.numel()
        rows.append({"layer": i, "divergence": total, "n_tensors": len(b_params), "n_params": n_params})
    return pd.DataFrame(rows)


def top_layers(table: pd.DataFrame, top_n: int) -> list[int]:
    """The ``top_n`` blocks with the largest divergence (ties: lower index first), by divergence, descending."""
    ranked = table.sort_values(["divergence", "layer"], ascending=[False, True], kind="stable")
    return [int(x) for x in ranked["layer"].head(min(top_n, len(table)))]


def divergence_stage(base_dir, rlhf_dir, top_n: int, table_path, layers_path, device: str = "cpu") -> list[int]:
    """Load both models, write the per-block table and the chosen layers (JSON); return the chosen layers,
    highest divergence first."""
    from transformers import AutoModelForCausalLM

    # Only the weights matter here; a policy folder need not carry a tokenizer.
    base = AutoModelForCausalLM.from_pretrained(base_dir, use_safetensors=True).to(device)
    rlhf = AutoModelForCausalLM.from_pretrained(rlhf_dir, use_safetensors=True).to(device)
    table = block_divergence(base, rlhf)
    chosen = top_layers(table, top_n)
    table["rank"] = table["divergence"].rank(ascending=False, method="first").astype(int)
    table["selected"] = table["layer"].isin(chosen)
    write_parquet(table, table_path)
    write_json({"layers": sorted(chosen), "ranked": chosen, "top_n": top_n, "n_blocks": len(table),
                "base": str(base_dir), "rlhf": str(rlhf_dir)}, layers_path)
    log.info("divergence per block: %s; selected %s", [round(v, 4) for v in table["divergence"]], chosen)
    return chosen
