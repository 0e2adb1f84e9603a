"""Rule report_assets: autointerp tables + scores + SAE folders + features summary -> report/{reward}/ files."""

import json

import pandas as pd

from rlhf_lens.atomic import atomic_file
from rlhf_lens.jobs import start_job
from rlhf_lens.report.cards import feature_cards
from rlhf_lens.report.plots import plot_mmcs_vs_baseline, plot_utilities
from rlhf_lens.report.tables import sae_metrics_table

start_job(snakemake.log[0])
reward = snakemake.wildcards.reward
autointerp = pd.concat([pd.read_parquet(p) for p in snakemake.input.autointerp], ignore_index=True)
feature_cards(autointerp, pd.read_parquet(snakemake.input.scores), snakemake.output.cards,
              title=f"Feature cards: {snakemake.wildcards.run}, reward {reward}")
with atomic_file(snakemake.output.sae) as tmp:
    sae_metrics_table(snakemake.input.sae).to_csv(tmp, index=False)
plot_mmcs_vs_baseline(pd.read_parquet(snakemake.input.features), snakemake.output.mmcs)
with open(snakemake.input.stats) as fh:
    plot_utilities(json.load(fh), snakemake.output.utilities)
