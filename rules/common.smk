# Shared by all rules: config validation (before any job), names from the validated config, which
# settings are rule params, resource declarations, and every helper the rules call. Rules live in the
# other files, wildcard constraints in the Snakefile.
#
# Each artifact's path is written once, in the output of the rule that makes it; everything else refers
# to it as rules.<rule>.output.<name> (a pattern with the rule's wildcards) and fills its wildcards with
# .format(). The helpers below run only once the DAG is built, after every rule file is included, so
# they may name rules defined later; a rule's own input list may name only rules included before it.

import json
import re
import sys
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

try:
    from rlhf_lens.config import (ConfigError, _built_paths, interpreted_rewards, plain_rm_config,
                                  preferences_config, preferences_enabled, r2m_arms, reward_params, rl_settings,
                                  rule_resources, trained_rewards, validate_config)
    from rlhf_lens.diffing.registry import available as _diffing_available, needs as _diffing_needs
    from rlhf_lens.rewards.planted_tables import is_planted, samples_base_words, table_file, table_path
    from rlhf_lens.rl.algorithm import algorithm_settings
except ImportError as _err:  # the package is installed (editable) by `make setup` and by envs/rlhf_lens.yaml
    print(f"rlhf-lens: cannot import the rlhf_lens package with {sys.executable} ({_err}); "
          "run `make setup`, or `pip install -e .` in this checkout", file=sys.stderr)
    sys.exit(1)


def _config_source():
    files = [str(f) for f in workflow.configfiles] or ["(no config file)"]
    extra = " + --config overrides" if workflow.config_settings.overwrite_config else ""
    return ", ".join(files) + extra


try:
    _validated = validate_config(
        config,
        source=_config_source(),
        schema_path=Path(workflow.basedir) / "schemas" / "config.schema.yaml",
    )
except ConfigError as _err:
    # One readable message and a non-zero exit, instead of a traceback through the Snakefile.
    print(f"rlhf-lens: {_err}", file=sys.stderr)
    sys.exit(1)
config.clear()
config.update(_validated)

RUN = config["run"]
MODEL = config["model"]["name"]
REWARDS = list(config["rewards"])
# The rewards whose policies `rule all` trains and evaluates (train_rewards; every reward by default).
TRAINED = trained_rewards(config)
# The rewards whose policies `rule all` interprets (interpret_rewards; every trained reward by default).
INTERPRETED = interpreted_rewards(config)
SPLITS = ["train", "eval"]
ROLES = ["base", "rlhf"]
EVAL_SETTINGS = rl_settings(config)[1]
GOLD = config["rl"]["gold"]
# The preference set: results/{run}/preferences/{overseer}/ (the overseer's name, or "external").
PREFERENCES = preferences_config(config)
PREFERENCE_SET = PREFERENCES.set_name()

# Each stage's rules file appends the artifacts `rule all` builds by default.
ALL_TARGETS = []


# --------------------------------------------------------------------------- params

# Settings that change how a job runs but not what it writes. Snakemake reruns a finished job when
# one of its params changes, so these are left out of every rule's params, and the workflow scripts
# read them from snakemake.config; so are `device` (where model code runs), `resources` (what a job
# asks the executor for) and the schema's other run-time keys listed here. Every other key of a
# section a rule reads is one of its params. The workflow test changes each key listed here and
# checks that a dry run has nothing to do.
NOT_RESULT_KEYS = {
    # texts per forward pass (right padding under an attention mask: the stored values agree to
    # float rounding) and rows per parquet shard (the same rows, in the same order, cut elsewhere)
    "activations": ("batch_size", "shard_tokens"),
    # how the LLM is reached: per-request timeout, retries, where answers are cached, the key's variable
    "autointerp": ("timeout_s", "max_retries", "cache_dir", "api_key_env"),
    # resumable checkpoints: how often they are written and whether they are kept after success
    "rl.ppo": ("checkpoint_every", "keep_checkpoints"),
    # texts per forward pass of SARM's truncated LM (right padding under an attention mask)
    "sarm": ("forward_batch_size",),
    # the plain reward model: how often it checkpoints, texts per scoring forward pass
    "plain_rm": ("checkpoint_every", "score_batch_size"),
    # texts per forward pass of the diffing methods (right padding under an attention mask)
    "diffing.corpus": ("batch_size",),
}


def reward_spec(name):
    """The param of reward ``name`` (None: no reward): its entry less the keys that change nothing it scores."""
    return reward_params(config, name)


def result_settings(section, settings=None):
    """The keys of config section ``section`` (or of ``settings``) that change a result: all but NOT_RESULT_KEYS."""
    settings = config[section] if settings is None else settings
    return {k: v for k, v in settings.items() if k not in NOT_RESULT_KEYS.get(section, ())}


def ppo_params(reward=None):
    """The PPO settings (preset, rl.ppo and rl.per_reward.<reward> on top) that change a policy or its evaluation."""
    # only the settings the run's algorithm reads: e.g. rl.ppo.group_size does not rerun a PPO policy
    return result_settings("rl.ppo", algorithm_settings(rl_settings(config, reward)[0]))


def shaping_params():
    """rl.shaping's settings that change a policy when shaping is on (the study's own keys aside); None when off."""
    shaping = config["rl"]["shaping"]
    # cache_size only decides what is explained again (the same values either way)
    return {k: v for k, v in shaping.items() if k not in ("enabled", "study", "cache_size")} if shaping["enabled"] else None


def sarm_train_params():
    """The sarm: keys that change the trained SARM (not its read-off, sarm.analysis)."""
    return {k: v for k, v in result_settings("sarm").items() if k != "analysis"}


# --------------------------------------------------------------------------- resources


def threads_for(rule_name):
    return rule_resources(config, rule_name).threads


def resources_for(rule_name):
    """Declared resources: gpu from config (0 on CPU), mem_mb and runtime scaled by attempt.

    Executors read these: the SLURM plugin turns gpu=N into --gpus, mem_mb into --mem and
    runtime (minutes) into --time; retries (attempt > 1) ask for more memory and time.
    """
    res = rule_resources(config, rule_name)
    return {
        "gpu": res.gpu,
        "mem_mb": lambda wildcards, attempt: res.mem_mb * attempt,
        "runtime": lambda wildcards, attempt: res.runtime * attempt,
    }


def check_rule_overrides(rule_names):
    """Fail before any job if resources.per_rule names a rule the workflow does not have."""
    unknown = sorted(set(config["resources"]["per_rule"]) - set(rule_names))
    if unknown:
        print(
            f"rlhf-lens: invalid configuration in {_config_source()}:\n"
            + "\n".join(
                f"  - key 'resources.per_rule.{name}' names no rule: expected one of "
                + ", ".join(sorted(rule_names))
                for name in unknown
            ),
            file=sys.stderr,
        )
        sys.exit(1)


# --------------------------------------------------------------------------- names from the config


def sae_names():
    """Every SAE of one (role, layer): each kind at each size, plus seed replicas of the small size."""
    kinds, sizes, seeds = config["sae"]["kinds"], config["sae"]["sizes"], config["sae"]["baseline_seeds"]
    names = [f"{k}_{s}x" for k in kinds for s in sizes]
    return names + [f"{k}_{min(sizes)}x_seed{b}" for k in kinds for b in seeds]


def small_dictionary():
    """Folder name of the explained dictionary: the small size of autointerp.kind (default: the first kind)."""
    kind = config["autointerp"]["kind"] or config["sae"]["kinds"][0]
    return f"{kind}_{min(config['sae']['sizes'])}x"


# --------------------------------------------------------------------------- paths of artifacts


def model_dir(name=MODEL):
    """Folder of a prepared model (rule prepare_model)."""
    return rules.prepare_model.output.model.format(model=name)


def role_model(wildcards):
    """The model of a role: the prepared base model, or the reward's RLHF policy (rule rl)."""
    return model_dir() if wildcards.role == "base" else rules.rl.output.policy.format(**wildcards)


def corpus_file(wildcards):
    """The activation corpus: rule rl_eval's sample table (corpus rl_eval) or the configured file."""
    corpus = config["activations"]["corpus"]
    return rules.rl_eval.output.table.format(**wildcards) if corpus == "rl_eval" else corpus


def selected_layers(wildcards):
    """Blocks chosen by divergence for (run, reward); waits for the checkpoint."""
    layers_json = checkpoints.divergence.get(run=wildcards.run, reward=wildcards.reward).output.layers
    with open(layers_json) as fh:
        return json.load(fh)["layers"]


def sae_dir(name, **wildcards):
    """Folder of SAE ``name`` (rule sae names its outputs by SAE), e.g. relu_1x; a pattern without wildcards."""
    pattern = getattr(rules.sae.output, name)
    return pattern.format(**wildcards) if wildcards else pattern


def sae_folders(wildcards):
    """Every SAE folder of a reward: roles x selected layers x names."""
    return [
        sae_dir(name, run=wildcards.run, reward=wildcards.reward, role=role, layer=layer)
        for role in ROLES
        for layer in selected_layers(wildcards)
        for name in sae_names()
    ]


def explained_saes(wildcards):
    """The explained (small) dictionary of every role and selected layer of a reward."""
    return [
        sae_dir(small_dictionary(), run=wildcards.run, reward=wildcards.reward, role=role, layer=layer)
        for role in ROLES
        for layer in selected_layers(wildcards)
    ]


def feature_summaries(wildcards):
    """Rule features' summary of every (role, selected layer), keyed {role}_{layer}."""
    return {
        f"{role}_{layer}": rules.features.output.summary.format(run=wildcards.run, reward=wildcards.reward,
                                                                role=role, layer=layer)
        for role in ROLES
        for layer in selected_layers(wildcards)
    }


def autointerp_llm_inputs(wildcards):
    """A local explainer that is the base model needs it prepared first; an endpoint needs nothing."""
    ai = config["autointerp"]
    return [model_dir()] if ai["backend"] == "local" and not ai["model"] else []


def autointerp_tables(wildcards):
    """Rule autointerp's table of every (role, selected layer) of a reward."""
    return [
        rules.autointerp.output.table.format(run=wildcards.run, reward=wildcards.reward, role=role, layer=layer)
        for role in ROLES
        for layer in selected_layers(wildcards)
    ]


def summary_inputs(wildcards):
    """Per interpreted reward, every file the run summary reads; keys are {reward}_{what}."""
    inputs = {}
    for reward in INTERPRETED:
        w = SimpleNamespace(run=wildcards.run, reward=reward)
        inputs.update({
            f"{reward}_rl_eval": rules.rl_eval.output.summary.format(run=w.run, reward=reward),
            f"{reward}_rl_metrics": rules.rl.output.metrics.format(run=w.run, reward=reward),
            f"{reward}_layers": rules.divergence.output.layers.format(run=w.run, reward=reward),
            f"{reward}_features": rules.features_summary.output.table.format(run=w.run, reward=reward),
            f"{reward}_stats": rules.scoring.output.stats.format(run=w.run, reward=reward),
            f"{reward}_sae": sae_folders(w),
            f"{reward}_autointerp": autointerp_tables(w),
            **{f"{reward}_diffing_{m}": rules.diffing.output.folder.format(run=w.run, reward=reward, method=m)
               for m in DIFFING_METHODS},
        })
    return inputs


def reward_model_report_inputs(wildcards):
    """Files of the learned-reward-model page: each built RM's accuracy, SARM's comparison and read-off, the
    interpreted rewards' scoring tables, and eval summary + gold-vs-proxy figure of every trained policy
    (train_rewards) of a learned reward model. Keys: accuracy_{rm}, sarm_{what}, features_{reward},
    eval_{reward}, figure_{reward}."""
    run = wildcards.run
    inputs = {"accuracy_plain": rules.plain_rm.output.rm.format(run=run)}
    if config["sarm"]["enabled"]:
        inputs.update({
            "accuracy_sarm": rules.sarm.output.accuracy.format(run=run),
            "sarm_comparison": rules.rm_comparison.output.table.format(run=run),
            "sarm_attribution": rules.sarm_analysis.output.attribution.format(run=run),
            "sarm_shift": rules.sarm_analysis.output.shift.format(run=run),
            "sarm_recovery": rules.sarm_analysis.output.recovery.format(run=run),
            "sarm_autointerp": rules.sarm_autointerp.output.table.format(run=run),
        })
    for reward in INTERPRETED:
        inputs[f"features_{reward}"] = rules.scoring.output.table.format(run=run, reward=reward)
    if GOLD:
        for reward in TRAINED:
            if config["rewards"][reward]["type"] == "reward_model":
                inputs[f"eval_{reward}"] = rules.rl_eval.output.summary.format(run=run, reward=reward)
                inputs[f"figure_{reward}"] = rules.gold_vs_proxy.output.figure.format(run=run, reward=reward)
    return inputs


def preference_file(wildcards, split):
    """The run's preference pairs of ``split`` (train or heldout), written by the preferences rule; SARM learns
    from the same pairs as the plain reward model, so the two are compared like for like."""
    return preference_files(wildcards)[split]


def calibration_inputs(wildcards):
    """For each reward of calibration.rewards, the files the calibration reads; keys are {reward}_{what}."""
    inputs = {}
    for reward in config["calibration"]["rewards"]:
        inputs.update({
            f"{reward}_rl_eval": rules.rl_eval.output.summary.format(run=wildcards.run, reward=reward),
            f"{reward}_stats": rules.scoring.output.stats.format(run=wildcards.run, reward=reward),
            f"{reward}_features": rules.features_summary.output.table.format(run=wildcards.run, reward=reward),
        })
        if config["crosscoder"]["enabled"]:
            inputs[f"{reward}_crosscoder"] = rules.crosscoder_scoring.output.stats.format(run=wildcards.run,
                                                                                          reward=reward)
    return inputs


def calibration_recovery_inputs(wildcards):
    """For each reward of calibration.rewards, its eval summary and samples and every diffing method's folder;
    keys are {reward}_rl_eval, {reward}_rl_samples and {reward}_diffing_{method}."""
    inputs = {}
    for reward in config["calibration"]["rewards"]:
        inputs[f"{reward}_rl_eval"] = rules.rl_eval.output.summary.format(run=wildcards.run, reward=reward)
        inputs[f"{reward}_rl_samples"] = rules.rl_eval.output.table.format(run=wildcards.run, reward=reward)
        for method in DIFFING_METHODS:
            inputs[f"{reward}_diffing_{method}"] = rules.diffing.output.folder.format(run=wildcards.run, reward=reward,
                                                                                     method=method)
    return inputs


def learned_report_inputs(wildcards):
    """One reward's diffing folders, keyed by method."""
    return {m: rules.diffing.output.folder.format(run=wildcards.run, reward=wildcards.reward, method=m)
            for m in DIFFING_METHODS}


def crosscoder_train_settings():
    """The crosscoder: keys that change a trained crosscoder (the switch and the autointerp count do not)."""
    return {k: v for k, v in config["crosscoder"].items() if k not in ("enabled", "explain_latents")}


def crosscoder_layer_inputs(wildcards):
    """The (base, rlhf) crosscoder and its autointerp table of every selected layer, keyed real_{layer} and
    autointerp_{layer}."""
    inputs = {}
    for layer in selected_layers(wildcards):
        w = dict(run=wildcards.run, reward=wildcards.reward, layer=layer)
        inputs[f"real_{layer}"] = rules.crosscoder.output.folder.format(**w)
        inputs[f"autointerp_{layer}"] = rules.crosscoder_autointerp.output.table.format(**w)
    return inputs


def crosscoder_folders(wildcards):
    """The crosscoder and its null of every selected layer of a reward, keyed real_{layer} and null_{layer}."""
    folders = {}
    for layer in selected_layers(wildcards):
        w = dict(run=wildcards.run, reward=wildcards.reward, layer=layer)
        folders[f"real_{layer}"] = rules.crosscoder.output.folder.format(**w)
        folders[f"null_{layer}"] = rules.crosscoder_null.output.folder.format(**w)
    return folders


# --------------------------------------------------------------------------- diffing

DIFFING_METHODS = [m for m in config["diffing"]["methods"] if _diffing_available(m)]
_skipped = [m for m in config["diffing"]["methods"] if m not in DIFFING_METHODS]
if _skipped:
    print(f"rlhf-lens: diffing method(s) {', '.join(_skipped)} registered but not in this checkout: skipped",
          file=sys.stderr)


def diffing_corpus(wildcards):
    """The context corpus: rule rl_eval's sample table (source rl_eval) or the configured file."""
    source = config["diffing"]["corpus"]["source"]
    return rules.rl_eval.output.table.format(run=wildcards.run, reward=wildcards.reward) if source == "rl_eval" else source


def diffing_truth(reward):
    """The reward whose per-word values are the diffing truth (and the steering overseer): the gold reward (rl.gold,
    the overseer a learned reward model imitates) when the run names one, else the trained reward itself."""
    return GOLD or reward


def diffing_inputs(wildcards):
    """What the method reads from earlier stages (registry.needs): layers, stores, base SAEs, crosscoders,
    the policy's autointerp tables."""
    need = _diffing_needs(wildcards.method)
    w = dict(run=wildcards.run, reward=wildcards.reward)
    inputs = {}
    if need & {"layers", "stores", "saes", "crosscoders", "autointerp"}:
        inputs["layers"] = rules.divergence.output.layers.format(**w)
    if "stores" in need:
        inputs.update({f"store_{role}": rules.activations.output.store.format(role=role, **w) for role in ROLES})
    if "saes" in need:
        inputs.update({f"sae_{layer}": sae_dir(small_dictionary(), role="base", layer=layer, **w)
                       for layer in selected_layers(wildcards)})
    if "crosscoders" in need:
        inputs.update({f"crosscoder_{layer}": rules.crosscoder.output.folder.format(layer=layer, **w)
                       for layer in selected_layers(wildcards)})
    if "autointerp" in need:  # the paper's chain: the policy SAE's explained features per studied block
        inputs.update({f"autointerp_{layer}": rules.autointerp.output.table.format(role="rlhf", layer=layer, **w)
                       for layer in selected_layers(wildcards)})
    return inputs


# --------------------------------------------------------------------------- learned reward models


def planted_tables(*names):
    """The planted utility tables (table secret or vader_shuffled; rule reward_table) of the rewards ``names``."""
    return [rules.reward_table.output.table.format(run=RUN, reward=name)
            for name in dict.fromkeys(names) if name and is_planted(config["rewards"][name])]


def reward_table_inputs(wildcards):
    """The inputs of reward_table: for a table drawn from the base model's words, the model and the train
    prompts it samples."""
    if not samples_base_words(config["rewards"][wildcards.reward]):
        return {}
    return {"model": model_dir(), "prompts": rules.prompts.output.train.format(run=wildcards.run)}


def base_words_sampling(wildcards):
    """rl.ppo's sampling settings (rl.per_reward on top) that a table drawn from the base model's words
    samples it with; None for other tables (so changing them redraws no other table)."""
    if not samples_base_words(config["rewards"][wildcards.reward]):
        return None
    ppo = rl_settings(config, wildcards.reward)[0]
    return {"query_max_tokens": ppo.query_max_tokens, "response_max_tokens": ppo.response_max_tokens,
            "stop_at_eos": ppo.stop_at_eos}


def learned_reward_inputs(*names):
    """The reward-model folders this run builds that the rewards ``names`` read (reward_model type), and the
    planted utility tables they score with (rule reward_table), so a policy trained against a learned reward
    or a planted table waits for it; empty for every other reward."""
    from rlhf_lens.rewards.reward_model import BUILT_PATH

    built = _built_paths(config)
    out = planted_tables(*names)
    for name in (n for n in names if n in built):
        path = built[name].rstrip("/")
        # The plain RM is a directory output; SARM's files are outputs one by one (its read-off writes beside them).
        out += [f"{path}/cfg.json", f"{path}/sarm.safetensors"] if BUILT_PATH.match(path)["rm"] == "sarm" else [path]
    return out


def rl_reward_inputs(wildcards):
    """Learned reward models read by the rl and rl_eval rules (the trained reward's and the gold reward's)."""
    return learned_reward_inputs(wildcards.reward, *([GOLD] if GOLD else []))


def gold_spec():
    """The gold reward's config entry (rl.gold), or None: a rule param, so naming another gold reruns."""
    return reward_spec(GOLD) if GOLD else None


def preference_models(wildcards):
    """Models that sample the preference pairs: base -> the prepared model, a reward -> its policy."""
    return {name: model_dir() if name == "base" else rules.rl.output.policy.format(run=wildcards.run, reward=name)
            for name in PREFERENCES.sample_from}


def preference_inputs(wildcards):
    """Inputs of the preferences rule (sampling models and train prompts, or the external file; the overseer's RM)."""
    from rlhf_lens.preferences.table import source_kind

    kind = source_kind(PREFERENCES.source)
    inputs = {}
    if kind == "sample":
        inputs.update({f"model_{k}": v for k, v in preference_models(wildcards).items()})
        inputs["prompts"] = rules.prompts.output.train.format(run=wildcards.run)
    elif kind == "file":
        inputs["source"] = PREFERENCES.source
    if PREFERENCES.overseer:
        inputs["overseer_rm"] = learned_reward_inputs(PREFERENCES.overseer)
    return inputs


def preference_files(wildcards):
    """The train and held-out pairs of the run's preference set."""
    return {split: getattr(rules.preferences.output, split).format(run=wildcards.run, overseer=PREFERENCE_SET)
            for split in ("train", "heldout")}
