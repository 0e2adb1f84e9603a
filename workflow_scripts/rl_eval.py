"""Rule rl_eval: base model + policy + eval prompts -> results/{run}/rl/{reward}/eval.parquet, eval_summary.json."""

from rlhf_lens.config import job_rewards, job_rl_settings
from rlhf_lens.jobs import start_job
from rlhf_lens.rl.config import EvalConfig
from rlhf_lens.rl.evaluate import evaluate_policy

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
name, gold_name = snakemake.wildcards.reward, snakemake.config["rl"]["gold"]
reward, gold = job_rewards(snakemake.config, [(name, snakemake.params.reward), (gold_name, snakemake.params.gold)],
                           device)
# params: the PPO settings that change a result; the checkpoint settings come from the config.
ppo = job_rl_settings(snakemake.config, name, snakemake.params.ppo)
evaluate_policy(snakemake.input.base, snakemake.input.policy, snakemake.input.prompts, reward,
                ppo, EvalConfig(**snakemake.params.eval),
                out_table=snakemake.output.table, out_summary=snakemake.output.summary,
                seed=snakemake.params.seed, device=device, gold=gold)
