"""Rule preferences: models + train prompts (or a preference file) -> results/{run}/preferences/{overseer}/{train,heldout}.parquet."""

from rlhf_lens.config import job_rewards, job_rl_settings, preferences_config
from rlhf_lens.jobs import start_job
from rlhf_lens.preferences.sample import preference_stage

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
cfg = preferences_config(snakemake.config)
(overseer,) = job_rewards(snakemake.config, [(cfg.overseer or None, snakemake.params.overseer)], device)
ppo = job_rl_settings(snakemake.config, None, snakemake.params.ppo)
models = {name: snakemake.input[f"model_{name}"] for name in cfg.sample_from} if cfg.source == "sample" else {}
preference_stage(cfg, model_dirs=models, prompts_path=snakemake.input.get("prompts"), overseer=overseer, ppo=ppo,
                 train_path=snakemake.output.train, heldout_path=snakemake.output.heldout,
                 seed=snakemake.params.seed, device=device)
