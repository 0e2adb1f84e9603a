"""Rule calibration_recovery: per calibration arm, its rl_eval summary + every diffing folder -> recovery table
and figure (the shuffled null also scored against VADER)."""

from rlhf_lens.jobs import start_job
from rlhf_lens.report.recovery import recovery_stage

start_job(snakemake.log[0])
inputs = snakemake.input
arms = {reward: {"rl_eval": inputs[f"{reward}_rl_eval"], "table": snakemake.params.tables.get(reward),
                 "diffing": {m: inputs[f"{reward}_diffing_{m}"] for m in snakemake.params.methods}}
        for reward in snakemake.params.rewards}
recovery_stage(arms, snakemake.output.table, snakemake.output.md, snakemake.output.figure, seed=snakemake.params.seed)
