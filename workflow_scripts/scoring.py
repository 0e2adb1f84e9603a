"""Rule scoring: autointerp tables + stores + small SAEs + both models -> scores/{reward}.parquet, Table 3, stats."""

import re

from rlhf_lens.jobs import start_job
from rlhf_lens.scoring import LayerInputs, ScoringConfig, scoring_stage

start_job(snakemake.log[0], snakemake.threads)
s = snakemake.params.scoring
cfg = ScoringConfig(table=snakemake.params.table, top_n_tokens=s["top_n_tokens"], bootstrap=s["bootstrap"],
                    permutations=s["permutations"], ci_level=s["ci_level"])
models = {"base": snakemake.input.base, "rlhf": snakemake.input.rlhf}
stores = {store.rstrip("/").rsplit("/", 1)[-1]: store for store in snakemake.input.stores}  # .../{role}
parts = []
for path in snakemake.input.autointerp:  # .../autointerp/{reward}/{role}/layer{L}.parquet
    role, layer = re.search(r"/([^/]+)/layer([0-9]+)\.parquet$", path).groups()
    sae = next(p for p in snakemake.input.saes if f"/{role}/layer{layer}/" in p)
    parts.append(LayerInputs(role=role, layer=int(layer), store=stores[role],
                             sae_dir=sae, model_dir=models[role], autointerp=path))
scoring_stage(parts, snakemake.output.table, snakemake.output.csv, snakemake.output.md, snakemake.output.stats, cfg,
              seed=snakemake.params.seed)
