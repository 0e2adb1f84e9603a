"""Report tables built from the stages' files: SAE quality, and MMCS against its seed-vs-seed noise floor."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ..missing import as_float, is_missing
from .wording import overlap_words

SAE_COLUMNS = [
    "reward", "role", "layer", "sae", "kind", "d_in", "d_sae", "seed", "site", "explained_variance",
    "explained_variance_legacy_around_zero", "l0", "dead_fraction", "dense_fraction", "cosine", "l2_ratio", "mse",
    "ce_clean", "ce_sae", "ce_zero_ablation", "ce_mean_ablation", "ce_loss_score_zero", "ce_loss_score_mean",
    "kl_sae", "n_tokens", "ce_tokens", "train_tokens", "train_seconds",
]
"""Columns of ``sae_metrics_table``, in order; metrics an SAE's file lacks are left empty."""

_LAYER_DIR = re.compile(r"^layer([0-9]+)$")
_BASELINE_MMCS = re.compile(r"^baseline_(?P<name>.+)_mmcs$")


def _sae_path_parts(metrics_json: Path) -> tuple[str, str, int, str]:
    """(reward, role, layer, SAE name) from ``.../sae/{reward}/{role}/layer{L}/{name}/metrics.json``."""
    name_dir = metrics_json.parent
    layer_dir = name_dir.parent
    m = _LAYER_DIR.match(layer_dir.name)
    if not m or len(metrics_json.parts) < 5:
        raise ValueError(f"{metrics_json}: expected a path like .../sae/{{reward}}/{{role}}/layer{{L}}/{{name}}/"
                         "metrics.json (layer folder named layer<N>)")
    return layer_dir.parent.parent.name, layer_dir.parent.name, int(m[1]), name_dir.name


def sae_metrics_table(metrics_json_paths) -> pd.DataFrame:
    """One row per SAE (role, layer, SAE name) from its ``metrics.json`` (written by ``sae.fit.fit_saes``).

    ``metrics_json_paths``: paths of metrics.json files, or of the SAE folders holding them.
    Reward, role, layer and name come from the path; the metrics from the file (nulls stay empty).
    Sorted by reward, role, layer, name.
    """
    rows = []
    for p in metrics_json_paths:
        path = Path(p)
        if path.is_dir():
            path = path / "metrics.json"
        reward, role, layer, name = _sae_path_parts(path)
        metrics = json.loads(path.read_text())
        if metrics.get("layer", layer) != layer:
            raise ValueError(f"{path}: metrics say layer {metrics['layer']} but the folder is layer{layer}")
        row = {key: metrics.get(key) for key in SAE_COLUMNS}
        row.update(reward=reward, role=role, layer=layer, sae=name)
        rows.append(row)
    table = pd.DataFrame(rows, columns=SAE_COLUMNS)
    return table.sort_values(["reward", "role", "layer", "sae"], ignore_index=True)


def mmcs_vs_noise_floor(features_summary: pd.DataFrame) -> pd.DataFrame:
    """Each (role, layer, kind)'s small -> large MMCS next to its seed-vs-seed noise floor.

    ``features_summary``: ``features/{reward}/summary.parquet`` (``features.summarise``), with
    ``baseline_{name}_mmcs`` / ``_ci_low`` / ``_ci_high`` columns per seed baseline. The noise floor
    is the baseline with the highest upper CI bound (the most conservative when there are
    several). ``verdict``: "above the noise floor" only when the two CIs do not overlap and the
    MMCS is the higher; ``above_noise_floor`` is None when a CI or the baseline is missing.
    """
    baselines = [m["name"] for c in features_summary.columns if (m := _BASELINE_MMCS.match(c))]
    rows = []
    for rec in features_summary.to_dict("records"):
        row = {k: rec[k] for k in ("role", "layer", "kind", "mmcs_small_to_large", "mmcs_ci_low", "mmcs_ci_high")}
        row.update(baseline=None, baseline_mmcs=None, baseline_ci_low=None, baseline_ci_high=None)
        present = [b for b in baselines if not is_missing(rec.get(f"baseline_{b}_mmcs"))]
        if present:
            best = max(present, key=lambda b: _or_inf(rec.get(f"baseline_{b}_ci_high")))
            row.update(baseline=best, baseline_mmcs=rec[f"baseline_{best}_mmcs"],
                       baseline_ci_low=rec.get(f"baseline_{best}_ci_low"),
                       baseline_ci_high=rec.get(f"baseline_{best}_ci_high"))
        row["above_noise_floor"], row["verdict"] = _noise_verdict(row)
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["role", "layer", "kind"], ignore_index=True)


def _or_inf(x) -> float:
    """A baseline without an upper bound is chosen: then nothing can be called above the floor."""
    return float("inf") if is_missing(x) else float(x)


def _noise_verdict(row: dict) -> tuple[bool | None, str]:
    if row["baseline"] is None:
        return None, "no seed baseline: cannot tell"
    ours = [row["mmcs_ci_low"], row["mmcs_ci_high"]]
    floor = [row["baseline_ci_low"], row["baseline_ci_high"]]
    overlap = overlap_words([as_float(v) for v in ours], [as_float(v) for v in floor])
    if overlap is None:
        return None, "no CI: cannot tell"
    if overlap == "overlap":
        return False, "not above the noise floor (CIs overlap)"
    if ours[0] > floor[1]:
        return True, "above the noise floor (CIs do not overlap)"
    return False, "below the noise floor (CIs do not overlap)"
