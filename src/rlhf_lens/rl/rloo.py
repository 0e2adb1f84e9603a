"""RLOO (Ahmadian et al. 2024, "Back to Basics"): REINFORCE with a leave-one-out baseline, no value head.

Reward: R_i = sum_t score_{i,t} - kl_coef * sum_t (log pi(y_t) - log pi_ref(y_t)), a per-token
reward summed over the response, with the KL penalty in the reward as in the paper and TRL's
RLOOTrainer (k1 per token, summed to the sequence; kl_coef from the shared controller:
``init_kl_coef``, adaptive towards ``target_kl`` if ``adaptive_kl``; TRL's default beta is 0.05).
Advantage: A_i = R_i - mean of the other K - 1 rewards of its group (``groups.rloo_advantages``),
unnormalised (TRL's default normalize_advantages=False); an all-equal group gets A = 0 exactly.

Loss: the whole response is one action (as in the paper and TRL 1.x's RLOOTrainer): with the
sequence ratio rho_i = exp(sum_t log pi(y_t) - log pi_old(y_t)),
    mean_i max(-A_i rho_i, -A_i clip(rho_i, 1 - cliprange, 1 + cliprange)),
which is REINFORCE's -A_i * sum_t log pi(y_t) in gradient while rho = 1 (the first minibatch of a
step), and clips later epochs' steps as PPO does.
"""

from __future__ import annotations

from typing import Any

from .algorithm import Advantages, Rollout
from .group_method import PPO_ONLY, GroupAlgorithm


class RLOO(GroupAlgorithm):
    """Leave-one-out advantages on the KL-penalised sequence reward; clipped sequence-level loss."""

    name = "rloo"
    unused_settings = (*PPO_ONLY, "scale_rewards")

    def advantages(self, rollout: Rollout, config) -> Advantages:
        from .groups import group_stats, rloo_advantages

        groups = self.require_groups(rollout)
        rewards = (rollout.score - rollout.kl_coef * rollout.kl) * rollout.mask
        seq = rewards.sum(1)
        adv = rloo_advantages(seq, groups)
        return Advantages(adv[:, None] * rollout.mask, rewards, None, stats=group_stats(seq, groups))

    def loss(self, logp, values, old: Rollout, config) -> tuple[Any, dict[str, Any]]:
        import torch

        m = old.mask
        a = old.advantages[:, 0]  # the same on every real token; 0 for an empty response (masked)
        ratio = torch.exp(((logp - old.logp) * m).sum(1))
        pg1, pg2 = -a * ratio, -a * ratio.clamp(1 - config.cliprange, 1 + config.cliprange)
        pg = torch.maximum(pg1, pg2)
        loss = pg.mean()
        with torch.no_grad():
            stats = {"policy_loss": loss.detach(), "clip_frac": (pg2 > pg1).float().mean()}
        return loss, stats
