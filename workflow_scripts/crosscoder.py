"""Rules crosscoder and crosscoder_null: two activation stores of one layer -> one crosscoder folder."""

from rlhf_lens.config import crosscoder_config
from rlhf_lens.jobs import start_job
from rlhf_lens.sae.crosscoder_fit import fit_crosscoder

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
fit_crosscoder(list(snakemake.input.stores), int(snakemake.wildcards.layer), snakemake.output.folder,
               crosscoder_config({"crosscoder": snakemake.params.crosscoder}), seed=snakemake.params.seed,
               names=tuple(snakemake.params.names), model_dirs=list(snakemake.input.models), device=device)
