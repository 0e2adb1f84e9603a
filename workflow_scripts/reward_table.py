"""Rule reward_table: (base model + train prompts for table secret) -> results/{run}/rewards/{reward}/table.csv."""

from rlhf_lens.jobs import start_job
from rlhf_lens.rl.planted_table import materialise_table

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
materialise_table(snakemake.params.reward, snakemake.output.table, seed=snakemake.params.seed,
                  model_dir=snakemake.input.get("model"), prompts_path=snakemake.input.get("prompts"),
                  **(snakemake.params.sampling or {}), device=device)
