"""Rule calibration_recovery: per calibration arm, its rl_eval summary and samples + every diffing folder ->
recovery table and figure (the shuffled null also scored against VADER; every arm against the words its
policy learned to write), the learned words' table and the depth figure."""

from rlhf_lens.jobs import start_job
from rlhf_lens.report.recovery import recovery_stage
from rlhf_lens.rewards.planted_tables import resolved_table

start_job(snakemake.log[0])
inputs = snakemake.input
arms = {reward: {"rl_eval": inputs[f"{reward}_rl_eval"], "table": snakemake.params.tables.get(reward),
                 "diffing": {m: inputs[f"{reward}_diffing_{m}"] for m in snakemake.params.methods},
                 "samples": inputs[f"{reward}_rl_samples"], "words": resolved_table(snakemake.config, reward)}
        for reward in snakemake.params.rewards}
recovery_stage(arms, snakemake.output.table, snakemake.output.md, snakemake.output.figure, snakemake.output.learned,
               snakemake.output.depth, seed=snakemake.params.seed)
