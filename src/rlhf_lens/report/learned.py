""""What the policy learned": the diffing methods' readouts against the truth, their top words, the depth profile.

Reads the folders the diffing stage writes (``diffing/{reward}/{method}/``: words.parquet, readout.json,
extra.json, depth_profile.png where the method has a depth profile) and renders the summary's leading section.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd

from ..atomic import atomic_dir, atomic_file
from ..missing import as_float
from .wording import fmt, fmt_ci, md_escape, md_table

TOP_WORDS = 30
METRICS = [("spearman", "Spearman"), ("precision@20", "precision@20"), ("precision@50", "precision@50"),
           ("auroc", "AUROC"), ("recall@50", "recall@50")]


def load_diffing(folders: dict[str, str | os.PathLike]) -> dict[str, dict]:
    """method -> {"folder", "words" (the top ``TOP_WORDS`` rows of words.parquet), "readout", "extra"}."""
    out = {}
    for method, folder in folders.items():
        folder = Path(folder)
        words = pd.read_parquet(folder / "words.parquet").head(TOP_WORDS)
        out[method] = {"folder": folder, "words": words,
                       "readout": json.loads((folder / "readout.json").read_text()),
                       "extra": json.loads((folder / "extra.json").read_text())}
    return out


def plot_depth_profile(readout: dict, path: str | os.PathLike, title: str = "") -> bool:
    """Spearman and precision@50 of the readout at each block (``readout.json``'s depth_profile), the base rate
    dashed; False (nothing written) without a truth or a profile."""
    from .plots import _pyplot, _save  # plots imports summary, which imports this module

    profile = readout.get("depth_profile") or []
    if not profile or "spearman" not in profile[0]:
        return False
    plt = _pyplot()
    blocks = [row["block"] for row in profile]
    fig, ax = plt.subplots(figsize=(max(4, 0.2 * len(blocks) + 2), 3))
    ax.plot(blocks, [row["spearman"] for row in profile], marker="o", label="Spearman with the truth")
    ax.plot(blocks, [row["precision@50"] for row in profile], marker="s", label="precision@50")
    base_rate = (readout.get("readout") or {}).get("base_rate")
    if base_rate is not None:
        ax.axhline(base_rate, color="gray", linestyle="--", label="base rate")
    ax.axhline(0, color="black", linewidth=0.5)
    ax.set_xlabel("block (readout of the residual difference after it)")
    ax.set_ylabel("readout")
    ax.set_title(title or "depth profile")
    ax.legend(fontsize=7)
    _save(fig, path)
    return True


def _cell(metric: dict | None) -> str:
    if not metric or metric.get("value") is None:
        return "n/a"
    return f"{fmt(metric['value'])} {fmt_ci(metric.get('ci'))}" if metric.get("ci") else fmt(metric["value"])


def readout_table(diffing: dict[str, dict]) -> str:
    """One row per method: every metric with its CI, Spearman's permutation null, the unit and its count."""
    rows = []
    for method, d in diffing.items():
        r = d["readout"].get("readout")
        if r is None:
            rows.append([md_escape(method), *(["no truth"] * len(METRICS)), "", md_escape(d["readout"].get("unit")),
                         str(d["readout"].get("n_units"))])
            continue
        m = r["metrics"]
        null = m["spearman"].get("null_abs_95")
        rows.append([md_escape(method), *[_cell(m.get(key)) for key, _ in METRICS],
                     f"{fmt(r['base_rate'])} / ±{fmt(null)}" if null is not None else fmt(r["base_rate"]),
                     md_escape(r["unit"]), str(r["n_units"])])
    return md_table(["method", *[label for _, label in METRICS], "chance: base rate / Spearman null 95%", "unit", "n"], rows)


def top_words_line(words: pd.DataFrame) -> str:
    """The top words, each marked with its truth: **word** (+value) positive, word (value) negative or zero in the
    truth, word (·) outside it."""
    parts = []
    for row in words.to_dict("records"):
        w = md_escape(row["word"])
        if "truth" not in row:
            parts.append(w)
        elif not row.get("in_truth", True):
            parts.append(f"{w} (·)")
        elif row["truth"] > 0:
            parts.append(f"**{w}** ({fmt(row['truth'], 2, signed=True)})")
        else:
            parts.append(f"{w} ({fmt(row['truth'], 2, signed=True)})")
    return ", ".join(parts)


def learned_section(diffing: dict[str, dict] | None, run_dir: str | os.PathLike | None = None) -> str:
    """The summary's "What the policy learned" section; ``run_dir`` (results/{run}/) makes image links relative."""
    if not diffing:
        return "Not available: no diffing method was run for this reward."
    parts = [readout_table(diffing),
             "Each method scores every word-like vocabulary token (one token per word); the truth is the reward's own "
             "value of each word. Spearman: over the truth's words that are single tokens; precision@k: share of "
             "truth-positive words among the top k (chance: the base rate); AUROC: positive vs rest (chance 0.5); "
             "recall@50: share of the planted (positive) words in the top 50. CIs: percentile bootstrap over the "
             "method's independent unit."]
    for method, d in diffing.items():
        parts.append(f"**{md_escape(method)}**, top {len(d['words'])} words (bold: positive in the truth, "
                     f"· not in it): {top_words_line(d['words'])}")
        steering = d["extra"].get("steering")
        if steering:
            parts.append(f"Steering check ({md_escape(method)}): the mean difference added at block {steering['block']} "
                         f"moves the overseer's score of the base model's samples by "
                         f"{fmt(steering['gain'], signed=True)} {fmt_ci(steering['gain_ci'])} over "
                         f"{steering['n_prompts']} prompts ({fmt(steering['unsteered_mean'])} → "
                         f"{fmt(steering['steered_mean'])}).")
        png = Path(d["folder"]) / "depth_profile.png"
        if png.is_file():
            link = os.path.relpath(png, run_dir) if run_dir else str(png)
            parts.append(f"![depth profile of {md_escape(method)}]({link})")
    return "\n\n".join(parts)


REPORT_TOP_WORDS = 15
"""Top words per method in the report's readout table."""


def readout_frame(diffing: dict[str, dict]) -> pd.DataFrame:
    """One row per method (``load_diffing``'s result): every metric's value, CI and chance, the base rate,
    Spearman's permutation null, the unit and its count, and the top words (``+`` after a word positive in the
    truth). A method without a truth has its metrics empty."""
    rows = []
    for method, d in diffing.items():
        r = d["readout"].get("readout") or {}
        row = {"method": method, "unit": d["readout"].get("unit"), "n_units": d["readout"].get("n_units"),
               "base_rate": as_float(r.get("base_rate"))}
        for key, _ in METRICS:
            m = (r.get("metrics") or {}).get(key) or {}
            ci = m.get("ci") or [None, None]
            row.update({key: as_float(m.get("value")), f"{key}_ci_low": as_float(ci[0]),
                        f"{key}_ci_high": as_float(ci[1]), f"{key}_chance": as_float(m.get("chance"))})
        row["spearman_null_abs_95"] = as_float(((r.get("metrics") or {}).get("spearman") or {}).get("null_abs_95"))
        words = d["words"].head(REPORT_TOP_WORDS)
        marks = (words["truth"] > 0).tolist() if "truth" in words.columns else [False] * len(words)
        row["top_words"] = ", ".join(w + ("+" if hit else "") for w, hit in zip(words["word"], marks))
        rows.append(row)
    return pd.DataFrame(rows)


def learned_report_assets(folders: dict[str, str | os.PathLike], out_csv: str | os.PathLike,
                          out_dir: str | os.PathLike) -> pd.DataFrame:
    """The report's items for one reward: ``readout_frame`` as a CSV at ``out_csv``, and ``out_dir``/{method}.png,
    each method's depth_profile.png (methods without one have none). Both written atomically."""
    diffing = load_diffing(folders)
    frame = readout_frame(diffing)
    with atomic_file(out_csv) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.4g")
    with atomic_dir(out_dir) as tmp:
        for method, d in diffing.items():
            png = Path(d["folder"]) / "depth_profile.png"
            if png.is_file():
                shutil.copyfile(png, Path(tmp) / f"{method}.png")
    return frame
