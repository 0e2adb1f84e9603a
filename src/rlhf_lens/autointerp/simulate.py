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
    mass = _digit_mass(top_logprobs)
    total = sum(mass.values())
    if total <= 0:
        return None
    return sum(v * p for v, p in mass.items()) / total


def split_one_and_ten(expected_mass: dict[int, float], after_one: dict[str, float] | None) -> float | None:
    """E[v] when "10" is written as the two tokens "1", "0": ``expected_mass`` holds the probabilities of
    the first token ("0".."9", and "10" where the tokenizer has it), ``after_one`` the top log-probs of
    the token after a "1" (None when the answer did not write "1" there). P(10) = P("1") * q with
    q = P("0" | "1") / (P("0" | "1") + P(line end | "1")); without ``after_one``, q is 0."""
    total = sum(expected_mass.values())
    if total <= 0:
        return None
    q = 0.0
    if after_one:
        p_zero = sum(math.exp(v) for t, v in after_one.items() if t.strip() == "0" and not t.startswith("\n"))
        p_end = sum(math.exp(v) for t, v in after_one.items() if t.startswith("\n") or t == "")
        q = p_zero / (p_zero + p_end) if p_zero + p_end > 0 else float(max(after_one, key=after_one.get).strip() == "0")
    p_one = expected_mass.get(1, 0.0)
    rest = sum(v * pv for v, pv in expected_mass.items() if v != 1)
    return (rest + p_one * (10 * q + (1 - q))) / total


def _digit_mass(table: dict[str, float]) -> dict[int, float]:
    mass: dict[int, float] = {}
    for token, logprob in table.items():
        value = DIGITS.get(token.strip())
        if value is not None:
            mass[value] = mass.get(value, 0.0) + math.exp(logprob)
    return mass


def _number_positions(completion: Completion) -> list[tuple[dict[str, float], dict[str, float] | None]]:
    """For each number the answer writes right after a tab: the top-logprob table of its first token,
    and, when that token is "1", the table of the token after it (does "10" go on?)."""
    if not completion.top_logprobs:
        return []
    tables = completion.top_logprobs
    found = []
    text_so_far = ""
    for i, table in enumerate(tables):
        chosen = max(table, key=table.get)
        if text_so_far.endswith("\t") and chosen.strip().isdigit():
            after = tables[i + 1] if chosen.strip() == "1" and i + 1 < len(tables) else None
            found.append((table, after))
        text_so_far += chosen
    return found


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
    numbers = _number_positions(completion)
    if len(numbers) >= n_tokens:
        expected = [split_one_and_ten(_digit_mass(t), after) for t, after in numbers[:n_tokens]]
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

    Digits are single tokens here, so "10" begins with "1": at each value, "1" written in place of
    "unknown" (every earlier line unchanged) gives P("0" | "1") against P(end of line | "1"), which
    splits p("1") into 1 and 10. Both reads come from one pass over the answer plus one token per value.
    """
    messages = simulation_messages(explanation, tokens)
    unknown, positions = _answer_lines(tokens, "unknown")
    reads = llm.value_logprobs(messages, unknown, positions, [str(d) for d in range(10)], "1", ["0", "\n"])
    return [split_one_and_ten({int(d): math.exp(v) for d, v in digits.items()}, after_one)
            for digits, after_one in reads]


def simulate_window(llm: ChatLLM, explanation: str, tokens: list[str], top_logprobs: int = 5,
                    temperature: float = 0.0) -> tuple[list[float | None], Completion | None]:
    """Predicted activations (0-10) of ``tokens`` given ``explanation``, and the chat completion if any.

    Local models are scored by teacher forcing (``simulate_by_prefill``, no generation); chat
    endpoints write every line and the probabilities of what they wrote are read.
    """
    if getattr(llm, "can_prefill", hasattr(llm, "value_logprobs")):
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
