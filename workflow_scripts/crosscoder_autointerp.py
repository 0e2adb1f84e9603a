"""Rule crosscoder_autointerp: one layer's crosscoder + both stores -> crosscoder/{reward}/autointerp/layer{L}.parquet."""

from rlhf_lens.autointerp.crosscoder import crosscoder_autointerp_stage
from rlhf_lens.autointerp.stage import build_llm
from rlhf_lens.config import autointerp_settings
from rlhf_lens.jobs import start_job

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
# params: the keys that change the table; timeout, retries, cache folder and key variable come from the config.
settings = {**snakemake.config["autointerp"], **snakemake.params.autointerp}
cfg, examples, simulation = autointerp_settings({"autointerp": settings, "sae": snakemake.config["sae"]})
base_model = snakemake.input.llm[0] if snakemake.input.llm else None
llm = build_llm(cfg, base_model, device=device, seed=snakemake.params.seed)
crosscoder_autointerp_stage(list(snakemake.input.stores), int(snakemake.wildcards.layer), snakemake.input.folder,
                            snakemake.output.table, llm, cfg=cfg, examples_cfg=examples, simulation_cfg=simulation,
                            n_per_group=snakemake.params.explain_latents, seed=snakemake.params.seed)
