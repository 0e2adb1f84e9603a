"""Rule shaping_trial: the earlier trials -> results/{run}/shaping/{reward}/search/trial_{trial}.json."""

import shutil
from pathlib import Path

from rlhf_lens.config import job_rewards, job_rl_settings, shaping_config
from rlhf_lens.jobs import start_job
from rlhf_lens.shaping_study.config import StudyConfig
from rlhf_lens.shaping_study.runs import held_out_gold, study_run
from rlhf_lens.shaping_study.search import WeightSearch

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
name = snakemake.wildcards.reward
study = StudyConfig.from_section(snakemake.params.study)
gold_name = study.gold or snakemake.config["rl"]["gold"]
reward, gold = job_rewards(snakemake.config, [(name, snakemake.params.reward), (gold_name, snakemake.params.gold)],
                           device)
ppo = job_rl_settings(snakemake.config, name, snakemake.params.ppo)
search = WeightSearch(study.bo_components, Path(snakemake.output[0]).parent, study.bo_trials, study.bo_initial,
                      study.bo_seed)
proposal = search.propose(int(snakemake.wildcards.trial))
# every trial trains with the same seed, so trials differ by their weights only
metrics, table = study_run(snakemake.input.model, snakemake.input.train, snakemake.input.eval, reward, gold, ppo,
                           shaping_config(snakemake.config), proposal["weights"], seed=study.bo_seed,
                           steps=study.bo_steps, n_eval=study.eval_prompts, eval_samples=study.eval_samples,
                           device=device, checkpoint_dir=snakemake.params.checkpoints,
                           settings={"reward": snakemake.params.reward, "gold": snakemake.params.gold})
cost = metrics[[c for c in metrics.columns if c.startswith("shaping_") and c.endswith("_seconds")]]
search.tell(proposal, held_out_gold(table), steps=int(len(metrics)), kl_heldout=float(table["kl"].mean()),
            attribution_seconds_per_step=float(cost.sum(1).mean()) if cost.shape[1] else 0.0,
            seconds=float(metrics["seconds"].sum()))
shutil.rmtree(snakemake.params.checkpoints, ignore_errors=True)
