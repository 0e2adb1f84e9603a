"""Explain -> score one feature's ``FeatureExamples`` record, recording failures instead of stopping.

The explainer writes the record's explanation; then each scorer (``scorers.SCORERS``, by default
simulation and detection) scores it on the record's held-out windows. A feature whose explanation
or scoring fails (unreachable endpoint, timeout, empty or unparseable answer) gets
``status = "failed"`` and the reason; the run goes on. Successful calls are in the disk cache and
failed ones are not, so a rerun repeats only the failures.
"""

from __future__ import annotations

from dataclasses import replace

from .examples import FeatureExamples
from .llm import ChatLLM, LLMError, TokenUsage
from .prompts import ExplanationParseError, explanation_messages, parse_explanation
from .scorers import DEFAULT_SCORERS, build_scorers
from .simulate import SimulationConfig

__all__ = ["NO_VALUES", "SimulationConfig", "explain", "explain_and_score"]

NO_VALUES = "the simulator wrote no usable value for any token"


def explain(llm: ChatLLM, record: FeatureExamples, cfg: SimulationConfig) -> str:
    """Write ``record.explanation`` from its explanation windows (one call, tokens added to ``record.usage``)."""
    answer = llm.chat(explanation_messages(record.explain, record.max_activation),
                      max_tokens=cfg.explain_max_tokens, temperature=cfg.temperature)
    record.usage.add(answer)
    record.explanation = parse_explanation(answer.text)
    return record.explanation


def explain_and_score(llm: ChatLLM, examples: FeatureExamples, cfg: SimulationConfig,
                      scorers=DEFAULT_SCORERS) -> dict:
    """One result row: explanation, the scorers' columns (simulation score overall and per kind,
    detection AUROC), status, token counts and ``predicted``: the simulated activations (0-10) of each
    scoring window.

    Scores are None where undefined (constant predictions, no windows of a kind) and all of them
    when the feature failed. ``examples`` is left as given: the run works on a fresh copy of the record.
    """
    record = replace(examples, explanation=None, simulated=None, usage=TokenUsage())
    run = build_scorers(scorers, llm, cfg)
    row: dict = {"feature": record.feature, "max_activation": record.max_activation,
                 "n_active": record.n_active, "rare": record.rare, "n_explain": len(record.explain),
                 "n_score": len(record.score), "explanation": None,
                 **{c: None for scorer in run for c in scorer.columns},
                 "status": "ok", "reason": "", "prompt_tokens": 0, "completion_tokens": 0, "predicted": None}
    if not record.explain:
        row.update(status="failed", reason="the feature never fired on the corpus")
        return row
    scores: dict = {}
    try:
        row["explanation"] = explain(llm, record, cfg)
        for scorer in run:
            scores.update(scorer(record))
    except (LLMError, ExplanationParseError) as exc:
        row.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    else:
        row.update(scores, predicted=record.simulated)
        if record.simulated is not None and not any(v is not None for w in record.simulated for v in w):
            # Scores of all-None predictions would read as a flat simulation, not as no answer.
            row.update({c: None for scorer in run for c in scorer.columns}, status="failed",
                       reason=NO_VALUES)
    row.update(prompt_tokens=record.usage.prompt_tokens, completion_tokens=record.usage.completion_tokens)
    return row
