"""The attribution interface: raw per-token attributions of a sequence reward over the response tokens.

An ``Explainer`` takes a batch of (prompt, response) texts with each response token's character
span (as ``rl.text.decode_with_spans`` gives them) and returns, per response, a float64 array of
length T_i (its number of tokens): how much of the reward's score each token accounts for, in the
reward's units (SHAP and integrated gradients sum to f(x) - f(baseline); LIME's coefficients do
approximately). Tokens with an empty span (special tokens) get 0. ``normalise`` turns them into
shares summing to 1. Explainers that call the reward do so through a ``BatchedScorer`` (a cache by
text, and one reward call per round across the batch's responses).
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import numpy as np

Span = tuple[int, int]


class ShapingError(ValueError):
    """An attribution that cannot run as configured; the message names the key or the reward."""


class Explainer(ABC):
    """One attribution method; ``attribute`` works on a whole rollout batch at once."""

    name: ClassVar[str] = ""
    calls_reward: ClassVar[bool] = True
    """False for components that need no reward evaluations (last_token, uniform)."""
    gives_shares: ClassVar[bool] = False
    """True when ``attribute`` returns the shares themselves (each row summing to 1 whatever the reward's sign:
    last_token, uniform), which ``normalise``'s sign check must not turn into a uniform spread."""

    def __init__(self, config, reward=None):
        self.config, self.reward = config, reward

    def settings(self) -> tuple:
        """The settings that change this explainer's values (part of the attribution cache key)."""
        return ()

    @abstractmethod
    def attribute(self, scorer, prompts: Sequence[str], responses: Sequence[str],
                  spans: Sequence[Sequence[Span]]) -> list[np.ndarray]:
        """Raw attributions per response: float64 arrays of length len(spans[i])."""


def token_texts(response: str, spans: Sequence[Span]) -> tuple[list[int], list[Span]]:
    """Indices and spans of the tokens with a non-empty span (the ones an explainer can mask)."""
    keep = [t for t, (s, e) in enumerate(spans) if e > s]
    return keep, [tuple(spans[t]) for t in keep]


def text_seed(seed: int, *texts: str) -> int:
    """A 32-bit seed from ``seed`` and the texts: the same text draws the same perturbations in any batch."""
    h = zlib.crc32("\x00".join(texts).encode("utf-8", "surrogatepass"))
    return int((h ^ (seed * 0x9E3779B1)) & 0x7FFFFFFF)
