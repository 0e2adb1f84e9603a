"""PPO (Schulman et al. 2017) as the paper ran it with TRL 0.7: GAE on a value head, clipped losses.

The per-token reward is r_t = score_t - kl_coef * (log pi(y_t) - log pi_ref(y_t)); advantages come
from GAE with the value head's predictions and are whitened over the batch's response tokens; the
loss is the clipped policy loss plus ``vf_coef`` times the clipped value loss. Everything else
(sampling, reference, KL controller, minibatches, optimiser, checkpoints) is the shared
``rl.trainer.RLTrainer``; see ``rl.algorithm`` for the interface.

Why our own: TRL removed its PPO, and that PPO only ever rewarded the last token, while reward
shaping and R2M need dense rewards. No torch at import time (config validation imports this).
"""

from __future__ import annotations

from typing import Any

from .algorithm import Advantages, Algorithm, Rollout


class PPO(Algorithm):
    """GAE advantages on the value head; clipped policy loss + vf_coef * clipped value loss."""

    name = "ppo"
    needs_value_head = True
    unused_settings = ("group_size", "scale_rewards")

    def advantages(self, rollout: Rollout, config) -> Advantages:
        from .advantages import gae, masked_whiten

        rewards = rollout.score - rollout.kl_coef * rollout.kl
        adv, returns = gae(rewards, rollout.values, rollout.mask, config.gamma, config.lam)
        if config.whiten_advantages:
            adv = masked_whiten(adv, rollout.mask)
        return Advantages(adv, rewards, returns)

    def loss(self, logp, values, old: Rollout, config) -> tuple[Any, dict[str, Any]]:
        import torch

        from .advantages import masked_mean

        m, a = old.mask, old.advantages
        ratio = torch.exp(logp - old.logp)
        pg1, pg2 = -a * ratio, -a * ratio.clamp(1 - config.cliprange, 1 + config.cliprange)
        pg_loss = masked_mean(torch.maximum(pg1, pg2), m)
        v_old = old.values
        v_clip = v_old + (values - v_old).clamp(-config.cliprange_value, config.cliprange_value)
        vf1, vf2 = (values - old.returns) ** 2, (v_clip - old.returns) ** 2
        vf_loss = 0.5 * masked_mean(torch.maximum(vf1, vf2), m)
        loss = pg_loss + config.vf_coef * vf_loss
        with torch.no_grad():
            stats = {"policy_loss": pg_loss.detach(), "value_loss": vf_loss.detach(),
                     "clip_frac": masked_mean((pg2 > pg1).float(), m),
                     "value_clip_frac": masked_mean((vf2 > vf1).float(), m)}
        return loss, stats
