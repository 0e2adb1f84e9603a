"""Explain -> simulate -> score one feature, recording failures instead of stopping.

A feature whose explanation or simulation fails (unreachable endpoint, timeout, empty or
unparseable answer) gets ``status = "failed"`` and the reason; the run goes on. Successful
calls are in the disk cache and failed ones are not, so a rerun repeats only the failures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .examples import FeatureExamples
from .llm import ChatLLM, LLMError
from .prompts import ExplanationParseError, explanation_messages, parse_explanation
from .simulate import correlation_score, detection_auroc, simulate_window


@dataclass(frozen=True)
class ScoringConfig:
    """LLM call settings for explaining and simulating (``autointerp`` in config.yaml)."""

    explain_max_tokens: int = 32
    """Tokens the explainer may write."""
    top_logprobs: int = 5
    """Alternatives per token asked for when simulating (0: use the written integers)."""
    temperature: float = 0.0
    """Sampling temperature of both calls; 0 is greedy and reproducible."""


def _nan_to_none(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def explain_and_score(llm: ChatLLM, examples: FeatureExamples, cfg: ScoringConfig) -> dict:
    """One result row: explanation, simulation score overall and per kind, detection AUROC, status,
    and ``predicted``: the simulated activations (0-10) of each scoring window.

    Scores are None where undefined (constant predictions, no windows of a kind).
    """
    row: dict = {"feature": examples.feature, "max_activation": examples.max_activation,
                 "n_active": examples.n_active, "rare": examples.rare, "n_explain": len(examples.explain),
                 "n_score": len(examples.score), "explanation": None, "score": None, "score_top": None,
                 "score_quantile": None, "detection_auroc": None, "status": "ok", "reason": "",
                 "prompt_tokens": 0, "completion_tokens": 0, "predicted": None}
    if not examples.explain:
        row.update(status="failed", reason="the feature never fired on the corpus")
        return row
    try:
        answer = llm.chat(explanation_messages(examples.explain, examples.max_activation),
                          max_tokens=cfg.explain_max_tokens, temperature=cfg.temperature)
        row["prompt_tokens"] += answer.prompt_tokens
        row["completion_tokens"] += answer.completion_tokens
        row["explanation"] = parse_explanation(answer.text)
        predicted = []
        for window in examples.score:
            values, completion = simulate_window(llm, row["explanation"], window.tokens, cfg.top_logprobs,
                                                 cfg.temperature)
            predicted.append(values)
            if completion is not None:
                row["prompt_tokens"] += completion.prompt_tokens
                row["completion_tokens"] += completion.completion_tokens
    except (LLMError, ExplanationParseError) as exc:
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        return row
    row["predicted"] = predicted
    scale = examples.max_activation or 1.0
    true = [[10 * a / scale for a in w.activations] for w in examples.score]
    row["score"] = _nan_to_none(correlation_score(true, predicted))
    for kind in ("top", "quantile"):
        keep = [i for i, k in enumerate(examples.score_kinds) if k in (kind, "random")]
        if any(examples.score_kinds[i] == kind for i in keep):
            row[f"score_{kind}"] = _nan_to_none(correlation_score([true[i] for i in keep],
                                                                  [predicted[i] for i in keep]))
    peaks = [max((v or 0.0) for v in p) if p else 0.0 for p in predicted]
    active = [peaks[i] for i, k in enumerate(examples.score_kinds) if k != "random"]
    silent = [peaks[i] for i, k in enumerate(examples.score_kinds) if k == "random"]
    if active and silent:
        row["detection_auroc"] = detection_auroc(active, silent)
    return row
