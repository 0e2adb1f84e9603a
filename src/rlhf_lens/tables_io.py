"""Read a table file by its suffix (.parquet, .csv or .jsonl), for prompt files and text corpora alike.

Plain plumbing with no stage imports: callers check ``TABLE_SUFFIXES`` first where they want their
own error for an unknown suffix, and wrap read errors in theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")
"""The suffixes ``read_table`` reads (.jsonl: one JSON object per line)."""


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """The table in ``path``, read by its suffix; ValueError for any other suffix."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    if path.suffix == ".csv":
        return pd.read_csv(path)
    if path.suffix == ".jsonl":
        return pd.read_json(path, lines=True)
    raise ValueError(f"{path}: expected a file ending in {', '.join(TABLE_SUFFIXES)}")
