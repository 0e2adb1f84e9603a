"""Rule sarm_analysis: a SARM folder + preference files -> attribution, shift, recovery, examples beside it."""

from pathlib import Path

from rlhf_lens.autointerp.examples import ExampleConfig
from rlhf_lens.config import job_rewards
from rlhf_lens.jobs import start_job
from rlhf_lens.reward_models.sarm_analysis import SARMAnalysisConfig, sarm_analysis_stage

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
name = snakemake.config["preferences"]["overseer"]  # the overseer that labelled the pairs SARM learned
(overseer,) = job_rewards(snakemake.config, [(name, snakemake.params.overseer)], device)
analysis = {k: tuple(v) if isinstance(v, list) else v for k, v in snakemake.params.analysis.items()}
sarm_analysis_stage(Path(snakemake.input.cfg).parent, snakemake.input.train, snakemake.input.heldout, overseer,
                    SARMAnalysisConfig(**analysis), out_attribution=snakemake.output.attribution,
                    out_shift=snakemake.output.shift, out_recovery=snakemake.output.recovery,
                    out_examples=snakemake.output.examples, example_cfg=ExampleConfig(**snakemake.params.examples),
                    seed=snakemake.params.seed, device=device)
