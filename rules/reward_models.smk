# Learned reward models trained on the run's preference pairs. Each is a folder
# results/{run}/reward_models/{rm}/ with its held-out accuracy (accuracy.json), usable as a reward
# (type reward_model, path: that folder). Checkpoints live in results/{run}/reward_models/.checkpoints/,
# deliberately not an output, so a killed job's rerun resumes.


rule plain_rm:
    """The plain Bradley-Terry reward model (TRL RewardTrainer): HF folder + accuracy.json + pair_scores.parquet."""
    input:
        unpack(preference_files),
        model=model_dir(),
    output:
        rm=directory("results/{run}/reward_models/plain"),
    params:
        plain_rm=result_settings("plain_rm"),
        seed=config["seed"],
        checkpoints=lambda wildcards: f"results/{wildcards.run}/reward_models/.checkpoints/plain",
    log:
        "logs/{run}/reward_models/plain.log",
    threads: threads_for("plain_rm")
    resources:
        **resources_for("plain_rm"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/plain_rm.py"


if preferences_enabled(config):
    ALL_TARGETS += expand(rules.plain_rm.output.rm, run=RUN)
