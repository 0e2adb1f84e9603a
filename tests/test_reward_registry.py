"""The reward registry: one config class per type drives validation and building; the schema agrees with it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass

import pytest
import yaml

from rlhf_lens.config import ConfigError, validate_config
from rlhf_lens.rewards import (Reward, RewardConfig, RewardError, build_reward, get_reward_class,
                               get_reward_config_class, register_reward, reward_types)
from rlhf_lens.rewards.classifier import ClassifierConfig, ClassifierReward
from rlhf_lens.rewards.registry import unregister_reward
from rlhf_lens.rewards.utility_table import UtilityTableConfig, UtilityTableReward


def _reward_schema(repo_root):
    schema = yaml.safe_load((repo_root / "schemas/config.schema.yaml").read_text())
    return schema["properties"]["rewards"]["additionalProperties"]


def test_builtin_types_and_their_capabilities():
    assert reward_types() == ["utility_table", "classifier", "reward_model", "r2m"]
    assert get_reward_class("utility_table") is UtilityTableReward and UtilityTableReward.per_token
    assert get_reward_class("classifier") is ClassifierReward and not ClassifierReward.per_token
    assert get_reward_config_class("classifier") is ClassifierConfig
    assert ClassifierConfig.required() == {"model": "hub id or folder", "label": "e.g. POSITIVE"}
    assert UtilityTableConfig.defaults() == {"table": "vader", "scope": "response", "secret_words": 40,
                                           "secret_utility": 3.0, "shuffle_balance": 0.02}
    assert UtilityTableConfig.keys() == {"type", "table", "scope", "secret_words", "secret_utility", "shuffle_balance"}
    with pytest.raises(RewardError, match="'rewards.x.type' has value 'nope': expected utility_table, classifier, reward_model or r2m"):
        get_reward_class("nope", "x")


def test_the_schema_leaves_reward_types_and_their_keys_to_the_registry(repo_root):
    """A new reward type is its own file plus a registry line: the schema names no types and allows
    other keys (each type's config class checks them); it documents the built-in types' keys."""
    entry = _reward_schema(repo_root)
    assert "enum" not in entry["properties"]["type"] and entry["additionalProperties"] is True
    keys = set().union(*(get_reward_config_class(t).keys() for t in reward_types()))
    assert set(entry["properties"]) == keys
    for t in reward_types():  # the schema's defaults (none per entry) must not disagree with the classes
        for key, value in get_reward_config_class(t).defaults().items():
            assert entry["properties"][key].get("default", value) == value, (t, key)


def test_config_classes_import_without_torch():
    """Validation stays fast: the config module, the registry and every reward module load no torch."""
    code = ("import sys, rlhf_lens.config as c, rlhf_lens.rewards, rlhf_lens.rl; "
            "c.validate_config({'rewards': {'u': {'type': 'utility_table'}}}); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@dataclass(frozen=True, kw_only=True)
class ConstantConfig(RewardConfig):
    """``rewards.<name>`` of the test's type constant."""

    value: float = dataclasses.field(metadata={"hint": "a number"})
    """The reward of every response."""
    bonus: float = 0.0
    """Added to it."""

    def problems(self, prefix: str) -> list[str]:
        return [f"key '{prefix}.value' has value {self.value!r}: expected >= 0"] if self.value < 0 else []


class ConstantReward(Reward):
    per_token = False

    def __init__(self, value: float, name: str):
        self.value, self.name = value, name

    @classmethod
    def from_config(cls, config, *, name, device="cpu", trust_remote_code=False):
        return cls(config.value + config.bonus, name)

    def score(self, prompts, responses):
        import torch

        return torch.full((len(responses),), self.value)


@pytest.fixture
def constant_type():
    register_reward("constant", ConstantReward, ConstantConfig)
    yield
    unregister_reward("constant")


def test_a_registered_type_is_validated_and_built_from_its_config_class(constant_type):
    from rlhf_lens.config import _reward_problems

    entries = {"c": {"type": "constant", "value": 2.0}}
    assert _reward_problems(entries) == [] and entries["c"]["bonus"] == 0.0  # default filled
    assert _reward_problems({"c": {"type": "constant"}}) == [
        "key 'rewards.c.value' is missing: a constant reward needs value (a number)"]
    assert _reward_problems({"c": {"type": "constant", "value": 1, "table": "vader"}}) == [
        "key 'rewards.c.table' does not apply to type constant: expected only bonus, type, value"]
    assert _reward_problems({"c": {"type": "constant", "value": -1}}) == ["key 'rewards.c.value' has value -1: expected >= 0"]
    reward = build_reward("c", {"c": {"type": "constant", "value": 2.0, "bonus": 0.5}})
    assert isinstance(reward, ConstantReward) and reward.score(["p"], ["r"]).tolist() == [2.5]
    assert reward.token_rewards(["p"], ["r s"], [[(0, 1), (1, 3)]]).tolist() == [[0.0, 2.5]]  # not per-token: last token
    with pytest.raises(RewardError, match="'rewards.c.value' is missing"):
        build_reward("c", {"c": {"type": "constant"}})


def test_registering_a_taken_name_fails(constant_type):
    with pytest.raises(ValueError, match="already registered"):
        register_reward("constant", UtilityTableReward, UtilityTableConfig)


def test_validation_messages_of_the_builtin_types():
    with pytest.raises(ConfigError) as err:
        validate_config({"rewards": {"s": {"type": "classifier"}, "u": {"type": "utility_table", "table": "/no.csv"}}})
    assert err.value.problems == [
        "key 'rewards.s.model' is missing: a classifier reward needs model (hub id or folder) and label (e.g. POSITIVE)",
        "key 'rewards.s.label' is missing: a classifier reward needs model (hub id or folder) and label (e.g. POSITIVE)",
        "key 'rewards.u.table' has value '/no.csv': expected vader, secret, vader_shuffled or an existing "
        "word,utility CSV file; that file does not exist"]
    cfg = validate_config({"rewards": {"s": {"type": "classifier", "model": "x/y", "label": "POSITIVE"}}})
    assert cfg["rewards"]["s"] == {"type": "classifier", "model": "x/y", "label": "POSITIVE", "scope": "response"}
