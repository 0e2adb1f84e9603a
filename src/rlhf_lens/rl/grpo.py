"""GRPO (Shao et al. 2024, DeepSeekMath): group-standardised sequence rewards, no value head, k3 KL in the loss.

Advantages: each response's sequence reward R_i = sum_t score_{i,t} (a per-token reward summed
over the response) is centred on its group's mean and scaled as ``scale_rewards`` says (group:
divided by the group's unbiased std + 1e-4, as the paper and TRL's default; batch: by the
batch's std; none: Dr. GRPO), then put on every token of the response. The reward holds no KL.
An all-equal group gets advantage 0 exactly (``groups.grpo_advantages``), never NaN.

Loss, per token t of response i, averaged over the minibatch's response tokens (TRL's "bnpo",
which is its default "dapo" on one process without gradient accumulation):
    max(-A_i r_t, -A_i clip(r_t, 1 - cliprange, 1 + cliprange)) + beta * k3_t,
r_t = pi(y_t) / pi_old(y_t), k3_t = exp(d) - d - 1 with d = log pi_ref(y_t) - log pi(y_t) (the
paper's and TRL's unbiased, non-negative estimator; ``advantages.k3_kl``). beta is the shared KL
controller's coefficient (``init_kl_coef``, adaptive towards ``target_kl`` if ``adaptive_kl``);
init_kl_coef 0 turns the penalty off (TRL's GRPO default beta is 0.0).
"""

from __future__ import annotations

from typing import Any

from .algorithm import Advantages, Rollout
from .group_method import GroupAlgorithm

SCALINGS = ("group", "batch", "none")


class GRPO(GroupAlgorithm):
    """Group-standardised advantages; clipped token-level loss + beta * k3 KL to the reference."""

    name = "grpo"

    def problems(self, config, prefix: str = "rl.ppo") -> list[str]:
        out = super().problems(config, prefix)
        if config.scale_rewards not in SCALINGS:
            out.append(f"key '{prefix}.scale_rewards' has value {config.scale_rewards!r}: expected one of "
                       f"{', '.join(SCALINGS)}")
        return out

    def advantages(self, rollout: Rollout, config) -> Advantages:
        from .groups import group_stats, grpo_advantages

        groups = self.require_groups(rollout)
        seq = rollout.score.sum(1)
        adv = grpo_advantages(seq, groups, config.scale_rewards)
        return Advantages(adv[:, None] * rollout.mask, rollout.score, None, stats=group_stats(seq, groups))

    def loss(self, logp, values, old: Rollout, config) -> tuple[Any, dict[str, Any]]:
        import torch

        from .advantages import k3_kl, masked_mean

        m, a = old.mask, old.advantages
        ratio = torch.exp(logp - old.logp)
        pg1, pg2 = -a * ratio, -a * ratio.clamp(1 - config.cliprange, 1 + config.cliprange)
        pg = torch.maximum(pg1, pg2)
        kl = k3_kl(logp, old.ref_logp)
        loss = masked_mean(pg + old.kl_coef * kl, m)
        with torch.no_grad():
            stats = {"policy_loss": masked_mean(pg, m), "kl_k3": masked_mean(kl, m),
                     "clip_frac": masked_mean((pg2 > pg1).float(), m)}
        return loss, stats
