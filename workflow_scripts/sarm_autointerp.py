"""Rule sarm_autointerp: SARM's examples.parquet -> reward_models/sarm/autointerp.parquet (explanations, scores)."""

from rlhf_lens.autointerp.stage import build_llm
from rlhf_lens.config import autointerp_settings
from rlhf_lens.jobs import start_job
from rlhf_lens.reward_models.sarm_autointerp import explain_sarm_latents

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
# as rule autointerp: params hold the keys that change the table; timeout, retries and cache come from the config
settings = {**snakemake.config["autointerp"], **snakemake.params.autointerp}
cfg, _, simulation = autointerp_settings({"autointerp": settings, "sae": snakemake.config["sae"]})
base_model = snakemake.input.llm[0] if snakemake.input.llm else None
llm = build_llm(cfg, base_model, device=device, seed=snakemake.params.seed)
explain_sarm_latents(snakemake.input.examples, snakemake.output.table, llm, simulation)
