# Autointerp stage: explain and score the selected features of each (role, layer) with an LLM.
# The LLM's answers are cached on disk (autointerp.cache_dir), so forcing a rerun of a job
# (snakemake --forcerun autointerp) repeats only the calls that failed.


def small_dictionary():
    """Folder name of the explained dictionary: the small size of autointerp.kind (default: the first kind)."""
    kind = config["autointerp"]["kind"] or config["sae"]["kinds"][0]
    return f"{kind}_{min(config['sae']['sizes'])}x"


def autointerp_llm_inputs(wildcards):
    """A local explainer that is the base model needs it prepared first; an endpoint needs nothing."""
    ai = config["autointerp"]
    return [model_dir()] if ai["backend"] == "local" and not ai["model"] else []


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


def autointerp_tables(wildcards):
    return [
        f"results/{wildcards.run}/autointerp/{wildcards.reward}/{role}/layer{layer}.parquet"
        for role in ROLES
        for layer in selected_layers(wildcards)
    ]
