"""Rule shaping_run: one scheme at one seed -> results/{run}/shaping/{reward}/runs/{scheme}/seed{seed}/."""

import json
import shutil

from rlhf_lens.atomic import write_parquet
from rlhf_lens.config import job_rewards, job_rl_settings, shaping_config
from rlhf_lens.jobs import start_job
from rlhf_lens.shaping_study.config import StudyConfig
from rlhf_lens.shaping_study.runs import study_run

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
name, scheme, seed = snakemake.wildcards.reward, snakemake.wildcards.scheme, int(snakemake.wildcards.seed)
study = StudyConfig.from_section(snakemake.params.study)
gold_name = study.gold or snakemake.config["rl"]["gold"]
reward, gold = job_rewards(snakemake.config, [(name, snakemake.params.reward), (gold_name, snakemake.params.gold)],
                           device)
ppo = job_rl_settings(snakemake.config, name, snakemake.params.ppo)
best = json.loads(open(snakemake.input.best[0]).read())["weights"] if snakemake.input.best else None
weights = study.scheme_weights(scheme, best)
metrics, table = study_run(snakemake.input.model, snakemake.input.train, snakemake.input.eval, reward, gold, ppo,
                           shaping_config(snakemake.config), weights, seed=seed, steps=study.steps or ppo.steps,
                           n_eval=study.eval_prompts, eval_samples=study.eval_samples, device=device,
                           checkpoint_dir=snakemake.params.checkpoints,
                           settings={"reward": snakemake.params.reward, "gold": snakemake.params.gold})
metrics.insert(0, "scheme", scheme)
write_parquet(metrics, snakemake.output.metrics)
write_parquet(table, snakemake.output.heldout)
shutil.rmtree(snakemake.params.checkpoints, ignore_errors=True)
