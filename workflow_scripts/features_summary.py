"""Rule features_summary: every (role, layer) summary of one reward -> one table."""

from rlhf_lens.features import summarise
from rlhf_lens.jobs import start_job

start_job(snakemake.log[0])
paths = {}
for key, path in snakemake.input.items():
    role, layer = key.rsplit("_", 1)
    paths[(role, int(layer))] = path
summarise(paths, snakemake.output[0])
