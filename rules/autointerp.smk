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
