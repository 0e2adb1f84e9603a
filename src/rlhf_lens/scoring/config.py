"""Settings of the scoring stage, and the names of what it measures."""

from __future__ import annotations

from dataclasses import dataclass

MEASURES = {
    "table3": "sum of |utility| of the explanations (Table 3)",
    "token_utility": "mean |token utility|",
    "unembed_utility": "mean |unembedding utility|",
}
"""The measures of the scoring stage: the keys of its statistics JSON, each with the words the report names it by."""

LLM_FREE_MEASURES = tuple(k for k in MEASURES if k != "table3")
"""The measures that need no LLM: per-latent columns of the scoring table (token_utility, unembed_utility)."""


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
