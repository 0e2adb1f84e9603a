# Model diffing against the known overseer: one job per (interpreted reward, method). Each writes the method's
# recovered utility table and its readout against the reward's truth (rlhf_lens.diffing.stage). Only methods
# available in this checkout are planned (a registered name whose module is not written yet is skipped).

rule diffing:
    """One diffing method on base vs one reward's policy: words.parquet, readout.json, extra.json (latents.parquet)."""
    input:
        unpack(diffing_inputs),
        base=model_dir(),
        policy=rules.rl.output.policy,
        corpus=diffing_corpus,
        learned=lambda wildcards: learned_reward_inputs(diffing_truth(wildcards.reward)),
        planted=lambda wildcards: planted_tables(diffing_truth(wildcards.reward)),
    output:
        folder=directory("results/{run}/diffing/{reward}/{method}"),
    params:
        corpus=result_settings("diffing.corpus", config["diffing"]["corpus"]),
        readout=config["diffing"]["readout"],
        method=lambda wildcards: config["diffing"].get(wildcards.method) or {},
        truth=lambda wildcards: diffing_truth(wildcards.reward),
        truth_spec=lambda wildcards: reward_params(config, diffing_truth(wildcards.reward)),
        seed=config["seed"],
    log:
        "logs/{run}/diffing/{reward}/{method}.log",
    threads: threads_for("diffing")
    resources:
        **resources_for("diffing"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/diffing.py"


ALL_TARGETS += expand(rules.diffing.output.folder, run=RUN, reward=INTERPRETED, method=DIFFING_METHODS)
