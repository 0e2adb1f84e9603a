"""Rule rm_comparison: the plain RM's and SARM's held-out pair tables -> reward_models/comparison.parquet."""

from pathlib import Path

import pandas as pd

from rlhf_lens.atomic import write_parquet
from rlhf_lens.jobs import start_job
from rlhf_lens.reward_models.comparison import compare_reward_models

start_job(snakemake.log[0])
tables = {"plain": pd.read_parquet(Path(snakemake.input.plain) / "pair_scores.parquet"),
          "sarm": pd.read_parquet(snakemake.input.sarm)}
p = snakemake.params
write_parquet(compare_reward_models(tables, n_boot=p.bootstrap, level=p.ci_level, seed=p.seed), snakemake.output.table)
