"""Per-feature utilities: of an explanation's words, of the tokens a feature fires on, and of the
tokens its decoder direction promotes through the unembedding."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from ..model_parts import direction_logits, final_norm, token_texts  # noqa: F401 (final_norm: re-exported)
from ..rewards.utility_table import words_with_spans

# The prompt asks for answers that start "This feature fires on"; that frame is not the explanation's
# content, and "fire" is itself in VADER (-1.4), so small explainers' "The feature fire on ..." would
# give every explanation the same negative utility.
_FRAME = re.compile(r"^\W*(this|the)\s+(feature|neuron|latent)\s+(fires?|activates?|responds?|is active)\s+(on|to|for|when)\b",
                    re.IGNORECASE)


def explanation_utility(text: str | None, table: dict[str, float]) -> float:
    """Mean utility of the words of ``text`` that are in the table (the answer frame "This feature
    fires on" left out); 0 when none is (or no text)."""
    content = _FRAME.sub("", text or "")
    values = [table[w] for w, _ in words_with_spans(content) if w in table]
    return float(np.mean(values)) if values else 0.0


def quoted_explanation_utility(text: str | None, example_text: str, table: dict[str, float]) -> float:
    """Like ``explanation_utility``, over only the explanation's words that occur as words in the
    feature's own examples (``example_text``: the windows shown to the explainer, joined). Template
    words an explainer writes about any feature ("like", "positive", "words") carry VADER values of
    their own; this variant counts what the explanation quotes from the data."""
    seen = {w for w, _ in words_with_spans(example_text or "")}
    content = _FRAME.sub("", text or "")
    values = [table[w] for w, _ in words_with_spans(content) if w in table and w in seen]
    return float(np.mean(values)) if values else 0.0


def word_utility(token: str, table: dict[str, float]) -> float:
    """Utility of a token read as one word (stripped, lowercased); 0 unless it is exactly one lexicon word."""
    words = words_with_spans(token)
    return table.get(words[0][0], 0.0) if len(words) == 1 else 0.0


def token_utilities(tokens: pd.DataFrame, table: dict[str, float]) -> np.ndarray:
    """(n_tokens,) each token's utility: that of the word it lies in (0 outside lexicon words).

    ``tokens``: rows in document order with ``doc_id`` and ``token_text`` (texts concatenate to
    the document). A word split over several tokens gives its utility to each of them.
    """
    out = np.zeros(len(tokens))
    doc = tokens["doc_id"].to_numpy()
    texts = tokens["token_text"].tolist()
    bounds = np.flatnonzero(np.r_[True, doc[1:] != doc[:-1], True])
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        pieces = texts[lo:hi]
        ends = np.cumsum([len(p) for p in pieces])
        starts = ends - np.array([len(p) for p in pieces])
        for word, (ws, we) in words_with_spans("".join(pieces)):
            u = table.get(word)
            if u:
                out[lo + np.flatnonzero((starts < we) & (ends > ws))] = u
    return out


def activation_weighted_utility(sae, x, token_util: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """((m,) sum_t a_t u_t / sum_t a_t, (m,) active-token counts) of every latent over tokens ``x`` (n, d).

    NaN for a latent that never fires.
    """
    weighted, total, counts = np.zeros(sae.m), np.zeros(sae.m), np.zeros(sae.m, dtype=np.int64)
    u = torch.as_tensor(token_util, dtype=torch.float64)
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            f = sae.encode(x[i:i + batch_size]).double()
            weighted += (u[i:i + batch_size] @ f).numpy()
            total += f.sum(0).numpy()
            counts += (f > 0).sum(0).numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, weighted / total, np.nan), counts


def vocab_utilities(tokenizer, table: dict[str, float]) -> np.ndarray:
    """(vocab,) utility of every token read as one word."""
    return np.array([word_utility(t, table) for t in token_texts(tokenizer)])


def unembed_utility(atoms: torch.Tensor, model, vocab_util: np.ndarray, top_n: int) -> np.ndarray:
    """(m,) mean utility of the ``top_n`` tokens each decoder atom (m, d) promotes most.

    A direction added to the residual stream reaches the logits through the final norm and the
    unembedding (m, d) -> (m, vocab): ``model_parts.direction_logits`` says which parts of the norm apply.
    """
    logits = direction_logits(atoms, model, vocab_size=len(vocab_util))
    with torch.no_grad():
        top = logits.topk(min(top_n, logits.shape[1]), dim=1).indices.numpy()
    return vocab_util[top].mean(axis=1)
