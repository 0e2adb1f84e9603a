"""Rule sarm: prepared base model + preference files -> results/{run}/reward_models/sarm/ (weights, cfg.json, accuracy)."""

from pathlib import Path

from rlhf_lens.jobs import start_job
from rlhf_lens.reward_models.sarm import SARMConfig, sarm_stage

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
# params: the settings that change a result; the forward batch size (memory only) comes from the config.
cfg = SARMConfig(**{**snakemake.params.sarm, "forward_batch_size": snakemake.config["sarm"]["forward_batch_size"]})
sarm_stage(snakemake.input.model, snakemake.input.train, snakemake.input.heldout, Path(snakemake.output.cfg).parent,
           cfg, seed=snakemake.params.seed, device=device)
