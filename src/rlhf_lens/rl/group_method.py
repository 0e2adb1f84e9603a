"""What the group methods (GRPO, RLOO) share: K samples per prompt, the settings they need, no value head.

``RLRun`` draws batch_size / K prompts a step and samples each K times; the K rollouts of a prompt
share a group id (``Rollout.groups``). A per-token reward (the utility table's word shares) is
summed over the response to one sequence reward before the group statistics: GRPO and RLOO score
whole responses. No torch at import time (config validation asks ``problems``).
"""

from __future__ import annotations

from typing import ClassVar

from .algorithm import Algorithm

PPO_ONLY = ("gamma", "lam", "cliprange_value", "vf_coef", "whiten_advantages")
"""PPOConfig fields of GAE, the value head and advantage whitening, which no group method reads."""


class GroupAlgorithm(Algorithm):
    """Base of the algorithms that compare K responses to one prompt: ``group_size`` samples, no value head."""

    needs_value_head: ClassVar[bool] = False
    unused_settings: ClassVar[tuple[str, ...]] = PPO_ONLY

    def samples_per_prompt(self, config) -> int:
        return config.group_size

    def problems(self, config, prefix: str = "rl.ppo") -> list[str]:
        k = config.group_size
        if k < 2:
            return [f"key '{prefix}.group_size' has value {k}: expected >= 2 for rl.algorithm {self.name} "
                    "(a group method compares the K responses to one prompt)"]
        if config.batch_size % k:
            return [f"key '{prefix}.batch_size' has value {config.batch_size}: expected a multiple of "
                    f"group_size ({k}) for rl.algorithm {self.name} (each prompt is sampled group_size times)"]
        return []

    @staticmethod
    def require_groups(rollout):
        """The rollout's group ids (B,); a clear error when the caller passed none."""
        if rollout.groups is None:
            raise ValueError("a group method needs each rollout's prompt index: pass groups= to RLTrainer.step")
        return rollout.groups
