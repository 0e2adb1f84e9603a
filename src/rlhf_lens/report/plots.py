"""Every plot of the workflow (matplotlib Agg, PNG written atomically).

Report plots where a picture reads faster than a table (``plot_mmcs_vs_baseline``, ``plot_utilities``)
and the stages' own figures, drawn by their rule scripts from what the stage returned or wrote:
the divergence bar plot (``plot_divergence``), the max-cosine histograms of the features stage
(``plot_max_cosine_histograms``), the PPO curves (``plot_rl_curves``) and gold vs proxy reward
against KL for policies trained on a learned reward (``plot_gold_vs_proxy``). Stages never draw: the
report is the higher layer.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..atomic import atomic_file
from ..scoring.config import MEASURES
from .summary import role_points
from .tables import mmcs_vs_noise_floor
from .wording import is_number, valid_ci


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, dpi: int = 110) -> None:
    plt = _pyplot()
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def plot_divergence(table: pd.DataFrame, chosen: list[int], path: str | os.PathLike, title: str = "") -> None:
    """Parameter divergence per block (``divergence.block_divergence``'s table), the ``chosen`` blocks in red."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4, 0.25 * len(table) + 2), 3))
    colors = ["tab:red" if L in chosen else "tab:gray" for L in table["layer"]]
    ax.bar(table["layer"], table["divergence"], color=colors)
    ax.set_xlabel("block")
    ax.set_ylabel("sum of ||Δθ||_F")
    ax.set_title(title or "parameter divergence per block (red: selected)")
    _save(fig, path, dpi=120)


def plot_max_cosine_histograms(panels: list[tuple[str, dict[str, np.ndarray]]], path: str | os.PathLike) -> None:
    """One panel per kind: overlaid histograms of per-atom max cosines (pairs and seed baselines).

    ``panels``: (title, {label: per-atom max cosines}) as ``features.features_stage`` returns them.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.2), squeeze=False)
    bins = np.linspace(-0.2, 1.0, 49)
    for ax, (title, series) in zip(axes[0], panels):
        for label, values in series.items():
            ax.hist(values, bins=bins, alpha=0.5, label=label, density=True)
        ax.set_xlabel("max cosine with the other dictionary")
        ax.set_title(title)
        ax.legend(fontsize=7)
    _save(fig, path)


def plot_rl_curves(metrics: pd.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """Reward and KL per PPO step, two panels (``metrics``: rl/{reward}/metrics.parquet, one row per step)."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    ax1.plot(metrics["step"], metrics["reward_mean"], color="tab:blue")
    ax1.set(xlabel="PPO step", ylabel="mean reward (score)", title="reward")
    ax2.plot(metrics["step"], metrics["kl_mean"], color="tab:red", label="KL(policy || ref) per sequence")
    ax2.set(xlabel="PPO step", ylabel="nats", title="KL to reference")
    ax2b = ax2.twinx()
    ax2b.plot(metrics["step"], metrics["kl_coef"], color="grey", ls="--", label="KL coef")
    ax2b.set_ylabel("KL coefficient")
    if title:
        fig.suptitle(title)
    _save(fig, path, dpi=100)


def plot_gold_vs_proxy(metrics: pd.DataFrame, path: str | os.PathLike, eval_summary: dict | None = None,
                       title: str = "") -> None:
    """Gold (the overseer) and proxy (the trained reward) against KL, per RL step: the over-optimisation
    picture of Gao et al. 2022 (``metrics``: rl/{reward}/metrics.parquet with ``gold_reward_mean``).

    Left: both rewards against the rollouts' KL per sequence (nats), one faint point per step and the mean
    of each KL quintile of the steps joined as a line (the adaptive KL controller makes KL non-monotonic in
    the step, so joining steps in order draws a tangle); right: against the step, raw and as a 5-step
    running mean. ``eval_summary`` (eval_summary.json with gold) adds the held-out base and policy values
    with their 95% CIs at the held-out KL.
    """
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.6))
    kl = metrics["kl_mean"].to_numpy(dtype=float)
    bins = kl_bins(kl)
    for col, label, color in (("reward_mean", "proxy (trained reward)", "tab:blue"),
                              ("gold_reward_mean", "gold (overseer)", "tab:orange")):
        y = metrics[col].to_numpy(dtype=float)
        ax1.scatter(kl, y, s=9, alpha=0.35, color=color)
        binned = pd.DataFrame({"kl": kl, "y": y, "bin": bins}).groupby("bin")[["kl", "y"]].mean()
        ax1.plot(binned["kl"], binned["y"], marker="o", ms=4, lw=1.6, color=color,
                 label=f"{label}, mean per KL quintile")
        ax2.plot(metrics["step"], y, lw=0.8, alpha=0.4, color=color)
        ax2.plot(metrics["step"], pd.Series(y).rolling(5, min_periods=1).mean(), lw=1.8, color=color,
                 label=f"{label}, 5-step mean")
    if eval_summary and "gold_policy_mean" in eval_summary:
        s = eval_summary
        for key, color, label in (("reward", "tab:blue", "held-out proxy"), ("gold", "tab:orange", "held-out gold")):
            prefix = "reward_" if key == "reward" else "gold_"
            xs = [0.0, s["kl_mean"]]
            ys = [s[f"{prefix}base_mean"], s[f"{prefix}policy_mean"]]
            lo = [s[f"{prefix}base_ci95"][0], s[f"{prefix}policy_ci95"][0]]
            hi = [s[f"{prefix}base_ci95"][1], s[f"{prefix}policy_ci95"][1]]
            ax1.errorbar(xs, ys, yerr=_errors(ys, lo, hi), fmt="s", ms=6, mfc="white", color=color, capsize=3,
                         label=f"{label} (base at KL 0, policy)")
    ax1.set(xlabel="KL(policy || base) per sequence (nats)", ylabel="mean reward", title="reward vs KL")
    ax2.set(xlabel="RL step", ylabel="mean reward", title="reward per step")
    ax1.legend(fontsize=6)
    ax2.legend(fontsize=6)
    if title:
        fig.suptitle(title)
    _save(fig, path, dpi=100)


def kl_bins(kl: np.ndarray, n_bins: int = 5) -> np.ndarray:
    """Quantile bin (0..n-1) of each step's KL: n_bins bins of near-equal step counts, fewer with few steps (at
    least 3 steps a bin, ties kept together)."""
    n = max(1, min(n_bins, len(kl) // 3))
    ranks = pd.Series(kl).rank(method="first").to_numpy() - 1
    return (ranks * n // max(len(kl), 1)).astype(int)


def _errors(values, lows, highs) -> np.ndarray:
    """(2, n) error-bar lengths; 0 where a bound is missing."""
    v, lo, hi = (np.asarray(pd.to_numeric(pd.Series(x)), dtype=float) for x in (values, lows, highs))
    return np.nan_to_num(np.stack([v - lo, hi - v]), nan=0.0)


def plot_mmcs_vs_baseline(features_summary: pd.DataFrame, out_png: str | os.PathLike) -> None:
    """Small -> large MMCS per (role, layer, kind) with its CI, next to the seed-vs-seed noise floor."""
    plt = _pyplot()
    table = mmcs_vs_noise_floor(features_summary)
    x = np.arange(len(table))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(table) + 2), 3.2))
    ax.errorbar(x - 0.1, table["mmcs_small_to_large"].astype(float),
                yerr=_errors(table["mmcs_small_to_large"], table["mmcs_ci_low"], table["mmcs_ci_high"]),
                fmt="o", color="tab:blue", capsize=3, label="MMCS small→large")
    ax.errorbar(x + 0.1, pd.to_numeric(table["baseline_mmcs"]),
                yerr=_errors(table["baseline_mmcs"], table["baseline_ci_low"], table["baseline_ci_high"]),
                fmt="s", color="tab:gray", capsize=3, label="seed-vs-seed baseline")
    ax.set_xticks(x, [f"{r.role}\nL{r.layer}" + (f"\n{r.kind}" if table["kind"].nunique() > 1 else "")
                      for r in table.itertuples()], fontsize=8)
    ax.set_ylabel("mean max cosine")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)
    ax.set_title("dictionary agreement vs its noise floor (bars: CIs)")
    ax.legend(fontsize=8)
    _save(fig, out_png)


def _tick(label: str, r: dict) -> str:
    """Axis label with the feature counts (a sum over features grows with their number)."""
    n, r_n = r.get("n_features"), (r.get("random_baseline") or {}).get("n_features")
    return label + (f"\nn={n}" if n is not None else "") + (f", random n={r_n}" if r_n is not None else "")


def plot_utilities(stats: dict, out_png: str | os.PathLike) -> None:
    """One panel per scoring measure: base and RLHF with CIs, each beside its random baseline."""
    plt = _pyplot()
    keys = [k for k in MEASURES if stats.get(k)]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(3.6 * max(len(keys), 1), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        s = stats[key]
        for i, role in enumerate(("base", "rlhf")):
            for dx, (v, ci), style in zip((-0.12, 0.12), role_points(key, s.get(role) or {}),
                                          (dict(fmt="o", color="tab:blue"),
                                           dict(fmt="s", color="tab:gray", mfc="none"))):
                if is_number(v):
                    err = [[v - ci[0]], [ci[1] - v]] if valid_ci(ci) else None
                    ax.errorbar([i + dx], [v], yerr=err, capsize=3, **style)
        ax.plot([], [], "o", color="tab:blue", label="explained features")
        ax.plot([], [], "s", color="tab:gray", mfc="none", label="random features")
        diff = s.get("difference") or {}
        p = diff.get("p_value")
        ax.set_title(f"{MEASURES[key]}\nRLHF − base p = {p:.2g}" if is_number(p) else MEASURES[key], fontsize=9)
        ax.set_xticks([0, 1], [_tick(label, s.get(role) or {}) for label, role in (("base", "base"), ("RLHF", "rlhf"))],
                      fontsize=8)
        ax.set_xlim(-0.5, 1.5)
        ax.legend(fontsize=7)
    if not keys:
        axes[0][0].text(0.5, 0.5, "no scoring statistics", ha="center", va="center")
        axes[0][0].set_axis_off()
    _save(fig, out_png)


def plot_calibration(table: pd.DataFrame, path: str | os.PathLike) -> None:
    """The calibration figure (``report.calibration``), one panel per measure: RLHF - base difference with
    its CI against the held-out reward gain with its CI, one point per reward strength."""
    from ..rewards.planted_tables import PLANTED
    from .calibration import MEASURES

    plt = _pyplot()
    fig, axes = plt.subplots(1, len(MEASURES), figsize=(3.4 * len(MEASURES), 3.2), squeeze=False)
    x = table["reward_gain"].astype(float).to_numpy()
    xerr = np.nan_to_num(np.stack([x - table["reward_gain_ci_low"].astype(float), table["reward_gain_ci_high"].astype(float) - x]))
    # the strengths joined by a line; arms trained on a planted table (secret, shuffled null) as lone squares
    planted = table["table"].isin(PLANTED).to_numpy() if "table" in table.columns else np.zeros(len(table), bool)
    for ax, (key, label) in zip(axes[0], MEASURES.items()):
        y = table[f"{key}_difference"].astype(float).to_numpy()
        yerr = np.nan_to_num(np.stack([y - table[f"{key}_ci_low"].astype(float), table[f"{key}_ci_high"].astype(float) - y]))
        for rows, fmt in ((~planted, "o-"), (planted, "s")):
            if rows.any():
                ax.errorbar(x[rows], y[rows], xerr=xerr[:, rows], yerr=yerr[:, rows], fmt=fmt, capsize=3)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        for xi, yi, name, eff in zip(x, y, table["reward"], table[f"{key}_effect"]):
            ax.annotate(name + (" *" if eff else ""), (xi, yi), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel="held-out reward gain (policy - base)", ylabel="RLHF - base", title=label)
    fig.suptitle("calibration: does the method see a stronger planted reward? (* = effect by the rule)", fontsize=9)
    _save(fig, path, dpi=110)


def plot_dn_histograms(panels: list[tuple[str, np.ndarray, np.ndarray]], path: str | os.PathLike) -> None:
    """One panel per layer: histogram of the live latents' relative decoder norm dn of the (base, rlhf)
    crosscoder beside its (base, base) null, with the bin edges (0.1, 0.4, 0.6, 0.9) marked.

    ``panels``: (title, dn of the real crosscoder's live latents, dn of the null's live latents).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5 * max(len(panels), 1), 3.2), squeeze=False)
    bins = np.linspace(0.0, 1.0, 41)
    for ax, (title, real, null) in zip(axes[0], panels):
        ax.hist(np.asarray(null, dtype=float), bins=bins, alpha=0.5, color="tab:gray",
                label=f"(base, base) null, n={len(null)}")
        ax.hist(np.asarray(real, dtype=float), bins=bins, alpha=0.6, color="tab:red",
                label=f"(base, RLHF), n={len(real)}")
        for edge in (0.1, 0.4, 0.6, 0.9):
            ax.axvline(edge, color="black", lw=0.6, ls=":")
        ax.set_yscale("log")
        ax.set_xlabel("relative decoder norm dn (0 base-only, 1 RLHF-only)")
        ax.set_ylabel("live latents")
        ax.set_title(title)
        ax.legend(fontsize=7)
    _save(fig, path)
