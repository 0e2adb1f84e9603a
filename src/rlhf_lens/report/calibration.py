"""The calibration: does the method find a reward we planted? (configs/calibration.yaml)

The same chain runs for several rewards of one run that differ only in strength (the calibration
config trains the utility-table policy at three KL coefficients, rl.per_reward). For each, this puts
the held-out reward gain (policy - base) next to every measure of the method: Table 3 (all words
and quoted words), token utility, unembedding utility (each RLHF - base with its CI, p-value and
verdict by the report's rule), the MMCS of each role against its like-for-like noise floor and, when
crosscoders run (crosscoder.enabled), the count of RLHF-only crosscoder latents and their token and
unembedding utility minus the shared latents' (with CI, p-value and verdict). The
known answer: the strongest policy stacks high-utility words, so a working method must separate RLHF
from base there, beyond its random-feature baseline; a failure to detect is reported as such.
Arms trained on a planted table (``table: secret``, a truth nobody can guess, or ``vader_shuffled``, the
like-for-like null) are marked by their ``table`` and left out of "the strongest reward"; each was scored
against the table it was trained on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from ..atomic import atomic_file, write_parquet
from ..missing import as_float
from ..rewards.planted_tables import PLANTED
from .plots import plot_calibration
from .tables import mmcs_vs_noise_floor
from .wording import fmt, fmt_ci, md_escape, md_table

MEASURES = {"table3": "Table 3 (sum |utility|)", "table3_quoted": "Table 3, quoted words",
            "token_utility": "token utility", "unembed_utility": "unembedding utility"}
"""The scoring statistics' measures the calibration reports, with their column labels."""


def calibration_row(reward: str, rl_eval: dict, stats: dict, features: pd.DataFrame | None) -> dict:
    """One reward's row: its reward gain with CI and KL, and per measure the RLHF - base difference with
    CI, p-value and ``effect`` (the rule: CI excludes 0, p < 0.05, RLHF beats its random features)."""
    row = {"reward": reward, "reward_gain": as_float(rl_eval.get("reward_difference")),
           "reward_gain_ci_low": as_float((rl_eval.get("reward_difference_ci95") or [None, None])[0]),
           "reward_gain_ci_high": as_float((rl_eval.get("reward_difference_ci95") or [None, None])[1]),
           "kl": as_float(rl_eval.get("kl_mean"))}
    for key in MEASURES:
        diff = (stats.get(key) or {}).get("difference") or {}
        ci = diff.get("ci") or [None, None]
        row.update({f"{key}_difference": as_float(diff.get("rlhf_minus_base")), f"{key}_ci_low": as_float(ci[0]),
                    f"{key}_ci_high": as_float(ci[1]), f"{key}_p": as_float(diff.get("p_value")),
                    f"{key}_effect": bool((stats.get(key) or {}).get("effect", False))})
    if features is not None and not features.empty:
        floor = mmcs_vs_noise_floor(features)
        for role in ("base", "rlhf"):
            mine = floor[floor["role"] == role]
            row[f"mmcs_{role}_above_floor"] = int(sum(v is True for v in mine["above_noise_floor"]))
            row[f"mmcs_{role}_pairs"] = len(mine)
            row[f"mmcs_{role}_minus_floor"] = as_float(
                (pd.to_numeric(mine["mmcs_small_to_large"]) - pd.to_numeric(mine["baseline_mmcs"])).mean())
    return row


CROSSCODER_MEASURES = {"token_utility": "token utility", "unembed_utility": "unembedding utility"}
"""The crosscoder comparisons' measures the calibration reports (RLHF-only vs shared latents)."""


def crosscoder_columns(stats: dict | None) -> dict:
    """The crosscoder columns of a row from the crosscoder utility statistics (``scoring.crosscoder``):
    the count of RLHF-only (and RLHF-leaning) latents and, per measure, RLHF-only minus shared with CI,
    p-value and ``effect``; all None when the crosscoders did not run."""
    stats = stats or {}
    row = {"xc_rlhf_only": stats.get("n_rlhf_only"), "xc_rlhf_leaning": stats.get("n_rlhf_leaning"),
           "xc_live": stats.get("n_live")}
    for key in CROSSCODER_MEASURES:
        c = ((stats.get("measures") or {}).get(key) or {}).get("comparisons", {}).get("rlhf_only_vs_shared") or {}
        ci = c.get("ci") or [None, None]
        row.update({f"xc_{key}_vs_shared": as_float(c.get("difference")), f"xc_{key}_ci_low": as_float(ci[0]),
                    f"xc_{key}_ci_high": as_float(ci[1]), f"xc_{key}_p": as_float(c.get("p_value")),
                    f"xc_{key}_effect": bool(c.get("effect", False))})
    return row


def calibration_table(rows: list[dict]) -> pd.DataFrame:
    """Rows in the given order (weakest first), one per reward."""
    return pd.DataFrame(rows)


_ARM_NOTE = {"secret": " (secret table)", "vader_shuffled": " (null: VADER shuffled)"}
"""How the markdown marks an arm trained on a planted table."""


def calibration_markdown(table: pd.DataFrame) -> str:
    """The table in words: one line per reward and measure with the verdict, and whether the strongest
    reward was detected beyond the random baseline by any measure."""
    crosscoders = "xc_rlhf_only" in table.columns and table["xc_rlhf_only"].notna().any()
    headers = ["reward", "gain [CI]", "KL", *MEASURES.values(), "MMCS above floor (base / rlhf)"]
    if crosscoders:
        headers += ["crosscoder RLHF-only latents (of live)",
                    *(f"crosscoder RLHF-only - shared, {label}" for label in CROSSCODER_MEASURES.values())]
    body = []
    for r in table.to_dict("records"):
        cells = [md_escape(r["reward"]) + _ARM_NOTE.get(r.get("table"), ""), f"{fmt(r['reward_gain'], signed=True)} {fmt_ci([r['reward_gain_ci_low'], r['reward_gain_ci_high']])}",
                 fmt(r["kl"])]
        for key in MEASURES:
            verdict = "effect" if r[f"{key}_effect"] else "no effect"
            cells.append(f"{fmt(r[f'{key}_difference'], signed=True)} "
                         f"{fmt_ci([r[f'{key}_ci_low'], r[f'{key}_ci_high']])}, p {fmt(r[f'{key}_p'])}: {verdict}")
        cells.append(f"{r.get('mmcs_base_above_floor', 'n/a')}/{r.get('mmcs_base_pairs', 'n/a')} / "
                     f"{r.get('mmcs_rlhf_above_floor', 'n/a')}/{r.get('mmcs_rlhf_pairs', 'n/a')}")
        if crosscoders:
            cells.append(f"{fmt(r.get('xc_rlhf_only'), 9)} (of {fmt(r.get('xc_live'), 9)})")
            for key in CROSSCODER_MEASURES:
                verdict = "effect" if r.get(f"xc_{key}_effect") else "no effect"
                cells.append(f"{fmt(r.get(f'xc_{key}_vs_shared'), signed=True)} "
                             f"{fmt_ci([r.get(f'xc_{key}_ci_low'), r.get(f'xc_{key}_ci_high')])}, "
                             f"p {fmt(r.get(f'xc_{key}_p'))}: {verdict}")
        body.append(cells)
    strengths = table[~table["table"].isin(PLANTED)] if "table" in table.columns else table
    strongest = (strengths if len(strengths) else table).iloc[-1]
    found = [label for key, label in MEASURES.items() if strongest[f"{key}_effect"]]
    verdict = (f"At the strongest reward ({md_escape(strongest['reward'])}) the method detects the planted reward by: "
               + ", ".join(found) + "." if found else
               f"At the strongest reward ({md_escape(strongest['reward'])}) no measure separates RLHF from base beyond its "
               "random-feature baseline: the method fails to detect the planted reward at this size.")
    return md_table(headers, body) + "\n\n" + verdict + "\n"


def calibration_stage(entries: dict[str, dict[str, str | os.PathLike]], out_table, out_md, out_png,
                      tables: dict[str, str] | None = None) -> pd.DataFrame:
    """``entries``: reward -> {"rl_eval": eval_summary.json, "stats": scores stats JSON, "features":
    features summary parquet, and optionally "crosscoder": the crosscoder utility JSON}, weakest first.
    ``tables``: reward -> the table it was trained on (vader, secret, vader_shuffled, a CSV; column ``table``).
    Writes the table (parquet), its markdown and the figure."""
    rows = []
    for reward, paths in entries.items():
        features = pd.read_parquet(paths["features"]) if paths.get("features") else None
        row = calibration_row(reward, json.loads(Path(paths["rl_eval"]).read_text()),
                              json.loads(Path(paths["stats"]).read_text()), features)
        if paths.get("crosscoder"):
            row.update(crosscoder_columns(json.loads(Path(paths["crosscoder"]).read_text())))
        if tables is not None:
            row["table"] = tables.get(reward)
        rows.append(row)
    table = calibration_table(rows)
    write_parquet(table, out_table)
    with atomic_file(out_md) as tmp:
        tmp.write_text(calibration_markdown(table))
    plot_calibration(table, out_png)
    return table
