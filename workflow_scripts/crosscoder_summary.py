"""Rule crosscoder_summary: every layer's crosscoder and null of one reward -> summary table + dn histograms."""

from rlhf_lens.atomic import atomic_file
from rlhf_lens.jobs import start_job
from rlhf_lens.report.plots import plot_dn_histograms
from rlhf_lens.sae.crosscoder_fit import summarise_crosscoders

start_job(snakemake.log[0], snakemake.threads)
inputs = dict(snakemake.input.items())
layers = sorted(int(k.split("_", 1)[1]) for k in inputs if k.startswith("real_"))
table, panels = summarise_crosscoders({L: (inputs[f"real_{L}"], inputs[f"null_{L}"]) for L in layers})
with atomic_file(snakemake.output.table) as tmp:
    table.to_parquet(tmp, index=False)
plot_dn_histograms(panels, snakemake.output.plot)
