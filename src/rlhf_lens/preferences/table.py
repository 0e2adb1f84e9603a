"""The preference table: its columns, the checks it must pass, and external preference files.

Columns (one row per pair; a reward model scores ``prompt + response``, the concatenation the RL
code scores):

- ``prompt`` (str), ``chosen`` / ``rejected`` (str, the responses only);
- ``chosen_reward`` / ``rejected_reward`` (float64): the overseer's rewards (NaN for an external file
  without an overseer);
- ``p_chosen`` (float64): the Bradley-Terry probability sigmoid((r_chosen - r_rejected) / tau) of the
  label before any flip; 1.0 when tau = 0 and for external files;
- ``prompt_index`` (int64): the prompt's index; ``group`` (int64): the independent unit for
  resampling (= prompt_index for sampled pairs).

Torch-free (config validation reads external files with it before any job).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..tables_io import TABLE_SUFFIXES, read_table

COLUMNS = {"prompt": "str", "chosen": "str", "rejected": "str", "chosen_reward": "float64",
           "rejected_reward": "float64", "p_chosen": "float64", "prompt_index": "int64", "group": "int64"}
"""Column -> dtype of every preference table the pipeline writes."""

SPLITS = ("train", "heldout")
"""The splits of a preference set (held out by prompt)."""

EXTERNAL_REQUIRED = ("chosen", "rejected")
"""Columns an external preference file must have (``prompt`` is optional: then the responses carry it)."""


class PreferenceError(ValueError):
    """A preference table or source that cannot be used; the message names the file or key."""


def check_pairs(df: pd.DataFrame, source: str, required=tuple(COLUMNS)) -> None:
    """Fail with a message naming ``source`` when ``df`` lacks a column, holds no rows, or has a pair
    whose chosen and rejected texts (with their prompt) are identical."""
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise PreferenceError(f"{source}: missing column(s) {', '.join(missing)}: expected columns "
                              f"{', '.join(required)} (found {', '.join(map(str, df.columns)) or 'none'})")
    if len(df) == 0:
        raise PreferenceError(f"{source}: holds no preference pairs: expected at least one row")
    for col in ("chosen", "rejected"):
        bad = df[col].isna()
        if bad.any():
            raise PreferenceError(f"{source}: column {col!r} is empty in {int(bad.sum())} row(s) (first: row "
                                  f"{int(np.flatnonzero(bad.to_numpy())[0])}): expected a response text in every row")
    same = (df["chosen"].astype(str) == df["rejected"].astype(str)).to_numpy()
    if same.any():
        first = int(np.flatnonzero(same)[0])
        raise PreferenceError(f"{source}: {int(same.sum())} pair(s) have chosen identical to rejected (first: row "
                              f"{first}, {str(df['chosen'].iloc[first])[:60]!r}): expected two different responses "
                              "per pair")


def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """A preference table the pipeline wrote (``COLUMNS``), checked."""
    path = Path(path)
    if not path.is_file():
        raise PreferenceError(f"preference file {str(path)!r} does not exist")
    df = pd.read_parquet(path)
    check_pairs(df, f"preference file {str(path)!r}")
    return df


def source_kind(source: str) -> str:
    """``sample`` (pairs drawn and labelled here), ``hf`` (a Hugging Face dataset) or ``file``."""
    if source == "sample":
        return "sample"
    return "hf" if source.startswith("hf:") else "file"


def read_external(source: str, *, hf_split: str = "train", key: str = "preferences.source") -> pd.DataFrame:
    """The chosen/rejected[/prompt] columns of an external preference source, checked.

    ``source`` is a local .parquet/.csv/.jsonl file or ``hf:<dataset id or folder>`` (the ``datasets``
    package, for users online). Without a ``prompt`` column the prompt is empty (the responses then
    carry the whole text).
    """
    if source_kind(source) == "hf":
        from datasets import load_dataset

        df = load_dataset(source[3:], split=hf_split).to_pandas()
        where = f"key {key!r} (dataset {source[3:]!r}, split {hf_split!r})"
    else:
        path = Path(source).expanduser()
        where = f"key {key!r}: preference file {source!r}"
        if path.suffix not in TABLE_SUFFIXES:
            raise PreferenceError(f"{where}: expected sample, hf:<dataset>, or a file ending in "
                                  f"{', '.join(TABLE_SUFFIXES)}")
        if not path.is_file():
            raise PreferenceError(f"{where}: that file does not exist")
        try:
            df = read_table(path)
        except Exception as exc:  # a parser's own error, wrapped so the message names the key and file
            raise PreferenceError(f"{where}: cannot be read as a table ({exc})") from exc
    check_pairs(df, where, EXTERNAL_REQUIRED)
    for col in EXTERNAL_REQUIRED + ("prompt",):
        if col in df.columns and not all(isinstance(v, str) for v in df[col]):
            raise PreferenceError(f"{where}: column {col!r} holds non-text values (e.g. conversations): expected "
                                  "plain strings")
    out = pd.DataFrame({"prompt": df["prompt"].astype(str) if "prompt" in df.columns else "",
                        "chosen": df["chosen"].astype(str), "rejected": df["rejected"].astype(str)})
    return out


def empty_pairs() -> pd.DataFrame:
    """A preference table with no rows and the right dtypes."""
    return pd.DataFrame({c: pd.Series(dtype="object" if t == "str" else t) for c, t in COLUMNS.items()})


def as_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with exactly ``COLUMNS`` in order and their dtypes (extra columns kept after them)."""
    out = df.copy()
    for col, dtype in COLUMNS.items():
        out[col] = out[col].astype(str) if dtype == "str" else out[col].astype(dtype)
    return out[list(COLUMNS) + [c for c in df.columns if c not in COLUMNS]]


def split_by_prompt(groups: np.ndarray, heldout_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask (n,) of rows held out: a seeded ``heldout_fraction`` of the distinct groups, all their
    rows together (at least one group on each side when there are two or more)."""
    unique = np.unique(groups)
    n_held = int(round(heldout_fraction * len(unique)))
    if len(unique) >= 2:
        n_held = min(max(n_held, 1), len(unique) - 1)
    held = np.random.default_rng([seed, 7]).permutation(unique)[:n_held]
    return np.isin(groups, held)
