"""Rule summary: every reward's results -> results/{run}/summary.md, the headline numbers in words."""

from rlhf_lens.jobs import start_job
from rlhf_lens.report.summary import load_reward_results, write_summary

start_job(snakemake.log[0])
inputs = snakemake.input
results = [
    load_reward_results(reward, rl_eval=inputs[f"{reward}_rl_eval"], rl_metrics=inputs[f"{reward}_rl_metrics"],
                        layers=inputs[f"{reward}_layers"], sae_metrics=inputs[f"{reward}_sae"],
                        features=inputs[f"{reward}_features"], autointerp=inputs[f"{reward}_autointerp"],
                        stats=inputs[f"{reward}_stats"],
                        diffing={m: inputs[f"{reward}_diffing_{m}"] for m in snakemake.params.diffing_methods},
                        run_dir=f"results/{snakemake.wildcards.run}")
    for reward in snakemake.params.rewards
]
write_summary(snakemake.wildcards.run, results, snakemake.output[0])
