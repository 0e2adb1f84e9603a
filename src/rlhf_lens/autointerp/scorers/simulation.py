"""Simulation scoring (Bills et al. 2023): how well activations simulated from the explanation follow the true ones."""

from __future__ import annotations

from ...missing import nan_to_none
from ..examples import SILENT_KIND, FeatureExamples
from ..llm import ChatLLM
from ..simulate import SimulationConfig, correlation_score, simulate_record

KINDS = ("top", "quantile")
"""Held-out window kinds that get a score of their own (each together with the silent windows)."""


class SimulationScorer:
    """Pearson correlation of simulated vs true activations (both 0-10 against the feature's global
    maximum) over all held-out windows concatenated (``score``), and over the top and the quantile
    windows, each with the silent ones (``score_top``, ``score_quantile``; None when there are no
    windows of the kind)."""

    name = "simulation"
    columns = ("score", "score_top", "score_quantile")

    def __init__(self, llm: ChatLLM, cfg: SimulationConfig):
        self.llm, self.cfg = llm, cfg

    def __call__(self, record: FeatureExamples) -> dict[str, float | None]:
        predicted = simulate_record(self.llm, record, self.cfg)
        scale = record.max_activation or 1.0
        true = [[10 * a / scale for a in w.activations] for w in record.score]
        kinds = record.score_kinds
        out = {"score": nan_to_none(correlation_score(true, predicted))}
        for kind in KINDS:
            keep = [i for i, k in enumerate(kinds) if k in (kind, SILENT_KIND)]
            has_kind = any(kinds[i] == kind for i in keep)
            out[f"score_{kind}"] = (nan_to_none(correlation_score([true[i] for i in keep],
                                                                  [predicted[i] for i in keep])) if has_kind else None)
        return out
