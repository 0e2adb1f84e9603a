"""From raw attributions to token shares, and from shares to the shaped per-token reward.

``normalise(a, r)``: e_t = a_t / sum(a), so the shares sum to 1 over the response. Negative
attributions are kept (a token that pulled the score against the net effect gets a share, and so
a reward, of the other sign). The division is used only when it is well defined and means what it
says: sum(a) has the sign of the reward r (the tokens' net effect is what earned r) and
|sum(a)| >= min_net_share * sum(|a|) (the attributions do not nearly cancel, which would blow the
shares up). Otherwise - all attributions zero, cancelling, of the other sign than r, or r = 0 - e is
uniform, 1 / T. An empty response has no shares.

``shaped_rewards``: r'_t = (sum_k w_k e_{k,t}) * r with w on the simplex, so sum_t r'_t = r exactly
(the float64 rounding residual is put on the last token) and the optimal policy is the sparse
reward's (Koo et al. 2025, for additive attributions: the shaping only redistributes r within a
response).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def normalise(a: np.ndarray, r: float, min_net_share: float = 0.1) -> tuple[np.ndarray, bool]:
    """Shares e (T,) float64 summing to 1, and whether they fell back to uniform (see the module docstring)."""
    a = np.asarray(a, dtype=np.float64)
    T = len(a)
    if T == 0:
        return a.copy(), False
    net, total = float(a.sum()), float(np.abs(a).sum())
    if total > 0 and net * r > 0 and abs(net) >= min_net_share * total:
        return a / net, False
    return np.full(T, 1.0 / T), True


def shaped_rewards(shares: Mapping[str, Sequence[np.ndarray]], weights: Mapping[str, float],
                   rewards: Sequence[float]) -> list[np.ndarray]:
    """Per response: r'_t = (sum_k w_k e_{k,t}) * r, float64 (T_i,), summing to r_i.

    ``shares[k][i]``: component k's shares of response i (each summing to 1); ``weights``: w_k summing to 1.
    """
    out = []
    for i, r in enumerate(rewards):
        mixed = None
        for k, w in weights.items():
            if w > 0:
                term = w * np.asarray(shares[k][i], dtype=np.float64)
                mixed = term if mixed is None else mixed + term
        row = np.zeros(0) if mixed is None else mixed * float(r)
        if len(row):
            row[-1] += float(r) - row.sum()  # rounding residual: the row sums to r in float64
        out.append(row)
    return out
