"""The comparison of shaping schemes at equal PPO steps: per-step gold curves and one row of measures per scheme.

Independent units (DESIGN.md): seeds (each run is trained) and held-out prompts. The end-of-training gold
reward and KL are means over seeds and prompts of each (seed, prompt)'s mean over its samples, with a
two-level bootstrap that resamples each scheme's seeds and the prompts (so the CI carries the seed-to-seed
spread of training, not only the prompts'); the per-step curves give the mean and a t interval over seeds.
Differences against the sparse last-token scheme resample the prompts once for both schemes (paired by
prompt: the same held-out prompts score every run) and each scheme's seeds on their own. Steps to the
threshold: the first step whose rollouts' mean gold reaches it, per seed; a seed that never reaches
it counts as not converged (the table gives how many did, and the mean over those that did).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..bootstrap import bootstrap_seeds_prompts_ci

SPARSE = "last_token"


def step_gold(metrics: pd.DataFrame) -> pd.Series:
    """Per-step gold reward of a run's rollouts: gold_reward_mean, or the trained reward without a gold one."""
    col = "gold_reward_mean" if "gold_reward_mean" in metrics.columns else "reward_mean"
    return metrics[col].astype(float)


def curves(runs: dict[tuple[str, int], tuple[pd.DataFrame, pd.DataFrame]]) -> pd.DataFrame:
    """Long table: scheme, seed, step, gold, kl (mean sequence KL of the step's rollouts), shaping costs."""
    rows = []
    for (scheme, seed), (metrics, _) in runs.items():
        df = pd.DataFrame({"scheme": scheme, "seed": seed, "step": metrics["step"].astype(int),
                           "gold": step_gold(metrics), "kl": metrics["kl_mean"].astype(float)})
        for col in metrics.columns:
            if col.startswith("shaping_") and (col.endswith("_seconds") or col.endswith("_reward_texts")):
                df[col] = metrics[col].astype(float)
        rows.append(df)
    return pd.concat(rows, ignore_index=True)


def t_interval(values, level: float = 0.95) -> tuple[float, float]:
    """Mean +- t quantile * standard error over ``values`` (seeds); (nan, nan) with fewer than 2."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


def curve_summary(long: pd.DataFrame) -> pd.DataFrame:
    """scheme, step, mean gold over seeds and its 95% t interval (for the figure)."""
    out = []
    for (scheme, step), g in long.groupby(["scheme", "step"], sort=False):
        lo, hi = t_interval(g["gold"])
        out.append({"scheme": scheme, "step": step, "gold_mean": float(g["gold"].mean()), "gold_lo": lo,
                    "gold_hi": hi, "seeds": len(g)})
    return pd.DataFrame(out)


def default_threshold(long: pd.DataFrame) -> float:
    """The sparse scheme's final level: its mean gold over seeds of the last 3 steps (or of all schemes
    when the sparse scheme is not compared)."""
    base = long[long.scheme == SPARSE] if (long.scheme == SPARSE).any() else long
    last = sorted(base.step.unique())[-3:]
    return float(base[base.step.isin(last)]["gold"].mean())


def steps_to(gold: pd.Series, steps: pd.Series, threshold: float) -> float:
    """First step (1-based count of steps done) whose gold reaches ``threshold``; nan if none does."""
    hit = np.flatnonzero(gold.to_numpy() >= threshold)
    return float(steps.to_numpy()[hit[0]] + 1) if len(hit) else float("nan")


def seed_prompt_means(held: pd.DataFrame, column: str, prompts: list) -> np.ndarray:
    """(seeds, prompts) means of ``column`` over each (seed, prompt)'s samples, seeds in sorted order."""
    return held.groupby(["seed", "prompt_index"])[column].mean().unstack("prompt_index")[prompts].to_numpy()


def comparison_table(runs: dict[tuple[str, int], tuple[pd.DataFrame, pd.DataFrame]], *,
                     threshold: float | None = None, n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, float]:
    """(one row per scheme, the threshold used); see the module docstring for the statistics."""
    long = curves(runs)
    threshold = default_threshold(long) if threshold is None else float(threshold)
    schemes = list(dict.fromkeys(s for s, _ in runs))
    held = {s: pd.concat([t.assign(seed=sd) for (sc, sd), (_, t) in runs.items() if sc == s], ignore_index=True)
            for s in schemes}
    prompts = sorted(set.intersection(*(set(h["prompt_index"]) for h in held.values())))
    gold = {s: seed_prompt_means(h, "gold", prompts) for s, h in held.items()}
    rows = []
    for s in schemes:
        seeds = sorted(sd for sc, sd in runs if sc == s)
        finals = gold[s].mean(axis=1)
        lo, hi = bootstrap_seeds_prompts_ci([gold[s]], n_boot=n_boot, seed=seed)
        row = {"scheme": s, "seeds": len(seeds), "prompts": len(prompts), "gold_final": float(gold[s].mean()),
               "gold_final_lo": lo, "gold_final_hi": hi,
               "gold_final_seed_sd": float(np.std(finals, ddof=1)) if len(finals) > 1 else float("nan")}
        if SPARSE in gold and s != SPARSE:
            row["gold_vs_sparse"] = float(gold[s].mean() - gold[SPARSE].mean())
            row["gold_vs_sparse_lo"], row["gold_vs_sparse_hi"] = bootstrap_seeds_prompts_ci(
                [gold[s], gold[SPARSE]], [1.0, -1.0], n_boot=n_boot, seed=seed)
        hits = []
        for sd in seeds:
            g = long[(long.scheme == s) & (long.seed == sd)].sort_values("step")
            hits.append(steps_to(g["gold"], g["step"], threshold))
        reached = [h for h in hits if not math.isnan(h)]
        row.update({"steps_to_threshold": float(np.mean(reached)) if reached else float("nan"),
                    "reached": len(reached)})
        kl = seed_prompt_means(held[s], "kl", prompts)
        row["kl_heldout"] = float(kl.mean())
        row["kl_heldout_lo"], row["kl_heldout_hi"] = bootstrap_seeds_prompts_ci([kl], n_boot=n_boot, seed=seed)
        mine = long[long.scheme == s]
        secs = [c for c in mine.columns if c.startswith("shaping_") and c.endswith("_seconds")]
        texts = [c for c in mine.columns if c.startswith("shaping_") and c.endswith("_reward_texts")]
        row["attribution_seconds_per_step"] = float(mine[secs].fillna(0).sum(1).mean()) if secs else 0.0
        row["reward_texts_per_step"] = float(mine[texts].fillna(0).sum(1).mean()) if texts else 0.0
        rows.append(row)
    return pd.DataFrame(rows), threshold
