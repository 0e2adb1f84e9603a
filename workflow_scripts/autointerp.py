"""Rule autointerp: activation store + small SAE + matches of one (role, layer) -> autointerp/{reward}/{role}/layer{L}.parquet."""

from rlhf_lens.autointerp.stage import autointerp_stage, build_llm
from rlhf_lens.config import autointerp_settings
from rlhf_lens.jobs import start_job

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
# params: the keys that change the table; timeout, retries, cache folder and key variable come from the config.
settings = {**snakemake.config["autointerp"], **snakemake.params.autointerp}
cfg, examples, simulation = autointerp_settings({"autointerp": settings, "sae": snakemake.config["sae"]})
base_model = snakemake.input.llm[0] if snakemake.input.llm else None
llm = build_llm(cfg, base_model, device=device, seed=snakemake.params.seed)
autointerp_stage(snakemake.input.store, int(snakemake.wildcards.layer), snakemake.input.sae, snakemake.input.matches,
                 snakemake.output[0], llm, role=snakemake.wildcards.role, dictionary=snakemake.params.dictionary,
                 kind=cfg.kind, cfg=cfg, examples_cfg=examples, simulation_cfg=simulation, seed=snakemake.params.seed)
