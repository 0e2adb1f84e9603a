"""The numbers of the R2M comparison (rule ``r2m_compare``): every arm against the frozen plain RM, and the
hidden-state detection of over-optimised responses. The report's wording and figure are in ``report.r2m``.

Units (DESIGN.md, statistics): held-out prompts are independent, seeds are what is trained. An arm's held-out
gold is the mean over its seeds and prompts; the difference from the baseline (same algorithm, same prompts,
same steps) gets a two-level bootstrap CI (seeds of each arm and prompts resampled) and a sign-flip
permutation p over prompts of the seed-averaged per-prompt difference. With three seeds a permutation over
seeds could never reach p < 0.05 (20 relabellings), hence prompts for the test and seeds in the CI.

Detection (the paper's claim that hidden-state similarity separates reward-hacking responses): within each
run, a held-out sample is *over-optimised* when its proxy score (the frozen plain RM) is in the run's top
quarter and its gold reward below the run's median; its similarity score is the mean cosine similarity of its
mean-pooled policy hidden state to the samples of the run's other prompts. AUROC of that score for the
over-optimised label (0.5 = no separation), CI resampling (seed, prompt) clusters.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..bootstrap import bootstrap_groups_ci, bootstrap_seeds_prompts_ci

PROXY_QUANTILE = 0.75
"""A sample's proxy must reach this quantile of its run's proxy scores to count as over-optimised..."""
GOLD_QUANTILE = 0.5
"""...and its gold reward must fall below this quantile of its run's gold rewards."""


def per_prompt(samples: pd.DataFrame, column: str) -> pd.DataFrame:
    """(seeds x prompts) of the per-prompt mean of ``column`` (``samples`` has seed, prompt_index)."""
    return samples.pivot_table(index="seed", columns="prompt_index", values=column, aggfunc="mean")


def two_level_ci(a: pd.DataFrame, b: pd.DataFrame | None, n_boot: int, seed: int, level: float = 0.95):
    """Percentile CI of mean(a) - mean(b) (each seeds x prompts, same prompts), seeds and prompts resampled."""
    tables = [a.to_numpy()] if b is None else [a.to_numpy(), b[a.columns].to_numpy()]
    return list(bootstrap_seeds_prompts_ci(tables, [1.0, -1.0][:len(tables)], n_boot, level, seed))


def sign_flip_p(diffs: np.ndarray, n_perm: int, seed: int) -> float:
    """Two-sided paired permutation p of mean(diffs) (per-prompt differences), +1 correction."""
    d = np.asarray(diffs, dtype=float)
    rng = np.random.default_rng(seed)
    observed = abs(d.mean())
    flips = rng.choice([-1.0, 1.0], size=(n_perm, len(d)))
    hits = int((np.abs((flips * d).mean(1)) >= observed - 1e-12).sum())
    return (hits + 1) / (n_perm + 1)


def comparison_table(samples: pd.DataFrame, summaries: pd.DataFrame, baseline: str, *, n_boot: int = 2000,
                     seed: int = 0) -> pd.DataFrame:
    """One row per (algorithm, reward): held-out gold, proxy, KL with CIs, pair accuracy before/after, and for
    every arm but the baseline the gold difference from the baseline with its CI and permutation p.

    ``samples``: every arm's samples.parquet with columns algorithm, reward, seed added; ``summaries``: one row
    per run (algorithm, reward, seed, accuracy_before, accuracy_after).
    """
    rows = []
    for (alg, rew), part in samples.groupby(["algorithm", "reward"], sort=False):
        row = {"algorithm": alg, "reward": rew, "seeds": int(part.seed.nunique()),
               "prompts": int(part.prompt_index.nunique())}
        for col in ("gold", "proxy", "kl"):
            table = per_prompt(part, col)
            row[col] = float(table.to_numpy().mean())
            row[f"{col}_ci95"] = two_level_ci(table, None, n_boot, seed)
        runs = summaries[(summaries.algorithm == alg) & (summaries.reward == rew)]
        row["accuracy_before"] = float(runs.accuracy_before.mean())
        row["accuracy_after"] = float(runs.accuracy_after.mean())
        base = samples[(samples.algorithm == alg) & (samples.reward == baseline)]
        if rew != baseline and len(base):
            a, b = per_prompt(part, "gold"), per_prompt(base, "gold")
            shared = a.columns.intersection(b.columns)
            a, b = a[shared], b[shared]
            row["gold_difference"] = float(a.to_numpy().mean() - b.to_numpy().mean())
            row["gold_difference_ci95"] = two_level_ci(a, b, n_boot, seed)
            row["gold_difference_p"] = sign_flip_p(a.mean(0).to_numpy() - b.mean(0).to_numpy(), n_boot, seed)
            seeds = sorted(set(a.index) & set(b.index))
            row["gold_difference_per_seed"] = [float(a.loc[s].mean() - b.loc[s].mean()) for s in seeds]
        rows.append(row)
    return pd.DataFrame(rows)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties half; NaN without both classes."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = s[y], s[~y]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def similarity_scores(run: pd.DataFrame) -> np.ndarray:
    """(n,) mean cosine similarity of each sample's pooled hidden state to the samples of other prompts."""
    h = np.stack(run.hidden.to_numpy()).astype(np.float64)
    h /= np.linalg.norm(h, axis=1, keepdims=True).clip(1e-12)
    sim = h @ h.T
    other = run.prompt_index.to_numpy()[:, None] != run.prompt_index.to_numpy()[None, :]
    return (sim * other).sum(1) / other.sum(1).clip(1)


def over_optimised(run: pd.DataFrame) -> np.ndarray:
    """(n,) bool: proxy in the run's top quarter and gold below its median."""
    return ((run.proxy >= run.proxy.quantile(PROXY_QUANTILE)) & (run.gold < run.gold.quantile(GOLD_QUANTILE))).to_numpy()


def detection_table(samples: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (algorithm, reward): over-optimised count, AUROC of hidden-state similarity and its CI."""
    rows = []
    for (alg, rew), part in samples.groupby(["algorithm", "reward"], sort=False):
        scored = []
        for _, run in part.groupby("seed"):
            run = run.reset_index(drop=True)
            scored.append(run.assign(similarity=similarity_scores(run), over=over_optimised(run)))
        runs = pd.concat(scored, ignore_index=True)
        s, y = runs.similarity.to_numpy(), runs.over.to_numpy()
        clusters = runs.seed.astype(str) + ":" + runs.prompt_index.astype(str)
        lo, hi = bootstrap_groups_ci(clusters.to_numpy(), lambda r: auroc(s[r], y[r]), n_boot, 0.95, seed)
        rows.append({"algorithm": alg, "reward": rew, "samples": int(len(runs)), "over_optimised": int(y.sum()),
                     "auroc": auroc(s, y), "auroc_ci95": [lo, hi]})
    return pd.DataFrame(rows)


def step_curves(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per (algorithm, reward, step): mean and min/max over seeds of the trained reward, gold reward and KL."""
    cols = {"reward_mean": "proxy", "gold_reward_mean": "gold", "kl_mean": "kl"}
    g = metrics.rename(columns=cols).groupby(["algorithm", "reward", "step"], sort=False)[list(cols.values())]
    out = g.mean().add_suffix("_mean").join(g.min().add_suffix("_min")).join(g.max().add_suffix("_max"))
    return out.reset_index()
