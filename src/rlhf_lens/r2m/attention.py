"""R2M's cross-attention from the RM's last-token embedding to the policy's hidden states, and omega(t).

``H_attn = softmax(q k^T / sqrt(d)) v W_o`` with ``q = H_last W_q`` (1 x d per sequence), ``k = h W_k``,
``v = h W_v`` (S x d) over the response tokens only, and ``H = (1 - omega) H_attn + omega H_last``
(ANCHORS.md section 6; no residual or norm, as the paper). W_o starts at zero, so an untrained R2M scores
omega(t) times its reward model's logit (the plain RM's head is linear without bias): the RM itself at t = 0;
the first GREBT step moves W_o, later ones all four.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def omega(step: int, steps: int, omega_min: float) -> float:
    """omega(t) = max(cos(pi t / T) / 2 + 1/2, Omega): 1 at t = 0, falling to the floor Omega (T = steps)."""
    return max(0.5 * math.cos(math.pi * step / max(steps, 1)) + 0.5, omega_min)


class CrossAttention(nn.Module):
    """Single-head cross-attention: query from the RM embedding (D_rm), keys/values from the policy (D_policy)."""

    def __init__(self, d_rm: int, d_policy: int, width: int, seed: int = 0):
        super().__init__()
        self.d_rm, self.d_policy, self.width = d_rm, d_policy, width
        # nn.Linear draws its initial weights from torch's global RNG, which the RL run's sampling (and its
        # bit-identical resume) owns: build under a forked RNG, then draw from this module's own generator.
        with torch.random.fork_rng(devices=[]):
            self.q = nn.Linear(d_rm, width, bias=False)
            self.k = nn.Linear(d_policy, width, bias=False)
            self.v = nn.Linear(d_policy, width, bias=False)
            self.o = nn.Linear(width, d_rm, bias=False)
        gen = torch.Generator().manual_seed(seed)
        for lin in (self.q, self.k, self.v):
            bound = 1.0 / math.sqrt(lin.in_features)  # nn.Linear's default range
            with torch.no_grad():
                lin.weight.uniform_(-bound, bound, generator=gen)
        nn.init.zeros_(self.o.weight)

    def forward(self, h_last: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """H_attn (B, D_rm) from ``h_last`` (B, D_rm), ``hidden`` (B, T, D_policy) and ``mask`` (B, T) 1 on tokens.

        A row without tokens attends to nothing and gets H_attn = 0.
        """
        q = self.q(h_last)  # (B, d)
        k, v = self.k(hidden), self.v(hidden)  # (B, T, d)
        logits = torch.einsum("bd,btd->bt", q, k) / math.sqrt(self.width)
        real = mask > 0
        logits = logits.masked_fill(~real, float("-inf"))
        any_real = real.any(1, keepdim=True)
        att = torch.softmax(torch.where(any_real, logits, torch.zeros_like(logits)), dim=-1) * any_real
        return self.o(torch.einsum("bt,btd->bd", att, v))


def mix(h_attn: torch.Tensor, h_last: torch.Tensor, w: float) -> torch.Tensor:
    """H = (1 - omega) H_attn + omega H_last, (B, D_rm)."""
    return (1.0 - w) * h_attn + w * h_last
