"""Checkpoint divergence: base + RLHF policy -> per-block table, selected layers (JSON), bar plot."""

from rlhf_lens.divergence import divergence_stage
from rlhf_lens.jobs import start_job

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
divergence_stage(snakemake.input.base, snakemake.input.rlhf, snakemake.params.top_n, snakemake.output.table,
                 snakemake.output.layers, snakemake.output.plot, device=device)
