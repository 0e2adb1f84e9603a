"""Rule features: the SAEs of one (role, layer) + its activation store -> matches table, summary, histograms."""

from rlhf_lens.config import features_config, sae_config
from rlhf_lens.features import features_stage
from rlhf_lens.jobs import start_job
from rlhf_lens.report.plots import plot_max_cosine_histograms

start_job(snakemake.log[0], snakemake.threads)
sae = sae_config({"sae": snakemake.params.sae})
feat = features_config({"features": snakemake.params.features})
_, panels = features_stage(dict(zip(snakemake.params.names, snakemake.input.saes)), snakemake.input.store,
                           int(snakemake.wildcards.layer), snakemake.output.table, snakemake.output.summary,
                           sizes=sae.sizes, kinds=sae.kinds, baseline_seeds=sae.baseline_seeds, top_k=feat.top_k,
                           n_boot=feat.bootstrap, level=feat.ci_level, eval_fraction=sae.eval_fraction,
                           seed=snakemake.params.seed)
plot_max_cosine_histograms(panels, snakemake.output.plot)
