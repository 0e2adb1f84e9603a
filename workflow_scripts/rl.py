"""Rule rl: prepared model + train prompts -> results/{run}/rl/{reward}/{policy/,metrics.parquet,curves.png}."""

from rlhf_lens.config import job_rewards, job_rl_settings, shaping_config
from rlhf_lens.jobs import start_job, weights_fingerprint
from rlhf_lens.report.plots import plot_rl_curves
from rlhf_lens.rl.train import train_policy

device = start_job(snakemake.log[0], snakemake.threads, snakemake.config["device"])
name = snakemake.wildcards.reward
# rl.gold: the overseer, scored on every step's rollouts for the logs (not trained on)
gold_name = snakemake.config["rl"]["gold"]
reward, gold = job_rewards(snakemake.config, [(name, snakemake.params.reward), (gold_name, snakemake.params.gold)],
                           device)
# params: the PPO settings that change the policy; the checkpoint settings come from the config.
ppo = job_rl_settings(snakemake.config, name, snakemake.params.ppo)
# what else changes the result: a rerun with other settings must not resume these checkpoints
settings = {"reward": snakemake.params.reward, "model": snakemake.config["model"],
            "prompts": snakemake.config["prompts"]}
if gold is not None:
    settings["gold"] = snakemake.params.gold
shaping = shaping_config(snakemake.config)
if shaping.enabled:  # rl.shaping: train on the shaped reward (its settings are the rule's shaping param)
    settings["shaping"] = snakemake.params.shaping
if snakemake.input.learned:  # a retrained reward model (same path, new weights) must not resume the old run
    settings["learned"] = weights_fingerprint(snakemake.input.learned)
metrics = train_policy(snakemake.input.model, snakemake.input.prompts, reward, ppo,
                       out_policy=snakemake.output.policy, out_metrics=snakemake.output.metrics,
                       checkpoint_dir=snakemake.params.checkpoints, seed=snakemake.params.seed, device=device,
                       gold=gold, settings=settings, shaping=shaping)
plot_rl_curves(metrics, snakemake.output.curves, title=f"{ppo.algorithm.upper()} against reward {reward.name!r}")
