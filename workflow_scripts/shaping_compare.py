"""Rule shaping_compare: every run of every scheme -> comparison table, curves, figure and Markdown."""

from pathlib import Path

import pandas as pd

from rlhf_lens.atomic import atomic_file, write_parquet
from rlhf_lens.jobs import start_job
from rlhf_lens.report.shaping import plot_shaping_curves, shaping_markdown
from rlhf_lens.shaping_study.compare import comparison_table, curve_summary, curves
from rlhf_lens.shaping_study.config import StudyConfig

start_job(snakemake.log[0])
study = StudyConfig.from_section(snakemake.params.study)
runs = {}
for metrics_path, heldout_path in zip(snakemake.input.metrics, snakemake.input.heldout):
    scheme, seed = Path(metrics_path).parent.parent.name, int(Path(metrics_path).parent.name.removeprefix("seed"))
    runs[(scheme, seed)] = (pd.read_parquet(metrics_path), pd.read_parquet(heldout_path))
table, threshold = comparison_table(runs, threshold=study.threshold, n_boot=study.bootstrap,
                                    seed=snakemake.config["seed"])
long = curves(runs)
write_parquet(table, snakemake.output.table)
write_parquet(long, snakemake.output.curves)
plot_shaping_curves(curve_summary(long), snakemake.output.figure, threshold=threshold,
                    title=f"gold reward per step, reward {snakemake.wildcards.reward!r}")
trials = pd.read_parquet(snakemake.input.trials[0]) if snakemake.input.trials else None
steps = int(long.groupby(["scheme", "seed"]).size().max())
with atomic_file(snakemake.output.markdown) as tmp:
    tmp.write_text(shaping_markdown(table, threshold, trials, steps=steps))
