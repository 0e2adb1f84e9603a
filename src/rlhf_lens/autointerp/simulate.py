"""Simulate a feature from its explanation and score the simulation.

"All at once" simulation: one answer holds a value for every token line, and the prediction
for a token is the expected value ``sum_v v * p(v)`` over the values 0-10 at the position where
that token's value goes. A local model is scored by teacher forcing (two forward passes per
window, no generation); a chat endpoint writes the lines and the probabilities of its tokens
are read, or, where it gives none, the integers it wrote. The score is the Pearson
correlation of predicted vs true activations over ALL held-out windows concatenated (not a
mean of per-window correlations, which is undefined for silent windows and overweights short
ones).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .llm import ChatLLM, Completion
from .prompts import escape_token, simulation_messages

if TYPE_CHECKING:
    from .examples import FeatureExamples

log = logging.getLogger(__name__)

DIGITS = {str(v): v for v in range(11)}


@dataclass(frozen=True)
class SimulationConfig:
    """LLM call settings for explaining and simulating (``autointerp`` in config.yaml)."""

    explain_max_tokens: int = 32
    """Tokens the explainer may write."""
    top_logprobs: int = 5
    """Alternatives per token asked for when simulating (0: use the written integers)."""
    temperature: float = 0.0
    """Sampling temperature of both calls; 0 is greedy and reproducible."""


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


def _answer_lines(tokens: list[str], filler: str) -> tuple[str, list[int]]:
    """The simulator's answer with ``filler`` as every value, and where each value starts."""
    text, positions = "", []
    for token in tokens:
        text += escape_token(token) + "\t"
        positions.append(len(text))
        text += filler + "\n"
    return text, positions


def simulate_by_prefill(llm, explanation: str, tokens: list[str]) -> list[float]:
    """All at once by teacher forcing (Bills et al.): every value is the placeholder "unknown",
    and the model's probabilities of the digits in its place give the expected activation.

    Digits are single tokens here, so "10" begins with "1": a second pass with "10" written
    everywhere gives P("0" | "1") against P(end of line | "1"), which splits p("1") into 1 and 10.
    One prompt pass and two answer passes per window, whatever its length.
    """
    messages = simulation_messages(explanation, tokens)
    unknown, positions = _answer_lines(tokens, "unknown")
    tens, ten_positions = _answer_lines(tokens, "10")
    first, second = llm.prefill_logprobs(messages, [(unknown, positions, [str(d) for d in range(10)]),
                                                    (tens, [p + 1 for p in ten_positions], ["0", "\n"])])
    predictions = []
    for digits, after_one in zip(first, second):
        p = {int(d): math.exp(v) for d, v in digits.items()}
        p_zero, p_end = math.exp(after_one["0"]), math.exp(after_one["\n"])
        ten = p_zero / (p_zero + p_end) if p_zero + p_end > 0 else 0.0
        expected = sum(d * pd for d, pd in p.items() if d != 1) + p[1] * (10 * ten + (1 - ten))
        predictions.append(expected / sum(p.values()))
    return predictions


def simulate_window(llm: ChatLLM, explanation: str, tokens: list[str], top_logprobs: int = 5,
                    temperature: float = 0.0) -> tuple[list[float | None], Completion | None]:
    """Predicted activations (0-10) of ``tokens`` given ``explanation``, and the chat completion if any.

    Local models are scored by teacher forcing (``simulate_by_prefill``, no generation); chat
    endpoints write every line and the probabilities of what they wrote are read.
    """
    if getattr(llm, "can_prefill", hasattr(llm, "prefill_logprobs")):
        try:
            return simulate_by_prefill(llm, explanation, tokens), None
        except ValueError as exc:  # a token that merges across the record's tabs: generate instead
            log.debug("prefill simulation not possible (%s); generating", exc)
    completion = llm.chat(simulation_messages(explanation, tokens), max_tokens=8 * len(tokens) + 16,
                          temperature=temperature, top_logprobs=top_logprobs)
    return parse_predictions(completion, len(tokens)), completion


def simulate_record(llm: ChatLLM, record: FeatureExamples, cfg: SimulationConfig) -> list[list[float | None]]:
    """The simulated activations of every scoring window of ``record`` given its explanation.

    Simulates once per record: the first call fills ``record.simulated`` (adding each answer's
    tokens to ``record.usage`` as it comes), later calls return it, so scorers that share the
    simulation (simulation score, detection) cost one simulation between them.
    """
    if record.simulated is None:
        if record.explanation is None:
            raise ValueError(f"feature {record.feature}: simulation needs an explanation first")
        predicted = []
        for window in record.score:
            values, completion = simulate_window(llm, record.explanation, window.tokens, cfg.top_logprobs,
                                                 cfg.temperature)
            predicted.append(values)
            record.usage.add(completion)
        record.simulated = predicted
    return record.simulated


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
