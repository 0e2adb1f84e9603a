"""Rule prepare_model: config['model'] -> resources/models/{model}/."""

from rlhf_lens.models import ModelConfig
from rlhf_lens.jobs import start_job
from rlhf_lens.models import prepare_model

start_job(snakemake.log[0], snakemake.threads)
prepare_model(ModelConfig(**snakemake.params.model), snakemake.output[0])
