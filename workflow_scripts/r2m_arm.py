"""Rule r2m_arm: one (algorithm, reward, seed) of the R2M comparison -> metrics, held-out samples, summary."""

import dataclasses
from pathlib import Path

from rlhf_lens.config import rl_settings
from rlhf_lens.jobs import start_job
from rlhf_lens.r2m.experiment import run_arm
from rlhf_lens.rewards import build_reward

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
w, params, cfg = snakemake.wildcards, snakemake.params, snakemake.config
trust = cfg["model"]["trust_remote_code"]
seed = int(w.seed)
spec = dict(params.reward)
if spec["type"] == "r2m":  # the attention's initial weights and the noise ablation follow the arm's seed
    spec["seed"] = seed
reward = build_reward(w.reward, {w.reward: spec}, device=device, trust_remote_code=trust)
baseline, gold_name = cfg["r2m"]["baseline"], cfg["rl"]["gold"]
proxy = build_reward(baseline, {baseline: params.proxy}, device=device, trust_remote_code=trust)
gold = build_reward(gold_name, {gold_name: params.gold}, device=device, trust_remote_code=trust)
ppo = dataclasses.replace(rl_settings(cfg, w.reward)[0], **params.ppo)
eval_cfg = dataclasses.replace(rl_settings(cfg, w.reward)[1], **params.eval)
settings = {"reward": spec, "model": cfg["model"], "prompts": cfg["prompts"], "gold": params.gold,
            "learned": {str(f): sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                                       for p in Path(f).glob("*.safetensors")) for f in snakemake.input.learned}}
run_arm(snakemake.input.model, snakemake.input.train, snakemake.input.eval, snakemake.input.heldout, reward, proxy,
        gold, ppo, eval_cfg, seed=seed, device=device, scratch=params.scratch, out_metrics=snakemake.output.metrics,
        out_samples=snakemake.output.samples, out_summary=snakemake.output.summary, settings=settings)
