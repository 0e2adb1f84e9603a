# Model diffing against the known overseer: one job per (interpreted reward, method). Each writes the method's
# recovered utility table and its readout against the reward's truth (rlhf_lens.diffing.stage). Only methods
# available in this checkout are planned (a registered name whose module is not written yet is skipped).

from rlhf_lens.diffing.registry import available as _diffing_available, needs as _diffing_needs

DIFFING_METHODS = [m for m in config["diffing"]["methods"] if _diffing_available(m)]
_skipped = [m for m in config["diffing"]["methods"] if m not in DIFFING_METHODS]
if _skipped:
    print(f"rlhf-lens: diffing method(s) {', '.join(_skipped)} registered but not in this checkout: skipped",
          file=sys.stderr)


def diffing_corpus(wildcards):
    """The context corpus: rule rl_eval's sample table (source rl_eval) or the configured file."""
    source = config["diffing"]["corpus"]["source"]
    return rules.rl_eval.output.table.format(run=wildcards.run, reward=wildcards.reward) if source == "rl_eval" else source


def diffing_inputs(wildcards):
    """What the method reads from earlier stages (registry.needs): layers, stores, base SAEs, crosscoders."""
    need = _diffing_needs(wildcards.method)
    w = dict(run=wildcards.run, reward=wildcards.reward)
    inputs = {}
    if need & {"layers", "stores", "saes", "crosscoders"}:
        inputs["layers"] = rules.divergence.output.layers.format(**w)
    if "stores" in need:
        inputs.update({f"store_{role}": rules.activations.output.store.format(role=role, **w) for role in ROLES})
    if "saes" in need:
        inputs.update({f"sae_{layer}": sae_dir(small_dictionary(), role="base", layer=layer, **w)
                       for layer in selected_layers(wildcards)})
    if "crosscoders" in need:
        inputs.update({f"crosscoder_{layer}": rules.crosscoder.output.folder.format(layer=layer, **w)
                       for layer in selected_layers(wildcards)})
    return inputs


rule diffing:
    """One diffing method on base vs one reward's policy: words.parquet, readout.json, extra.json (latents.parquet)."""
    input:
        unpack(diffing_inputs),
        base=model_dir(),
        policy=rules.rl.output.policy,
        corpus=diffing_corpus,
        learned=lambda wildcards: learned_reward_inputs(wildcards.reward),
    output:
        folder=directory("results/{run}/diffing/{reward}/{method}"),
    params:
        corpus=result_settings("diffing.corpus", config["diffing"]["corpus"]),
        readout=config["diffing"]["readout"],
        method=lambda wildcards: config["diffing"].get(wildcards.method) or {},
        reward=lambda wildcards: config["rewards"][wildcards.reward],  # the truth and the steering overseer
        seed=config["seed"],
    log:
        "logs/{run}/diffing/{reward}/{method}.log",
    threads: threads_for("diffing")
    resources:
        **resources_for("diffing"),
    conda:
        "../envs/rlhf_lens.yaml"
    script:
        "../workflow_scripts/diffing.py"


ALL_TARGETS += expand(rules.diffing.output.folder, run=RUN, reward=INTERPRETED, method=DIFFING_METHODS)
