"""Rule plain_rm: base model + preference pairs -> results/{run}/reward_models/plain/ (HF folder, accuracy.json)."""

import dataclasses

from rlhf_lens.config import plain_rm_config
from rlhf_lens.jobs import start_job
from rlhf_lens.reward_models.plain import train_plain_rm

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
# params: the settings that change the model; checkpointing and scoring batch come from the config.
cfg = dataclasses.replace(plain_rm_config(snakemake.config), **snakemake.params.plain_rm)
train_plain_rm(snakemake.input.model, snakemake.input.train, cfg, out_dir=snakemake.output.rm,
               checkpoint_dir=snakemake.params.checkpoints, heldout_path=snakemake.input.heldout,
               seed=snakemake.params.seed, device=device,
               # what else changes the model: a rerun with other settings must not resume these checkpoints
               settings={"preferences": snakemake.config["preferences"], "model": snakemake.config["model"]})
