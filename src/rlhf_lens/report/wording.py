"""Numbers and verdicts in words, and escaping of untrusted text for Markdown.

One rule for every claim of an effect: a difference is called **significant** only when its
confidence interval excludes 0 and, where a p-value is given, p < ``ALPHA``. A CI that
includes 0, or p >= ``ALPHA``, is written as "not significant" with "no effect at this size";
a missing CI or p-value is said to be missing, never read as an effect.
"""

from __future__ import annotations

import html
import math
import numbers
import re

import numpy as np

from ..missing import is_missing

ALPHA = 0.05
"""Significance level of the p-values (two-sided permutation tests)."""

NA = "n/a"

# Inline markers and table pipes; "_" only at a word edge (inside a word it never starts emphasis).
_MD_SPECIAL = re.compile(r"([\\`*\[\]|~]|(?<!\w)_|_(?!\w))")


def is_number(x) -> bool:
    """True for a finite real number, numpy scalars included (bool excluded); False for None, NaN, inf, text."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_)) and math.isfinite(x)


def fmt(x, digits: int = 3, signed: bool = False) -> str:
    """``x`` with ``digits`` significant digits ("n/a" when not a finite number)."""
    if not is_number(x):
        return NA
    sign = "+" if signed else ""
    if abs(x) >= 10 ** digits:
        return f"{x:{sign},.0f}"
    return f"{x:{sign}.{digits}g}"


def valid_ci(ci) -> bool:
    return ci is not None and len(ci) == 2 and is_number(ci[0]) and is_number(ci[1])


def fmt_ci(ci, digits: int = 3) -> str:
    """``[lo, hi]``, or "n/a" when the interval is missing or not finite."""
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]" if valid_ci(ci) else NA


def fmt_p(p) -> str:
    return fmt(p, 2) if is_number(p) else NA


def ci_label(level) -> str:
    """"95% CI" for level 0.95; "CI" when the level is unknown."""
    return f"{100 * level:g}% CI" if is_number(level) else "CI"


def ci_excludes_zero(ci) -> bool | None:
    """None when the interval is missing."""
    return (ci[0] > 0 or ci[1] < 0) if valid_ci(ci) else None


def is_significant(ci, p=None, tested: bool = False) -> bool:
    """The CI excludes 0 and, if a test was run (``tested``), p < ALPHA; a missing CI or p never is."""
    return bool(ci_excludes_zero(ci)) and (not tested or (is_number(p) and p < ALPHA))


def effect_words(ci, level=0.95, p=None, tested: bool = False) -> str:
    """The verdict on a difference in words, followed by the evidence (CI, and p when ``tested``).

    ``tested``: a permutation test was run for this difference, so its p-value counts too.
    """
    label = ci_label(level)
    evidence = f"{label} {fmt_ci(ci)}" + (f", p = {fmt_p(p)}" if tested else "")
    excludes = ci_excludes_zero(ci)
    if excludes is None:
        return f"not significant: no confidence interval could be estimated ({evidence})"
    if not excludes:
        return f"not significant: the {label} includes 0 ({evidence}), no effect at this size"
    if not is_significant(ci, p, tested):
        reason = f"p = {fmt_p(p)} is not below {ALPHA:g}" if is_number(p) else "the p-value is missing"
        return f"not significant: {reason} ({evidence}), no effect at this size"
    return f"significant: the {label} excludes 0 ({evidence})"


def overlap_words(ci_a, ci_b) -> str | None:
    """"overlap" / "do not overlap" for two intervals; None when either is missing."""
    if not (valid_ci(ci_a) and valid_ci(ci_b)):
        return None
    return "overlap" if ci_a[0] <= ci_b[1] and ci_b[0] <= ci_a[1] else "do not overlap"


def md_escape(text) -> str:
    """Untrusted text (model-written or corpus-derived) as inert Markdown on one line.

    Whitespace runs (newlines, tabs) become one space so the text cannot start a block
    (heading, list, table row, code fence); ``<``, ``>``, ``&`` become HTML entities so no raw
    HTML survives; Markdown's inline markers and table pipes are backslash-escaped (``_`` only where it
    could start or end emphasis, so identifiers like relu_1x stay readable).
    """
    if is_missing(text):
        return ""
    one_line = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    """A pipe table; cells are written as given (escape untrusted cells with ``md_escape`` first)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
