# Preference pairs for learned reward models: responses to the train prompts sampled from the base model
# (and policies) and labelled by the overseer (preferences.overseer) with Bradley-Terry noise, or read
# from a file (preferences.source); split by prompt into train and held-out pairs.


rule preferences:
    """Pairs of responses to one prompt with the overseer's label: train.parquet and heldout.parquet."""
    input:
        unpack(preference_inputs),
    output:
        train="results/{run}/preferences/{overseer}/train.parquet",
        heldout="results/{run}/preferences/{overseer}/heldout.parquet",
    wildcard_constraints:
        overseer=re.escape(PREFERENCE_SET),
    params:
        # all of preferences: its batch_size changes the samples (torch's RNG draws per batch of responses)
        preferences=config["preferences"],
        overseer=lambda wildcards: reward_spec(PREFERENCES.overseer or None),
        # the query cut and response length come from the PPO settings, as in rule rl
        ppo=ppo_params(),
        seed=config["seed"],
    log:
        "logs/{run}/preferences/{overseer}.log",
    threads: threads_for("preferences")
    resources:
        **resources_for("preferences"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/preferences.py"


if preferences_enabled(config):
    ALL_TARGETS += expand(rules.preferences.output, run=RUN, overseer=PREFERENCE_SET)
