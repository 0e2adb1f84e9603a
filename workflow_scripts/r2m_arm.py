"""Rule r2m_arm: one (algorithm, reward, seed) of the R2M comparison -> metrics, held-out samples, summary."""

import dataclasses

from rlhf_lens.config import job_rewards, job_rl_settings, rl_settings
from rlhf_lens.jobs import start_job, weights_fingerprint
from rlhf_lens.r2m.experiment import run_arm

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
w, params, cfg = snakemake.wildcards, snakemake.params, snakemake.config
seed = int(w.seed)
spec = dict(params.reward)
if spec["type"] == "r2m":  # the attention's initial weights and the noise ablation follow the arm's seed
    spec["seed"] = seed
baseline, gold_name = cfg["r2m"]["baseline"], cfg["rl"]["gold"]
reward, proxy, gold = job_rewards(cfg, [(w.reward, spec), (baseline, params.proxy), (gold_name, params.gold)], device)
ppo = job_rl_settings(cfg, w.reward, params.ppo)
eval_cfg = dataclasses.replace(rl_settings(cfg, w.reward)[1], **params.eval)
settings = {"reward": spec, "model": cfg["model"], "prompts": cfg["prompts"], "gold": params.gold,
            "learned": weights_fingerprint(snakemake.input.learned)}
run_arm(snakemake.input.model, snakemake.input.train, snakemake.input.eval, snakemake.input.heldout, reward, proxy,
        gold, ppo, eval_cfg, seed=seed, device=device, scratch=params.scratch, out_metrics=snakemake.output.metrics,
        out_samples=snakemake.output.samples, out_summary=snakemake.output.summary, settings=settings)
