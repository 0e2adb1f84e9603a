"""Rule prompts: config['prompts'] -> results/{run}/prompts/{train,eval}.parquet."""

from rlhf_lens.data.prompts import PromptsConfig
from rlhf_lens.data import make_prompt_splits
from rlhf_lens.jobs import start_job

start_job(snakemake.log[0])
make_prompt_splits(PromptsConfig(**snakemake.params.prompts), snakemake.params.seed,
                   snakemake.output.train, snakemake.output.eval)
