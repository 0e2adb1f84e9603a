"""The word-like vocabulary of a tokenizer, and a readout of residual-stream vectors as vocabulary scores.

A token is **word-like** when its text, as it reads in a document (``model_parts.token_texts``: " love",
not the piece "Ġlove"), is at most one leading space followed by letters only (``str.isalpha``, so
accented letters count, digits and punctuation do not), at least ``MIN_LETTERS`` of them. Its
**word** is that text without the space, lowercased: " Love", " love", "love" and "Love" all read
"love". So that every word is counted once by the readouts, the word-like vocabulary keeps **one token
per word**: the form a word takes inside running text (leading space) over the bare form, lowercase
text over capitalised, then the lowest id. Sub-word pieces without a space ("ing", "ly") are word-like
by this rule when their letters form no other token's word; they rarely match a truth's word.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..model_parts import direction_logits, token_texts

MIN_LETTERS = 2
"""Fewest letters of a word-like token's word (single letters are mostly sub-word pieces and initials)."""


def word_of(token_text: str) -> str | None:
    """The word of a token's text by the rule above, or None when the token is not word-like."""
    core = token_text[1:] if token_text.startswith(" ") else token_text
    if len(core) < MIN_LETTERS or not core.isalpha():
        return None
    return core.lower()


def word_vocab(tokenizer) -> pd.DataFrame:
    """The word-like vocabulary, one row per word: token_id (int64), token_text (str), word (str).

    Rows are sorted by token_id; ``len(tokenizer)`` bounds the ids (an lm_head padded past it holds no
    tokens).
    """
    texts = token_texts(tokenizer)
    rows = [(i, t, w) for i, t in enumerate(texts) if (w := word_of(t)) is not None]
    frame = pd.DataFrame(rows, columns=["token_id", "token_text", "word"])
    # Preference inside one word: leading space first, then lowercase text, then the lowest id.
    frame["_space"] = ~frame["token_text"].str.startswith(" ")
    frame["_case"] = frame["token_text"].str.strip() != frame["word"]
    frame = frame.sort_values(["word", "_space", "_case", "token_id"], kind="stable")
    frame = frame.drop_duplicates("word").drop(columns=["_space", "_case"])
    frame["token_id"] = frame["token_id"].astype(np.int64)
    return frame.sort_values("token_id").reset_index(drop=True)


def logit_lens(vectors: torch.Tensor, model, vocab_size: int) -> np.ndarray:
    """(m, vocab_size) float64: each residual-stream vector (m, d_model) read through ``model``'s final norm
    (its elementwise weight; centring for LayerNorm) and unembedding, as ``model_parts.direction_logits``
    does. Units are logits per unit of the vector (the norm's division by the RMS is a positive scalar per
    vector, left out: it rescales a row without reordering it)."""
    return direction_logits(vectors, model, vocab_size=vocab_size).double().numpy()
