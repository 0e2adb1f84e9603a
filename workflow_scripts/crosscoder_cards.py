"""Rule crosscoder_cards: crosscoder autointerp tables + scores + utility statistics + dn histograms and
summary -> cards.html."""

import json

import pandas as pd

from rlhf_lens.jobs import start_job
from rlhf_lens.report.crosscoder_cards import crosscoder_cards

start_job(snakemake.log[0])
inputs = dict(snakemake.input.items())
autointerp = pd.concat([pd.read_parquet(v) for k, v in inputs.items() if k.startswith("autointerp_")],
                       ignore_index=True)
with open(snakemake.input.stats) as fh:
    stats = json.load(fh)
crosscoder_cards(autointerp, pd.read_parquet(snakemake.input.scores), stats, snakemake.output.cards,
                 title=f"Crosscoder latents: {snakemake.wildcards.run}, reward {snakemake.wildcards.reward}",
                 histogram_png=snakemake.input.histogram, summary=pd.read_parquet(snakemake.input.summary))
