"""Rule calibration: per reward strength, rl_eval summary + scoring stats + features summary (+ crosscoder
utilities when crosscoders run) -> one table and figure."""

from rlhf_lens.jobs import start_job
from rlhf_lens.report.calibration import calibration_stage

start_job(snakemake.log[0])
inputs = dict(snakemake.input.items())
entries = {reward: {what: inputs[f"{reward}_{what}"] for what in ("rl_eval", "stats", "features", "crosscoder")
                    if f"{reward}_{what}" in inputs}
           for reward in snakemake.params.rewards}
calibration_stage(entries, snakemake.output.table, snakemake.output.md, snakemake.output.figure,
                  tables=snakemake.params.tables)
