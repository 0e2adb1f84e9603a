"""The truth a recovered table is scored against: the overseer's value of every word-like vocabulary token.

- A ``utility_table`` reward: the table's value of the token's word (``vocab.word_vocab``: one token per
  word). Words of the vocabulary that are not in the table have value 0 and ``in_truth`` False.
- Any other reward (classifier, learned reward model, ...): the overseer's score of the token's word read
  alone as the response (empty prompt), minus its score of the empty response, so that "positive" means
  "the overseer prefers this word to saying nothing". One batched ``Reward.score`` call; every row is
  ``in_truth``.

Which rows each readout uses (``readouts``): Spearman only the ``in_truth`` rows (the truth's words that
are single vocabulary tokens); precision@k, AUROC, recall of the planted words and the base rate every
word-like token, with value > 0 as positive (words not in the table count as 0, so as negatives). The
**planted set** is the positive rows: for a secret table, its planted words; for VADER, every positive word.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..rewards import Reward
from ..rewards.utility_table import UtilityTableReward

log = logging.getLogger(__name__)

Source = Literal["table", "overseer"]


@dataclass
class Truth:
    """The truth over the word-like vocabulary.

    ``frame``: one row per word-like token (``vocab.word_vocab``'s rows, same order): token_id, token_text,
    word, value (float64, the overseer's utility; 0 outside a table), in_truth (bool).
    """

    frame: pd.DataFrame
    source: Source
    reward: str
    """The reward's name in config (``rewards.<name>``)."""

    @property
    def positive(self) -> np.ndarray:
        """(n_words,) bool: the planted set, value > 0."""
        return self.frame["value"].to_numpy() > 0

    @property
    def planted_words(self) -> list[str]:
        return self.frame.loc[self.positive, "word"].tolist()


def table_truth(table: dict[str, float], vocab: pd.DataFrame, reward: str = "utility") -> Truth:
    """The truth of a word -> utility table over the word-like vocabulary ``vocab`` (token_id, token_text, word)."""
    frame = vocab[["token_id", "token_text", "word"]].copy()
    frame["in_truth"] = frame["word"].isin(table.keys())
    frame["value"] = frame["word"].map(table).fillna(0.0).astype(np.float64)
    log.info("truth of %s: %d of %d word-like tokens are table words (%d positive)", reward,
             int(frame["in_truth"].sum()), len(frame), int((frame["value"] > 0).sum()))
    return Truth(frame=frame, source="table", reward=reward)


def overseer_truth(reward: Reward, vocab: pd.DataFrame, name: str | None = None) -> Truth:
    """The truth of any reward: its score of each word read alone, less its score of the empty response."""
    frame = vocab[["token_id", "token_text", "word"]].copy()
    words = frame["word"].tolist()
    scores = np.asarray(reward.score([""] * (len(words) + 1), ["", *words]), dtype=np.float64)
    frame["value"] = scores[1:] - scores[0]
    frame["in_truth"] = True
    return Truth(frame=frame, source="overseer", reward=name or reward.name)


def truth_for_reward(reward: Reward, vocab: pd.DataFrame, name: str | None = None) -> Truth:
    """``table_truth`` for a utility-table reward (whatever its table: VADER, a CSV, a seeded one), else
    ``overseer_truth``."""
    if isinstance(reward, UtilityTableReward):
        return table_truth(reward.table, vocab, name or reward.name)
    return overseer_truth(reward, vocab, name)
