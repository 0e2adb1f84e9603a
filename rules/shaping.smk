# Dense reward shaping study (rl.shaping.enabled; off by default, so the default run is unchanged):
# a Bayesian search of the shaping weights, one job per trial (the random initial trials in parallel,
# each later one after all before it), then PPO runs of every scheme at every seed at equal steps, and
# their comparison (table, figure, sentences). Everything lands under results/{run}/shaping/{reward}/.
# Helper logic lives in rlhf_lens.shaping_study (plain functions; this file defines no functions).

from rlhf_lens.shaping_study.config import StudyConfig
from rlhf_lens.shaping_study.search import WeightSearch

SHAPING_STUDY = StudyConfig.from_section(config["rl"]["shaping"]["study"])
SHAPED_REWARD = SHAPING_STUDY.reward or REWARDS[0]
SHAPING_GOLD = SHAPING_STUDY.gold or GOLD
SHAPING_SEARCH = WeightSearch(SHAPING_STUDY.bo_components, Path("."), SHAPING_STUDY.bo_trials,
                              SHAPING_STUDY.bo_initial, SHAPING_STUDY.bo_seed)


rule shaping_trial:
    """One trial of the weight search: propose weights from the earlier trials (Optuna GPSampler, log EI),
    a short PPO run on the shaped reward, held-out gold as the objective."""
    input:
        model=model_dir(),
        train=rules.prompts.output.train,
        eval=rules.prompts.output.eval,
        learned=lambda wildcards: learned_reward_inputs(wildcards.reward, *([SHAPING_GOLD] if SHAPING_GOLD else [])),
        previous=lambda wildcards: [f"results/{wildcards.run}/shaping/{wildcards.reward}/search/trial_{k}.json"
                                    for k in SHAPING_SEARCH.needs(int(wildcards.trial))],
    output:
        "results/{run}/shaping/{reward}/search/trial_{trial}.json",
    params:
        reward=lambda wildcards: reward_spec(wildcards.reward),
        gold=reward_spec(SHAPING_GOLD or None),
        ppo=lambda wildcards: ppo_params(wildcards.reward),
        shaping=shaping_params(),
        study=config["rl"]["shaping"]["study"],
        checkpoints=lambda wildcards: f"results/{wildcards.run}/shaping/{wildcards.reward}/search/checkpoints_{wildcards.trial}",
    wildcard_constraints:
        trial="[0-9]+",
    log:
        "logs/{run}/shaping/{reward}/trial_{trial}.log",
    threads: threads_for("shaping_trial")
    resources:
        **resources_for("shaping_trial"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/shaping_trial.py"


rule shaping_search:
    """The search's trials in one table (weights, objective) and the best weights."""
    input:
        trials=lambda wildcards: [f"results/{wildcards.run}/shaping/{wildcards.reward}/search/trial_{k}.json"
                                  for k in range(SHAPING_STUDY.bo_trials)],
    output:
        trials="results/{run}/shaping/{reward}/bo_trials.parquet",
        best="results/{run}/shaping/{reward}/bo_best.json",
    log:
        "logs/{run}/shaping/{reward}/search.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/shaping_search.py"


rule shaping_run:
    """PPO on the shaped reward of one scheme (a component alone, or the search's best weights) at one seed;
    per-step metrics (gold, KL, attribution cost) and the final policy's held-out responses."""
    input:
        model=model_dir(),
        train=rules.prompts.output.train,
        eval=rules.prompts.output.eval,
        learned=lambda wildcards: learned_reward_inputs(wildcards.reward, *([SHAPING_GOLD] if SHAPING_GOLD else [])),
        best=lambda wildcards: [rules.shaping_search.output.best.format(**wildcards)] if wildcards.scheme == "bo_best" else [],
    output:
        metrics="results/{run}/shaping/{reward}/runs/{scheme}/seed{seed}/metrics.parquet",
        heldout="results/{run}/shaping/{reward}/runs/{scheme}/seed{seed}/heldout.parquet",
    params:
        reward=lambda wildcards: reward_spec(wildcards.reward),
        gold=reward_spec(SHAPING_GOLD or None),
        ppo=lambda wildcards: ppo_params(wildcards.reward),
        shaping=shaping_params(),
        study=config["rl"]["shaping"]["study"],
        checkpoints=lambda wildcards: f"results/{wildcards.run}/shaping/{wildcards.reward}/runs/{wildcards.scheme}/seed{wildcards.seed}/checkpoints",
    wildcard_constraints:
        scheme="last_token|uniform|shap|lime|ig|bo_best",
        seed="[0-9]+",
    log:
        "logs/{run}/shaping/{reward}/{scheme}_seed{seed}.log",
    threads: threads_for("shaping_run")
    resources:
        **resources_for("shaping_run"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/shaping_run.py"


rule shaping_compare:
    """The schemes at equal steps: table (held-out gold with CIs, vs sparse, steps to threshold, KL, cost),
    gold-per-step figure (mean and CI over seeds), and the summary sentences with the search's trials."""
    input:
        metrics=expand("results/{{run}}/shaping/{{reward}}/runs/{scheme}/seed{seed}/metrics.parquet",
                       scheme=SHAPING_STUDY.schemes, seed=SHAPING_STUDY.seeds),
        heldout=expand("results/{{run}}/shaping/{{reward}}/runs/{scheme}/seed{seed}/heldout.parquet",
                       scheme=SHAPING_STUDY.schemes, seed=SHAPING_STUDY.seeds),
        trials=lambda wildcards: [rules.shaping_search.output.trials.format(**wildcards)]
        if "bo_best" in SHAPING_STUDY.schemes else [],
    output:
        table="results/{run}/shaping/{reward}/comparison.parquet",
        curves="results/{run}/shaping/{reward}/curves.parquet",
        markdown="results/{run}/shaping/{reward}/comparison.md",
        figure=report("results/{run}/shaping/{reward}/comparison.png", category="Shaping",
                      labels={"reward": "{reward}", "what": "gold reward per step by shaping scheme"}),
    params:
        study=config["rl"]["shaping"]["study"],
        schemes=list(SHAPING_STUDY.schemes),
        seeds=list(SHAPING_STUDY.seeds),
    log:
        "logs/{run}/shaping/{reward}/compare.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/shaping_compare.py"


if config["rl"]["shaping"]["enabled"]:
    ALL_TARGETS += expand(rules.shaping_compare.output, run=RUN, reward=SHAPED_REWARD)
