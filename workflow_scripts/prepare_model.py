"""Rule prepare_model: config['model'] -> resources/models/{model}/."""

import torch

from rlhf_lens.config import ModelConfig
from rlhf_lens.logs import setup_logging
from rlhf_lens.models import prepare_model

setup_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
prepare_model(ModelConfig(**snakemake.params.model), snakemake.output[0])
