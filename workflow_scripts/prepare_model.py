"""Rule prepare_model: config['model'] -> resources/models/{model}/.

The first job that knows the model's width: settings that must fit it (sae.k) are checked here, before any RL
and before anything is written, when validation could not read a config.json (a GGUF or hub spec on a fresh
machine)."""

from functools import partial

from rlhf_lens.config import require_model_fits
from rlhf_lens.jobs import start_job
from rlhf_lens.models import ModelConfig, prepare_model

start_job(snakemake.log[0], snakemake.threads)
prepare_model(ModelConfig(**snakemake.params.model), snakemake.output[0],
              check=partial(require_model_fits, snakemake.config))
