"""GREBT, R2M's loss for its attention and head: (1 - alpha) BT + alpha GRE over the prompt groups.

For each group (the K responses to one prompt) with current-R2M scores r:

- BT = -log sigmoid(r_best - r_worst), the pseudo-pair of its highest and lowest score (picked by the
  current scores, detached, so the pair is the one the RM would call best and worst now);
- GRE = -sum_j p_j log p_j with p = softmax((r - mean) / (std + EPS)) (unbiased std, EPS as GRPO's),
  the entropy that is largest when every reward is equal ("group degeneration"); minimising it spreads them.

Both are averaged over groups (each group counts once, whatever its size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..rl.groups import EPS


def pseudo_pairs(scores: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(best (G,), worst (G,)) row indices of each group's highest and lowest score (ties: first row)."""
    best, worst = [], []
    for g in range(int(groups.max()) + 1):
        rows = (groups == g).nonzero().squeeze(1)
        r = scores.detach()[rows]
        best.append(rows[int(r.argmax())])
        worst.append(rows[int(r.argmin())])
    return torch.stack(best), torch.stack(worst)


def group_entropy(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """GRE (scalar): the mean over groups of the entropy (nats) of the softmax of the standardised scores."""
    out = []
    for g in range(int(groups.max()) + 1):
        r = scores[groups == g]
        z = (r - r.mean()) / (r.std() + EPS) if len(r) > 1 else r - r
        logp = F.log_softmax(z, dim=0)
        out.append(-(logp.exp() * logp).sum())
    return torch.stack(out).mean()


def grebt(scores: torch.Tensor, groups: torch.Tensor, alpha: float) -> tuple[torch.Tensor, dict[str, float]]:
    """(loss, statistics) of ``scores`` (B,) with gradients and ``groups`` (B,) long (0 .. G - 1)."""
    best, worst = pseudo_pairs(scores, groups)
    margin = scores[best] - scores[worst]
    bt = -F.logsigmoid(margin).mean()
    gre = group_entropy(scores, groups)
    loss = (1.0 - alpha) * bt + alpha * gre
    return loss, {"r2m_bt": float(bt.detach()), "r2m_gre": float(gre.detach()), "r2m_margin": float(margin.detach().mean())}
