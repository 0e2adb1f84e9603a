# Stage 1: PPO-train one policy per configured reward, then compare it with the base model on
# held-out prompts. Checkpoints live in results/{run}/rl/{reward}/checkpoints/, deliberately not
# an output: Snakemake deletes the outputs of a failed job, and a rerun resumes from them.


rule reward_table:
    """A planted utility table (rewards.<reward>.table secret or vader_shuffled), drawn with the run's seed before
    RL; RL, evaluation, scoring and diffing read it (rlhf_lens.rewards.planted_tables.resolved_table)."""
    input:
        unpack(reward_table_inputs),
    output:
        table=table_path("{run}", "{reward}"),
    params:
        reward=lambda wildcards: reward_spec(wildcards.reward),
        sampling=base_words_sampling,
        seed=config["seed"],
    log:
        "logs/{run}/reward_table/{reward}.log",
    threads: threads_for("reward_table")
    resources:
        **resources_for("reward_table"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/reward_table.py"


rule rl:
    """PPO against reward {reward}: policy/ (plain HF folder), metrics per step, reward/KL curves."""
    input:
        model=model_dir(),
        prompts=rules.prompts.output.train,
        learned=rl_reward_inputs,
    output:
        policy=directory("results/{run}/rl/{reward}/policy"),
        metrics="results/{run}/rl/{reward}/metrics.parquet",
        curves=report("results/{run}/rl/{reward}/curves.png", category="RL", subcategory="{reward}"),
    params:
        reward=lambda wildcards: reward_spec(wildcards.reward),
        ppo=lambda wildcards: ppo_params(wildcards.reward),
        gold=gold_spec(),
        shaping=shaping_params(),
        seed=config["seed"],
        checkpoints=lambda wildcards: f"results/{wildcards.run}/rl/{wildcards.reward}/checkpoints",
    log:
        "logs/{run}/rl/{reward}.log",
    threads: threads_for("rl")
    resources:
        **resources_for("rl"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/rl.py"


rule rl_eval:
    """Base vs policy on held-out prompts: sample table, mean rewards with bootstrap CIs, KL."""
    input:
        base=model_dir(),
        policy=rules.rl.output.policy,
        prompts=rules.prompts.output.eval,
        learned=rl_reward_inputs,
    output:
        table="results/{run}/rl/{reward}/eval.parquet",
        summary="results/{run}/rl/{reward}/eval_summary.json",
    params:
        reward=lambda wildcards: reward_spec(wildcards.reward),
        ppo=lambda wildcards: ppo_params(wildcards.reward),
        # all of rl.eval: its batch_size changes the samples (torch's RNG draws per batch of responses)
        eval=asdict(EVAL_SETTINGS),
        gold=gold_spec(),
        seed=config["seed"],
    log:
        "logs/{run}/rl_eval/{reward}.log",
    threads: threads_for("rl_eval")
    resources:
        **resources_for("rl_eval"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/rl_eval.py"


ALL_TARGETS += expand(
    [rules.rl.output.metrics, rules.rl.output.curves, *rules.rl_eval.output], run=RUN, reward=TRAINED
)


rule gold_vs_proxy:
    """Gold (rl.gold, the overseer) and proxy (the trained reward) against KL per step, with the held-out values."""
    input:
        metrics=rules.rl.output.metrics,
        summary=rules.rl_eval.output.summary,
    output:
        figure=report("results/{run}/rl/{reward}/gold_vs_proxy.png", category="RL", subcategory="{reward}",
                      labels={"reward": "{reward}", "what": "gold vs proxy reward against KL"}),
    log:
        "logs/{run}/gold_vs_proxy/{reward}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/gold_vs_proxy.py"


if GOLD:
    ALL_TARGETS += expand(rules.gold_vs_proxy.output.figure, run=RUN, reward=TRAINED)
