"""Rule gold_vs_proxy: rl/{reward}/metrics.parquet + eval_summary.json -> rl/{reward}/gold_vs_proxy.png."""

import json

import pandas as pd

from rlhf_lens.jobs import start_job
from rlhf_lens.report.plots import plot_gold_vs_proxy

start_job(snakemake.log[0])
metrics = pd.read_parquet(snakemake.input.metrics)
summary = json.loads(open(snakemake.input.summary).read())
plot_gold_vs_proxy(metrics, snakemake.output.figure, summary,
                   title=f"reward {snakemake.wildcards.reward!r}: proxy vs gold {summary.get('gold')!r}")
