# The R2M comparison (configs/r2m.yaml): every group method in r2m.algorithms, every seed, one policy against
# the frozen plain reward model (r2m.baseline) and one against each R2M reward (r2m.methods; r2m.ablations
# under the first algorithm), then one table, figure and verdict. Active only when r2m.baseline is set, so
# the default run is unchanged. Scratch (the policy, checkpoints) lives in results/{run}/r2m/.scratch/, not
# an output, so a killed job's rerun resumes and no full policy per arm is kept.

from dataclasses import replace

R2M = config["r2m"]
R2M_ARMS = r2m_arms(config)


# The arm's inputs: model, prompts, held-out pairs and every reward-model folder it reads (its reward, the
# proxy, gold); its params: the RL settings its algorithm reads (rl.ppo and rl.per_reward, algorithm replaced).
R2M_INPUTS = lambda wildcards: {
    "model": model_dir(), "train": rules.prompts.output.train.format(run=wildcards.run),
    "eval": rules.prompts.output.eval.format(run=wildcards.run), "heldout": preference_files(wildcards)["heldout"],
    "learned": learned_reward_inputs(wildcards.reward, R2M["baseline"], GOLD)}
R2M_PPO = lambda wildcards: result_settings("rl.ppo", algorithm_settings(
    replace(rl_settings(config, wildcards.reward)[0], algorithm=wildcards.algorithm)))


rule r2m_arm:
    """One run of the R2M comparison: train, then held-out samples (proxy, gold, KL, hidden states) and summary."""
    input:
        unpack(R2M_INPUTS),
    output:
        metrics="results/{run}/r2m/{algorithm}/{reward}/seed{seed}/metrics.parquet",
        samples="results/{run}/r2m/{algorithm}/{reward}/seed{seed}/samples.parquet",
        summary="results/{run}/r2m/{algorithm}/{reward}/seed{seed}/summary.json",
    wildcard_constraints:
        algorithm="|".join(map(re.escape, R2M["algorithms"])) or "none",
        seed="[0-9]+",
    params:
        reward=lambda wildcards: reward_spec(wildcards.reward),
        proxy=reward_spec(R2M["baseline"] or None),
        gold=gold_spec(),
        ppo=R2M_PPO,
        eval=asdict(EVAL_SETTINGS),
        scratch=lambda wildcards: f"results/{wildcards.run}/r2m/.scratch/{wildcards.algorithm}/{wildcards.reward}/"
                                  f"seed{wildcards.seed}",
    log:
        "logs/{run}/r2m/{algorithm}/{reward}/seed{seed}.log",
    threads: threads_for("rl")
    resources:
        **resources_for("rl"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/r2m_arm.py"


rule r2m_compare:
    """Every arm against the frozen RM: table (parquet + Markdown with the verdict), figure, per-step curves."""
    input:
        summaries=expand(rules.r2m_arm.output.summary, zip, run=[RUN] * len(R2M_ARMS),
                         algorithm=[a for a, _, _ in R2M_ARMS], reward=[r for _, r, _ in R2M_ARMS],
                         seed=[s for _, _, s in R2M_ARMS]),
    output:
        table="results/{run}/r2m/comparison.parquet",
        detection="results/{run}/r2m/detection.parquet",
        curves="results/{run}/r2m/curves.parquet",
        md=report("results/{run}/r2m/comparison.md", category="R2M", labels={"what": "table and verdict"}),
        figure=report("results/{run}/r2m/comparison.png", category="R2M", labels={"what": "figure"}),
    params:
        arms=R2M_ARMS,
        baseline=R2M["baseline"],
        methods=R2M["methods"],
        bootstrap=R2M["bootstrap"],
        seed=config["seed"],
    log:
        "logs/{run}/r2m/compare.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/r2m_compare.py"


if R2M_ARMS:
    ALL_TARGETS += expand(rules.r2m_compare.output.md, run=RUN)
