"""Rewards that RLHF trains against: a word-utility table, a sequence classifier, a learned reward model.

``build_reward(name, rewards_config)`` builds the reward named in config (``rewards:``); every
reward scores (prompt, response) pairs with ``score`` -> (B,) and ``token_rewards`` -> (B, T),
and says with ``per_token`` whether the latter splits the score over tokens.

One file per reward ``type``, each holding its ``Reward`` subclass (with ``from_config``) and
its ``RewardConfig`` dataclass (the type's keys, typed, a docstring and default per field; no
default = required). Config validation reads keys, defaults and required keys from the
registered config classes. A new reward type is its own new file plus one ``register_reward``
line below (and its keys in ``schemas/config.schema.yaml``, whose ``type`` enum a test keeps
equal to the registry). Reward modules import torch only inside functions, so the registry
lists the types without it.
"""

from __future__ import annotations

from .base import Reward, RewardConfig, RewardError, last_token_rewards
from .classifier import ClassifierConfig, ClassifierReward
from .registry import get_reward_class, get_reward_config_class, register_reward, reward_types
from .reward_model import RewardModelConfig, RewardModelReward
from .utility_table import UtilityTableConfig, UtilityTableReward

register_reward("utility_table", UtilityTableReward, UtilityTableConfig)
register_reward("classifier", ClassifierReward, ClassifierConfig)
register_reward("reward_model", RewardModelReward, RewardModelConfig)
register_reward("r2m", "rlhf_lens.r2m.reward:R2MReward", "rlhf_lens.r2m.config:R2MConfig")

__all__ = ["Reward", "RewardConfig", "RewardError", "build_reward", "get_reward_class", "get_reward_config_class",
           "last_token_rewards", "register_reward", "reward_types"]


def build_reward(name: str, rewards: dict, device: str = "cpu", trust_remote_code: bool = False) -> Reward:
    """The reward ``rewards[name]`` (config ``rewards.<name>``); fails with a message naming the key or file."""
    if name not in rewards:
        raise RewardError(f"unknown reward {name!r}: config 'rewards' defines {', '.join(sorted(rewards)) or 'none'}")
    spec = rewards[name]
    kind = spec.get("type")
    cls, cfg_cls = get_reward_class(kind, name), get_reward_config_class(kind, name)
    return cls.from_config(cfg_cls.from_dict(spec, name), name=name, device=device,
                           trust_remote_code=trust_remote_code)
