"""Statistics within prompt groups for the group methods (GRPO, RLOO): means, standard deviations,
leave-one-out baselines and the two advantage estimators.

Inputs are one value per rollout, ``x`` (B,) float (a sequence reward), and ``groups`` (B,) long,
the prompt index of each rollout (``Rollout.groups``: 0 .. G - 1, every id present). Outputs are
(B,): each rollout gets its own group's statistic, so callers never reshape into (G, K) and a
group may have any size >= 2.

Written here rather than taken from TRL: its GRPO and RLOO compute these inside trainer methods
that also gather across processes and log, with no function to call; ours are a few lines each,
pinned by known-answer tests. Statistics are computed in float64 (B values only) so that a group
whose rewards are all equal has no rounding residue: its advantages are set to exactly 0.
"""

from __future__ import annotations

import torch

from .grpo import SCALINGS

EPS = 1e-4
"""Added to a standard deviation before dividing by it (TRL's GRPO uses the same 1e-4): a group whose
rewards differ only by float rounding gets advantages near 0 instead of +-0.7."""


def _sums(x: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-group sums (G,), per-group counts (G,)), both float64."""
    n = int(groups.max()) + 1
    sums = torch.zeros(n, dtype=torch.float64, device=x.device).index_add_(0, groups, x.double())
    counts = torch.bincount(groups, minlength=n).double()
    return sums, counts


def group_mean(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B,) float64: the mean of each rollout's group."""
    sums, counts = _sums(x, groups)
    return (sums / counts)[groups]


def group_std(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B,) float64: the unbiased standard deviation of each rollout's group (0 for a group of one)."""
    dev = x.double() - group_mean(x, groups)
    ss, counts = _sums(dev ** 2, groups)
    return torch.sqrt(ss / (counts - 1).clamp_min(1))[groups]


def group_all_equal(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B,) bool: True where every rollout of the group has the same value."""
    n = int(groups.max()) + 1
    lo = torch.full((n,), float("inf"), dtype=torch.float64, device=x.device)
    hi = torch.full((n,), float("-inf"), dtype=torch.float64, device=x.device)
    lo = lo.scatter_reduce(0, groups, x.double(), "amin")
    hi = hi.scatter_reduce(0, groups, x.double(), "amax")
    return (hi == lo)[groups]


def grpo_advantages(x: torch.Tensor, groups: torch.Tensor, scale: str = "group") -> torch.Tensor:
    """(B,) GRPO advantages of sequence rewards ``x``: A_i = (x_i - mean_g) / s.

    ``scale``: group (s = std_g + EPS, unbiased within the group), batch (s = std of all B rewards
    + EPS) or none (s = 1). A group whose rewards are all equal gets A = 0 exactly, whatever the scale.
    """
    if scale not in SCALINGS:
        raise ValueError(f"scale_rewards {scale!r}: expected one of {', '.join(SCALINGS)}")
    centred = x.double() - group_mean(x, groups)
    if scale == "group":
        centred = centred / (group_std(x, groups) + EPS)
    elif scale == "batch":
        batch_std = x.double().std() if x.numel() > 1 else torch.zeros((), dtype=torch.float64)
        centred = centred / (batch_std + EPS)
    centred = torch.where(group_all_equal(x, groups), torch.zeros_like(centred), centred)
    return centred.to(x.dtype)


def rloo_advantages(x: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """(B,) RLOO advantages: A_i = x_i - (sum_g - x_i) / (n_g - 1), the mean of the other n_g - 1 of its group.

    Equal to n_g / (n_g - 1) * (x_i - mean_g). Needs every group to have at least two rollouts
    (ValueError otherwise); an all-equal group gets A = 0 exactly.
    """
    sums, counts = _sums(x, groups)
    if bool((counts < 2).any()):
        raise ValueError("RLOO needs at least two rollouts per prompt group (group_size >= 2)")
    xd = x.double()
    adv = xd - (sums[groups] - xd) / (counts[groups] - 1)
    adv = torch.where(group_all_equal(x, groups), torch.zeros_like(adv), adv)
    return adv.to(x.dtype)


def group_stats(x: torch.Tensor, groups: torch.Tensor) -> dict[str, float]:
    """Logged per step: ``group_reward_std``, the mean over groups of the within-group std of ``x``, and
    ``zero_std_groups``, the fraction of groups whose rewards are all equal (no learning signal; TRL's
    frac_reward_zero_std). Each group counts once, whatever its size."""
    # Each rollout carries its group's value: a group's sum over its rollouts divided by its size is that
    # value again (exactly, for the 0/1 flags), so the mean over groups of all-equal flags is k / G exactly.
    std, counts = _sums(group_std(x, groups), groups)
    equal, _ = _sums(group_all_equal(x, groups), groups)
    return {"group_reward_std": float((std / counts).mean()), "zero_std_groups": float((equal / counts).mean())}
