# Stage 0: a model folder every later stage loads, and the prompt splits.


rule prepare_model:
    """Turn model.spec (hub id, folder, GGUF, package GGUF) into a plain HF folder."""
    output:
        model=directory("resources/models/{model}"),
    params:
        model=lambda wildcards: config["model"],
    log:
        "logs/prepare_model/{model}.log",
    threads: threads_for("prepare_model")
    resources:
        **resources_for("prepare_model"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/prepare_model.py"


rule prompts:
    """Read the prompt texts and split them deterministically into train and eval."""
    output:
        train="results/{run}/prompts/train.parquet",
        eval="results/{run}/prompts/eval.parquet",
    params:
        prompts=config["prompts"],
        seed=config["seed"],
    log:
        "logs/{run}/prompts.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/prompts.py"


ALL_TARGETS += [model_dir(), *expand(rules.prompts.output, run=RUN)]
