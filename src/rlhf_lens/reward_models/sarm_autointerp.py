"""SARM's reward-carrying latents explained and scored by the autointerp stage (issue 13 item 5b).

Input: ``examples.parquet`` of rule sarm_analysis, one row per latent with the largest |w_i| (windows
from the RM corpus, the train pairs' texts, chosen by ``autointerp.examples.select_examples``: top,
quantile and silent windows split by prompt group, so no scoring window repeats an explanation window).
Each row's ``FeatureExamples`` record goes through ``autointerp.pipeline.explain_and_score`` exactly as a
policy feature does (same explainer prompt, same simulation and detection scorers, same LLM cache), so
SARM's explanations and scores read on the scale of the policy features'.

Output: ``autointerp.parquet``, one row per latent: ``OUTPUT_COLUMNS`` (the autointerp table's columns
that apply here, plus the head weight). A latent whose explanation or scoring fails keeps its row with
``status = "failed"`` and the reason.
"""

from __future__ import annotations

import logging
import os

import pandas as pd

from ..atomic import write_parquet
from ..autointerp.pipeline import explain_and_score
from ..autointerp.scorers import DEFAULT_SCORERS
from ..autointerp.simulate import SimulationConfig
from ..autointerp.stage import examples_json
from .sarm_analysis import feature_examples

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = ["feature", "weight", "max_activation", "n_active", "n_tokens", "rare", "explanation", "score",
                  "score_top", "score_quantile", "detection_auroc", "status", "reason", "prompt_tokens",
                  "completion_tokens", "examples"]


def explain_sarm_latents(examples_path: str | os.PathLike, out_path: str | os.PathLike, llm,
                         simulation_cfg: SimulationConfig, scorers=DEFAULT_SCORERS) -> pd.DataFrame:
    """Explain and score every latent of ``examples_path`` with ``llm`` (a ChatLLM, see ``autointerp.stage.build_llm``);
    write and return the table (largest |w_i| first, the examples file's order)."""
    examples = pd.read_parquet(examples_path)
    rows = []
    for _, row in examples.iterrows():
        record = feature_examples(row)
        result = explain_and_score(llm, record, simulation_cfg, scorers)
        if result["status"] != "ok":
            log.warning("SARM latent %d: %s", record.feature, result["reason"])
        predicted = result.pop("predicted")
        rows.append({**result, "weight": float(row["weight"]), "n_tokens": int(row["n_tokens"]),
                     "examples": examples_json(record, predicted)})
    table = pd.DataFrame(rows, columns=OUTPUT_COLUMNS)
    ok = table["status"] == "ok"
    log.info("SARM latents explained %d/%d; mean simulation score %.3f", int(ok.sum()), len(table),
             table.loc[ok, "score"].astype(float).mean() if ok.any() else float("nan"))
    write_parquet(table, out_path)
    return table
