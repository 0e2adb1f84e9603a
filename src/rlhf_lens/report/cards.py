"""Feature cards: one standalone HTML page with a card per selected (MMCS-matched) feature.

The page has no external assets and no JavaScript (inline CSS, inline SVG), so it opens
offline and inside Snakemake's HTML report. Every string that a model wrote or that comes from
the corpus (explanations, failure reasons, tokens, dictionary names) goes through
``html.escape``; only numbers formatted here and fixed markup are written raw.

Input: the autointerp table (``autointerp/{reward}/{role}/layer{L}.parquet``, one or several
concatenated) and optionally the scoring table (``scores/{reward}.parquet``) for utilities.
"""

from __future__ import annotations

import html
import json
import os

import pandas as pd

from ..atomic import atomic_file
from ..missing import is_missing
from .wording import fmt, is_number

KEY = ["role", "layer", "dictionary", "feature"]
AUTOINTERP_COLUMNS = KEY + [
    "selected", "rank", "max_cosine", "match", "max_activation", "n_active", "n_tokens", "rare", "explanation",
    "score", "score_top", "score_quantile", "detection_auroc", "status", "reason", "examples", "histogram",
]
"""Columns of the autointerp table the cards read."""
UTILITY_COLUMNS = ["explanation_utility", "token_utility", "unembed_utility"]
"""Columns of the scoring table the cards read (with ``KEY``)."""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.5em}
h4{font-size:.9em;margin:.6em 0 .2em;color:#555}
.note{color:#555;max-width:60em}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid #ccc;border-radius:6px;padding:10px;width:560px;box-sizing:border-box}
.head{display:flex;gap:8px;align-items:baseline;flex-wrap:wrap}
.fid{font-weight:bold}.meta{color:#666}
.badge{font-size:.8em;padding:1px 6px;border-radius:8px;background:#e6f4ea}
.badge.failed{background:#fde2e1}.badge.rare{background:#fff2cc}
.expl{font-style:italic;margin:.4em 0}.expl.none{color:#999}
.reason{color:#a00;font-size:.9em;margin:.2em 0}
table.nums{border-collapse:collapse;font-size:.9em}
table.nums th{text-align:left;font-weight:normal;color:#555;padding:1px 10px 1px 0}
.win{font-family:ui-monospace,monospace;font-size:12px;margin:2px 0;line-height:1.7;word-break:break-all}
.tok{white-space:pre-wrap;border-radius:2px}
.ws{color:#999}
.kind{font-size:.75em;color:#666}
.row{display:flex;gap:6px;align-items:baseline}
.row .win{flex:1 1 auto;min-width:0}  /* a flex item may shrink below its content: long windows wrap */
.lbl{font-size:.75em;color:#666;flex:0 0 5.5em}
.pair{margin:4px 0;padding-top:2px;border-top:1px dotted #ddd}
svg text{font:10px sans-serif;fill:#555}
"""

TRUE_RGB = "255,127,14"  # orange: true activation
SIM_RGB = "31,119,180"  # blue: simulated activation
_WHITESPACE_MARKS = {"\n": "\u21b5", "\r": "\u240d", "\t": "\u21e5"}


def _text(value) -> str:
    """Untrusted text for HTML: None/NaN -> "", everything else escaped (quotes too, for attributes)."""
    if is_missing(value):
        return ""
    return html.escape(str(value), quote=True)


def _token_html(token: str, value, scale, rgb: str, label: str) -> str:
    """One token, its background shaded by ``value / scale`` and the value in its title."""
    alpha = min(1.0, max(0.0, value / scale)) if is_number(value) and is_number(scale) and scale > 0 else 0.0
    shown = "".join(f'<span class="ws">{_WHITESPACE_MARKS[c]}</span>' if c in _WHITESPACE_MARKS else html.escape(c)
                    for c in str(token))
    return (f'<span class="tok" style="background:rgba({rgb},{alpha:.2f})" '
            f'title="{_text(label)}: {fmt(value, 4)}">{shown}</span>')


def _window_html(tokens: list[str], values: list, scale, rgb: str, label: str) -> str:
    if len(values) != len(tokens):
        values = list(values) + [None] * (len(tokens) - len(values))
    spans = "".join(_token_html(t, v, scale, rgb, label) for t, v in zip(tokens, values))
    return f'<div class="win">{spans}</div>'


def histogram_svg(hist: dict, width: int = 260, height: int = 70) -> str:
    """An inline SVG bar chart of ``{"edges": [...], "counts": [...]}`` (nonzero activations); "" if empty."""
    edges, counts = hist.get("edges") or [], hist.get("counts") or []
    if not counts or len(edges) != len(counts) + 1:
        return ""
    plot_h, top = height - 14, max(max(counts), 1)
    bar_w = width / len(counts)
    bars = []
    for i, c in enumerate(counts):
        h = plot_h * c / top
        bars.append(f'<rect x="{i * bar_w:.1f}" y="{plot_h - h:.1f}" width="{max(bar_w - 1, 0.5):.1f}" '
                    f'height="{h:.1f}" fill="rgb({TRUE_RGB})"><title>[{fmt(edges[i])}, {fmt(edges[i + 1])}): '
                    f'{int(c)} tokens</title></rect>')
    return (f'<svg class="hist" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img"><title>activation histogram (nonzero activations; '
            f'max bin {int(top)} tokens)</title>{"".join(bars)}'
            f'<text x="0" y="{height - 2}">{fmt(edges[0])}</text>'
            f'<text x="{width}" y="{height - 2}" text-anchor="end">{fmt(edges[-1])}</text></svg>')


def _loads(value, what: str, row) -> dict:
    if is_missing(value) or value == "":
        return {}
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise ValueError(f"autointerp row role={row['role']} layer={row['layer']} feature={row['feature']}: "
                         f"column {what!r} is not valid JSON ({exc})") from None


def _numbers_html(row: dict) -> str:
    scored = any(c in row for c in UTILITY_COLUMNS)
    n_active, n_tokens = row.get("n_active"), row.get("n_tokens")
    known = is_number(n_active) and is_number(n_tokens) and n_tokens > 0
    density = f" ({fmt(100 * n_active / n_tokens, 2)}%)" if known else ""
    items = [
        ("simulation score", f"overall {fmt(row.get('score'))} · top {fmt(row.get('score_top'))} · "
                             f"quantile {fmt(row.get('score_quantile'))}"),
        ("detection AUROC", fmt(row.get("detection_auroc"))),
        ("utility", " · ".join(f"{c.split('_')[0]} {fmt(row.get(c))}" for c in UTILITY_COLUMNS)
         if scored else "not scored"),
        ("active on", f"{fmt(n_active, 6)} of {fmt(n_tokens, 9)} tokens{density}; max activation "
                      f"{fmt(row.get('max_activation'))}"),
        ("large dictionary", f"best match #{fmt(row.get('match'), 9)}, cosine {fmt(row.get('max_cosine'))} "
                             f"(rank {fmt(row.get('rank'), 9)} here)"),
    ]
    return '<table class="nums">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items) + "</table>"


def card_html(row: dict) -> str:
    """One feature's card (``row``: an autointerp row, merged with its utilities when scored)."""
    examples = _loads(row.get("examples"), "examples", row)
    hist = _loads(row.get("histogram"), "histogram", row)
    scale = row.get("max_activation")
    ok = row.get("status") == "ok"
    badges = f'<span class="badge{"" if ok else " failed"}">{_text(row.get("status")) or "unknown"}</span>'
    if row.get("rare"):
        badges += '<span class="badge rare" title="fewer activating tokens than example windows asked for">rare</span>'
    explanation = row.get("explanation")
    card_id = _text("-".join(str(row[k]) for k in KEY))
    parts = [
        f'<div class="card" id="{card_id}">',
        f'<div class="head"><span class="fid">feature {int(row["feature"])}</span>'
        f'<span class="meta">{_text(row["dictionary"])}</span>{badges}</div>',
        f'<p class="expl">{_text(explanation)}</p>' if _text(explanation)
        else '<p class="expl none">no explanation</p>',
    ]
    if not ok and _text(row.get("reason")):
        parts.append(f'<p class="reason">{_text(row.get("reason"))}</p>')
    parts.append(_numbers_html(row))
    svg = histogram_svg(hist)
    parts.append("<h4>activation histogram (nonzero activations)</h4>" + svg if svg
                 else '<h4>activation histogram: no nonzero activations</h4>')
    explain = sorted(examples.get("explain", []), key=lambda w: -max(w.get("activations") or [0]))
    if explain:
        parts.append("<h4>top example windows (shown to the explainer)</h4>")
        parts += [_window_html(w["tokens"], w["activations"], scale, TRUE_RGB, "activation") for w in explain]
    held_out = examples.get("score", [])
    if held_out:
        parts.append("<h4>held-out windows: true (orange) vs simulated (blue), 0-10 scale</h4>")
        for w in held_out:
            true10 = [10 * a / scale if is_number(a) and is_number(scale) and scale > 0 else None
                      for a in w["activations"]]
            predicted = w.get("predicted") or [None] * len(w["tokens"])
            parts.append(f'<div class="pair"><div class="kind">{_text(w.get("kind"))} window</div>'
                         f'<div class="row"><span class="lbl">true</span>'
                         f'{_window_html(w["tokens"], true10, 10, TRUE_RGB, "true")}</div>'
                         f'<div class="row"><span class="lbl">simulated</span>'
                         f'{_window_html(w["tokens"], predicted, 10, SIM_RGB, "simulated")}</div></div>')
    parts.append("</div>")
    return "\n".join(parts)


def _merge_scores(autointerp: pd.DataFrame, scores: pd.DataFrame | None) -> pd.DataFrame:
    missing = [c for c in AUTOINTERP_COLUMNS if c not in autointerp.columns]
    if missing:
        raise ValueError(f"autointerp table lacks columns {missing}; expected {AUTOINTERP_COLUMNS}")
    if scores is None:
        return autointerp
    missing = [c for c in KEY + UTILITY_COLUMNS if c not in scores.columns]
    if missing:
        raise ValueError(f"scores table lacks columns {missing}; expected at least {KEY + UTILITY_COLUMNS}")
    utilities = scores[KEY + UTILITY_COLUMNS]
    if utilities.duplicated(KEY).any():
        raise ValueError(f"scores table has more than one row for some {KEY}")
    return autointerp.merge(utilities, on=KEY, how="left")


def feature_cards(autointerp: pd.DataFrame, scores: pd.DataFrame | None, out_html: str | os.PathLike,
                  title: str) -> int:
    """Write one standalone HTML page with a card per selected feature, grouped by role and layer.

    ``autointerp``: autointerp rows (any number of roles/layers); only ``selected`` rows get a
    card (random baseline features are counted in the header). ``scores``: the scoring table,
    or None when scoring has not run. Writes atomically; returns the number of cards.
    """
    table = _merge_scores(autointerp, scores)
    selected = table[table["selected"].astype(bool)].sort_values(["role", "layer", "dictionary", "rank"])
    n_failed = int((selected["status"] != "ok").sum())
    sections = []
    for (role, layer), group in selected.groupby(["role", "layer"], sort=True):
        cards = "\n".join(card_html(row) for row in group.to_dict("records"))
        sections.append(f'<h2>{_text(role)} · layer {int(layer)}</h2>\n<div class="cards">\n{cards}\n</div>')
    note = (f"{len(selected)} selected features ({n_failed} failed), {int((~table['selected'].astype(bool)).sum())} "
            "random baseline features not shown. Token backgrounds: activation divided by the feature's largest "
            "activation over the corpus; hover a token for its value. Simulation score: Pearson correlation of "
            "simulated and true activations over the held-out windows. Utilities: "
            + ("from the scoring stage." if scores is not None else "not scored yet."))
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{_text(title)}</h1>\n<p class=\"note\">{note}</p>\n"
            + "\n".join(sections) + "\n</body></html>\n")
    with atomic_file(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return len(selected)
