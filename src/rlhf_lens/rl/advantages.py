"""Generalised advantage estimation, masked statistics, the k3 KL estimate and the adaptive KL controller.

Written here rather than taken from a library: TRL dropped PPO, and these are a few lines each
whose exact conventions (masking of padded response tokens, KL measured per sequence) the tests pin.
All tensors are (B, T) over response tokens; ``mask`` is 1 on real tokens, 0 on padding after a
response's end (responses are right-padded, so a row's real tokens come first).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over entries where ``mask`` is 1 (a scalar tensor)."""
    return (x * mask).sum() / mask.sum().clamp_min(1)


def masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Unbiased variance of ``x`` over masked entries (0 when fewer than two)."""
    n = mask.sum()
    mean = masked_mean(x, mask)
    ss = (((x - mean) * mask) ** 2).sum()
    return ss / (n - 1) if n > 1 else torch.zeros_like(ss)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over masked entries; padding entries become 0."""
    return (x - masked_mean(x, mask)) * torch.rsqrt(masked_var(x, mask) + eps) * mask


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || pi_ref) (Schulman 2020), the estimator GRPO puts in its loss.

    With log-ratio d = ref_logp - logp of a token sampled from pi: k3 = exp(d) - d - 1 >= 0, whose
    expectation under pi is the exact KL (E[exp(d)] = 1). Differentiable in ``logp``; same shape.
    """
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Advantages and returns, both (B, T), by GAE (Schulman et al. 2016).

    delta_t = r_t + gamma * V_{t+1} - V_t, A_t = delta_t + gamma * lam * A_{t+1}, with V and A
    past a row's last real token taken as 0 (the episode ends there). returns = A + V.
    """
    rewards, values, mask = rewards * mask, values * mask, mask.to(rewards.dtype)
    T = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(rewards[:, 0])
    next_value = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        m_next = mask[:, t + 1] if t + 1 < T else torch.zeros_like(mask[:, 0])
        delta = rewards[:, t] + gamma * next_value * m_next - values[:, t]
        adv[:, t] = (delta + gamma * lam * next_adv * m_next) * mask[:, t]
        next_adv, next_value = adv[:, t], values[:, t]
    return adv, (adv + values) * mask


@dataclass
class KLController:
    """Coefficient of the per-token KL penalty; adaptive by Ziegler et al. (2019) or fixed.

    Adaptive update after a batch of ``n`` rollouts whose mean per-sequence KL is ``kl``:
    e = clip(kl / target - 1, -0.2, 0.2); coef <- coef * (1 + e * n / horizon).
    """

    value: float
    target: float | None = None
    horizon: int = 10000

    def update(self, kl: float, n: int) -> float:
        if self.target is not None:
            error = min(max(kl / self.target - 1.0, -0.2), 0.2)
            self.value *= 1.0 + error * n / self.horizon
        return self.value

    def state_dict(self) -> dict:
        return {"value": self.value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict) -> None:
        self.value, self.target, self.horizon = state["value"], state["target"], state["horizon"]
