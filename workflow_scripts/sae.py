"""Rule sae: one layer of an activation store -> one SAE folder (SAELens layout + metrics.json)."""

import torch

from rlhf_lens.config import sae_config
from rlhf_lens.devices import pick_device
from rlhf_lens.logs import setup_logging
from rlhf_lens.sae.fit import fit_sae

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
fit_sae(snakemake.input.store, int(snakemake.wildcards.layer), snakemake.wildcards.size, snakemake.output[0],
        sae_config({"sae": snakemake.params.sae}), seed=snakemake.params.seed, model_dir=snakemake.input.model,
        device=pick_device(snakemake.params.device))
