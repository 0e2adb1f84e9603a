"""Rule activations: a model (base or policy) + corpus + selected layers -> activation store folder."""

from rlhf_lens.activations import activation_store_stage
from rlhf_lens.config import activations_config
from rlhf_lens.jobs import start_job

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
# params: the keys that change the store; batch_size and shard_tokens come from the config (common.smk).
settings = {**snakemake.config["activations"], **snakemake.params.activations}
activation_store_stage(snakemake.input.model, snakemake.input.tokenizer, snakemake.input.corpus,
                       snakemake.input.layers, snakemake.output[0], activations_config({"activations": settings}),
                       device=device, seed=snakemake.params.seed)
