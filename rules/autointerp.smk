# Autointerp stage: explain and score the selected features of each (role, layer) with an LLM.
# The LLM's answers are cached on disk (autointerp.cache_dir), so forcing a rerun of a job
# (snakemake --forcerun autointerp) repeats only the calls that failed.


rule autointerp:
    """Top-k matched features (and a few random ones) of one (role, layer): examples, explanation, simulation score."""
    input:
        store=rules.activations.output.store,
        sae=sae_dir(small_dictionary()),
        matches=rules.features.output.table,
        llm=autointerp_llm_inputs,
    output:
        table="results/{run}/autointerp/{reward}/{role}/layer{layer}.parquet",
    params:
        autointerp=result_settings("autointerp"),
        dictionary=small_dictionary(),
        seed=config["seed"],
    log:
        "logs/{run}/autointerp/{reward}/{role}/layer{layer}.log",
    threads: threads_for("autointerp")
    resources:
        **resources_for("autointerp"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/autointerp.py"


rule scoring:
    """Table 3 analogue (utility of explanations) and LLM-free utilities, base vs RLHF, for one reward."""
    input:
        autointerp=autointerp_tables,
        stores=expand(rules.activations.output.store, role=ROLES, allow_missing=True),
        saes=explained_saes,
        base=model_dir(),
        rlhf=rules.rl.output.policy,
        planted=lambda wildcards: planted_tables(wildcards.reward),
    output:
        table="results/{run}/scores/{reward}.parquet",
        csv=report("results/{run}/scores/{reward}_table3.csv", category="Table 3", subcategory="{reward}",
                   labels={"reward": "{reward}", "what": "Table 3 analogue"}),
        md="results/{run}/scores/{reward}_table3.md",
        stats="results/{run}/scores/{reward}_stats.json",
    params:
        scoring=config["scoring"],
        table=lambda wildcards: table_file(config, wildcards.reward),
        seed=config["seed"],
    log:
        "logs/{run}/scoring/{reward}.log",
    threads: threads_for("scoring")
    resources:
        **resources_for("scoring"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/scoring.py"
