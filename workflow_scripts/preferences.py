"""Rule preferences: models + train prompts (or a preference file) -> results/{run}/preferences/{overseer}/{train,heldout}.parquet."""

import dataclasses

from rlhf_lens.config import preferences_config, rl_settings
from rlhf_lens.jobs import start_job
from rlhf_lens.preferences.sample import preference_stage
from rlhf_lens.rewards import build_reward

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
cfg = preferences_config(snakemake.config)
overseer = None
if cfg.overseer:
    overseer = build_reward(cfg.overseer, {cfg.overseer: snakemake.params.overseer}, device=device,
                            trust_remote_code=snakemake.config["model"]["trust_remote_code"])
ppo = dataclasses.replace(rl_settings(snakemake.config)[0], **snakemake.params.ppo)
models = {name: snakemake.input[f"model_{name}"] for name in cfg.sample_from} if cfg.source == "sample" else {}
preference_stage(cfg, model_dirs=models, prompts_path=snakemake.input.get("prompts"), overseer=overseer, ppo=ppo,
                 train_path=snakemake.output.train, heldout_path=snakemake.output.heldout,
                 seed=snakemake.params.seed, device=device)
