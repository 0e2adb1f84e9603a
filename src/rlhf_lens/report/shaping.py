"""The shaping comparison in a figure, a table and sentences (the report's significance rule, ``wording``).

``plot_shaping_curves``: gold reward per PPO step for each scheme, mean over seeds with its 95% t
interval as a band. ``shaping_markdown``: the comparison table (final held-out gold with its CI over
prompts, the difference to the sparse scheme with its paired CI, steps to the threshold, held-out KL,
attribution cost per step) and one sentence per scheme saying whether shaping helped, plus the trials of
the weight search with their objective.
"""

from __future__ import annotations

import os

import pandas as pd

from .plots import _pyplot, _save
from .wording import effect_words, fmt, fmt_ci, md_escape, md_table


def plot_shaping_curves(summary: pd.DataFrame, path: str | os.PathLike, threshold: float | None = None,
                        title: str = "") -> None:
    """``summary``: scheme, step, gold_mean, gold_lo, gold_hi (``shaping_study.compare.curve_summary``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for scheme, g in summary.groupby("scheme", sort=False):
        g = g.sort_values("step")
        x = g["step"] + 1
        ax.plot(x, g["gold_mean"], label=scheme, lw=1.6)
        ax.fill_between(x, g["gold_lo"], g["gold_hi"], alpha=0.18)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1, label="threshold")
    ax.set_xlabel("PPO step")
    ax.set_ylabel("gold reward of the step's rollouts")
    ax.set_title(title or "gold reward per step (mean over seeds, 95% t interval)")
    ax.legend(fontsize=8, ncol=2)
    _save(fig, path)


def _sentence(row: pd.Series) -> str:
    if row["scheme"] == "last_token":
        return (f"- **last_token** (the sparse baseline): held-out gold {fmt(row['gold_final'])} "
                f"{fmt_ci([row['gold_final_lo'], row['gold_final_hi']])} over {int(row['prompts'])} prompts, "
                f"{int(row['seeds'])} seeds.")
    verdict = effect_words([row.get("gold_vs_sparse_lo"), row.get("gold_vs_sparse_hi")])
    d = row.get("gold_vs_sparse")
    helped = ""
    if verdict.startswith("significant"):
        helped = " Shaping helped." if d > 0 else " Shaping hurt."
    return (f"- **{md_escape(row['scheme'])}** vs last_token: held-out gold difference {fmt(d, signed=True)}, "
            f"{verdict}.{helped}")


def shaping_markdown(table: pd.DataFrame, threshold: float, trials: pd.DataFrame | None = None,
                     steps: int | None = None) -> str:
    """The comparison section as Markdown."""
    headers = ["scheme", "seeds", "held-out gold [95% CI]", "vs last_token [95% CI]", "steps to threshold (reached)",
               "held-out KL [95% CI]", "attribution s / step", "reward texts / step"]
    rows = []
    for _, r in table.iterrows():
        vs = "" if pd.isna(r.get("gold_vs_sparse")) else \
            f"{fmt(r['gold_vs_sparse'], signed=True)} {fmt_ci([r['gold_vs_sparse_lo'], r['gold_vs_sparse_hi']])}"
        rows.append([md_escape(r["scheme"]), str(int(r["seeds"])),
                     f"{fmt(r['gold_final'])} {fmt_ci([r['gold_final_lo'], r['gold_final_hi']])}", vs,
                     f"{fmt(r['steps_to_threshold'])} ({int(r['reached'])}/{int(r['seeds'])})",
                     f"{fmt(r['kl_heldout'])} {fmt_ci([r['kl_heldout_lo'], r['kl_heldout_hi']])}",
                     fmt(r["attribution_seconds_per_step"]), fmt(r["reward_texts_per_step"])])
    out = ["## Dense reward shaping", "",
           f"Every scheme trained {steps if steps is not None else 'the same number of'} PPO steps per seed; "
           f"held-out gold is the mean over seeds and prompts of each (seed, prompt)'s samples, CIs by a two-level "
           f"bootstrap (each scheme's seeds and the prompts resampled; paired by prompt against last_token). "
           f"Threshold for convergence: gold {fmt(threshold)} per step.", "",
           md_table(headers, rows), ""]
    out += [_sentence(r) for _, r in table.iterrows()]
    if trials is not None and len(trials):
        comp = [c for c in trials.columns if c.startswith("w_")]
        out += ["", "### Weight search (Optuna GPSampler, log EI)", "",
                md_table(["trial", *[c[2:] for c in comp], "objective"],
                         [[str(int(t["trial"])), *[fmt(t[c]) for c in comp], fmt(t["value"])]
                          for _, t in trials.iterrows()])]
    return "\n".join(out) + "\n"
