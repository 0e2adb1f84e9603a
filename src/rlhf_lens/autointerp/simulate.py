"""Simulate a feature from its explanation and score the simulation.

"All at once" simulation: the simulator writes every token line with a predicted activation
in one answer. Where the backend gives token probabilities, the prediction for a token is the
expected value ``sum_v v * p(v)`` over the digits 0-10 at the position where the model writes
that token's activation; otherwise the written integer is used. The score is the Pearson
correlation of predicted vs true activations over ALL held-out windows concatenated (not a
mean of per-window correlations, which is undefined for silent windows and overweights short
ones).
"""

from __future__ import annotations

import math
import re

import numpy as np

from .llm import ChatLLM, Completion
from .prompts import simulation_messages

DIGITS = {str(v): v for v in range(11)}


def expected_digit(top_logprobs: dict[str, float]) -> float | None:
    """E[v] under the model's probabilities of the tokens "0".."10", renormalised over them.

    Token texts are stripped of whitespace. None when no digit is among the top tokens.
    """
    mass: dict[int, float] = {}
    for token, logprob in top_logprobs.items():
        value = DIGITS.get(token.strip())
        if value is not None:
            mass[value] = mass.get(value, 0.0) + math.exp(logprob)
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(v * p for v, p in mass.items()) / total


def _digit_positions(completion: Completion) -> list[dict[str, float]]:
    """Top-logprob tables of the generated tokens that start a number right after a tab."""
    if not completion.top_logprobs:
        return []
    tables = []
    text_so_far = ""
    for table in completion.top_logprobs:
        chosen = max(table, key=table.get)
        if text_so_far.endswith("\t") and chosen.strip().isdigit():
            tables.append(table)
        text_so_far += chosen
    return tables


def parse_predictions(completion: Completion, n_tokens: int) -> list[float | None]:
    """One prediction per token line (None where the answer has no usable value).

    Uses expected values from probabilities when the backend gave them for every line,
    else the integers written after each tab.
    """
    written: list[float | None] = []
    for line in completion.text.splitlines():
        match = re.search(r"\t\s*(\d+)\s*$", line)
        if match:
            written.append(float(min(10, int(match.group(1)))))
    tables = _digit_positions(completion)
    if len(tables) >= n_tokens:
        expected = [expected_digit(t) for t in tables[:n_tokens]]
        if all(e is not None for e in expected):
            return expected  # type: ignore[return-value]
    written = written[:n_tokens]
    return written + [None] * (n_tokens - len(written))


def simulate_window(llm: ChatLLM, explanation: str, tokens: list[str], top_logprobs: int = 5,
                    temperature: float = 0.0) -> tuple[list[float | None], Completion]:
    """Predicted activations (0-10) of ``tokens`` given ``explanation``, and the raw completion."""
    completion = llm.chat(simulation_messages(explanation, tokens), max_tokens=8 * len(tokens) + 16,
                          temperature=temperature, top_logprobs=top_logprobs)
    return parse_predictions(completion, len(tokens)), completion


def correlation_score(true: list[list[float]], predicted: list[list[float | None]]) -> float:
    """Pearson correlation over all windows concatenated; tokens without a prediction count as 0.

    Returns NaN when either side is constant (the correlation is undefined).
    """
    t = np.concatenate([np.asarray(w, dtype=np.float64) for w in true])
    p = np.concatenate([np.asarray([0.0 if v is None else v for v in w], dtype=np.float64) for w in predicted])
    if t.shape != p.shape:
        raise ValueError(f"true and predicted lengths differ: {t.shape} vs {p.shape}")
    if t.std() == 0 or p.std() == 0:
        return float("nan")
    return float(np.corrcoef(t, p)[0, 1])


def detection_auroc(activating_scores: list[float], silent_scores: list[float]) -> float:
    """How well the explanation tells activating from non-activating windows, as ROC AUC.

    Each window's score is its highest simulated activation. AUC needs no threshold, so unlike
    a best-threshold accuracy it is not tuned on the data it reports: 0.5 is chance, 1.0 perfect.
    """
    from sklearn.metrics import roc_auc_score

    if not activating_scores or not silent_scores:
        raise ValueError("detection needs both activating and non-activating windows")
    labels = [1] * len(activating_scores) + [0] * len(silent_scores)
    return float(roc_auc_score(labels, list(activating_scores) + list(silent_scores)))
