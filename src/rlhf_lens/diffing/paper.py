"""``paper``: the paper's chain (Marks et al. 2023: policy-SAE features matched to the base SAE by MMCS,
the selected ones explained by an LLM) as a row of the ladder, read as words.

Source: Marks et al. 2023, "Interpreting Reward Models in RLHF-Tuned Language Models Using Sparse
Autoencoders" (the seed paper; ANCHORS.md section 1), whose Table 3 reads each selected feature's
explanation through the utility table. Here the explanations themselves are the recovered table.

How explanations become word scores: every selected (``selected``), explained (``status`` ok) feature of
the policy SAE's autointerp table of each studied block contributes its explanation's words, with the
answer frame ("This feature fires on") left out as ``scoring.utilities.explanation_utility`` does. A
word's score is its count over those explanations; a word counts where it is one vocabulary token in
its leading-space form (" love"), the form the readouts look up. ``lexicon_only`` keeps only the words
of the overseer's utility table, as Table 3 does (the overseer's table is the truth: this is the
paper's own reading, not a blind one); without a table overseer every word counts. One row (unit
"seed": one explained pair of dictionaries).

``latents.parquet``: block, feature, explanation, words (the counted words of its explanation).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..rewards.utility_table import words_with_spans
from ..scoring.utilities import _FRAME as ANSWER_FRAME  # the frame explanation_utility leaves out
from .base import MethodResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PaperConfig:
    """Settings of the ``paper`` diffing method."""

    lexicon_only: bool = True
    """Count only the words of the overseer's utility table (the paper's Table 3 reading); false, or an
    overseer without a table: every word of the explanations."""


def explanation_words(text: str | None) -> list[str]:
    """The lowercased words of an explanation, its answer frame left out."""
    return [w for w, _ in words_with_spans(ANSWER_FRAME.sub("", text or ""))]


def word_token_ids(words, tokenizer) -> dict[str, int]:
    """word -> the id of the single vocabulary token " word" (words that are several tokens are left out)."""
    out = {}
    for w in words:
        ids = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
        if len(ids) == 1:
            out[w] = ids[0]
    return out


class Paper:
    name = "paper"
    config_class = PaperConfig

    def run(self, ctx, cfg: PaperConfig) -> MethodResult:
        if not ctx.autointerp_tables:
            raise ValueError("paper: no autointerp tables (the policy SAE's, per studied block)")
        lexicon = getattr(ctx.reward, "table", None) if cfg.lexicon_only else None
        _, _, tokenizer = ctx.models()
        frames = []
        for block, path in sorted(ctx.autointerp_tables.items()):
            table = pd.read_parquet(Path(path), columns=["feature", "selected", "status", "explanation"])
            chosen = table[table["selected"].astype(bool) & table["status"].eq("ok")]
            words = [[w for w in explanation_words(t) if lexicon is None or w in lexicon]
                     for t in chosen["explanation"]]
            frames.append(pd.DataFrame({"block": block, "feature": chosen["feature"].to_numpy(),
                                        "explanation": chosen["explanation"].to_numpy(), "words": words}))
        latents = pd.concat(frames, ignore_index=True)
        counts = Counter(w for ws in latents["words"] for w in ws)
        ids = word_token_ids(counts, tokenizer)
        scores = np.zeros((1, len(tokenizer)))
        for w, t in ids.items():
            scores[0, t] += counts[w]
        log.info("paper: %d explained selected features, %d distinct words (%d single tokens)", len(latents),
                 len(counts), len(ids))
        return MethodResult(token_scores=scores, unit="seed", latents=latents,
                            extra={"n_features": len(latents), "lexicon_only": lexicon is not None,
                                   "words_not_one_token": sorted(set(counts) - set(ids))})


METHOD_CLASS = Paper
