"""Crosscoder cards: one standalone HTML page per reward with what RLHF added by the crosscoders:
the utility comparison of RLHF-only latents against shared and random ones (with CIs), the dn
histograms with their (base, base) null, and a card per explained RLHF-only / RLHF-leaning latent.

A card shows both models on the same window: a crosscoder latent has one activation ``f_j`` per
token (its encoder reads both models' activations of the token), and writes ``f_j * ||d_j^m||`` into
model m's reconstruction. Each window is drawn twice, shaded by what the latent writes into the
base model and into the RLHF model, on one scale (the latent's largest activation times its larger
decoder norm): an RLHF-only latent's base row stays blank. Held-out windows add the simulation.

Like ``cards``: no external assets (the histogram is an inline PNG), every model- or corpus-written
string escaped.

Input: the crosscoder autointerp tables (``autointerp.crosscoder``), the crosscoder scoring table and
statistics (``scoring.crosscoder``).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pandas as pd

from ..atomic import atomic_file
from .cards import CSS, SIM_RGB, TRUE_RGB, _loads, _text, _window_html, histogram_svg
from .wording import fmt, fmt_ci, is_number

BASE_RGB = "44,160,44"  # green: what the latent writes into the base model
GROUP_WORDS = {"rlhf_only": "RLHF-only (dn > 0.9)", "rlhf_leaning": "RLHF-leaning (dn > 0.6)",
               "shared": "shared (0.4-0.6)", "random": "random live (not RLHF-only)"}
MEASURE_WORDS = {"token_utility": "token utility", "unembed_utility": "unembedding utility",
                 "explanation_utility": "explanation utility"}
SCORE_COLUMNS = ["token_utility", "unembed_utility", "explanation_utility"]
"""Columns of the crosscoder scoring table a card reads (with layer and feature)."""


def _writes(activations: list, norm: float) -> list:
    return [a * norm if is_number(a) else None for a in activations]


def _both_models(tokens: list, activations: list, row: dict, scale) -> str:
    """One window twice: the base model's and the RLHF model's write, on one scale."""
    return "".join(
        f'<div class="row"><span class="lbl">{label}</span>'
        f'{_window_html(tokens, _writes(activations, row[norm]), scale, rgb, label + " write")}</div>'
        for label, norm, rgb in (("base", "norm_base", BASE_RGB), ("rlhf", "norm_rlhf", TRUE_RGB)))


def _numbers(row: dict) -> str:
    items = [
        ("relative decoder norm", f"dn {fmt(row.get('dn'))} ({_text(row.get('bin'))}); decoder norms base "
                                  f"{fmt(row.get('norm_base'))} · rlhf {fmt(row.get('norm_rlhf'))}; atom cosine "
                                  f"{fmt(row.get('decoder_cosine'))}"),
        ("Latent Scaling", f"nu error {fmt(row.get('nu_error'))} · nu reconstruction "
                           f"{fmt(row.get('nu_reconstruction'))}"
                           + (" · RLHF-specific" if row.get("rlhf_specific") is True else "")),
        ("simulation score", f"overall {fmt(row.get('score'))} · top {fmt(row.get('score_top'))} · "
                             f"detection AUROC {fmt(row.get('detection_auroc'))}"),
        ("utility", " · ".join(f"{c.split('_')[0]} {fmt(row.get(c))}" for c in SCORE_COLUMNS)),
        ("active on", f"{fmt(row.get('n_active'), 6)} of {fmt(row.get('n_tokens'), 9)} tokens; max activation "
                      f"{fmt(row.get('max_activation'))}"),
    ]
    return '<table class="nums">' + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in items) + "</table>"


def crosscoder_card_html(row: dict) -> str:
    """One latent's card (``row``: a crosscoder autointerp row merged with its utilities)."""
    examples = _loads(row.get("examples"), "examples", row)
    hist = _loads(row.get("histogram"), "histogram", row)
    top = max([row[n] for n in ("norm_base", "norm_rlhf") if is_number(row.get(n))] or [0.0])
    amax = row.get("max_activation")
    scale = amax * top if is_number(amax) and top > 0 else None
    ok = row.get("status") == "ok"
    card_id = _text(f"crosscoder-{row['layer']}-{row['feature']}")
    parts = [f'<div class="card" id="{card_id}">',
             f'<div class="head"><span class="fid">latent {int(row["feature"])}</span>'
             f'<span class="meta">{_text(GROUP_WORDS.get(row.get("group"), row.get("group")))}</span>'
             f'<span class="badge{"" if ok else " failed"}">{_text(row.get("status")) or "unknown"}</span></div>',
             f'<p class="expl">{_text(row.get("explanation"))}</p>' if _text(row.get("explanation"))
             else '<p class="expl none">no explanation</p>']
    if not ok and _text(row.get("reason")):
        parts.append(f'<p class="reason">{_text(row.get("reason"))}</p>')
    parts.append(_numbers(row))
    svg = histogram_svg(hist)
    parts.append("<h4>activation histogram (nonzero activations)</h4>" + svg if svg
                 else "<h4>activation histogram: no nonzero activations</h4>")
    explain = sorted(examples.get("explain", []), key=lambda w: -max(w.get("activations") or [0]))
    if explain:
        parts.append("<h4>top windows: what the latent writes into each model (green base, orange RLHF)</h4>")
        parts += [f'<div class="pair">{_both_models(w["tokens"], w["activations"], row, scale)}</div>' for w in explain]
    held_out = [w for w in examples.get("score", []) if w.get("kind") != "random"]
    if held_out:
        parts.append("<h4>held-out windows: both models, and the simulation (blue, 0-10)</h4>")
        for w in held_out:
            predicted = w.get("predicted") or [None] * len(w["tokens"])
            parts.append(f'<div class="pair"><div class="kind">{_text(w.get("kind"))} window</div>'
                         f'{_both_models(w["tokens"], w["activations"], row, scale)}'
                         f'<div class="row"><span class="lbl">simulated</span>'
                         f'{_window_html(w["tokens"], predicted, 10, SIM_RGB, "simulated")}</div></div>')
    parts.append("</div>")
    return "\n".join(parts)


def comparison_html(stats: dict) -> str:
    """The utility comparison (``scoring.crosscoder`` statistics) as an HTML table with CIs."""
    head = ("<tr><th>measure</th><th>group</th><th>baseline</th><th>n</th><th>mean |value| (CI)</th>"
            "<th>baseline mean |value| (CI)</th><th>difference [CI]</th><th>p</th><th>verdict</th></tr>")
    body = []
    for m, block in stats.get("measures", {}).items():
        for c in block["comparisons"].values():
            g, b = block["groups"][c["group"]], block["groups"][c["baseline"]]
            body.append(f"<tr><td>{MEASURE_WORDS.get(m, _text(m))}</td><td>{GROUP_WORDS[c['group']]}</td>"
                        f"<td>{GROUP_WORDS[c['baseline']]}</td><td>{g['n']} / {b['n']}</td>"
                        f"<td>{fmt(g['mean_abs'])} {fmt_ci(g['ci'])}</td><td>{fmt(b['mean_abs'])} {fmt_ci(b['ci'])}</td>"
                        f"<td>{fmt(c['difference'], signed=True)} {fmt_ci(c['ci'] or [None, None])}</td>"
                        f"<td>{fmt(c['p_value'])}</td><td>{'effect' if c['effect'] else 'no effect'}</td></tr>")
    return f'<table class="nums">{head}{"".join(body)}</table>'


SUMMARY_COLUMNS = {"n_live": "live", "n_base_only": "base-only", "n_base_leaning": "base-leaning",
                   "n_shared": "shared", "n_rlhf_leaning": "RLHF-leaning (dn > 0.6)", "n_rlhf_only": "RLHF-only",
                   "n_rlhf_specific": "RLHF-specific (Latent Scaling)", "n_complete_shrinkage": "shrinkage",
                   "n_latent_decoupling": "decoupling", "l0": "L0"}
"""Columns of the crosscoder summary (``crosscoder_fit.summarise_crosscoders``) the page shows, with their headers."""


def summary_html(summary: pd.DataFrame) -> str:
    """Counts per dn bin of each layer's crosscoder next to its (base, base) null, with EV per model and L0."""
    ev = [c for c in summary.columns if c.startswith("explained_variance_")]
    cols = [c for c in SUMMARY_COLUMNS if c in summary.columns]
    head = ("<tr><th>layer</th><th>pair</th>" + "".join(f"<th>{SUMMARY_COLUMNS[c]}</th>" for c in cols)
            + "".join(f"<th>EV {_text(c.removeprefix('explained_variance_'))}</th>" for c in ev) + "</tr>")
    body = []
    for r in summary.sort_values(["layer", "pair"], ascending=[True, False]).to_dict("records"):
        pair = "(base, rlhf)" if r["pair"] == "rlhf" else "(base, base) null"
        body.append(f"<tr><td>{int(r['layer'])}</td><td>{pair}</td>"
                    + "".join(f"<td>{fmt(r.get(c), 6)}</td>" for c in cols)
                    + "".join(f"<td>{fmt(r.get(c))}</td>" for c in ev) + "</tr>")
    return f'<table class="nums">{head}{"".join(body)}</table>'


def crosscoder_cards(autointerp: pd.DataFrame, scores: pd.DataFrame | None, stats: dict | None,
                     out_html: str | os.PathLike, title: str, histogram_png: str | os.PathLike | None = None,
                     summary: pd.DataFrame | None = None) -> int:
    """Write the page: the utility comparison, the dn histograms (``histogram_png``, inlined) and the
    counts per dn bin beside the null's (``summary``), and a card per selected (RLHF-only or
    RLHF-leaning) latent, by layer; returns the number of cards."""
    table = autointerp
    if scores is not None:
        table = table.merge(scores[["layer", "feature", *SCORE_COLUMNS]].drop_duplicates(["layer", "feature"]),
                            on=["layer", "feature"], how="left", suffixes=("", "_scores"))
    selected = table[table["selected"].astype(bool)].sort_values(["layer", "group", "rank"],
                                                                ascending=[True, False, True])
    sections = []
    if stats is not None:
        sections.append(f"<h2>Utilities of RLHF-only latents vs shared and random latents</h2>\n"
                        f"<p class=\"note\">{stats.get('n_rlhf_only', 0)} RLHF-only and "
                        f"{stats.get('n_rlhf_leaning', 0)} RLHF-leaning of {stats.get('n_live', 0)} live latents over "
                        f"layers {_text(stats.get('layers'))}. Mean |value| per group; differences with "
                        f"{fmt(100 * stats.get('ci_level', 0.95), 3)}% bootstrap CIs and permutation p-values, both "
                        "within layers; an effect needs a CI that excludes 0 and p &lt; 0.05.</p>\n"
                        + comparison_html(stats))
    if histogram_png is not None and Path(histogram_png).exists():
        data = base64.b64encode(Path(histogram_png).read_bytes()).decode("ascii")
        sections.append('<h2>Relative decoder norm: crosscoder vs its (base, base) null</h2>\n'
                        f'<img alt="dn histograms" style="max-width:100%" src="data:image/png;base64,{data}">')
    if summary is not None and not summary.empty:
        sections.append("<h2>Latents per dn bin: crosscoder vs its null</h2>\n<p class=\"note\">Live latents only; "
                        "the null (one dictionary for the base model twice) must have none in a one-model bin.</p>\n"
                        + summary_html(summary))
    for layer, group in selected.groupby("layer", sort=True):
        cards = "\n".join(crosscoder_card_html(row) for row in group.to_dict("records"))
        sections.append(f'<h2>layer {int(layer)}</h2>\n<div class="cards">\n{cards}\n</div>')
    if selected.empty:
        sections.append("<p class=\"note\">No RLHF-only or RLHF-leaning latent to explain: the crosscoders found "
                        "none at this size.</p>")
    n_base = int((~table["selected"].astype(bool)).sum())
    note = (f"{len(selected)} RLHF-only / RLHF-leaning latents explained ({int((selected['status'] != 'ok').sum())} "
            f"failed); {n_base} shared and random latents explained as baselines, not shown. Each window is drawn "
            "for both models: the shading is what the latent writes into that model (activation times the model's "
            "decoder norm) over the latent's largest write.")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_text(title)}</title>'
            f"<style>{CSS}</style></head><body>\n<h1>{_text(title)}</h1>\n<p class=\"note\">{note}</p>\n"
            + "\n".join(sections) + "\n</body></html>\n")
    with atomic_file(out_html) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return len(selected)
