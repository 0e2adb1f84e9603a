"""Settings of the scoring stage."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScoringConfig:
    """Settings of the scoring stage (``scoring:`` in config.yaml, plus the reward's table)."""

    table: str = "vader"
    """Utility table: vader (the VADER lexicon) or a word,utility CSV path."""
    top_n_tokens: int = 20
    """Tokens promoted through the unembedding that a feature's unembedding utility averages over."""
    bootstrap: int = 2000
    """Bootstrap resamples over features for the CIs."""
    permutations: int = 2000
    """Permutations of the role labels for the base vs RLHF tests."""
    ci_level: float = 0.95
    """Confidence level of the intervals."""
