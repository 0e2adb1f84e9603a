"""What every diffing method returns, and the interface it implements.

A method is a class with a ``name``, a typed config (a dataclass with a docstring per field, only its
own keys) and ``run(ctx, cfg) -> MethodResult``. ``MethodResult.token_scores`` has one row per
independent unit, so readouts can resample that unit (DESIGN.md's statistics rules): prompt groups of
the context corpus for corpus-based methods, seeds for anything trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pandas as pd

Unit = Literal["prompt_group", "seed"]


@dataclass
class MethodResult:
    """One method's recovered scores.

    ``token_scores``: (n_units, vocab_size) float64; row u is the score of every vocabulary token
    (by token id) estimated from unit u alone, so their mean is the method's score and resampling rows
    gives its CI. Higher means "the policy favours this token more than the base model".
    """

    token_scores: np.ndarray
    unit: Unit
    latents: pd.DataFrame | None = None
    """Dictionary methods: one row per latent (latent, change, top_tokens, decoded_words, token_utility, ...)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth saving as JSON beside the tables (e.g. a depth profile, a steering check)."""

    def __post_init__(self) -> None:
        scores = np.asarray(self.token_scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[0] < 1:
            raise ValueError(f"token_scores must be (n_units >= 1, vocab_size); got shape {scores.shape}")
        self.token_scores = scores

    @property
    def mean_scores(self) -> np.ndarray:
        """(vocab_size,) float64: the method's score per token, the mean over units."""
        return self.token_scores.mean(axis=0)


class DiffingMethod(Protocol):
    """A diffing method: ``run`` reads what it needs from ``ctx`` (a ``stage.DiffContext``)."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    def run(self, ctx: Any, cfg: Any) -> MethodResult: ...
