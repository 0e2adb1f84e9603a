# SARM (a sparse-autoencoder reward model) trained on the overseer's preference pairs, then read off.
# Off unless sarm.enabled is true; the overseer is preferences.overseer. The model's files are outputs one by
# one (not a directory output), so the read-off can write its tables into the same folder,
# results/{run}/reward_models/sarm/.


rule sarm:
    """Truncated base model + TopK SAE pretrained on the RM corpus + linear head (Bradley-Terry + reconstruction);
    held-out pair accuracy and Spearman against the overseer, with CIs over prompt groups."""
    input:
        model=model_dir(),
        train=lambda wildcards: preference_file(wildcards, "train"),
        heldout=lambda wildcards: preference_file(wildcards, "heldout"),
    output:
        cfg="results/{run}/reward_models/sarm/cfg.json",
        weights="results/{run}/reward_models/sarm/sarm.safetensors",
        accuracy="results/{run}/reward_models/sarm/accuracy.json",
        scores="results/{run}/reward_models/sarm/pair_scores.parquet",
    params:
        sarm=sarm_train_params(),
        seed=config["seed"],
    log:
        "logs/{run}/reward_models/sarm.log",
    threads: threads_for("sarm")
    resources:
        **resources_for("sarm"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/sarm.py"


rule sarm_analysis:
    """SARM read off: attribution per held-out response, preference shift (target vs complement), overseer
    recovery against shuffled weights, and the top-|w| latents' RM-corpus examples for autointerp."""
    input:
        cfg=rules.sarm.output.cfg,
        weights=rules.sarm.output.weights,
        train=lambda wildcards: preference_file(wildcards, "train"),
        heldout=lambda wildcards: preference_file(wildcards, "heldout"),
    output:
        attribution="results/{run}/reward_models/sarm/attribution.parquet",
        shift="results/{run}/reward_models/sarm/shift.parquet",
        recovery="results/{run}/reward_models/sarm/recovery.json",
        examples="results/{run}/reward_models/sarm/examples.parquet",
    params:
        analysis=config["sarm"]["analysis"],
        overseer=lambda wildcards: reward_spec(config["preferences"]["overseer"]),
        examples=config["autointerp"]["examples"],
        seed=config["seed"],
    log:
        "logs/{run}/reward_models/sarm_analysis.log",
    threads: threads_for("sarm_analysis")
    resources:
        **resources_for("sarm_analysis"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/sarm_analysis.py"


rule sarm_autointerp:
    """SARM's top-|w| latents explained and scored by the autointerp pipeline (the policy features' explainer,
    scorers and LLM cache) on their RM-corpus examples (examples.parquet of rule sarm_analysis)."""
    input:
        examples=rules.sarm_analysis.output.examples,
        llm=autointerp_llm_inputs,
    output:
        table="results/{run}/reward_models/sarm/autointerp.parquet",
    params:
        autointerp=result_settings("autointerp"),
        seed=config["seed"],
    log:
        "logs/{run}/reward_models/sarm_autointerp.log",
    threads: threads_for("autointerp")
    resources:
        **resources_for("autointerp"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/sarm_autointerp.py"


if config["sarm"]["enabled"]:
    ALL_TARGETS += expand(rules.sarm_analysis.output, run=RUN) + expand(rules.sarm_autointerp.output, run=RUN) + expand(rules.sarm.output.accuracy, run=RUN)


rule rm_comparison:
    """SARM next to the plain RM on the same held-out pairs: pair accuracy and Spearman with CIs over prompt
    groups, and SARM minus plain (paired resamples); the bootstrap settings are plain_rm's."""
    input:
        plain=rules.plain_rm.output.rm,
        sarm=rules.sarm.output.scores,
    output:
        table="results/{run}/reward_models/comparison.parquet",
    params:
        bootstrap=config["plain_rm"]["bootstrap"],
        ci_level=config["plain_rm"]["ci_level"],
        seed=config["seed"],
    log:
        "logs/{run}/reward_models/comparison.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/rm_comparison.py"


if config["sarm"]["enabled"]:
    ALL_TARGETS += expand(rules.rm_comparison.output.table, run=RUN)
