"""The context corpus that corpus-based methods read both models on, and its batched forwards.

The default corpus is the base model's own held-out completions (rl_eval's samples table, rows of model
"base": prompt + response, the prompt's length in ``prompt_chars``, one group per held-out prompt); any text
file works too (each row its own group, no prompt). Both models read identical token ids (the base
model's tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..model_parts import pad_token_id
from ..tables_io import TABLE_SUFFIXES, read_table
from .base import CorpusConfig


class CorpusError(ValueError):
    """The corpus file is missing or has no usable text."""


def corpus_from_rl_eval(path: str | Path, max_texts: int | None = None, seed: int = 0) -> pd.DataFrame:
    """The base model's completions of rl_eval's held-out prompts: text, group (prompt_index), prompt_chars.

    Prompts come in a seeded order, so a cut at ``max_texts`` keeps whole prompt groups and no prompt order.
    """
    df = pd.read_parquet(path)
    missing = {"prompt", "response", "model", "prompt_index", "sample"} - set(df.columns)
    if missing:
        raise CorpusError(f"{path}: missing column(s) {sorted(missing)} (expected rl_eval's samples table)")
    df = df[df["model"] == "base"]
    rank = {int(p): r for r, p in enumerate(np.random.default_rng(seed).permutation(np.sort(df["prompt_index"].unique())))}
    df = df.assign(_rank=df["prompt_index"].map(rank)).sort_values(["_rank", "sample"], kind="stable")
    frame = pd.DataFrame({"text": (df["prompt"].astype(str) + df["response"].astype(str)).to_numpy(),
                          "group": df["prompt_index"].astype(np.int64).to_numpy(),
                          "prompt_chars": df["prompt"].astype(str).str.len().astype(np.int64).to_numpy()})
    return _finish(frame, max_texts, path)


def corpus_from_file(path: str | Path, text_column: str = "text", max_texts: int | None = None) -> pd.DataFrame:
    """Plain texts (a table's ``text_column``, or the lines of a .txt file): each its own group, no prompt."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: corpus file does not exist")
    if path.suffix == ".txt":
        texts = path.read_text(encoding="utf-8").splitlines()
    elif path.suffix in TABLE_SUFFIXES:
        df = read_table(path)
        if text_column not in df.columns:
            raise CorpusError(f"{path}: no column {text_column!r} (config key 'diffing.corpus.text_column'); "
                              f"columns are {list(df.columns)}")
        texts = df[text_column].astype(str).tolist()
    else:
        raise CorpusError(f"{path}: expected a .txt, .parquet, .csv or .jsonl corpus")
    frame = pd.DataFrame({"text": texts, "group": np.arange(len(texts), dtype=np.int64),
                          "prompt_chars": np.zeros(len(texts), dtype=np.int64)})
    return _finish(frame, max_texts, path)


def _finish(frame: pd.DataFrame, max_texts: int | None, path) -> pd.DataFrame:
    frame = frame[frame["text"].str.strip() != ""].drop_duplicates("text").reset_index(drop=True)
    if max_texts:
        frame = frame.iloc[:max_texts].reset_index(drop=True)
    if frame.empty:
        raise CorpusError(f"{path}: the corpus has no non-empty text")
    return frame


def read_corpus(cfg: CorpusConfig, path: str | Path, seed: int = 0) -> pd.DataFrame:
    """The corpus of ``cfg`` read from ``path`` (rl_eval's table when ``cfg.source`` is rl_eval)."""
    if cfg.source == "rl_eval":
        return corpus_from_rl_eval(path, cfg.max_texts, seed)
    return corpus_from_file(path, cfg.text_column, cfg.max_texts)


@dataclass
class Doc:
    """One tokenized text: ``ids`` (its token ids, special tokens the tokenizer adds included), ``group``, and
    ``prompt_tokens`` (how many leading tokens are the prompt's, counted by tokenizing the prompt alone)."""

    ids: list[int]
    group: int
    prompt_tokens: int


def tokenize(tokenizer, corpus: pd.DataFrame, max_length: int) -> list[Doc]:
    """Every corpus text as a ``Doc`` (texts with fewer than 2 tokens dropped: nothing to predict)."""
    docs = []
    for text, group, chars in zip(corpus["text"], corpus["group"], corpus["prompt_chars"]):
        ids = tokenizer(text, add_special_tokens=True, truncation=True, max_length=max_length)["input_ids"]
        prompt = text[:int(chars)]
        n_prompt = len(tokenizer(prompt, add_special_tokens=True)["input_ids"]) if prompt else 0
        if len(ids) >= 2:
            docs.append(Doc(ids=list(ids), group=int(group), prompt_tokens=min(n_prompt, len(ids))))
    if not docs:
        raise CorpusError("no corpus text has 2 or more tokens")
    return docs


def batches(docs: list[Doc], batch_size: int, tokenizer):
    """Yield (docs of the batch, input_ids (B, T) long, attention_mask (B, T) long), right-padded.

    Texts are batched in length order (less padding); a causal model's states at real positions do not
    depend on right padding under the attention mask.
    """
    order = sorted(range(len(docs)), key=lambda i: len(docs[i].ids))
    pad = pad_token_id(tokenizer)
    for start in range(0, len(order), batch_size):
        chunk = [docs[i] for i in order[start:start + batch_size]]
        width = max(len(d.ids) for d in chunk)
        ids = torch.full((len(chunk), width), pad, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, d in enumerate(chunk):
            ids[row, :len(d.ids)] = torch.tensor(d.ids)
            mask[row, :len(d.ids)] = 1
        yield chunk, ids, mask


def unit_rows(docs: list[Doc]) -> tuple[np.ndarray, dict[int, int]]:
    """(the sorted distinct groups, group -> row index of token_scores)."""
    groups = np.unique([d.group for d in docs])
    return groups, {int(g): i for i, g in enumerate(groups)}
