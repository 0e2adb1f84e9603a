"""Rule rl_eval: base model + policy + eval prompts -> results/{run}/rl/{reward}/eval.parquet, eval_summary.json."""

from rlhf_lens.devices import pick_device
from rlhf_lens.logs import setup_logging
from rlhf_lens.rewards import build_reward
from rlhf_lens.rl.config import EvalConfig, PPOConfig
from rlhf_lens.rl.evaluate import evaluate_policy

import torch

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)  # the threads the rule declared, not every core of the node
device = pick_device(snakemake.config["device"])
name = snakemake.wildcards.reward
reward = build_reward(name, {name: snakemake.params.reward}, device=device,
                      trust_remote_code=snakemake.config["model"]["trust_remote_code"])
evaluate_policy(snakemake.input.base, snakemake.input.policy, snakemake.input.prompts, reward,
                PPOConfig(**snakemake.params.ppo), EvalConfig(**snakemake.params.eval),
                out_table=snakemake.output.table, out_summary=snakemake.output.summary,
                seed=snakemake.params.seed, device=device)
