# Interpretation stage: layer divergence -> activation stores -> paired SAEs -> dictionary matching.
# The selected layers are known only once divergence has run, so divergence is a checkpoint and the
# per-reward summary gathers its inputs through an input function; asking for one SAE folder by its
# path builds just divergence, that role's activation store and that SAE.


checkpoint divergence:
    """Per-block parameter divergence of base vs RLHF policy; the top-n blocks and a bar plot."""
    input:
        base=model_dir(),
        rlhf=rules.rl.output.policy,
    output:
        table="results/{run}/divergence/{reward}.parquet",
        layers="results/{run}/divergence/{reward}_layers.json",
        plot=report("results/{run}/divergence/{reward}.png", category="divergence"),
    params:
        top_n=config["divergence"]["top_n"],
    log:
        "logs/{run}/divergence/{reward}.log",
    threads: threads_for("divergence")
    resources:
        **resources_for("divergence"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/divergence.py"


rule activations:
    """Activations of the selected blocks at the configured site; base and rlhf read identical tokens."""
    input:
        model=role_model,
        tokenizer=model_dir(),
        corpus=corpus_file,
        layers=rules.divergence.output.layers,
    output:
        store=directory("results/{run}/activations/{reward}/{role}"),
    params:
        activations=result_settings("activations"),
        seed=config["seed"],  # orders the corpus's prompts (base and policy text balanced under the budget)
    log:
        "logs/{run}/activations/{reward}/{role}.log",
    threads: threads_for("activations")
    resources:
        **resources_for("activations"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/activations.py"


rule sae:
    """Every SAE of one layer of one role (kind_multiple x[_seedN]), one folder each: cfg.json, weights, metrics.json.

    One job per (role, layer): the store is read and the model loaded once, and the spliced CE/KL
    shares its clean and ablated forwards. Asking for one SAE folder by path runs this job. The
    outputs are named by SAE (sae_dir() in common.smk picks one).
    """
    input:
        store=rules.activations.output.store,
        model=role_model,
    output:
        **{
            name: directory(f"results/{{run}}/sae/{{reward}}/{{role}}/layer{{layer}}/{name}")
            for name in sae_names()
        },
    params:
        names=sae_names(),
        sae=config["sae"],
        seed=config["seed"],
    log:
        "logs/{run}/sae/{reward}/{role}/layer{layer}.log",
    threads: threads_for("sae")
    resources:
        **resources_for("sae"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/sae.py"


rule features:
    """Small vs large dictionary of one (role, layer): MMCS both ways, Hungarian, seed baseline, correlations."""
    input:
        saes=rules.sae.output,
        store=rules.activations.output.store,
    output:
        table="results/{run}/features/{reward}/{role}/layer{layer}.parquet",
        summary="results/{run}/features/{reward}/{role}/layer{layer}.json",
        plot=report("results/{run}/features/{reward}/{role}/layer{layer}.png", category="features"),
    params:
        names=sae_names(),
        features=config["features"],
        # the keys of sae: that matching reads; the others change the SAEs, its inputs
        sae={key: config["sae"][key] for key in ("kinds", "sizes", "baseline_seeds", "eval_fraction")},
        seed=config["seed"],
    log:
        "logs/{run}/features/{reward}/{role}/layer{layer}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/features.py"


rule features_summary:
    """Every (role, layer, kind) of one reward in one table, with baselines and CIs."""
    input:
        unpack(feature_summaries),
    output:
        table="results/{run}/features/{reward}/summary.parquet",
    log:
        "logs/{run}/features/{reward}/summary.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/features_summary.py"


ALL_TARGETS += expand(rules.features_summary.output.table, run=RUN, reward=INTERPRETED)
