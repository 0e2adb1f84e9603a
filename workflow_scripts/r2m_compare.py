"""Rule r2m_compare: every arm's metrics, samples and summary -> comparison table, detection, curves, figure, Markdown."""

import json
from pathlib import Path

import pandas as pd

from rlhf_lens.atomic import atomic_file, write_parquet
from rlhf_lens.jobs import start_job
from rlhf_lens.r2m.compare import comparison_table, detection_table, step_curves
from rlhf_lens.report.r2m import markdown, plot_r2m

start_job(snakemake.log[0])
p = snakemake.params
metrics, samples, summaries = [], [], []
for (algorithm, reward, seed), summary_path in zip(p.arms, snakemake.input.summaries):
    folder = Path(summary_path).parent
    tag = {"algorithm": algorithm, "reward": reward, "seed": seed}
    metrics.append(pd.read_parquet(folder / "metrics.parquet").assign(**tag))
    samples.append(pd.read_parquet(folder / "samples.parquet").assign(**tag))
    s = json.loads(Path(summary_path).read_text())
    summaries.append({**tag, "accuracy_before": s["accuracy_before"]["mean"], "accuracy_after": s["accuracy_after"]["mean"],
                      "steps": s["steps"]})
metrics, samples, summaries = pd.concat(metrics), pd.concat(samples, ignore_index=True), pd.DataFrame(summaries)
table = comparison_table(samples, summaries, p.baseline, n_boot=p.bootstrap, seed=p.seed)
detection = detection_table(samples, n_boot=p.bootstrap, seed=p.seed)
curves = step_curves(metrics)
write_parquet(table, snakemake.output.table)
write_parquet(detection, snakemake.output.detection)
write_parquet(curves, snakemake.output.curves)
plot_r2m(curves, table, snakemake.output.figure)
with atomic_file(snakemake.output.md) as tmp:
    Path(tmp).write_text(markdown(table, detection, p.methods, p.baseline, int(summaries.steps.max())))
