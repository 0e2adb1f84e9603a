"""Rule crosscoder_scoring: every layer's crosscoder + autointerp table, both stores, the RLHF model ->
crosscoder/{reward}/scores.parquet, utility.json, utility.md."""

from rlhf_lens.jobs import start_job
from rlhf_lens.scoring import ScoringConfig
from rlhf_lens.scoring.crosscoder import CrosscoderLayerInputs, crosscoder_scoring_stage

start_job(snakemake.log[0], snakemake.threads)
s = snakemake.params.scoring
cfg = ScoringConfig(table=snakemake.params.table, top_n_tokens=s["top_n_tokens"], bootstrap=s["bootstrap"],
                    permutations=s["permutations"], ci_level=s["ci_level"])
inputs = dict(snakemake.input.items())
stores = sorted(snakemake.input.stores, key=lambda p: ("base", "rlhf").index(p.rstrip("/").rsplit("/", 1)[-1]))
layers = sorted(int(k.split("_", 1)[1]) for k in inputs if k.startswith("real_"))
parts = [CrosscoderLayerInputs(layer=L, stores=tuple(stores), crosscoder_dir=inputs[f"real_{L}"],
                               autointerp=inputs[f"autointerp_{L}"]) for L in layers]
crosscoder_scoring_stage(parts, snakemake.input.rlhf, snakemake.output.table, snakemake.output.stats,
                         snakemake.output.md, cfg, seed=snakemake.params.seed)
