"""Read prompt texts from any source and split them deterministically into train and eval.

Sources (``prompts.source`` in config.yaml):

- ``builtin``: 360 short movie-review openings written for this project (mostly neutral,
  some mildly positive or negative), so the default run needs no download.
- a local ``.parquet``, ``.csv`` or ``.jsonl`` file with a text column;
- ``hf:<dataset id or local dataset folder>`` read with Hugging Face ``datasets``.

The split table has columns ``text`` (str) and ``source_id`` (str: the row's index in its
source, so a prompt can be traced back).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_parquet
from ..tables_io import TABLE_SUFFIXES, read_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromptsConfig:
    """The prompt texts (``prompts:`` in config.yaml)."""

    source: str = "builtin"
    """builtin, a .parquet/.csv/.jsonl file, or hf:<dataset id or local dataset folder>."""
    text_column: str = "text"
    """Column holding the text in file and dataset sources."""
    hf_split: str = "train"
    """Split read from a Hugging Face dataset."""
    hf_config: str | None = None
    """Configuration name of a Hugging Face dataset."""
    max_words: int | None = None
    """Cut each text to its first N words; None keeps whole texts."""
    max_texts: int | None = None
    """Use at most this many texts (a seeded sample); None uses all."""
    eval_fraction: float = 0.2
    """Fraction held out for evaluation, in (0, 1)."""


class DataError(ValueError):
    """A text source that cannot be read as configured; the message names the file and column."""


def builtin_texts() -> list[str]:
    """The built-in movie-review openings, in file order."""
    text = resources.files("rlhf_lens.data").joinpath("builtin_reviews.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def _read_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"prompt file {str(path)!r} does not exist")
    if path.suffix not in TABLE_SUFFIXES:
        raise DataError(f"prompt file {str(path)!r}: expected a .parquet, .csv or .jsonl file")
    try:
        return read_table(path)
    except Exception as exc:  # pandas/pyarrow raise many types for a malformed file
        raise DataError(f"cannot read prompt file {str(path)!r}: {exc}") from exc


def _read_hf(name: str, split: str, config_name: str | None) -> pd.DataFrame:
    import datasets

    try:
        ds = datasets.load_dataset(name, config_name, split=split)
    except Exception as exc:
        raise DataError(f"cannot load Hugging Face dataset {name!r} (split {split!r}): {exc}") from exc
    return ds.to_pandas()


def load_texts(cfg: PromptsConfig) -> pd.DataFrame:
    """All usable texts of the source as a table with ``text`` and ``source_id``.

    Empty texts are dropped, texts are cut to ``max_words`` words when set, and duplicates
    (after cutting) are dropped keeping the first.
    """
    if cfg.source == "builtin":
        texts = builtin_texts()
        frame = pd.DataFrame({"text": texts, "source_id": [f"builtin:{i}" for i in range(len(texts))]})
    else:
        if cfg.source.startswith("hf:"):
            raw = _read_hf(cfg.source[3:], cfg.hf_split, cfg.hf_config)
        else:
            raw = _read_file(Path(cfg.source).expanduser())
        if cfg.text_column not in raw.columns:
            raise DataError(f"{cfg.source!r} has no column {cfg.text_column!r} (prompts.text_column); "
                            f"its columns are: {', '.join(map(str, raw.columns))}")
        frame = pd.DataFrame({"text": raw[cfg.text_column].astype("string"),
                              "source_id": [str(i) for i in range(len(raw))]})
    frame = frame.dropna(subset=["text"])
    frame["text"] = frame["text"].astype(str).str.strip()
    if cfg.max_words is not None:
        frame["text"] = frame["text"].map(lambda t: " ".join(t.split()[: cfg.max_words]))
    frame = frame[frame["text"].str.len() > 0].drop_duplicates("text").reset_index(drop=True)
    if len(frame) < 2:
        raise DataError(f"{cfg.source!r} gives {len(frame)} usable text(s); at least 2 are needed for a train/eval split")
    return frame


def split_texts(frame: pd.DataFrame, eval_fraction: float, seed: int,
                max_texts: int | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Shuffle with ``seed``, optionally keep ``max_texts``, and split off ``eval_fraction``.

    Deterministic: the same frame, fraction and seed give the same split. Both parts keep
    at least one text.
    """
    order = np.random.default_rng(seed).permutation(len(frame))
    if max_texts is not None:
        order = order[:max_texts]
    n_eval = min(max(1, round(len(order) * eval_fraction)), len(order) - 1)
    shuffled = frame.iloc[order].reset_index(drop=True)
    return shuffled.iloc[n_eval:].reset_index(drop=True), shuffled.iloc[:n_eval].reset_index(drop=True)


def make_prompt_splits(cfg: PromptsConfig, seed: int, train_path: str | os.PathLike,
                       eval_path: str | os.PathLike) -> tuple[int, int]:
    """Load the texts, split them, write both parquet files atomically; return (n_train, n_eval)."""
    frame = load_texts(cfg)
    train, evaluation = split_texts(frame, cfg.eval_fraction, seed, cfg.max_texts)
    write_parquet(train, train_path)
    write_parquet(evaluation, eval_path)
    log.info("%d texts from %s: %d train, %d eval", len(frame), cfg.source, len(train), len(evaluation))
    return len(train), len(evaluation)
