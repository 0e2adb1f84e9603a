"""Rule rl_eval: base model + policy + eval prompts -> results/{run}/rl/{reward}/eval.parquet, eval_summary.json."""

import dataclasses

from rlhf_lens.config import rl_settings
from rlhf_lens.jobs import start_job
from rlhf_lens.rewards import build_reward
from rlhf_lens.rl.config import EvalConfig
from rlhf_lens.rl.evaluate import evaluate_policy

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
name = snakemake.wildcards.reward
reward = build_reward(name, {name: snakemake.params.reward}, device=device,
                      trust_remote_code=snakemake.config["model"]["trust_remote_code"])
gold_name = snakemake.config["rl"]["gold"]
gold = None if gold_name is None else build_reward(
    gold_name, {gold_name: snakemake.params.gold}, device=device,
    trust_remote_code=snakemake.config["model"]["trust_remote_code"])
# params: the PPO settings that change a result; the checkpoint settings come from the config.
ppo = dataclasses.replace(rl_settings(snakemake.config, name)[0], **snakemake.params.ppo)
evaluate_policy(snakemake.input.base, snakemake.input.policy, snakemake.input.prompts, reward,
                ppo, EvalConfig(**snakemake.params.eval),
                out_table=snakemake.output.table, out_summary=snakemake.output.summary,
                seed=snakemake.params.seed, device=device, gold=gold)
