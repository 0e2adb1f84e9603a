"""The two components that need no explanation: the sparse last-token reward and the uniform spread.

``last_token``: all of the reward on the response's last token (its "attribution" is 1 there), what
TRL's PPO did and the paper's baseline. ``uniform``: 1 / T on each of the T tokens.
"""

from __future__ import annotations

import numpy as np

from .base import Explainer


class LastToken(Explainer):
    """e = (0, ..., 0, 1): the sparse reward."""

    name = "last_token"
    calls_reward = False
    gives_shares = True

    def attribute(self, scorer, prompts, responses, spans):
        out = []
        for s in spans:
            a = np.zeros(len(s))
            if len(s):
                a[-1] = 1.0
            out.append(a)
        return out


class Uniform(Explainer):
    """e = 1 / T on every token."""

    name = "uniform"
    calls_reward = False
    gives_shares = True

    def attribute(self, scorer, prompts, responses, spans):
        return [np.full(len(s), 1.0 / len(s)) if len(s) else np.zeros(0) for s in spans]
