"""Experiment configuration: schema validation with readable errors, defaults, typed views.

The JSON schema (``schemas/config.schema.yaml``) is the single source of keys, types and
defaults. ``validate_config`` fills the defaults, validates, runs the checks a schema cannot
express (files that must exist, keys that belong to one reward type) and raises one
``ConfigError`` whose message names the file, each bad key, its value and what is expected.
The Snakefile calls it before any job is scheduled. This module imports no torch, so a bad
config fails within a second or two.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import yaml

from .model_specs import ModelSpecError, resolve_spec
from .tables_io import TABLE_SUFFIXES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SCHEMA = REPO_ROOT / "schemas" / "config.schema.yaml"



class ConfigError(ValueError):
    """The configuration is invalid. ``problems`` holds one line per bad key."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid configuration in {source}:\n{lines}")


# --------------------------------------------------------------------------- schema


def load_schema(path: str | os.PathLike = DEFAULT_SCHEMA) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def fill_defaults(instance: Any, schema: dict) -> Any:
    """Return a copy of ``instance`` with the schema's defaults filled in, recursively.

    Handles ``properties`` and object-valued ``additionalProperties`` (maps of named
    entries such as ``rewards``); values of the wrong type are left for the validator.
    """
    if not isinstance(instance, dict) or schema.get("type") not in (None, "object"):
        return instance
    out = dict(instance)
    props = schema.get("properties", {})
    for key, sub in props.items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        if key in out:
            out[key] = fill_defaults(out[key], sub)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in out:
            if key not in props:
                out[key] = fill_defaults(out[key], extra)
    return out


def _key(path: Iterable[Any]) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "(top level)"


def _expected(error: jsonschema.ValidationError) -> str:
    v, arg = error.validator, error.validator_value
    if v == "type":
        types = arg if isinstance(arg, list) else [arg]
        names = {"integer": "an integer", "number": "a number", "string": "a string",
                 "boolean": "true or false", "object": "a mapping", "array": "a list", "null": "null"}
        return "expected " + " or ".join(names.get(t, t) for t in types)
    if v == "enum":
        return "expected one of: " + ", ".join(map(str, arg))
    if v == "minimum":
        return f"expected a number >= {arg}"
    if v == "maximum":
        return f"expected a number <= {arg}"
    if v == "exclusiveMinimum":
        return f"expected a number > {arg}"
    if v == "exclusiveMaximum":
        return f"expected a number < {arg}"
    if v == "pattern":
        return f"expected text matching {arg}"
    if v == "minLength":
        return "expected a non-empty string"
    if v == "minProperties":
        return f"expected at least {arg} entr{'y' if arg == 1 else 'ies'}"
    return error.message


def _format_error(error: jsonschema.ValidationError) -> list[str]:
    where = list(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        out = []
        for extra in sorted(k for k in error.instance if k not in allowed):
            hint = difflib.get_close_matches(str(extra), allowed, n=1)
            did = f"; did you mean {hint[0]!r}?" if hint else ""
            out.append(f"unknown key {_key(where + [extra])!r}{did} (allowed under "
                       f"{_key(where)}: {', '.join(allowed)})")
        return out
    if error.validator == "required":
        return [f"{_key(where)}: {error.message}"]
    if "propertyNames" in error.absolute_schema_path:
        # The bad value is a key's name (error.instance); the error sits at its parent.
        return [f"key {_key(where + [error.instance])!r} is not an allowed name under "
                f"{_key(where)}: {_expected(error)}"]
    description = error.schema.get("description")
    hint = f" ({description.strip().split('. ')[0].rstrip('.')})" if description else ""
    return [f"key {_key(where)!r} has value {error.instance!r}: {_expected(error)}{hint}"]


def _schema_problems(config: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    problems: list[str] = []
    for error in errors:
        problems.extend(_format_error(error))
    return problems


# --------------------------------------------------------------------------- semantic checks


def _prompt_source_problems(prompts: dict) -> list[str]:
    source = prompts["source"]
    if source == "builtin" or source.startswith("hf:"):
        return []
    path = Path(source).expanduser()
    if path.suffix not in TABLE_SUFFIXES:
        return [f"key 'prompts.source' has value {source!r}: expected builtin, hf:<dataset>, "
                f"or a file ending in {', '.join(TABLE_SUFFIXES)}"]
    if not path.is_file():
        return [f"key 'prompts.source' has value {source!r}: that file does not exist"]
    return []


def _reward_problems(rewards: dict) -> list[str]:
    """Keys, defaults and required keys of each entry come from its type's registered RewardConfig."""
    from .rewards import get_reward_config_class

    from .rewards import RewardError

    problems = []
    for name, reward in rewards.items():
        kind = reward["type"]
        try:
            cfg_cls = get_reward_config_class(kind, name)
        except RewardError as exc:
            problems.append(str(exc) + " (the registered reward types)")
            continue
        allowed = cfg_cls.keys()
        for key in sorted(set(reward) - allowed):
            problems.append(f"key 'rewards.{name}.{key}' does not apply to type {kind}: "
                            f"expected only {', '.join(sorted(allowed))}")
        for key, value in cfg_cls.defaults().items():
            reward.setdefault(key, value)
        missing = cfg_cls.missing(reward, name)
        problems += missing
        if not missing:
            problems += cfg_cls.from_dict(reward, name).problems(f"rewards.{name}")
    return problems


def _interp_problems(config: dict) -> list[str]:
    problems = []
    corpus = config["activations"]["corpus"]
    if corpus != "rl_eval":
        path = Path(corpus).expanduser()
        if path.suffix not in TABLE_SUFFIXES:
            problems.append(f"key 'activations.corpus' has value {corpus!r}: expected rl_eval or a file ending in "
                            f"{', '.join(TABLE_SUFFIXES)}")
        elif not path.is_file():
            problems.append(f"key 'activations.corpus' has value {corpus!r}: that file does not exist")
    problems += _sae_kind_problems(config["sae"]["kinds"])
    problems += _crosscoder_kind_problems(config["crosscoder"]["kind"])
    problems += _diffing_problems(config["diffing"])
    if config["seed"] in config["sae"]["baseline_seeds"]:
        problems.append(f"key 'sae.baseline_seeds' has value {config['sae']['baseline_seeds']!r}: expected seeds other "
                        f"than the run's seed ({config['seed']}), or the baseline SAE is the same SAE")
    return problems


def _sae_kind_problems(kinds: list[str]) -> list[str]:
    """``sae.kinds`` against the SAE registry, so a new architecture needs no schema edit (this imports
    torch, about 1.5 s of CPU, once per validation)."""
    from .sae.registry import architectures

    known = architectures()
    return [f"key 'sae.kinds' has value {kind!r}: expected one of {', '.join(known)} (the registered SAE architectures)"
            for kind in kinds if kind not in known]


def _diffing_problems(diffing: dict) -> list[str]:
    """``diffing.methods`` against the diffing registry (torch-free: names only), and a corpus file that must exist."""
    from .diffing.registry import methods

    known = methods()
    problems = [f"key 'diffing.methods' has value {name!r}: expected one of {', '.join(known)} (the registered "
                "diffing methods)" for name in diffing["methods"] if name not in known]
    source = diffing["corpus"]["source"]
    if source != "rl_eval" and not Path(source).expanduser().is_file():
        problems.append(f"key 'diffing.corpus.source' has value {source!r}: expected rl_eval or an existing text file")
    return problems


def _crosscoder_kind_problems(kind: str) -> list[str]:
    """``crosscoder.kind`` against the registry's two-model architectures."""
    from .sae.registry import architectures

    known = architectures(models=2)
    return [] if kind in known else [f"key 'crosscoder.kind' has value {kind!r}: expected one of {', '.join(known)} "
                                     "(the registered two-model architectures)"]


def _autointerp_problems(config: dict) -> list[str]:
    problems, ai = [], config["autointerp"]
    if ai["backend"] == "openai":
        for key in ("base_url", "model"):
            if not ai[key]:
                problems.append(f"key 'autointerp.{key}' is not set: expected a value when autointerp.backend is openai")
        env = ai["api_key_env"]
        if env and not os.environ.get(env):
            problems.append(f"key 'autointerp.api_key_env' names the environment variable {env!r}, which is not set "
                            f"or empty: export it before running, or set api_key_env: null for an endpoint without keys")
    elif ai["model"] and not Path(ai["model"]).expanduser().is_dir():
        problems.append(f"key 'autointerp.model' has value {ai['model']!r}: expected a prepared model folder "
                        f"(or null for the run's base model) when autointerp.backend is local")
    if ai["kind"] and ai["kind"] not in config["sae"]["kinds"]:
        problems.append(f"key 'autointerp.kind' has value {ai['kind']!r}: expected one of sae.kinds "
                        f"{config['sae']['kinds']} (or null)")
    return problems


def _rl_problems(rl: dict) -> list[str]:
    from .rl.algorithm import get_algorithm
    from .rl.config import ppo_config

    from .rl.algorithm import algorithm_names

    if rl["algorithm"] not in algorithm_names():
        return [f"key 'rl.algorithm' has value {rl['algorithm']!r}: expected one of {', '.join(algorithm_names())} "
                "(the registered RL algorithms)"]
    problems = []
    for name, extra in [(None, {}), *rl.get("per_reward", {}).items()]:
        key = "rl.ppo" if name is None else f"rl.per_reward.{name}"
        settings = ppo_config(rl["preset"], {**rl["ppo"], **extra}, rl["algorithm"])
        problems += settings.problems(key) + get_algorithm(settings.algorithm).problems(settings, key)
    return problems


def _shaping_problems(config: dict) -> list[str]:
    """``rl.shaping``: known components, weights on the simplex; integrated gradients only on rewards with a
    differentiable model; the study's reward and gold must be configured rewards."""
    from .shaping import ShapingConfig

    shaping = config["rl"]["shaping"]
    cfg = _pick(ShapingConfig, shaping)
    problems = cfg.problems("rl.shaping")
    study = shaping["study"]
    names = ", ".join(sorted(config["rewards"]))
    for key in ("reward", "gold"):
        if study[key] is not None and study[key] not in config["rewards"]:
            problems.append(f"key 'rl.shaping.study.{key}' names reward {study[key]!r}, which is not configured: "
                            f"expected one of {names}")
    if not shaping["enabled"]:
        return problems
    uses_ig = cfg.weights.get("ig", 0) > 0 or "ig" in study["schemes"] or "ig" in study["bo_components"]
    if uses_ig:
        shaped = [study["reward"] or next(iter(config["rewards"]))] + (list(config["rewards"]) if cfg.weights.get("ig", 0) > 0 else [])
        for name in dict.fromkeys(shaped):
            kind = config["rewards"].get(name, {}).get("type")
            if kind not in ("reward_model", "classifier"):
                problems.append(f"rl.shaping uses integrated gradients (ig) on reward {name!r} of type {kind}: expected "
                                "a reward_model or classifier reward (a differentiable model), or no ig")
    if study["bo_initial"] > study["bo_trials"]:
        problems.append(f"key 'rl.shaping.study.bo_initial' has value {study['bo_initial']}: expected <= bo_trials "
                        f"({study['bo_trials']})")
    return problems


def _reward_name_problems(config: dict) -> list[str]:
    """``rl.per_reward``, ``calibration.rewards``, ``train_rewards`` and ``interpret_rewards`` must name configured
    rewards, and an interpreted reward must be one whose policy is trained."""
    rewards = sorted(config["rewards"])
    named = [("rl.per_reward", n) for n in config["rl"].get("per_reward", {})]
    named += [(key, n) for key in ("train_rewards", "interpret_rewards") for n in config.get(key) or []]
    named += [("calibration.rewards", n) for n in config.get("calibration", {}).get("rewards", [])]
    return [f"key {key!r} names reward {name!r}, which is not configured: expected one of {', '.join(rewards)}"
            for key, name in named if name not in config["rewards"]] + [
        f"key 'interpret_rewards' names reward {name!r}, whose policy is not trained: expected it in train_rewards "
        f"({', '.join(trained_rewards(config)) or 'empty'})"
        for name in config.get("interpret_rewards") or []
        if name in config["rewards"] and name not in trained_rewards(config)]


def _prepared_model_config(config: dict) -> dict | None:
    """The base model's config.json already on disk (the prepared folder, or a local folder spec); None when
    no such file exists yet (the first job that knows the model then checks, see ``model_size_problems``)."""
    import json

    candidates = [REPO_ROOT / "resources" / "models" / config["model"]["name"] / "config.json",
                  Path("resources") / "models" / config["model"]["name"] / "config.json"]
    spec = Path(config["model"]["spec"]).expanduser()
    if spec.is_dir():
        candidates.append(spec / "config.json")
    for path in candidates:
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                return None
    return None


def _model_depth(config: dict) -> int | None:
    """Blocks of the base model, from its config.json on disk; None when not known yet."""
    try:
        return int(_prepared_model_config(config)["num_hidden_layers"])
    except (KeyError, TypeError, ValueError):
        return None


def model_width(model_config: dict | None) -> int | None:
    """d_model of a Hugging Face config.json's contents (hidden_size, or GPT-2's n_embd); None if absent."""
    for key in ("hidden_size", "n_embd", "d_model"):
        if isinstance(model_config, dict) and isinstance(model_config.get(key), int):
            return model_config[key]
    return None


def model_size_problems(config: dict, d_model: int) -> list[str]:
    """Settings that must fit the model's width ``d_model``: ``sae.k`` (active latents of the architectures that
    have a k, TopK) at most the smallest dictionary, min(sae.sizes) * d_model latents. Checked at validation
    when the model's config.json is on disk, else by the prepare_model job, before any RL."""
    from dataclasses import fields

    from .sae.registry import get_sae_class

    sae = config["sae"]
    with_k = [kind for kind in sae["kinds"] if "k" in {f.name for f in fields(get_sae_class(kind)[1])}]
    smallest = min(sae["sizes"]) * d_model
    if not with_k or sae["k"] <= smallest:
        return []
    return [f"key 'sae.k' has value {sae['k']!r}: the smallest dictionary (sae.sizes {min(sae['sizes'])} x d_model "
            f"{d_model} of model {config['model']['name']!r}) has {smallest} latents, so the {', '.join(with_k)} "
            f"SAEs can keep at most that many active: expected an integer in 1..{smallest}"]


def require_model_fits(config: dict, model_config: dict) -> None:
    """Raise ConfigError if a setting does not fit the loaded model (its config.json contents as a dict);
    what ``prepare_model(check=...)`` calls."""
    d_model = model_width(model_config)
    problems = model_size_problems(config, d_model) if d_model else []
    if problems:
        raise ConfigError("the configuration (checked against the loaded model)", problems)


def _sarm_problems(config: dict) -> list[str]:
    """``sarm.enabled`` needs the overseer of the run's preference pairs (``preferences.overseer``, whose
    token utilities recovery reads); ``sarm.block`` must be below the model's depth when that depth can be
    read without loading the model."""
    sarm = config["sarm"]
    if not sarm["enabled"]:
        return []
    problems = []
    if config["preferences"]["overseer"] is None:
        problems.append("key 'sarm.enabled' is true but 'preferences.overseer' is not set: SARM learns the run's "
                        "preference pairs and recovery reads their overseer, so expected a reward name there")
    depth = _model_depth(config) if sarm["block"] is not None else None
    if depth is not None and sarm["block"] >= depth:
        problems.append(f"key 'sarm.block' has value {sarm['block']!r}: the model {config['model']['name']!r} has "
                        f"{depth} blocks, expected an integer in 0..{depth - 1} (or null for half depth)")
    return problems


def trained_rewards(config: dict) -> list[str]:
    """The rewards whose policies ``rule all`` RLHF-trains and evaluates, in ``rewards`` order (``train_rewards``;
    null: all). The others only label preference pairs or score as gold."""
    chosen = config.get("train_rewards")
    return [r for r in config["rewards"] if chosen is None or r in chosen]


def interpreted_rewards(config: dict) -> list[str]:
    """The rewards whose policies ``rule all`` interprets, in ``rewards`` order (``interpret_rewards``; null: every
    trained reward)."""
    chosen = config.get("interpret_rewards")
    return [r for r in trained_rewards(config) if chosen is None or r in chosen]


def _r2m_problems(config: dict) -> list[str]:
    """The R2M comparison: a plain-RM baseline, R2M arms, a gold reward, held-out pairs, group methods only."""
    from .rl.algorithm import get_algorithm
    from .rl.group_method import GroupAlgorithm

    r2m, rewards = config["r2m"], config["rewards"]
    if r2m["baseline"] is None:
        return []
    problems = []

    def kind(name):
        return rewards.get(name, {}).get("type")

    if kind(r2m["baseline"]) != "reward_model":
        problems.append(f"key 'r2m.baseline' has value {r2m['baseline']!r}: expected a reward of type reward_model "
                        "(the frozen plain reward model R2M starts from)")
    if not r2m["methods"]:
        problems.append("key 'r2m.methods' is empty: expected at least one reward of type r2m")
    for key in ("methods", "ablations"):
        for name in r2m[key]:
            if kind(name) != "r2m":
                problems.append(f"key 'r2m.{key}' names {name!r}: expected a reward of type r2m"
                                + (f", not {kind(name)}" if kind(name) else " (it is not configured)"))
    if config["rl"]["gold"] is None:
        problems.append("key 'rl.gold' is not set: the R2M comparison needs the overseer as gold reward")
    if not preferences_enabled(config):
        problems.append("key 'preferences.overseer' is not set: the R2M comparison measures pair accuracy on the "
                        "run's held-out preference pairs")
    for name in r2m["algorithms"]:
        try:
            algorithm = get_algorithm(name)
        except KeyError as exc:
            problems.append(f"key 'r2m.algorithms' names {name!r}: {exc.args[0]}")
            continue
        if not isinstance(algorithm, GroupAlgorithm):
            problems.append(f"key 'r2m.algorithms' names {name!r}: expected a group method (R2M's update needs "
                            "prompt groups)")
            continue
        ppo = dataclasses.replace(rl_settings(config)[0], algorithm=name)
        problems += algorithm.problems(ppo, "rl.ppo")
    return problems


def preferences_enabled(config: dict) -> bool:
    """Whether the run builds preference pairs (an overseer is named, or the pairs come from a file)."""
    prefs = config["preferences"]
    return prefs["overseer"] is not None or prefs["source"] != "sample"


RM_FOLDER_TYPES = ("reward_model", "r2m")
"""Reward types whose ``path`` names a reward-model folder (one this run may build)."""


def built_reward_models(config: dict) -> set[str]:
    """Names of the reward-model folders this run builds (results/{run}/reward_models/{rm})."""
    # A new reward model adds its name here when its section is configured.
    if not preferences_enabled(config):
        return set()
    return {"plain"} | ({"sarm"} if config["sarm"]["enabled"] else set())


def _built_paths(config: dict) -> dict[str, str]:
    """reward name -> path, for every reward_model reward whose path is a folder this run builds (whether or
    not it exists yet: it is an input of the rules that read the reward, so they wait for it)."""
    from .rewards.reward_model import BUILT_PATH

    built = built_reward_models(config)
    out = {}
    for name, r in config["rewards"].items():
        m = BUILT_PATH.match(str(r.get("path", ""))) if r.get("type") in RM_FOLDER_TYPES else None
        if m and m["run"] == config["run"] and m["rm"] in built:
            out[name] = r["path"]
    return out


def _unbuilt_paths(config: dict) -> dict[str, str]:
    """reward name -> path, for reward_model paths shaped like a built folder that neither exist nor are built here."""
    from .rewards.reward_model import BUILT_PATH

    built = _built_paths(config)
    return {name: r["path"] for name, r in config["rewards"].items()
            if r.get("type") in RM_FOLDER_TYPES and name not in built and BUILT_PATH.match(str(r.get("path", "")))
            and not Path(r["path"]).exists()}


def _learned_reward_problems(config: dict) -> list[str]:
    """Preferences, gold and learned reward models: names that must exist, sources that must be usable."""
    from .preferences.table import PreferenceError, read_external, source_kind
    from .rewards.reward_model import BUILT_PATH

    problems, rewards, prefs = [], config["rewards"], config["preferences"]
    names = ", ".join(sorted(rewards))
    for key, name in (("preferences.overseer", prefs["overseer"]), ("rl.gold", config["rl"]["gold"])):
        if name is not None and name not in rewards:
            problems.append(f"key {key!r} names reward {name!r}, which is not configured: expected one of {names}")
    built = _built_paths(config)
    for entry in prefs["sample_from"]:
        if entry != "base" and entry not in rewards:
            problems.append(f"key 'preferences.sample_from' names {entry!r}: expected base or one of the rewards "
                            f"({names})")
        elif entry in built:
            problems.append(f"key 'preferences.sample_from' names {entry!r}, a reward model trained on these "
                            "preferences: its policy cannot sample them (a cycle)")
    if source_kind(prefs["source"]) == "file":
        try:
            read_external(prefs["source"])
        except PreferenceError as exc:
            problems.append(str(exc))
    for name, path in _unbuilt_paths(config).items():
        m = BUILT_PATH.match(path)
        if m["run"] == config["run"] and m["rm"] == "plain":
            problems.append(f"key 'rewards.{name}.path' names {path!r}, the plain reward model of this run, but "
                            "preferences.overseer is not set: expected a reward name there (or preferences.source "
                            "a preference file) so the run trains it")
            continue
        problems.append(f"key 'rewards.{name}.path' has value {path!r}: that folder does not exist and this run "
                        f"does not build it: expected an existing reward-model folder or one of "
                        + (", ".join(f"results/{config['run']}/reward_models/{rm}"
                                     for rm in sorted(built_reward_models(config))) or
                           "results/{run}/reward_models/plain (with preferences.overseer set)"))
    return problems


def _semantic_problems(config: dict) -> list[str]:
    problems = []
    try:
        resolve_spec(config["model"]["spec"])
    except ModelSpecError as exc:
        problems.append(f"key 'model.spec' has value {config['model']['spec']!r}: {exc}")
    problems += _prompt_source_problems(config["prompts"])
    problems += _reward_problems(config["rewards"])
    problems += _interp_problems(config)
    problems += _reward_name_problems(config)
    problems += _learned_reward_problems(config)
    problems += _rl_problems(config["rl"])
    problems += _shaping_problems(config)
    problems += _autointerp_problems(config)
    problems += _sarm_problems(config)
    problems += _r2m_problems(config)
    d_model = model_width(_prepared_model_config(config))
    if d_model is not None:
        problems += model_size_problems(config, d_model)
    return problems


def validate_config(config: dict, source: str = "config", schema_path: str | os.PathLike = DEFAULT_SCHEMA) -> dict:
    """Return the config with defaults filled in, or raise ConfigError naming every bad key.

    ``source`` names the config file(s) in messages. Schema errors are reported first; the
    file-existence checks run only on a config whose shape is right.
    """
    schema = load_schema(schema_path)
    if not isinstance(config, dict):
        raise ConfigError(source, [f"expected a mapping of keys at the top level, got {type(config).__name__}"])
    filled = fill_defaults(config, schema)
    problems = _schema_problems(filled, schema)
    if not problems:
        problems = _semantic_problems(filled)
    if problems:
        raise ConfigError(source, problems)
    return filled


def load_config(path: str | os.PathLike, schema_path: str | os.PathLike = DEFAULT_SCHEMA) -> dict:
    """Read a YAML config file and validate it (see ``validate_config``)."""
    with open(path) as fh:
        raw = yaml.safe_load(fh) or {}
    return validate_config(raw, source=str(path), schema_path=schema_path)


# --------------------------------------------------------------------------- typed views


@dataclass(frozen=True)
class Resources:
    """Compute one rule's job declares (``resources:`` in config.yaml, after per-rule overrides)."""

    gpu: int = 0
    """GPUs per job; 0 runs on CPU."""
    threads: int = 2
    """CPU threads per job."""
    mem_mb: int = 6000
    """Memory per job in MiB, before scaling by the attempt number."""
    runtime: int = 60
    """Wall-clock limit per job in minutes, before scaling by the attempt number."""


def _pick(cls, mapping: dict):
    names = cls.__dataclass_fields__.keys()
    return cls(**{k: v for k, v in mapping.items() if k in names})


def rl_settings(config: dict, reward: str | None = None):
    """(PPOConfig, EvalConfig) of ``rl:``: the preset with ``rl.ppo`` overrides (and, for ``reward``,
    ``rl.per_reward.<reward>`` on top) and ``rl.algorithm``, and ``rl.eval``."""
    from .rl.config import EvalConfig, ppo_config

    rl = config["rl"]
    overrides = {**rl["ppo"], **rl.get("per_reward", {}).get(reward, {})}
    return ppo_config(rl["preset"], overrides, rl["algorithm"]), _pick(EvalConfig, rl["eval"])


def reward_params(config: dict, name: str | None) -> dict | None:
    """The rule param of reward ``name``: its entry less the keys that do not change what it scores (its type's
    ``result_entry``), so a default filled in for an option the reward does not use reruns nothing; None for
    no name."""
    if name is None:
        return None
    from .rewards import get_reward_config_class

    entry = config["rewards"][name]
    return get_reward_config_class(entry["type"], name).result_entry(entry)


def job_rewards(config: dict, rewards: list[tuple[str | None, dict | None]], device: str) -> list:
    """The rewards a model job scores with, built on ``device``, in the order of ``rewards``: (name, settings)
    pairs, the settings being what the rule passed as a param (so a change reruns the job). A pair whose name
    is None (e.g. no rl.gold) gives None. model.trust_remote_code applies to every one. A planted utility
    table (secret, vader_shuffled) is read from the CSV the reward_table rule wrote before RL."""
    from .rewards import build_reward
    from .rewards.planted_tables import with_table_file

    trust = config["model"]["trust_remote_code"]
    return [None if name is None else build_reward(name, {name: with_table_file(config, name, spec)}, device=device,
                                                   trust_remote_code=trust)
            for name, spec in rewards]


def job_rl_settings(config: dict, reward: str | None, ppo_params: dict):
    """The PPO settings of a job training or evaluating against ``reward`` (None: no reward's rl.per_reward,
    e.g. preference sampling): rl_settings with the rule's ppo param (the settings that change the result) on
    top, so the job and its rerun trigger agree."""
    return dataclasses.replace(rl_settings(config, reward)[0], **ppo_params)


def shaping_config(config: dict):
    """Typed view of ``rl.shaping`` (rlhf_lens.shaping.ShapingConfig; its ``study`` is read by the study rules)."""
    from .shaping import ShapingConfig

    return _pick(ShapingConfig, config["rl"]["shaping"])


FANOUT_RULES = frozenset({"activations", "sae", "autointerp", "crosscoder"})
"""Rules that run one job per (role, layer) or per role: ``resources.fanout_threads`` each, so several run at
once (crosscoder_null and crosscoder_autointerp declare "crosscoder" and "autointerp")."""


def rule_resources(config: dict, rule: str) -> Resources:
    """Resources for ``rule``: the global values (``fanout_threads`` as the threads of FANOUT_RULES) with
    ``resources.per_rule.<rule>`` on top."""
    base = {k: v for k, v in config["resources"].items() if k not in ("per_rule", "fanout_threads")}
    if rule in FANOUT_RULES:
        base["threads"] = config["resources"]["fanout_threads"]
    base.update(config["resources"].get("per_rule", {}).get(rule, {}))
    return _pick(Resources, base)


def diffing_settings(config: dict, method: str):
    """Typed view of ``diffing:`` for one method (rlhf_lens.diffing.stage.StageSettings): the corpus, the readout
    and the method's own keys (``diffing.<method>``)."""
    from .diffing.base import CorpusConfig
    from .diffing.stage import ReadoutConfig, StageSettings

    d = config["diffing"]
    return StageSettings(corpus=_pick(CorpusConfig, d["corpus"]), readout=_pick(ReadoutConfig, d["readout"]),
                         method=dict(d.get(method) or {}))


def activations_config(config: dict):
    """Typed view of ``activations:`` (rlhf_lens.activations.ActivationsConfig)."""
    from .activations import ActivationsConfig

    return _pick(ActivationsConfig, config["activations"])


def sae_config(config: dict):
    """Typed view of ``sae:`` (rlhf_lens.sae.fit.SAEStageConfig); lists become tuples."""
    from .sae.fit import SAEStageConfig

    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in config["sae"].items()}
    return _pick(SAEStageConfig, raw)


def crosscoder_config(config: dict):
    """Typed view of ``crosscoder:`` (rlhf_lens.sae.crosscoder_fit.CrosscoderStageConfig)."""
    from .sae.crosscoder_fit import CrosscoderStageConfig

    return _pick(CrosscoderStageConfig, config["crosscoder"])


def features_config(config: dict):
    """Typed view of ``features:`` (rlhf_lens.features.FeaturesConfig)."""
    from .features import FeaturesConfig

    return _pick(FeaturesConfig, config["features"])


def sarm_settings(config: dict):
    """(SARMConfig, SARMAnalysisConfig) of ``sarm:`` and ``sarm.analysis``; lists become tuples."""
    from .reward_models.sarm import SARMConfig
    from .reward_models.sarm_analysis import SARMAnalysisConfig

    analysis = {k: tuple(v) if isinstance(v, list) else v for k, v in config["sarm"]["analysis"].items()}
    return _pick(SARMConfig, config["sarm"]), _pick(SARMAnalysisConfig, analysis)


def autointerp_settings(config: dict):
    """(AutointerpConfig, ExampleConfig, SimulationConfig) of ``autointerp:``; kind defaults to the first SAE kind."""
    from .autointerp.examples import ExampleConfig
    from .autointerp.simulate import SimulationConfig
    from .autointerp.stage import AutointerpConfig

    ai = dict(config["autointerp"])
    ai["kind"] = ai["kind"] or config["sae"]["kinds"][0]
    return _pick(AutointerpConfig, ai), _pick(ExampleConfig, ai["examples"]), _pick(SimulationConfig, ai)


def preferences_config(config: dict):
    """Typed view of ``preferences:`` (rlhf_lens.preferences.sample.PreferencesConfig); lists become tuples."""
    from .preferences.sample import PreferencesConfig

    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in config["preferences"].items()}
    return _pick(PreferencesConfig, raw)


def r2m_arms(config: dict) -> list[tuple[str, str, int]]:
    """(algorithm, reward, seed) of every run of the R2M comparison (empty when r2m.baseline is null)."""
    r2m = config["r2m"]
    if r2m["baseline"] is None:
        return []
    arms = [(a, rew) for a in r2m["algorithms"] for rew in [r2m["baseline"], *r2m["methods"]]]
    arms += [(r2m["algorithms"][0], rew) for rew in r2m["ablations"]]
    return [(a, rew, s) for a, rew in dict.fromkeys(arms) for s in r2m["seeds"]]


def plain_rm_config(config: dict):
    """Typed view of ``plain_rm:`` (rlhf_lens.reward_models.plain.PlainRMConfig)."""
    from .reward_models.plain import PlainRMConfig

    return _pick(PlainRMConfig, config["plain_rm"])
