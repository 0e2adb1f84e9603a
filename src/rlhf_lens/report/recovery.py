"""The calibration's recovery: how well each diffing method reads each arm's reward back, against its reward gain.

For every arm of ``calibration.rewards`` (the strengths kl020, kl010, kl005, the ``secret`` table and the
``vader_shuffled`` null) and every diffing method that ran, one row per (arm, method, truth) with the
readout.json metrics (``rlhf_lens.diffing.readouts``): Spearman, precision@20 and @50 beside their base
rate, recall@50, each with its bootstrap CI over the method's unit, next to the arm's held-out reward gain
(``rl_eval``'s summary, as the calibration table reads it). Each arm is first scored against the table it
was trained on (the diffing job's own readout). A shuffled arm is also scored against the real VADER table:
its policy was trained on VADER's values on other words, so every method's readout against VADER is the
like-for-like null.

Every arm is also scored against the words its policy learned to write (``learned_words``: its table's
positive words whose count per held-out sample rose), since a readout can only find what the policy
learned; and the activation lens's depth profile gives, per arm, the first block from which the reward is
readable (``depth_table``, ``plot_depth``).

The readouts against VADER and against the learned words are computed here from the job's words.parquet,
whose ``score`` is the method's mean over units; the per-unit scores are not saved, so they have **point
values only, no CI**. In their place they
give what a random ranking gets: the hypergeometric 95% range of precision@k and recall@50, and for
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
from typing import Mapping

import numpy as np
import pandas as pd
from scipy import stats

from ..atomic import atomic_file, write_parquet
from ..diffing.readouts import PRECISION_K, READABLE, RECALL_K, first_readable_block, readout
from ..diffing.truth import Truth, table_truth
from ..missing import as_float, is_missing
from ..rewards.utility_table import load_vader, words_with_spans
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


def mean_score_readout(words: pd.DataFrame, table: Mapping[str, float], reward: str, *, n_perm: int = 1000,
                       seed: int = 0, level: float = 0.95) -> tuple[dict, Truth]:
    """A recovered table's readout against ``table`` (word -> utility), from words.parquet's mean ``score``.

    ``words``: one row per word-like token (token_id, token_text, word, score). ``readouts.readout`` on the one
    row of mean scores (so ``ci`` is None), plus per precision and recall metric ``chance_range``: a random
    ranking's 95% range over all word-like tokens. Returns the readout and the truth it used."""
    vocab = words[["token_id", "token_text", "word"]].reset_index(drop=True)
    truth = table_truth(dict(table), vocab, reward=reward)
    ids = vocab["token_id"].to_numpy()
    row = np.zeros((1, int(ids.max()) + 1))
    row[0, ids] = words["score"].to_numpy(dtype=np.float64)
    out = readout(row, truth, unit="none (mean scores)", n_boot=0, n_perm=n_perm, level=level, seed=seed)
    n_words, n_pos = len(vocab), int(truth.positive.sum())
    for k in PRECISION_K:
        out["metrics"][f"precision@{k}"]["chance_range"] = _hypergeom_range(n_words, n_pos, k, min(k, n_words), level)
    out["metrics"][f"recall@{RECALL_K}"]["chance_range"] = _hypergeom_range(n_words, n_pos, RECALL_K, n_pos, level)
    out["ci_note"] = "point values: words.parquet keeps the mean score only, not the per-unit scores a CI resamples"
    return out, truth


def vader_readout(words: pd.DataFrame, vader: dict[str, float], *, n_perm: int = 1000, seed: int = 0,
                  level: float = 0.95) -> dict:
    """``mean_score_readout`` against ``vader``, plus ``lexicon_rate`` (VADER's positive share among its words
    that are single tokens) and per precision and recall metric ``lexicon_range`` (the 95% range of a random
    ranking of those words alone: where a readout of a shuffled-table policy lands)."""
    out, truth = mean_score_readout(words, vader, "vader", n_perm=n_perm, seed=seed, level=level)
    positive, in_truth = truth.positive, truth.frame["in_truth"].to_numpy()
    n_pos, n_lex, n_lex_pos = int(positive.sum()), int(in_truth.sum()), int((positive & in_truth).sum())
    lexicon_rate = n_lex_pos / n_lex if n_lex else None
    out["lexicon_rate"] = lexicon_rate
    for k in PRECISION_K:
        out["metrics"][f"precision@{k}"]["lexicon_rate"] = lexicon_rate
        out["metrics"][f"precision@{k}"]["lexicon_range"] = _hypergeom_range(n_lex, n_lex_pos, k, min(k, n_lex), level)
    out["metrics"][f"recall@{RECALL_K}"]["lexicon_range"] = _hypergeom_range(n_lex, n_lex_pos, RECALL_K, n_pos, level)
    return out


def learned_words(samples: pd.DataFrame, table: Mapping[str, float], *, n_boot: int = 1000, level: float = 0.95,
                  seed: int = 0) -> pd.DataFrame:
    """Which of ``table``'s positive words the policy learned to write, from rl_eval's held-out samples.

    ``samples``: eval.parquet (prompt_index, model base/policy, response), several samples per prompt and
    model. Per prompt, a word's mean count per sample in the policy's responses minus the base's (words as the
    utility table reads them); its mean over prompts with a percentile bootstrap CI over prompts (the
    independent unit). One row per positive table word: word, base and policy (mean count per sample),
    change, ci_low, ci_high, learned (ci_low > 0): the words a readout of the policy can find at all."""
    planted = sorted(w for w, v in table.items() if v > 0)
    column = {w: i for i, w in enumerate(planted)}
    prompts = sorted(samples["prompt_index"].unique())
    row_of = {p: i for i, p in enumerate(prompts)}
    per_sample = {}
    for model in ("base", "policy"):
        rows = samples[samples["model"] == model]
        counts = np.zeros((len(prompts), len(planted)))
        for prompt, response in zip(rows["prompt_index"], rows["response"]):
            for word, _ in words_with_spans(str(response)):
                if word in column:
                    counts[row_of[prompt], column[word]] += 1
        n = rows.groupby("prompt_index").size().reindex(prompts).to_numpy(dtype=np.float64)
        per_sample[model] = counts / np.maximum(n, 1)[:, None]
    diff = per_sample["policy"] - per_sample["base"]  # (n_prompts, n_words)
    rng = np.random.default_rng(seed)
    boot = np.stack([diff[rng.integers(0, len(prompts), len(prompts))].mean(axis=0) for _ in range(n_boot)])
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, alpha, axis=0), np.quantile(boot, 1 - alpha, axis=0)
    return pd.DataFrame({"word": planted, "base": per_sample["base"].mean(axis=0),
                         "policy": per_sample["policy"].mean(axis=0), "change": diff.mean(axis=0),
                         "ci_low": low, "ci_high": high, "learned": low > 0})


def _gain(rl_eval: dict) -> dict:
    ci = rl_eval.get("reward_difference_ci95") or [None, None]
    return {"reward_gain": as_float(rl_eval.get("reward_difference")), "reward_gain_ci_low": as_float(ci[0]),
            "reward_gain_ci_high": as_float(ci[1])}


def recovery_row(arm: str, table: str | None, method: str, truth: str, r: dict, gain: dict) -> dict:
    """One (arm, method, truth) row from a readout dict (readout.json's ``readout`` or ``vader_readout``'s).

    ``truth``: ``own`` (the table the arm was trained on), ``vader`` or ``learned`` (the own table's positive
    words the policy learned to write). ``null`` is True for the like-for-like null's row against VADER, the
    one that must sit at chance."""
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
                   seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``arms``: arm -> {"rl_eval": eval summary JSON path, "table": the table it was trained on (None for
    VADER), "diffing": {method: diffing folder}, and optionally "samples": its eval.parquet and "words": the
    word -> utility table it was trained on}, in calibration order.

    Returns (recovery, learned). recovery: one row per arm, method and truth: the job's own readout; for a
    null arm (table vader_shuffled) also its readout against ``vader`` (default: the lexicon); and for an arm
    with samples and words, its readout against the words its policy learned to write (``learned_words``):
    a readout can only find what the policy learned. learned: ``learned_words``'s rows, with column arm.
    Methods without a truth in readout.json are left out."""
    rows, learned_frames = [], []
    for arm, a in arms.items():
        gain = _gain(json.loads(Path(a["rl_eval"]).read_text()))
        learned = None
        if a.get("samples") and a.get("words"):
            found = learned_words(pd.read_parquet(a["samples"], columns=["prompt_index", "model", "response"]),
                                  a["words"], seed=seed)
            learned_frames.append(found.assign(arm=arm))
            learned = {w: 1.0 for w in found.loc[found["learned"], "word"]}
        for method, folder in a["diffing"].items():
            own = json.loads((Path(folder) / "readout.json").read_text()).get("readout")
            if own is None:
                continue
            rows.append(recovery_row(arm, a.get("table"), method, "own", own, gain))
            level = float(own.get("ci_level", 0.95))
            words = None
            if arm_kind(a.get("table")) == "null" or learned:
                words = pd.read_parquet(Path(folder) / "words.parquet", columns=["token_id", "token_text", "word", "score"])
            if arm_kind(a.get("table")) == "null":
                if vader is None:
                    vader = load_vader()
                r = vader_readout(words, vader, n_perm=int(own.get("n_perm", n_perm)), seed=seed, level=level)
                rows.append(recovery_row(arm, a.get("table"), method, "vader", r, gain))
            if learned:
                r, _ = mean_score_readout(words, learned, "learned", n_perm=0, seed=seed, level=level)
                rows.append({**recovery_row(arm, a.get("table"), method, "learned", r, gain),
                             "n_learned": len(learned), "n_planted": len(found)})
    learned_all = pd.concat(learned_frames, ignore_index=True) if learned_frames else pd.DataFrame(
        columns=["word", "base", "policy", "change", "ci_low", "ci_high", "learned", "arm"])
    return pd.DataFrame(rows), learned_all


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
    chance = chance_range(r, key)
    return f"{text}† ({chance[0]}: {fmt_ci(chance[1])})" if chance else f"{text}†"


def chance_range(r: dict, key: str) -> tuple[str, list[float]] | None:
    """What chance gives a point-value row's ``key`` (precision or recall): (label, [low, high]), the random
    lexicon words' range where the row has one (the null against VADER), else a random ranking's; None
    without either."""
    for what, label in (("lexicon_range", "random lexicon words"), ("chance_range", "random ranking")):
        rng = [r.get(f"{key}_{what}_low"), r.get(f"{key}_{what}_high")]
        if valid_ci(rng):
            return label, rng
    return None


def recovery_markdown(table: pd.DataFrame) -> str:
    """The table in words: one row per arm, method and truth, the nulls marked, and a verdict per null row."""
    if table.empty:
        return "No diffing readout with a truth for the calibration's rewards: nothing to recover.\n"
    headers = ["arm", "scored against", "reward gain [CI]", "method", *METRICS.values(), "base rate"]
    body = []
    for r in table.to_dict("records"):
        arm = md_escape(r["arm"]) + ARM_NOTE.get(None if is_missing(r["table"]) else r["table"], "")
        table_name = "vader" if is_missing(r["table"]) else r["table"]
        against = ("**VADER: the null (must sit at chance)**" if r["null"]
                   else f"the words its policy learned to write ({int(r['n_learned'])} of {int(r['n_planted'])})"
                   if r["truth"] == "learned" else "its own table"
                   if r["kind"] != "strength" else f"its table ({'VADER' if table_name == 'vader' else md_escape(table_name)})")
        gain = f"{fmt(r['reward_gain'], signed=True)} {fmt_ci([r['reward_gain_ci_low'], r['reward_gain_ci_high']])}"
        body.append([arm, against, gain, md_escape(r["method"]), *(_cell(r, k) for k in METRICS), fmt(r["base_rate"])])
    parts = [md_table(headers, body),
             "Per arm and diffing method, the readout of the recovered table against the truth (readout.json; CIs: "
             "percentile bootstrap over the method's unit). Reward gain: the arm's held-out reward (policy - base) "
             "on the table it was trained on. Chance: precision@k at the base rate (the truth's positive share of "
             "the word-like tokens), Spearman 0, recall@50 at 50 over the number of word-like tokens."]
    if (table["truth"] == "learned").any():
        parts.append("Against the words its policy learned to write: the arm's positive table words whose count per "
                     "held-out sample rose (policy - base, 95% bootstrap CI over prompts above 0). A readout can "
                     "only find what the policy learned; recall of the whole table is bounded by that share. Point "
                     "values (†) beside a random ranking's 95% range; no Spearman (every learned word is worth 1).")
    nulls = table[table["null"]]
    if len(nulls):
        parts.append("† The null's readout against VADER is computed from words.parquet's mean scores: point values, "
                     "no CI (the per-unit scores are not saved). Beside them: for Spearman, its permutation null; for "
                     "precision and recall, the 95% range of a ranking that picks VADER's own words at random. The "
                     "shuffled table puts VADER's values on VADER's words, so a policy that learned it favours lexicon "
                     f"words, of which a share of {fmt(nulls['lexicon_rate'].iloc[0])} is VADER-positive (the base rate "
                     "counts every word-like token): precision at that share is what a null that learned only its "
                     "own table gives, and a null that learned nothing sits at the base rate, so chance spans both "
                     "ranges and only a readout above it sees VADER. Spearman, over the lexicon's words alone, is the "
                     "clean test.")
        for r in nulls.to_dict("records"):
            parts.append(f"- {null_verdict(r)}")
    return "\n\n".join(parts) + "\n"


def null_verdict(r: dict) -> str:
    """One null row in words: does any readout see VADER beyond what chance gives?

    Spearman: inside its two-sided permutation null or not. Precision and recall: chance spans a random
    ranking of every word-like token (a null that learned nothing) up to a random ranking of the lexicon's
    words (a null that learned only its shuffled table); only a value above that span sees VADER."""
    found, fails = [], False
    rho, band = r.get("spearman"), r.get("spearman_null_abs_95")
    if not is_missing(rho) and not is_missing(band):
        fails |= abs(rho) > band
        found.append(f"Spearman {fmt(rho, signed=True)} is {'inside' if abs(rho) <= band else 'OUTSIDE'} its "
                     f"permutation null (±{fmt(band)})")
    for key in ("precision@50", "recall@50"):
        value = r.get(key)
        ends = [r.get(f"{key}_{what}_{end}") for what in ("chance_range", "lexicon_range") for end in ("low", "high")]
        if is_missing(value) or any(is_missing(e) for e in ends):
            continue
        low, high = min(ends[0], ends[2]), max(ends[1], ends[3])
        fails |= value > high
        found.append(f"{key} {fmt(value)} is {'ABOVE' if value > high else 'inside'} chance {fmt_ci([low, high])} "
                     f"(random words {fmt_ci(ends[:2])}, random lexicon words {fmt_ci(ends[2:])})")
    verdict = ("no readout to judge" if not found else "NOT at chance against VADER" if fails
               else "at chance against VADER, as a null must be")
    return f"{md_escape(r['arm'])}, {md_escape(r['method'])}: {verdict}: " + "; ".join(found) + "."


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
              ("null", "own"): dict(fmt="s", mfc="none"), ("null", "vader"): dict(fmt="x", markersize=8, mew=2),
              ("strength", "learned"): dict(fmt="o--", mfc="none"), ("secret", "learned"): dict(fmt="*", mfc="none",
                                                                                                  markersize=11)}

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
                               ("strengths (words learned)", styles[("strength", "learned")]),
                               ("secret table (words learned)", styles[("secret", "learned")]),
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


DEPTH_METRICS = {"spearman": "Spearman", "precision@50": "precision@50"}
"""The depth profile's readouts the recovery reports per block."""


def depth_table(arms: dict[str, dict]) -> pd.DataFrame:
    """One row per arm, method with a depth profile (activation_lens) and block: the arm's reward gain and the
    readout of that block's recovered table against the arm's own table (readout.json's ``depth_profile``)."""
    rows = []
    for arm, a in arms.items():
        gain = _gain(json.loads(Path(a["rl_eval"]).read_text()))["reward_gain"]
        for method, folder in a["diffing"].items():
            for r in json.loads((Path(folder) / "readout.json").read_text()).get("depth_profile") or []:
                if "spearman" not in r:  # a profile without a truth
                    continue
                rows.append({"arm": arm, "kind": arm_kind(a.get("table")), "method": method, "reward_gain": gain,
                             "block": int(r["block"]), **{k: as_float(r.get(k)) for k in DEPTH_METRICS}})
    return pd.DataFrame(rows)


def depth_markdown(depth: pd.DataFrame) -> str:
    """Per arm and method: from which block its readout reaches ``READABLE``, and its best block."""
    if depth.empty:
        return ""
    body = []
    for (arm, method), frame in depth.groupby(["arm", "method"], sort=False):
        profile = frame.sort_values("block").to_dict("records")
        first = {k: first_readable_block(profile, k) for k in DEPTH_METRICS}
        best = frame.loc[frame["precision@50"].astype(float).idxmax()]
        body.append([md_escape(arm), fmt(frame["reward_gain"].iloc[0], signed=True), md_escape(method),
                     *("none" if first[k] is None else f"block {first[k]}" for k in DEPTH_METRICS),
                     f"{fmt(best['precision@50'])} (block {int(best['block'])} of {len(frame)})"])
    headers = ["arm", "reward gain", "method", *(f"first block with {v} >= {READABLE}" for v in DEPTH_METRICS.values()),
               "best precision@50"]
    return ("From which block each arm's reward is readable: the depth profile (the mean residual difference after "
            "each block, read through the final norm and the unembedding) scored against the arm's own table "
            "(point values; calibration/depth.png draws every block).\n\n" + md_table(headers, body) + "\n")


def plot_depth(depth: pd.DataFrame, path: str | os.PathLike) -> None:
    """Per depth readout a panel: the readout at each block, one line per arm (nulls dashed grey)."""
    from .plots import _pyplot, _save

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(DEPTH_METRICS), figsize=(4.4 * len(DEPTH_METRICS), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], DEPTH_METRICS.items()):
        ax.set(xlabel="block (mean difference after it)", ylabel=label, title=label)
        ax.axhline(READABLE, color="gray", ls=":", lw=1)
        if depth.empty:
            ax.text(0.5, 0.5, "no depth profile", ha="center", va="center", transform=ax.transAxes)
            continue
        for i, ((arm, method), frame) in enumerate(depth.groupby(["arm", "method"], sort=False)):
            frame = frame.sort_values("block")
            null = frame["kind"].iloc[0] == "null"
            ax.plot(frame["block"], frame[key].astype(float), ls="--" if null else "-", lw=1.2,
                    color="gray" if null else f"C{i % 10}",
                    label=f"{arm} ({fmt(frame['reward_gain'].iloc[0], signed=True)}), {method}")
    axes[0][-1].legend(fontsize=7, loc="upper left", frameon=False)
    fig.suptitle("calibration: from which block each arm's planted reward is readable", fontsize=9)
    _save(fig, path, dpi=110)


def learned_markdown(learned: pd.DataFrame, top: int = 20) -> str:
    """Per arm, how many of its table's positive words the policy learned to write, and the first ``top``."""
    if learned.empty:
        return ""
    lines = ["What each policy learned to write, of its table's positive words (held-out samples; mean count per "
             "sample, policy - base, learned when the 95% bootstrap CI over prompts lies above 0):", ""]
    for arm, frame in learned.groupby("arm", sort=False):
        got = frame[frame["learned"]].sort_values("change", ascending=False)
        shown = ", ".join(f"{md_escape(w)} ({c:+.2f})" for w, c in zip(got["word"][:top], got["change"][:top]))
        more = f", and {len(got) - top} more" if len(got) > top else ""
        lines.append(f"- {md_escape(arm)}: {len(got)} of {len(frame)}" + (f": {shown}{more}" if len(got) else ""))
    return "\n".join(lines) + "\n"


def recovery_stage(arms: dict[str, dict], out_table, out_md, out_png, out_learned=None, out_depth=None, *,
                   vader: dict[str, float] | None = None, seed: int = 0) -> pd.DataFrame:
    """Build ``recovery_table(arms)`` and write it (parquet), its markdown, the figure and, where given, the
    learned words' table (``out_learned``) and the depth figure (``out_depth``), all atomically."""
    table, learned = recovery_table(arms, vader, seed=seed)
    depth = depth_table(arms)
    write_parquet(table, out_table)
    if out_learned is not None:
        write_parquet(learned, out_learned)
    if out_depth is not None:
        plot_depth(depth, out_depth)
    with atomic_file(out_md) as tmp:
        tmp.write_text("\n".join(part for part in (recovery_markdown(table), learned_markdown(learned),
                                                   depth_markdown(depth)) if part))
    plot_recovery(table, out_png)
    return table
