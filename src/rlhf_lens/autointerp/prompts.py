"""Prompts for explaining and simulating a feature, in the style of Bills et al. (2023), and
parsing of what the model answers.

Records are shown one token per line as ``token<TAB>activation`` with activations as integers
0-10. Token text is escaped (newlines, tabs, backslashes) so that no example text, however
it is written, can add or split a line of the record format; the explanation parser keeps one
bounded sentence of the model's own answer, so text in an example cannot smuggle structure
into the parsed result either.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EXPLAIN_SYSTEM = (
    "We study neurons (features) of a language model. Each record below lists the tokens of a text, one "
    "per line, with the feature's activation on that token as an integer from 0 to 10 (0: silent, 10: "
    "strongest). Look at which tokens and contexts make the feature fire, then answer with one short "
    "sentence that starts with 'This feature fires on' and names what it responds to."
)
SIMULATE_SYSTEM = (
    "We study neurons (features) of a language model. Given an explanation of a feature, predict its "
    "activation on every token of a text, as an integer from 0 (silent) to 10 (strongest). Copy every token "
    "line as given and write the activation after the tab. Write nothing else."
)
MAX_EXPLANATION_CHARS = 300


@dataclass(frozen=True)
class Window:
    """A span of text around a token, with one feature's activations."""

    tokens: list[str]
    """Token texts, in order."""
    activations: list[float]
    """The feature's activation on each token (same length as tokens), in the SAE's units."""


def escape_token(token: str) -> str:
    """A token as one safe field: backslash, tab and newline written as escapes."""
    return token.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def scale_activations(activations: list[float], feature_max: float) -> list[int]:
    """Integers 0-10 against ONE global maximum per feature: floor(10 * a / max), clipped to [0, 10].

    Floor (not round) so that only activations at the feature's maximum show as 10. A feature
    that never fires (max <= 0) shows 0 everywhere.
    """
    if feature_max <= 0:
        return [0] * len(activations)
    return [min(10, max(0, int(10 * a / feature_max))) for a in activations]


def format_record(window: Window, feature_max: float) -> str:
    """``token<TAB>activation`` lines of one window."""
    values = scale_activations(window.activations, feature_max)
    return "\n".join(f"{escape_token(t)}\t{v}" for t, v in zip(window.tokens, values))


def explanation_messages(windows: list[Window], feature_max: float) -> list[dict[str, str]]:
    """Chat messages asking for a one-sentence explanation of the feature shown in ``windows``."""
    records = "\n\n".join(f"<record {i + 1}>\n{format_record(w, feature_max)}\n</record {i + 1}>"
                          for i, w in enumerate(windows))
    return [{"role": "system", "content": EXPLAIN_SYSTEM},
            {"role": "user", "content": f"{records}\n\nOne sentence: what does this feature fire on?"}]


def simulation_messages(explanation: str, tokens: list[str]) -> list[dict[str, str]]:
    """Chat messages asking for the activation of every token of one window, given the explanation."""
    lines = "\n".join(f"{escape_token(t)}\t" for t in tokens)
    return [{"role": "system", "content": SIMULATE_SYSTEM},
            {"role": "user", "content": f"Explanation: {explanation}\n\nTokens:\n{lines}"}]


class ExplanationParseError(ValueError):
    """The model's answer holds no usable explanation."""


def parse_explanation(text: str) -> str:
    """The first sentence of the answer, cleaned: no labels, quotes or markup, at most 300 characters.

    Raises ExplanationParseError on an empty or content-free answer.
    """
    cleaned = text.strip()
    cleaned = re.sub(r"^\s*(explanation|answer)\s*:\s*", "", cleaned, flags=re.I)
    first_line = next((line.strip() for line in cleaned.splitlines() if line.strip()), "")
    sentence = re.split(r"(?<=[.!?])\s", first_line, maxsplit=1)[0]
    sentence = re.sub(r"[<>`*_#]", "", sentence).strip().strip("\"'").strip()
    if len(re.findall(r"[A-Za-z]", sentence)) < 3:
        raise ExplanationParseError(f"no explanation in the model's answer: {text[:80]!r}")
    return sentence[:MAX_EXPLANATION_CHARS]
