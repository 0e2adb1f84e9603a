# Autointerp stage: explain and score the selected features of each (role, layer) with an LLM.
# The LLM's answers are cached on disk (autointerp.cache_dir), so forcing a rerun of a job
# (snakemake --forcerun autointerp) repeats only the calls that failed.


rule autointerp:
    """Top-k matched features (and a few random ones) of one (role, layer): examples, explanation, simulation score."""
    input:
        store="results/{run}/activations/{reward}/{role}",
        sae=lambda wildcards: f"results/{wildcards.run}/sae/{wildcards.reward}/{wildcards.role}/layer{wildcards.layer}/{small_dictionary()}",
        matches="results/{run}/features/{reward}/{role}/layer{layer}.parquet",
        llm=autointerp_llm_inputs,
    output:
        "results/{run}/autointerp/{reward}/{role}/layer{layer}.parquet",
    params:
        autointerp=config["autointerp"],
        dictionary=small_dictionary(),
        seed=config["seed"],
        device=config["device"],
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
        stores=expand("results/{{run}}/activations/{{reward}}/{role}", role=ROLES),
        saes=lambda wildcards: [
            f"results/{wildcards.run}/sae/{wildcards.reward}/{role}/layer{layer}/{small_dictionary()}"
            for role in ROLES
            for layer in selected_layers(wildcards)
        ],
        base=model_dir(),
        rlhf=lambda wildcards: policy_dir(wildcards.run, wildcards.reward),
    output:
        table="results/{run}/scores/{reward}.parquet",
        csv=report("results/{run}/scores/{reward}_table3.csv", category="Table 3", subcategory="{reward}",
                   labels={"reward": "{reward}", "what": "Table 3 analogue"}),
        md="results/{run}/scores/{reward}_table3.md",
        stats="results/{run}/scores/{reward}_stats.json",
    params:
        scoring=config["scoring"],
        table=lambda wildcards: config["rewards"][wildcards.reward].get("table", "vader"),
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
