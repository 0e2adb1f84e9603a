# Crosscoder stage: per selected layer, one dictionary over the base and RLHF activations of identical
# tokens (weights, metrics.json, diff.parquet), the same on (base, base) as the null, and per reward the
# dn histograms of both and one summary table; then what RLHF added: the RLHF-only and RLHF-leaning
# latents explained like SAE features (autointerp), every latent's utilities compared by dn group with
# CIs (scoring) and one page of cards. Built by the default target only when crosscoder.enabled.


rule crosscoder:
    """(base, rlhf) crosscoder of one layer: weights + cfg.json, metrics.json (EV per model, L0, dead, spliced CE/KL), diff.parquet."""
    input:
        stores=expand(rules.activations.output.store, role=ROLES, allow_missing=True),
        models=[model_dir(), rules.rl.output.policy],
    output:
        folder=directory("results/{run}/crosscoder/{reward}/layer{layer}"),
    params:
        crosscoder=crosscoder_train_settings(),
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
        crosscoder=crosscoder_train_settings(),
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


rule crosscoder_autointerp:
    """RLHF-only and RLHF-leaning latents of one layer (and shared and random ones as baselines): examples, explanation, simulation score."""
    input:
        folder=rules.crosscoder.output.folder,
        stores=expand(rules.activations.output.store, role=ROLES, allow_missing=True),
        llm=autointerp_llm_inputs,
    output:
        table="results/{run}/crosscoder/{reward}/autointerp/layer{layer}.parquet",
    params:
        autointerp=result_settings("autointerp"),
        explain_latents=config["crosscoder"]["explain_latents"],
        seed=config["seed"],
    log:
        "logs/{run}/crosscoder/{reward}/autointerp/layer{layer}.log",
    threads: threads_for("autointerp")
    resources:
        **resources_for("autointerp"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/crosscoder_autointerp.py"


rule crosscoder_scoring:
    """Token, unembedding and explanation utility of every crosscoder latent of one reward; RLHF-only vs shared vs random with CIs."""
    input:
        unpack(crosscoder_layer_inputs),
        stores=expand(rules.activations.output.store, role=ROLES, allow_missing=True),
        rlhf=rules.rl.output.policy,
        planted=lambda wildcards: planted_tables(wildcards.reward),
    output:
        table="results/{run}/crosscoder/{reward}/scores.parquet",
        stats="results/{run}/crosscoder/{reward}/utility.json",
        md=report("results/{run}/crosscoder/{reward}/utility.md", category="crosscoders", subcategory="{reward}",
                  labels={"reward": "{reward}", "what": "utility of RLHF-only latents"}),
    params:
        scoring=config["scoring"],
        table=lambda wildcards: table_file(config, wildcards.reward),
        seed=config["seed"],
    log:
        "logs/{run}/crosscoder/{reward}/scoring.log",
    threads: threads_for("scoring")
    resources:
        **resources_for("scoring"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/crosscoder_scoring.py"


rule crosscoder_cards:
    """One page per reward: the utility comparison with CIs, the dn histograms with the null, a card per explained RLHF latent."""
    input:
        unpack(crosscoder_layer_inputs),
        scores=rules.crosscoder_scoring.output.table,
        stats=rules.crosscoder_scoring.output.stats,
        histogram=rules.crosscoder_summary.output.plot,
        summary=rules.crosscoder_summary.output.table,
    output:
        cards=report("results/{run}/crosscoder/{reward}/cards.html", category="crosscoders", subcategory="{reward}",
                     labels={"reward": "{reward}", "what": "crosscoder cards"}),
    log:
        "logs/{run}/crosscoder/{reward}/cards.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/crosscoder_cards.py"


if config["crosscoder"]["enabled"]:
    ALL_TARGETS += expand(rules.crosscoder_summary.output.table, run=RUN, reward=INTERPRETED)
    ALL_TARGETS += expand(rules.crosscoder_cards.output.cards, run=RUN, reward=INTERPRETED)
