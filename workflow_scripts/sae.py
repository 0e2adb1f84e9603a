"""Rule sae: one layer of an activation store -> every SAE folder of it (SAELens layout + metrics.json)."""

import torch

from rlhf_lens.config import sae_config
from rlhf_lens.devices import pick_device
from rlhf_lens.logs import setup_logging
from rlhf_lens.sae.fit import fit_saes

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
fit_saes(snakemake.input.store, int(snakemake.wildcards.layer), dict(zip(snakemake.params.names, snakemake.output)),
         sae_config({"sae": snakemake.params.sae}), seed=snakemake.params.seed, model_dir=snakemake.input.model,
         device=pick_device(snakemake.params.device))
