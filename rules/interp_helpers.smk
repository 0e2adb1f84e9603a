# Helpers of the interpretation and autointerp stages (rules/interp.smk, rules/autointerp.smk): paths by
# role, the layers divergence chose, the explained dictionary.

import json
from types import SimpleNamespace

ROLES = ["base", "rlhf"]


def policy_dir(run, reward):
    """The RLHF policy of a reward: an HF folder written by the RL stage (rule rl)."""
    return f"results/{run}/rl/{reward}/policy"


def role_model(wildcards):
    return model_dir() if wildcards.role == "base" else policy_dir(wildcards.run, wildcards.reward)


def corpus_file(wildcards):
    corpus = config["activations"]["corpus"]
    return f"results/{wildcards.run}/rl/{wildcards.reward}/eval.parquet" if corpus == "rl_eval" else corpus


def selected_layers(wildcards):
    """Blocks chosen by divergence for (run, reward); waits for the checkpoint."""
    layers_json = checkpoints.divergence.get(run=wildcards.run, reward=wildcards.reward).output.layers
    with open(layers_json) as fh:
        return json.load(fh)["layers"]


def sae_names():
    """Every SAE of one (role, layer): each kind at each size, plus seed replicas of the small size."""
    kinds, sizes, seeds = config["sae"]["kinds"], config["sae"]["sizes"], config["sae"]["baseline_seeds"]
    names = [f"{k}_{s}x" for k in kinds for s in sizes]
    return names + [f"{k}_{min(sizes)}x_seed{b}" for k in kinds for b in seeds]


def feature_summaries(wildcards):
    return {
        f"{role}_{layer}": f"results/{wildcards.run}/features/{wildcards.reward}/{role}/layer{layer}.json"
        for role in ROLES
        for layer in selected_layers(wildcards)
    }


def small_dictionary():
    """Folder name of the explained dictionary: the small size of autointerp.kind (default: the first kind)."""
    kind = config["autointerp"]["kind"] or config["sae"]["kinds"][0]
    return f"{kind}_{min(config['sae']['sizes'])}x"


def autointerp_llm_inputs(wildcards):
    """A local explainer that is the base model needs it prepared first; an endpoint needs nothing."""
    ai = config["autointerp"]
    return [model_dir()] if ai["backend"] == "local" and not ai["model"] else []


def autointerp_tables(wildcards):
    return [
        f"results/{wildcards.run}/autointerp/{wildcards.reward}/{role}/layer{layer}.parquet"
        for role in ROLES
        for layer in selected_layers(wildcards)
    ]


def sae_folders(wildcards):
    """Every SAE folder of a reward: roles x selected layers x names."""
    return [
        f"results/{wildcards.run}/sae/{wildcards.reward}/{role}/layer{layer}/{name}"
        for role in ROLES
        for layer in selected_layers(wildcards)
        for name in sae_names()
    ]


def summary_inputs(wildcards):
    """Per reward, every file the run summary reads; keys are {reward}_{what}."""
    inputs = {}
    for reward in REWARDS:
        w = SimpleNamespace(run=wildcards.run, reward=reward)
        inputs.update({
            f"{reward}_rl_eval": f"results/{w.run}/rl/{reward}/eval_summary.json",
            f"{reward}_rl_metrics": f"results/{w.run}/rl/{reward}/metrics.parquet",
            f"{reward}_layers": f"results/{w.run}/divergence/{reward}_layers.json",
            f"{reward}_features": f"results/{w.run}/features/{reward}/summary.parquet",
            f"{reward}_stats": f"results/{w.run}/scores/{reward}_stats.json",
            f"{reward}_sae": sae_folders(w),
            f"{reward}_autointerp": autointerp_tables(w),
        })
    return inputs
