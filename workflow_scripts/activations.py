"""Rule activations: a model (base or policy) + corpus + selected layers -> activation store folder."""

import torch

from rlhf_lens.activations import activation_store_stage
from rlhf_lens.config import activations_config
from rlhf_lens.devices import pick_device
from rlhf_lens.logs import setup_logging

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
activation_store_stage(snakemake.input.model, snakemake.input.tokenizer, snakemake.input.corpus,
                       snakemake.input.layers, snakemake.output[0],
                       activations_config({"activations": snakemake.params.activations}),
                       device=pick_device(snakemake.params.device))
