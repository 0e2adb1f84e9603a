"""The calibration's recovery: how well each diffing method reads each arm's reward back, against its reward gain.

For every arm of ``calibration.rewards`` (the strengths kl020, kl010, kl005, the ``secret`` table and the
``vader_shuffled`` null) and every diffing method that ran, one row per (arm, method, truth) with the
readout.json metrics (``rlhf_lens.diffing.readouts``): Spearman, precision@20 and @50 beside their base
rate, recall@50, each with its bootstrap CI over the method's unit, next to the arm's held-out reward gain
(``rl_eval``'s summary, as the calibration table reads it). Each arm is first scored against the table it
was trained on (the diffing job's own readout). A shuffled arm is also scored against the real VADER table:
its policy changed as much as a VADER policy, on other words, so every method's readout against VADER is
the like-for-like null.

That second readout is computed here from the job's words.parquet, whose ``score`` is the method's mean
over units; the per-unit scores are not saved, so it has **point values only, no CI**. In their place it
gives what a random ranking gets: the hypergeometric 95% range of precision@k and recall@50, and for
Spearman the permutation null (``readouts.spearman_null``). Two chances matter there. The base rate is
VADER's positive share of all word-like tokens. But the shuffled table puts VADER's values on VADER's own
words, so a policy that learned its shuffled table favours lexicon words, of which a far larger share is
VADER-positive (``lexicon_rate``): a perfect readout of the null sits at that rate against VADER, not at the
base rate. Only Spearman, computed over the lexicon's words alone, has chance 0 for both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..atomic import atomic_file, write_parquet
from ..diffing.readouts import PRECISION_K, RECALL_K, readout
from ..diffing.truth import table_truth
from ..missing import as_float, is_missing
from ..rewards.utility_table import load_vader
from .wording import fmt, fmt_ci, md_escape, md_table, valid_ci

METRICS = {"precision@20": "precision@20", "precision@50": "precision@50", "spearman": "Spearman",
           "recall@50": "recall@50"}
"""The readouts the recovery reports (readout.json's metric names), with their labels; one figure panel each."""

NULL_TABLE = "vader_shuffled"
"""The ``table`` of a null arm: also scored against the real VADER table."""

ARM_NOTE = {"secret": " (secret table)", NULL_TABLE: " (null: VADER shuffled)"}
"""How the markdown marks an arm trained on a planted table (as the calibration table does)."""


def arm_kind(table: str | None) -> str:
    """``strength`` (a table nobody planted: VADER or a user's CSV), ``secret`` or ``null``."""
    return {"secret": "secret", NULL_TABLE: "null"}.get(table or "vader", "strength")


def _hypergeom_range(population: int, positives: int, draws: int, divide: float, level: float) -> list[float] | None:
    """The ``level`` central range of (positives among ``draws`` random items of ``population``) / ``divide``."""
    draws = min(draws, population)
    if population <= 0 or draws <= 0 or divide <= 0:
        return None
    dist = stats.hypergeom(population, positives, draws)
    alpha = (1 - level) / 2
    return [float(dist.ppf(alpha)) / divide, float(dist.ppf(1 - alpha)) / divide]


def vader_readout(words: pd.DataFrame, vader: dict[str, float], *, n_perm: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict:
    """A recovered table's readout against ``vader`` (word -> utility), from words.parquet's mean ``score``.

    ``words``: one row per word-like token (token_id, token_text, word, score). ``readouts.readout`` on the one
    row of mean scores (so ``ci`` is None), plus per metric ``chance_range`` (a random ranking's 95% range over
    all word-like tokens), ``lexicon_rate`` (VADER's positive share among its words that are single tokens)
    and ``lexicon_range`` (the 95% range of a random ranking of those words alone: where a readout of a
    shuffled-table policy lands)."""
    vocab = words[["token_id", "token_text", "word"]].reset_index(drop=True)
    truth = table_truth(vader, vocab, reward="vader")
    ids = vocab["token_id"].to_numpy()
    row = np.zeros((1, int(ids.max()) + 1))
    row[0, ids] = words["score"].to_numpy(dtype=np.float64)
    out = readout(row, truth, unit="none (mean scores)", n_boot=0, n_perm=n_perm, level=level, seed=seed)
    positive, in_truth = truth.positive, truth.frame["in_truth"].to_numpy()
    n_words, n_pos = len(vocab), int(positive.sum())
    n_lex, n_lex_pos = int(in_truth.sum()), int((positive & in_truth).sum())
    lexicon_rate = n_lex_pos / n_lex if n_lex else None
    out["lexicon_rate"] = lexicon_rate
    for k in PRECISION_K:
        m = out["metrics"][f"precision@{k}"]
        m["chance_range"] = _hypergeom_range(n_words, n_pos, k, min(k, n_words), level)
        m["lexicon_rate"] = lexicon_rate
        m["lexicon_range"] = _hypergeom_range(n_lex, n_lex_pos, k, min(k, n_lex), level)
    m = out["metrics"][f"recall@{RECALL_K}"]
    m["chance_range"] = _hypergeom_range(n_words, n_pos, RECALL_K, n_pos, level)
    m["lexicon_range"] = _hypergeom_range(n_lex, n_lex_pos, RECALL_K, n_pos, level)
    out["ci_note"] = "point values: words.parquet keeps the mean score only, not the per-unit scores a CI resamples"
    return out


def _gain(rl_eval: dict) -> dict:
    ci = rl_eval.get("reward_difference_ci95") or [None, None]
    return {"reward_gain": as_float(rl_eval.get("reward_difference")), "reward_gain_ci_low": as_float(ci[0]),
            "reward_gain_ci_high": as_float(ci[1])}


def recovery_row(arm: str, table: str | None, method: str, truth: str, r: dict, gain: dict) -> dict:
    """One (arm, method, truth) row from a readout dict (readout.json's ``readout`` or ``vader_readout``'s).

    ``truth``: ``own`` (the table the arm was trained on) or ``vader``. ``null`` is True for the like-for-like
    null's row against VADER, the one that must sit at chance."""
    row = {"arm": arm, "table": table, "kind": arm_kind(table), "method": method, "truth": truth,
           "null": arm_kind(table) == "null" and truth == "vader", **gain,
           "base_rate": as_float(r.get("base_rate")), "lexicon_rate": as_float(r.get("lexicon_rate")),
           "n_units": r.get("n_units"), "has_ci": r.get("ci_note") is None}
    for key in METRICS:
        m = r["metrics"].get(key) or {}
        ci = m.get("ci") or [None, None]
        row.update({key: as_float(m.get("value")), f"{key}_ci_low": as_float(ci[0]), f"{key}_ci_high": as_float(ci[1]),
                    f"{key}_chance": as_float(m.get("chance"))})
        for what in ("chance_range", "lexicon_range"):
            rng = m.get(what) or [None, None]
            row.update({f"{key}_{what}_low": as_float(rng[0]), f"{key}_{what}_high": as_float(rng[1])})
    row["spearman_null_abs_95"] = as_float(r["metrics"].get("spearman", {}).get("null_abs_95"))
    row["spearman_p_perm"] = as_float(r["metrics"].get("spearman", {}).get("p_perm"))
    return row


def recovery_table(arms: dict[str, dict], vader: dict[str, float] | None = None, *, n_perm: int = 1000,
                   seed: int = 0) -> pd.DataFrame:
    """``arms``: arm -> {"rl_eval": eval summary JSON path, "table": the table it was trained on (None for
    VADER), "diffing": {method: diffing folder}}, in calibration order. One row per arm, method and truth:
    the job's own readout, and for a null arm (table vader_shuffled) also its readout against ``vader``
    (default: the lexicon). Methods without a truth in readout.json are left out."""
    rows = []
    for arm, a in arms.items():
        gain = _gain(json.loads(Path(a["rl_eval"]).read_text()))
        for method, folder in a["diffing"].items():
            own = json.loads((Path(folder) / "readout.json").read_text()).get("readout")
            if own is None:
                continue
            rows.append(recovery_row(arm, a.get("table"), method, "own", own, gain))
            if arm_kind(a.get("table")) == "null":
                if vader is None:
                    vader = load_vader()
                words = pd.read_parquet(Path(folder) / "words.parquet", columns=["token_id", "token_text", "word", "score"])
                r = vader_readout(words, vader, n_perm=int(own.get("n_perm", n_perm)), seed=seed,
                                  level=float(own.get("ci_level", 0.95)))
                rows.append(recovery_row(arm, a.get("table"), method, "vader", r, gain))
    return pd.DataFrame(rows)


def _cell(r: dict, key: str) -> str:
    value = r.get(key)
    if value is None or pd.isna(value):
        return "n/a"
    text = fmt(value, signed=key == "spearman")
    if r["has_ci"]:
        ci = [r[f"{key}_ci_low"], r[f"{key}_ci_high"]]
        return f"{text} {fmt_ci(ci)}" if valid_ci(ci) else f"{text} (no CI: one unit)"
    if key == "spearman":
        return f"{text}† (null 95%: ±{fmt(r['spearman_null_abs_95'])})"
    lex = [r.get(f"{key}_lexicon_range_low"), r.get(f"{key}_lexicon_range_high")]
    return f"{text}† (random lexicon words: {fmt_ci(lex)})"


def recovery_markdown(table: pd.DataFrame) -> str:
    """The table in words: one row per arm, method and truth, the nulls marked, and a verdict per null row."""
    if table.empty:
        return "No diffing readout with a truth for the calibration's rewards: nothing to recover.\n"
    headers = ["arm", "scored against", "reward gain [CI]", "method", *METRICS.values(), "base rate"]
    body = []
    for r in table.to_dict("records"):
        arm = md_escape(r["arm"]) + ARM_NOTE.get(None if is_missing(r["table"]) else r["table"], "")
        table_name = "vader" if is_missing(r["table"]) else r["table"]
        against = ("**VADER: the null (must sit at chance)**" if r["null"] else "its own table"
                   if r["kind"] != "strength" else f"its table ({'VADER' if table_name == 'vader' else md_escape(table_name)})")
        gain = f"{fmt(r['reward_gain'], signed=True)} {fmt_ci([r['reward_gain_ci_low'], r['reward_gain_ci_high']])}"
        body.append([arm, against, gain, md_escape(r["method"]), *(_cell(r, k) for k in METRICS), fmt(r["base_rate"])])
    parts = [md_table(headers, body),
             "Per arm and diffing method, the readout of the recovered table against the truth (readout.json; CIs: "
             "percentile bootstrap over the method's unit). Reward gain: the arm's held-out reward (policy - base) "
             "on the table it was trained on. Chance: precision@k at the base rate (the truth's positive share of "
             "the word-like tokens), Spearman 0, recall@50 at 50 over the number of word-like tokens."]
    nulls = table[table["null"]]
    if len(nulls):
        parts.append("† The null's readout against VADER is computed from words.parquet's mean scores: point values, "
                     "no CI (the per-unit scores are not saved). Beside them: for Spearman, its permutation null; for "
                     "precision and recall, the 95% range of a ranking that picks VADER's own words at random. The "
                     "shuffled table puts VADER's values on VADER's words, so a policy that learned it favours lexicon "
                     f"words, of which a share of {fmt(nulls['lexicon_rate'].iloc[0])} is VADER-positive (the base rate "
                     "counts every word-like token): precision at that share, not at the base rate, is what a null "
                     "that learned only its own table gives. Spearman, over the lexicon's words alone, is the clean test.")
        for r in nulls.to_dict("records"):
            parts.append(f"- {null_verdict(r)}")
    return "\n\n".join(parts) + "\n"


def null_verdict(r: dict) -> str:
    """One null row in words: is each readout inside what chance gives?"""
    inside = []
    rho, band = r.get("spearman"), r.get("spearman_null_abs_95")
    if rho is not None and band is not None and not pd.isna(rho) and not pd.isna(band):
        inside.append(f"Spearman {fmt(rho, signed=True)} is {'inside' if abs(rho) <= band else 'OUTSIDE'} its "
                      f"permutation null (±{fmt(band)})")
    for key in ("precision@50", "recall@50"):
        value, low, high = r.get(key), r.get(f"{key}_lexicon_range_low"), r.get(f"{key}_lexicon_range_high")
        if value is None or low is None or pd.isna(value) or pd.isna(low):
            continue
        where = "inside" if low <= value <= high else "ABOVE" if value > high else "below"
        inside.append(f"{key} {fmt(value)} is {where} the random-lexicon range {fmt_ci([low, high])} "
                      f"(base rate {fmt(r['base_rate'])})")
    verdict = ("at chance against VADER, as a null must be" if inside and all(" inside " in s for s in inside)
               else "NOT at chance against VADER" if inside else "no readout to judge")
    return f"{md_escape(r['arm'])}, {md_escape(r['method'])}: {verdict}: " + "; ".join(inside) + "."


def plot_recovery(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """One panel per readout (``METRICS``): the readout with its CI against the arm's reward gain with its CI.
    Per method one colour: the strengths joined by a line (the dose-response), the secret arm a star, the null
    arm against its own table a hollow square and against VADER a cross; chance dashed (against VADER, from the
    strengths' readouts: the base rate for precision), the shuffled null's random-lexicon rate dotted."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    # a last, empty panel holds the legend, so it covers no point (tight_layout ignores a figure legend)
    fig, axes = plt.subplots(1, len(METRICS) + 1, figsize=(3.6 * len(METRICS) + 2.6, 3.4), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * len(METRICS) + [0.7]})
    methods = list(dict.fromkeys(table["method"])) if len(table) else []
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    styles = {("strength", "own"): dict(fmt="o-"), ("secret", "own"): dict(fmt="*", markersize=11),
              ("null", "own"): dict(fmt="s", mfc="none"), ("null", "vader"): dict(fmt="x", markersize=8, mew=2)}

    def with_err(df, key):  # values and their CI as errorbar's (2, n) distances (0 where there is no CI)
        v = df[key].astype(float).to_numpy()
        lo, hi = df[f"{key}_ci_low"].astype(float).to_numpy(), df[f"{key}_ci_high"].astype(float).to_numpy()
        return v, np.nan_to_num(np.abs(np.stack([v - lo, hi - v])))

    for ax, (key, label) in zip(axes[0], METRICS.items()):
        ax.set(xlabel="held-out reward gain (policy - base)", ylabel=label, title=label)
        if table.empty:
            ax.text(0.5, 0.5, "no diffing readout", ha="center", va="center", transform=ax.transAxes)
            continue
        for method in methods:
            for (kind, truth), style in styles.items():
                rows = table[(table["method"] == method) & (table["kind"] == kind) & (table["truth"] == truth)]
                rows = rows.sort_values("reward_gain")
                if rows.empty or rows[key].isna().all():
                    continue
                x, xerr = with_err(rows, "reward_gain")
                y, yerr = with_err(rows, key)
                ax.errorbar(x, y, xerr=xerr, yerr=yerr, color=colors[method], capsize=2, lw=1, **style,
                            label=method if (kind, truth) == ("strength", "own") else None)
        strengths = table[table["kind"] == "strength"]
        chance = strengths[f"{key}_chance"].dropna()
        if len(chance):
            ax.axhline(float(chance.iloc[0]), color="gray", ls="--", lw=1, label="chance against VADER (base rate; Spearman 0)")
        lexicon = table.loc[table["null"], f"{key}_lexicon_range_low"].dropna()
        if key.startswith("precision@") and len(lexicon):
            ax.axhline(float(table.loc[table["null"], "lexicon_rate"].iloc[0]), color="gray", ls=":", lw=1,
                       label="random VADER words (the null's chance)")
    handles = [plt.Line2D([], [], color="black", **{k: v for k, v in s.items() if k != "fmt"},
                          marker=s["fmt"][0], ls="-" if "-" in s["fmt"] else "none", label=name)
               for name, s in (("strengths (own table)", styles[("strength", "own")]),
                               ("secret table (own)", styles[("secret", "own")]),
                               ("null: shuffled (own table)", styles[("null", "own")]),
                               ("null: shuffled vs VADER (point)", styles[("null", "vader")]))]
    seen = {}
    for ax in axes[0][:-1]:
        for h, name in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(name, h)
    axes[0][-1].axis("off")
    axes[0][-1].legend(handles=list(seen.values()) + handles, labels=list(seen) + [h.get_label() for h in handles],
                       fontsize=7, loc="center left", frameon=False)
    fig.suptitle("calibration: does each diffing method read the planted reward back? (dose-response, nulls marked)",
                 fontsize=9)
    _save(fig, path, dpi=110)


def recovery_stage(arms: dict[str, dict], out_table, out_md, out_png, *, vader: dict[str, float] | None = None,
                   seed: int = 0) -> pd.DataFrame:
    """Build ``recovery_table(arms)`` and write it (parquet), its markdown and the figure atomically."""
    table = recovery_table(arms, vader, seed=seed)
    write_parquet(table, out_table)
    with atomic_file(out_md) as tmp:
        tmp.write_text(recovery_markdown(table))
    plot_recovery(table, out_png)
    return table
