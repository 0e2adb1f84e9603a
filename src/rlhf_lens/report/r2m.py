"""The R2M comparison in the report: its figure, its table in Markdown, and the sentence on whether R2M
reduced over-optimisation by the report's significance rule (``wording.effect_words``: CI excludes 0 and
permutation p < 0.05), written whatever the answer. Numbers come from ``rlhf_lens.r2m.compare``.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from .plots import _errors, _pyplot, _save
from .wording import effect_words, fmt, fmt_ci, fmt_p, is_significant, md_escape, md_table


def verdicts(table: pd.DataFrame, methods: list[str], baseline: str) -> list[str]:
    """One sentence per (algorithm, method): did training against it keep more held-out gold than the frozen RM?"""
    out = []
    for row in table[table.reward.isin(methods)].itertuples():
        if not hasattr(row, "gold_difference") or pd.isna(row.gold_difference):
            continue
        ci, p = row.gold_difference_ci95, row.gold_difference_p
        did = "reduced" if is_significant(ci, p, tested=True) and row.gold_difference > 0 else (
            "worsened" if is_significant(ci, p, tested=True) else "did not measurably change")
        out.append(f"Under {row.algorithm.upper()}, R2M ({md_escape(row.reward)}) {did} over-optimisation against the "
                   f"frozen reward model ({md_escape(baseline)}): held-out gold {fmt(row.gold)} vs "
                   f"{fmt(table[(table.algorithm == row.algorithm) & (table.reward == baseline)].gold.iloc[0])}, "
                   f"difference {fmt(row.gold_difference, signed=True)} over {row.seeds} seeds and {row.prompts} "
                   f"prompts: {effect_words(ci, p=p, tested=True)}.")
    return out


def markdown(table: pd.DataFrame, detection: pd.DataFrame, methods: list[str], baseline: str, steps: int) -> str:
    """The comparison table, the detection table and the verdict sentences."""
    rows = []
    for r in table.itertuples():
        diff = getattr(r, "gold_difference", np.nan)
        rows.append([r.algorithm, md_escape(r.reward), str(r.seeds), f"{fmt(r.gold)} {fmt_ci(r.gold_ci95)}",
                     f"{fmt(r.proxy)} {fmt_ci(r.proxy_ci95)}", f"{fmt(r.kl)} {fmt_ci(r.kl_ci95)}",
                     "" if pd.isna(diff) else f"{fmt(diff, signed=True)} {fmt_ci(r.gold_difference_ci95)}, "
                                              f"p = {fmt_p(r.gold_difference_p)}",
                     f"{fmt(r.accuracy_before)} -> {fmt(r.accuracy_after)}"])
    det = [[r.algorithm, md_escape(r.reward), f"{r.over_optimised} / {r.samples}",
            f"{fmt(r.auroc)} {fmt_ci(r.auroc_ci95)}"] for r in detection.itertuples()]
    lines = [f"## R2M against the frozen reward model ({steps} RL steps per run)", "",
             md_table(["algorithm", "reward", "seeds", "held-out gold (95% CI)", "held-out proxy (frozen RM)",
                       "KL (nats)", "gold vs frozen RM", "pair accuracy before -> after"], rows), "",
             *verdicts(table, methods, baseline), "",
             "### Detection: hidden-state similarity of over-optimised responses (proxy top quarter, gold below median)",
             "", md_table(["algorithm", "reward", "over-optimised / samples", "AUROC (95% CI)"], det), ""]
    return "\n".join(lines)


def plot_r2m(curves: pd.DataFrame, table: pd.DataFrame, path: str | os.PathLike) -> None:
    """Gold, trained (proxy) reward and KL per step (mean over seeds, band min..max) per arm; final held-out gold."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    arms = list(dict.fromkeys(zip(curves.algorithm, curves.reward)))
    colors = plt.cm.tab10(np.linspace(0, 1, 10))
    for i, (alg, rew) in enumerate(arms):
        c = curves[(curves.algorithm == alg) & (curves.reward == rew)]
        style = "-" if alg == arms[0][0] else "--"
        for ax, key in zip(axes[:3], ("gold", "proxy", "kl")):
            ax.plot(c.step, c[f"{key}_mean"], style, color=colors[i % 10], lw=1.2, label=f"{alg} {rew}")
            ax.fill_between(c.step, c[f"{key}_min"], c[f"{key}_max"], color=colors[i % 10], alpha=0.12)
    for ax, title in zip(axes[:3], ("gold (overseer) per step", "trained reward per step", "KL per step (nats)")):
        ax.set(xlabel="RL step", title=title)
    axes[0].legend(fontsize=6)
    labels = [f"{a}\n{r}" for a, r in zip(table.algorithm, table.reward)]
    lo, hi = zip(*table.gold_ci95)
    axes[3].errorbar(range(len(table)), table.gold, yerr=_errors(table.gold, lo, hi), fmt="o", capsize=3)
    axes[3].set_xticks(range(len(table)), labels, fontsize=6, rotation=60)
    axes[3].set(title="held-out gold (95% CI, seeds + prompts)")
    _save(fig, path, dpi=100)
