# Crosscoder stage: per selected layer, one dictionary over the base and RLHF activations of identical
# tokens (weights, metrics.json, diff.parquet), the same on (base, base) as the null, and per reward the
# dn histograms of both and one summary table. Built by the default target only when crosscoder.enabled.


rule crosscoder:
    """(base, rlhf) crosscoder of one layer: weights + cfg.json, metrics.json (EV per model, L0, dead, spliced CE/KL), diff.parquet."""
    input:
        stores=expand(rules.activations.output.store, role=ROLES, allow_missing=True),
        models=[model_dir(), rules.rl.output.policy],
    output:
        folder=directory("results/{run}/crosscoder/{reward}/layer{layer}"),
    params:
        crosscoder={k: v for k, v in config["crosscoder"].items() if k != "enabled"},  # the switch changes no result
        names=ROLES,
        seed=config["seed"],
    log:
        "logs/{run}/crosscoder/{reward}/layer{layer}.log",
    threads: threads_for("crosscoder")
    resources:
        **resources_for("crosscoder"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/crosscoder.py"


rule crosscoder_null:
    """(base, base) crosscoder of one layer, the null: the same files; it must find no model-specific latents."""
    input:
        stores=[rules.activations.output.store.replace("{role}", "base")] * 2,
        models=[model_dir(), model_dir()],
    output:
        folder=directory("results/{run}/crosscoder/{reward}/layer{layer}_null"),
    params:
        crosscoder={k: v for k, v in config["crosscoder"].items() if k != "enabled"},  # the switch changes no result
        names=["base", "base_copy"],
        seed=config["seed"],
    log:
        "logs/{run}/crosscoder/{reward}/layer{layer}_null.log",
    threads: threads_for("crosscoder")
    resources:
        **resources_for("crosscoder"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/crosscoder.py"


rule crosscoder_summary:
    """Every selected layer of one reward: counts per dn bin of the crosscoder and its null, and the dn histograms."""
    input:
        unpack(crosscoder_folders),
    output:
        table="results/{run}/crosscoder/{reward}/summary.parquet",
        plot=report("results/{run}/crosscoder/{reward}/dn_histogram.png", category="crosscoders",
                    subcategory="{reward}"),
    log:
        "logs/{run}/crosscoder/{reward}/summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/crosscoder_summary.py"


if config["crosscoder"]["enabled"]:
    ALL_TARGETS += expand(rules.crosscoder_summary.output.table, run=RUN, reward=INTERPRETED)
