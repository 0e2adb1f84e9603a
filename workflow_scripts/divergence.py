"""Checkpoint divergence: base + RLHF policy -> per-block table, selected layers (JSON), bar plot."""

import pandas as pd

from rlhf_lens.divergence import divergence_stage
from rlhf_lens.jobs import start_job
from rlhf_lens.report.plots import plot_divergence

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
chosen = divergence_stage(snakemake.input.base, snakemake.input.rlhf, snakemake.params.top_n, snakemake.output.table,
                          snakemake.output.layers, device=device)
plot_divergence(pd.read_parquet(snakemake.output.table), chosen, snakemake.output.plot)
