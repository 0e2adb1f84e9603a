"""Scorers of an explanation, each a ``Scorer`` run over one ``FeatureExamples`` record (as delphi's
``Scorer.__call__(record)``), registered by name in ``SCORERS``.

- ``simulation`` (``SimulationScorer``): Pearson correlation of simulated vs true activations over
  all held-out windows, and over the top and the quantile windows (each with the silent ones);
- ``detection`` (``DetectionScorer``): ROC AUC of the highest simulated activation, activating vs
  silent windows.

Both read the same simulation of the record (``simulate.simulate_record``, run once by whichever
needs it first). A new scorer (fuzzing, say) is one new file in this package defining a class with
``name``, ``columns``, ``__init__(llm, cfg)`` and ``__call__(record) -> dict``, plus its line in
``SCORERS``; its columns must also be added to the autointerp table (``stage.OUTPUT_COLUMNS``).
"""

from __future__ import annotations

from typing import Protocol

from ..examples import FeatureExamples
from ..llm import ChatLLM
from ..simulate import SimulationConfig
from .detection import DetectionScorer
from .simulation import SimulationScorer


class Scorer(Protocol):
    """Scores the explanation in ``record.explanation`` on the record's held-out windows."""

    name: str
    """The name it is registered (and configured) under."""
    columns: tuple[str, ...]
    """The result-row columns it fills; each is None where its score is undefined."""

    def __init__(self, llm: ChatLLM, cfg: SimulationConfig) -> None: ...

    def __call__(self, record: FeatureExamples) -> dict[str, float | None]:
        """The scores, keyed by ``columns``. LLM calls add their tokens to ``record.usage``; a failed call
        raises ``LLMError``."""
        ...


SCORERS: dict[str, type[Scorer]] = {
    SimulationScorer.name: SimulationScorer,
    DetectionScorer.name: DetectionScorer,
}
"""Every scorer by name."""

DEFAULT_SCORERS = ("simulation", "detection")
"""What the autointerp stage runs, in this order."""


def build_scorers(names, llm: ChatLLM, cfg: SimulationConfig) -> list[Scorer]:
    """The scorers called ``names`` (in that order), sharing one LLM and config."""
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise ValueError(f"unknown autointerp scorer(s) {unknown}: expected some of {sorted(SCORERS)}")
    return [SCORERS[n](llm, cfg) for n in names]


__all__ = ["DEFAULT_SCORERS", "SCORERS", "DetectionScorer", "Scorer", "SimulationScorer", "build_scorers"]
