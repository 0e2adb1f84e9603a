"""Rule rl_eval: base model + policy + eval prompts -> results/{run}/rl/{reward}/eval.parquet, eval_summary.json."""

from rlhf_lens.jobs import start_job
from rlhf_lens.rewards import build_reward
from rlhf_lens.rl.config import EvalConfig, PPOConfig
from rlhf_lens.rl.evaluate import evaluate_policy

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
name = snakemake.wildcards.reward
reward = build_reward(name, {name: snakemake.params.reward}, device=device,
                      trust_remote_code=snakemake.config["model"]["trust_remote_code"])
evaluate_policy(snakemake.input.base, snakemake.input.policy, snakemake.input.prompts, reward,
                PPOConfig(**snakemake.params.ppo), EvalConfig(**snakemake.params.eval),
                out_table=snakemake.output.table, out_summary=snakemake.output.summary,
                seed=snakemake.params.seed, device=device)
