"""Checkpoint divergence: base + RLHF policy -> per-block table, selected layers (JSON), bar plot."""

import torch

from rlhf_lens.devices import pick_device
from rlhf_lens.divergence import divergence_stage
from rlhf_lens.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
divergence_stage(snakemake.input.base, snakemake.input.rlhf, snakemake.params.top_n, snakemake.output.table,
                 snakemake.output.layers, snakemake.output.plot, device=pick_device(snakemake.params.device))
