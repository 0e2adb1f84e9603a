"""Rule learned_report: one reward's diffing folders -> the report's readout table and depth profiles."""

from rlhf_lens.jobs import start_job
from rlhf_lens.report.learned import learned_report_assets

start_job(snakemake.log[0])
learned_report_assets({m: snakemake.input[m] for m in snakemake.params.methods}, snakemake.output.table,
                      snakemake.output.depth)
