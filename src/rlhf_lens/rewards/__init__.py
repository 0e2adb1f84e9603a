"""Rewards that RLHF trains against: a word-utility table and a sequence classifier.

``build_reward(name, rewards_config)`` builds the reward named in config (``rewards:``); every
reward scores (prompt, response) pairs with ``score`` -> (B,) and ``token_rewards`` -> (B, T).
"""

from __future__ import annotations

from .base import Reward, RewardError, last_token_rewards

__all__ = ["Reward", "RewardError", "build_reward", "last_token_rewards"]


def build_reward(name: str, rewards: dict, device: str = "cpu", trust_remote_code: bool = False) -> Reward:
    """The reward ``rewards[name]`` (config ``rewards.<name>``); fails with a message naming the key or file."""
    if name not in rewards:
        raise RewardError(f"unknown reward {name!r}: config 'rewards' defines {', '.join(sorted(rewards)) or 'none'}")
    spec = rewards[name]
    kind = spec.get("type")
    if kind == "utility_table":
        from .utility_table import UtilityTableReward, load_table

        try:
            table = load_table(spec.get("table", "vader"))
        except RewardError as exc:
            raise RewardError(f"key 'rewards.{name}.table': {exc}") from exc
        return UtilityTableReward(table, scope=spec.get("scope", "response"), name=name)
    if kind == "classifier":
        from .classifier import ClassifierReward

        return ClassifierReward(spec["model"], spec["label"], name=name, device=device,
                                trust_remote_code=trust_remote_code, scope=spec.get("scope", "response"))
    raise RewardError(f"key 'rewards.{name}.type' has value {kind!r}: expected utility_table or classifier")
