"""A reward whose per-token form is the shaped reward: explanation-weighted shares of the sequence reward.

``ShapedReward(base, config)`` scores like ``base`` (``score`` is unchanged, so gold scoring and
evaluation see the plain reward); its ``token_rewards`` returns r'_t = (sum_k w_k e_{k,t}) * r for
the configured components k (``rl.shaping.weights``), with each e_k from its explainer
(``registry``) and ``normalise``. The PPO rollout calls ``token_rewards`` once per step, so the
attributions are computed inside the rollout step, batched over its responses; ``step_stats``
reports what the last call cost (reward calls, texts scored, seconds, per component), which the RL
run logs with the step.

Attributions are cached per component by (prompt, response text, token spans): the policy often
samples a response again (late in training, short responses), and the cache makes that free.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Sequence

import numpy as np

from ..rewards.base import Reward, Span
from .base import Explainer
from .batching import BatchedScorer
from .config import ShapingConfig
from .normalise import normalise, shaped_rewards
from .registry import get_explainer_class


class ShapedReward(Reward):
    """``base`` with its per-token form replaced by the shaped reward (see the module docstring)."""

    per_token = True

    def __init__(self, base: Reward, config: ShapingConfig):
        self.base, self.config, self.name = base, config, base.name
        self.weights = {k: float(w) for k, w in config.weights.items() if w > 0}
        self.explainers: dict[str, Explainer] = {k: get_explainer_class(k)(config, base) for k in self.weights}
        self.scorer = BatchedScorer(base)
        self._cache: dict[str, OrderedDict] = {k: OrderedDict() for k in self.weights}
        self._stats: dict[str, float] = {}
        self.last_shares: dict[str, list[np.ndarray]] = {}
        """Each component's shares e_k of the last ``token_rewards`` batch (for tables and tests)."""
        self.last_raw: dict[str, list[np.ndarray]] = {}
        """Each component's raw attributions of the last batch."""

    def to(self, device: str) -> "ShapedReward":
        self.base.to(device)
        return self

    def score(self, prompts: Sequence[str], responses: Sequence[str]):
        return self.base.score(prompts, responses)

    def attributions(self, name: str, prompts: Sequence[str], responses: Sequence[str],
                     spans: Sequence[Sequence[Span]]) -> list[np.ndarray]:
        """Raw attributions of component ``name`` per response (cached by text), float64 (T_i,)."""
        explainer, cache = self.explainers[name], self._cache[name]
        keys = [(p, r, tuple(map(tuple, s)), explainer.settings()) for p, r, s in zip(prompts, responses, spans)]
        todo = list(dict.fromkeys(k for k in keys if k not in cache))
        if todo:
            values = explainer.attribute(self.scorer, [k[0] for k in todo], [k[1] for k in todo],
                                         [list(k[2]) for k in todo])
            for k, v in zip(todo, values):
                cache[k] = v
                if len(cache) > self.config.cache_size:
                    cache.popitem(last=False)
        out = []
        for k in keys:
            if k in cache:
                cache.move_to_end(k)
                out.append(cache[k])
            else:  # evicted within this batch (cache smaller than the batch): explain it again
                out.append(explainer.attribute(self.scorer, [k[0]], [k[1]], [list(k[2])])[0])
        return out

    def shaped(self, prompts: Sequence[str], responses: Sequence[str],
               spans: Sequence[Sequence[Span]]) -> tuple[list[np.ndarray], np.ndarray]:
        """(shaped rewards per response, float64 (T_i,) summing to r_i; the sequence rewards r (B,) float64)."""
        stats: dict[str, float] = {}
        before = self.scorer.stats.since(type(self.scorer.stats)())
        r = np.array([self.scorer.score(p, [t])[0] for p, t in zip(prompts, responses)]) if prompts else np.zeros(0)
        shares, raws = {}, {}
        for k in self.weights:
            t0, before = time.perf_counter(), self.scorer.stats.since(type(self.scorer.stats)())
            raw = self.attributions(k, prompts, responses, spans)
            cost = self.scorer.stats.since(before)
            if self.explainers[k].gives_shares:  # (0, ..., 1) is the last token's share for a negative r too
                normed = [(np.asarray(a, dtype=np.float64), False) for a in raw]
            else:
                normed = [normalise(a, ri, self.config.min_net_share) for a, ri in zip(raw, r)]
            shares[k], raws[k] = [e for e, _ in normed], raw
            if self.explainers[k].calls_reward:
                stats[f"shaping_{k}_seconds"] = time.perf_counter() - t0
                stats[f"shaping_{k}_reward_calls"] = float(cost.calls)
                stats[f"shaping_{k}_reward_texts"] = float(cost.texts)
                stats[f"shaping_{k}_uniform_frac"] = float(np.mean([f for _, f in normed])) if normed else 0.0
        self.last_shares, self.last_raw, self._stats = shares, raws, stats
        return shaped_rewards(shares, self.weights, r), r

    def token_rewards(self, prompts: Sequence[str], responses: Sequence[str], token_spans: Sequence[Sequence[Span]]):
        """(B, T) float32 shaped rewards, zeros past each row's end; row i sums to the reward of response i."""
        import torch

        rows, _ = self.shaped(prompts, responses, token_spans)
        width = max((len(s) for s in token_spans), default=0) or 1
        out = torch.zeros(len(rows), width, dtype=torch.float64)
        for i, row in enumerate(rows):
            out[i, :len(row)] = torch.from_numpy(row)
        return out.float()

    def step_stats(self) -> dict[str, float]:
        return dict(self._stats)
