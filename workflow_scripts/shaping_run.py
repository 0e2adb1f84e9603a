"""Rule shaping_run: one scheme at one seed -> results/{run}/shaping/{reward}/runs/{scheme}/seed{seed}/."""

import dataclasses
import json
import shutil

from rlhf_lens.atomic import write_parquet
from rlhf_lens.config import rl_settings, shaping_config
from rlhf_lens.jobs import start_job
from rlhf_lens.rewards import build_reward
from rlhf_lens.shaping_study.config import StudyConfig
from rlhf_lens.shaping_study.runs import study_run

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
trust = snakemake.config["model"]["trust_remote_code"]
name, scheme, seed = snakemake.wildcards.reward, snakemake.wildcards.scheme, int(snakemake.wildcards.seed)
study = StudyConfig.from_section(snakemake.params.study)
reward = build_reward(name, {name: snakemake.params.reward}, device=device, trust_remote_code=trust)
gold_name = study.gold or snakemake.config["rl"]["gold"]
gold = None if gold_name is None else build_reward(gold_name, {gold_name: snakemake.params.gold}, device=device,
                                                   trust_remote_code=trust)
ppo = dataclasses.replace(rl_settings(snakemake.config, name)[0], **snakemake.params.ppo)
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
