"""Rule sae: one layer of an activation store -> every SAE folder of it (SAELens layout + metrics.json)."""

from rlhf_lens.config import sae_config
from rlhf_lens.jobs import start_job
from rlhf_lens.sae.fit import fit_saes

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
fit_saes(snakemake.input.store, int(snakemake.wildcards.layer), dict(zip(snakemake.params.names, snakemake.output)),
         sae_config({"sae": snakemake.params.sae}), seed=snakemake.params.seed, model_dir=snakemake.input.model,
         device=device)
