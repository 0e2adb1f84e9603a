"""Detection scoring: does the simulation tell the activating windows from the silent ones?"""

from __future__ import annotations

from ..examples import FeatureExamples
from ..llm import ChatLLM
from ..simulate import SimulationConfig, detection_auroc, simulate_record


class DetectionScorer:
    """ROC AUC of each held-out window's highest simulated activation, activating vs silent windows
    (``detection_auroc``; None without windows of both sides)."""

    name = "detection"
    columns = ("detection_auroc",)

    def __init__(self, llm: ChatLLM, cfg: SimulationConfig):
        self.llm, self.cfg = llm, cfg

    def __call__(self, record: FeatureExamples) -> dict[str, float | None]:
        predicted = simulate_record(self.llm, record, self.cfg)
        peaks = [max((v or 0.0) for v in p) if p else 0.0 for p in predicted]
        n = len(record.held_out)
        active, silent = peaks[:n], peaks[n:]
        return {"detection_auroc": detection_auroc(active, silent) if active and silent else None}
