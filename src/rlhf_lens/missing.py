"""Missing numbers, one rule everywhere: None and NaN are missing; JSON and tables write them as None.

Plain plumbing (no stage imports), shared by autointerp, scoring and the report.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def is_missing(x) -> bool:
    """True for None, pandas' NA and a NaN float (numpy floats included); False for anything else."""
    return x is None or x is pd.NA or (isinstance(x, (float, np.floating)) and math.isnan(x))


def nan_to_none(x):
    """None where ``x`` is missing, else ``x`` unchanged."""
    return None if is_missing(x) else x


def as_float(x) -> float | None:
    """None where ``x`` is missing, else ``float(x)``."""
    return None if is_missing(x) else float(x)


def json_safe(obj, *, finite: bool = False):
    """NaN -> None everywhere in nested dicts/lists/tuples (JSON has no NaN); numpy scalars -> Python numbers.

    ``finite``: also write +-inf as None (metrics where an infinite value means "undefined").
    """
    if isinstance(obj, dict):
        return {k: json_safe(v, finite=finite) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v, finite=finite) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if finite and math.isinf(obj) else as_float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
