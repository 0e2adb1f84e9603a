"""Which features do a small and a large dictionary agree on? MMCS, Hungarian matching, baselines.

Definitions (``D``: (m, d) unit-norm decoder atoms; cos = D_a D_b^T):

- **MMCS, many-to-one** (Sharkey et al.; the textbook one): ``mean_{a in A} max_{b in B} cos(a, b)``.
  Reported both ways (small -> large and large -> small); it is not symmetric.
- **Hungarian, one-to-one** (what the paper's code computes): the mean cosine under the
  assignment of A's atoms to distinct atoms of B maximising the total cosine
  (``scipy.optimize.linear_sum_assignment``). It is <= the many-to-one MMCS.
- **Top-k**: the k atoms of the small dictionary with the highest many-to-one match.
- **Cross-seed noise floor, like for like**: small dictionaries trained with other seeds against
  the same large dictionary, so every max runs over the same pool as the headline's (pool size alone
  moves a max: random unit vectors in d 576 give 0.129 against 576 candidates, 0.137 against 1,152;
  ``chance_mmcs`` gives that number for each pair). Mean over the seeds with a t-interval across
  seeds, the trained unit; the headline's CI is a bootstrap over its atoms.
- **Activation correlation**: Pearson correlation of latent activations over the same
  evaluation tokens; each atom's best-correlated partner, a second view of "same feature".
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.optimize import linear_sum_assignment

from .atomic import write_json, write_parquet
from .bootstrap import bootstrap_ci

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeaturesConfig:
    """Dictionary matching (``features:`` in config.yaml)."""

    top_k: int = 10
    """Best-matched small-dictionary features kept per (role, layer)."""
    bootstrap: int = 1000
    """Bootstrap resamples for confidence intervals; 0 skips them."""
    ci_level: float = 0.95
    """Confidence level of the bootstrap intervals."""


def unit_rows(D) -> torch.Tensor:
    D = torch.as_tensor(D, dtype=torch.float64)
    return D / D.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cosine_matrix(A, B) -> torch.Tensor:
    """(m_a, m_b) cosines between rows of A (m_a, d) and B (m_b, d)."""
    return unit_rows(A) @ unit_rows(B).T


def max_cosine(A, B) -> tuple[np.ndarray, np.ndarray]:
    """For each row of A: (best cosine with any row of B, index of that row)."""
    best, idx = cosine_matrix(A, B).max(dim=1)
    return best.numpy(), idx.numpy()


def mmcs(A, B) -> float:
    """Many-to-one mean max cosine similarity of A's atoms against B's."""
    return float(max_cosine(A, B)[0].mean())


def hungarian(A, B) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching maximising total cosine: (rows of A, matched rows of B, their cosines).

    With m_a <= m_b every atom of A gets a distinct partner; otherwise m_b atoms of A are matched.
    """
    cos = cosine_matrix(A, B).numpy()
    rows, cols = linear_sum_assignment(cos, maximize=True)
    return rows, cols, cos[rows, cols]


class _CorrAccumulator:
    """Streams float64 sums to give the Pearson correlation matrix of two latent sets over shared tokens."""

    def __init__(self, m_a, m_b):
        self.n = 0
        self.sa, self.sb = torch.zeros(m_a, dtype=torch.float64), torch.zeros(m_b, dtype=torch.float64)
        self.saa, self.sbb = torch.zeros(m_a, dtype=torch.float64), torch.zeros(m_b, dtype=torch.float64)
        self.sab = torch.zeros(m_a, m_b, dtype=torch.float64)

    def update(self, fa, fb):
        fa, fb = fa.double(), fb.double()
        self.n += len(fa)
        self.sa += fa.sum(0)
        self.sb += fb.sum(0)
        self.saa += (fa * fa).sum(0)
        self.sbb += (fb * fb).sum(0)
        self.sab += fa.T @ fb

    def corr(self) -> torch.Tensor:
        n = self.n
        cov = self.sab / n - torch.outer(self.sa / n, self.sb / n)
        va = (self.saa / n - (self.sa / n) ** 2).clamp_min(0)
        vb = (self.sbb / n - (self.sb / n) ** 2).clamp_min(0)
        denom = torch.outer(va.sqrt(), vb.sqrt())
        # A latent that never varies (dead) correlates with nothing.
        return torch.where(denom > 1e-20, cov / denom.clamp_min(1e-20), torch.zeros_like(cov))


@torch.no_grad()
def activation_correlation(sae_a, sae_b, x: torch.Tensor, batch_size: int = 2048) -> torch.Tensor:
    """(m_a, m_b) Pearson correlations of the two SAEs' latents over the tokens ``x`` (tokens, d)."""
    acc = _CorrAccumulator(sae_a.m, sae_b.m)
    for i in range(0, len(x), batch_size):
        acc.update(sae_a.encode(x[i:i + batch_size]), sae_b.encode(x[i:i + batch_size]))
    return acc.corr()


def compare_dictionaries(small, large, x_eval: torch.Tensor | None = None, top_k: int = 10) -> tuple[pd.DataFrame, dict]:
    """Per-atom matches between a small and a large SAE (models), and the summary numbers.

    Rows: one per atom of each side, with ``direction`` small_to_large or large_to_small.
    """
    A, B = small.atoms().detach(), large.atoms().detach()
    s_best, s_idx = max_cosine(A, B)
    l_best, l_idx = max_cosine(B, A)
    h_rows, h_cols, h_cos = hungarian(A, B)
    hung_match = np.full(len(A), -1)
    hung_cos = np.full(len(A), np.nan)
    hung_match[h_rows], hung_cos[h_rows] = h_cols, h_cos
    small_rows = pd.DataFrame({"direction": "small_to_large", "feature": np.arange(len(A)), "match": s_idx,
                               "max_cosine": s_best, "hungarian_match": hung_match, "hungarian_cosine": hung_cos})
    l_hung_match = np.full(len(B), -1)
    l_hung_cos = np.full(len(B), np.nan)
    l_hung_match[h_cols], l_hung_cos[h_cols] = h_rows, h_cos
    large_rows = pd.DataFrame({"direction": "large_to_small", "feature": np.arange(len(B)), "match": l_idx,
                               "max_cosine": l_best, "hungarian_match": l_hung_match, "hungarian_cosine": l_hung_cos})
    summary = {"mmcs_small_to_large": float(s_best.mean()), "mmcs_large_to_small": float(l_best.mean()),
               "hungarian_mean_cosine": float(h_cos.mean()), "n_small": len(A), "n_large": len(B)}
    if x_eval is not None and len(x_eval):
        corr = activation_correlation(small, large, x_eval)
        c_best, c_idx = corr.max(dim=1)
        r_best, r_idx = corr.max(dim=0)
        small_rows["corr_match"], small_rows["corr"] = c_idx.numpy(), c_best.numpy()
        large_rows["corr_match"], large_rows["corr"] = r_idx.numpy(), r_best.numpy()
        small_rows["corr_match_agrees"] = small_rows["corr_match"] == small_rows["match"]
        large_rows["corr_match_agrees"] = large_rows["corr_match"] == large_rows["match"]
        summary.update({"mean_max_activation_correlation_small_to_large": float(c_best.mean()),
                        "activation_and_cosine_match_agree_fraction": float(small_rows["corr_match_agrees"].mean()),
                        "correlation_tokens": len(x_eval)})
    for rows in (small_rows, large_rows):
        rows["rank"] = rows["max_cosine"].rank(ascending=False, method="first").astype(int)
        rows["top_k"] = rows["rank"] <= top_k
    top = small_rows.sort_values("rank").head(top_k)
    summary["top_k"] = top_k
    summary["top_k_features"] = [int(f) for f in top["feature"]]
    summary["top_k_mean_cosine"] = float(top["max_cosine"].mean())
    return pd.concat([small_rows, large_rows], ignore_index=True), summary


def cross_seed_floor(smalls: dict[int, torch.nn.Module], large, level: float) -> dict:
    """The noise floor of small -> large MMCS, like for like: each small dictionary trained with
    another seed against the same large one, so every max runs over the same pool (the large
    dictionary's atoms) as the headline's. Mean over seeds with a t-interval across seeds (the
    trained unit), the per-seed values, and the pool sizes.

    ``smalls``: seed -> small SAE (seeds other than the large one's).
    """
    from scipy import stats

    per_seed = {s: float(max_cosine(sae.atoms().detach(), large.atoms().detach())[0].mean())
                for s, sae in sorted(smalls.items())}
    values = np.array(list(per_seed.values()))
    mean = float(values.mean())
    if len(values) >= 2:
        half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values)))
        ci = [mean - half, mean + half]
    else:
        ci = [None, None]  # one seed gives no spread to estimate: the report says "cannot tell"
    n_small = next(iter(smalls.values())).atoms().shape[0]
    return {"mmcs": mean, "mmcs_ci": ci, "per_seed": {str(k): v for k, v in per_seed.items()},
            "n_seeds": len(values), "n_small": int(n_small), "n_large": int(large.atoms().shape[0])}


def chance_mmcs(n_small: int, n_large: int, d: int, seed: int = 0) -> float:
    """MMCS of ``n_small`` random unit vectors against ``n_large`` others in d dimensions: what pool
    size alone gives (d 576: 0.129 against 576 candidates, 0.137 against 1,152)."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n_small, d, generator=g), torch.randn(n_large, d, generator=g)
    return mmcs(a, b)


def features_stage(sae_dirs: dict[str, str | os.PathLike], store, layer: int, out_table, out_summary,
                   *, sizes: tuple[int, ...], kinds: tuple[str, ...], baseline_seeds: tuple[int, ...], top_k: int,
                   n_boot: int, level: float, eval_fraction: float, seed: int
                   ) -> tuple[dict, list[tuple[str, dict[str, np.ndarray]]]]:
    """Compare the small and large SAE of each kind for one (role, layer); write table and summary.

    ``sae_dirs`` maps size names (relu_1x, relu_2x_seed1, ...) to SAE folders. Returns the summary
    and the histogram panels, one per kind: (title, {label: per-atom max cosines}) of the pair and
    of each seed baseline, for ``report.plots.plot_max_cosine_histograms`` (the rule script draws them).
    """
    from .activations import doc_groups, read_layer, read_manifest, split_docs
    from .sae.io import load_sae

    saes = {name: load_sae(path)[0] for name, path in sae_dirs.items()}
    manifest = read_manifest(store)
    _, eval_ids = split_docs(doc_groups(store), eval_fraction, seed)
    _, x_eval = read_layer(store, layer, doc_ids=eval_ids)
    small, large = min(sizes), max(sizes)
    tables, summary, panels = [], {"layer": layer, "site": manifest["site"], "kinds": {}}, []
    for kind in kinds:
        table, s = compare_dictionaries(saes[f"{kind}_{small}x"], saes[f"{kind}_{large}x"], x_eval, top_k)
        s["small"], s["large"] = f"{kind}_{small}x", f"{kind}_{large}x"
        per_atom = table.loc[table["direction"] == "small_to_large", "max_cosine"].to_numpy()
        s["mmcs_small_to_large_ci"] = list(bootstrap_ci(per_atom, n_boot, level, seed))
        series = {f"{small}x vs {large}x": per_atom}
        smalls = {b: saes[f"{kind}_{small}x_seed{b}"] for b in baseline_seeds if f"{kind}_{small}x_seed{b}" in saes}
        baselines = {}
        if smalls:
            large_sae = saes[f"{kind}_{large}x"]
            floor = cross_seed_floor(smalls, large_sae, level)
            baselines["cross_seed"] = floor
            for b, sae in smalls.items():
                series[f"{small}x seed{b} vs {large}x"] = max_cosine(sae.atoms().detach(), large_sae.atoms().detach())[0]
        s["seed_baselines"] = baselines
        s["chance_mmcs"] = chance_mmcs(s["n_small"], s["n_large"], saes[f"{kind}_{small}x"].atoms().shape[1], seed)
        s["ci_level"] = level
        summary["kinds"][kind] = s
        table.insert(0, "kind", kind)
        tables.append(table)
        panels.append((f"layer {layer}, {kind}", series))
    write_parquet(pd.concat(tables, ignore_index=True), out_table)
    write_json(summary, out_summary)
    return summary, panels


def summarise(summary_paths: dict[tuple[str, int], str | os.PathLike], out_path) -> pd.DataFrame:
    """One table of every (role, layer, kind) summary: MMCS both ways, Hungarian, baselines with CIs."""
    import json

    rows = []
    for (role, layer), path in sorted(summary_paths.items()):
        s = json.loads(Path(path).read_text())
        for kind, k in s["kinds"].items():
            row = {"role": role, "layer": layer, "kind": kind, "mmcs_small_to_large": k["mmcs_small_to_large"],
                   "mmcs_ci_low": k["mmcs_small_to_large_ci"][0], "mmcs_ci_high": k["mmcs_small_to_large_ci"][1],
                   "mmcs_large_to_small": k["mmcs_large_to_small"], "hungarian_mean_cosine": k["hungarian_mean_cosine"],
                   "top_k_mean_cosine": k["top_k_mean_cosine"],
                   "activation_correlation": k.get("mean_max_activation_correlation_small_to_large"),
                   "chance_mmcs": k.get("chance_mmcs")}
            for name, b in k["seed_baselines"].items():
                row[f"baseline_{name}_mmcs"] = b["mmcs"]
                row[f"baseline_{name}_ci_low"], row[f"baseline_{name}_ci_high"] = b["mmcs_ci"]
            rows.append(row)
    table = pd.DataFrame(rows)
    write_parquet(table, out_path)
    return table
