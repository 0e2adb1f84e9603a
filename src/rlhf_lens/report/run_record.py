"""A finished run's headline numbers as a record (``rlhf-lens record-run``), so a run's results reach
``docs/results.md`` and the README through ``rlhf_lens.records`` instead of being typed into prose.

Reads what ``summary.md`` reads (``summary.load_reward_results``) for every reward the run evaluated:
the held-out RL gain and KL, the studied blocks, the SAEs' held-out explained variance per dictionary
size, MMCS against its cross-seed floor, the scoring stage's base-vs-RLHF differences with their CIs
and permutation p, and each diffing method's readout against the truth (Spearman, precision@50, recall@50). Stages the run did not reach are left out of the record.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..diffing.readouts import READABLE, first_readable_block
from ..missing import is_missing
from ..records import write_record
from ..scoring.config import MEASURES
from .summary import RewardResults, load_reward_results
from .tables import mmcs_vs_noise_floor
from .wording import effect_words, is_significant


def _ci(ci) -> list[float] | None:
    if ci is None or len(ci) != 2 or any(is_missing(x) for x in ci):
        return None
    return [round(float(ci[0]), 4), round(float(ci[1]), 4)]


def reward_values(r: RewardResults, prefix: str = "") -> list[dict]:
    """The record values of one reward's results; ``prefix`` names the reward when a run has several."""
    values = []
    if r.rl_eval:
        e = r.rl_eval
        ci = _ci(e.get("reward_difference_ci95"))
        values.append({"name": f"{prefix}RL: held-out reward, policy - base", "value": round(e["reward_difference"], 4),
                       "ci": ci, "signed": True, "reading": f"{e.get('n_prompts')} prompts x "
                       f"{e.get('samples_per_prompt')} samples; {'significant' if is_significant(ci) else 'no effect at this size'}"})
        if not is_missing(e.get("kl_mean")):
            values.append({"name": f"{prefix}RL: mean KL to the base model", "value": round(e["kl_mean"], 3),
                           "unit": "nats"})
    if r.layers:
        ranked = r.layers.get("ranked") or r.layers.get("layers") or []
        values.append({"name": f"{prefix}blocks that moved most (divergence)",
                       "value": f"{', '.join(str(int(x)) for x in ranked)} of {r.layers.get('n_blocks')}"})
    if r.sae is not None and not r.sae.empty:
        main = r.sae[~r.sae["sae"].str.contains("_seed")]
        for name, group in main.groupby("sae"):
            ev = group["explained_variance"].dropna()
            if len(ev):
                values.append({"name": f"{prefix}SAE {name}: held-out explained variance", "decimals": 3,
                               "value": [round(float(ev.min()), 3), round(float(ev.max()), 3)],
                               "reading": f"over {len(ev)} (role, block); dead <= "
                                          f"{100 * float(group['dead_fraction'].max()):.1f}%"})
    if r.features is not None and not r.features.empty:
        table = mmcs_vs_noise_floor(r.features)
        above = sum(v is True for v in table["above_noise_floor"])
        values.append({"name": f"{prefix}MMCS small->large above the cross-seed floor",
                       "value": f"{above} of {len(table)} (role, block, kind)"})
    for key in ("table3", "token_utility", "unembed_utility"):
        diff = ((r.stats or {}).get(key) or {}).get("difference") or {}
        if is_missing(diff.get("rlhf_minus_base")):
            continue
        level = (r.stats or {}).get("ci_level", 0.95)
        values.append({"name": f"{prefix}{MEASURES[key]}, RLHF - base", "value": round(diff["rlhf_minus_base"], 4),
                       "ci": _ci(diff.get("ci")), "signed": True,
                       "reading": effect_words(diff.get("ci"), level, diff.get("p_value"), tested=True)})
    values += diffing_values(r.diffing or {}, prefix)
    for value in values:
        if value.get("ci") is None:
            value.pop("ci", None)
    return values


def diffing_values(diffing: dict[str, dict], prefix: str = "") -> list[dict]:
    """Per diffing method (``learned.load_diffing``'s dict): Spearman with the truth, precision@50 beside the base
    rate and recall@50, each with its CI over the method's unit, and the words it ranks first."""
    values = []
    for method, d in diffing.items():
        readout = (d.get("readout") or {}).get("readout")
        if not readout:
            continue
        unit = f"{readout['n_units']} {readout['unit'].replace('_', ' ')}s"
        for key, reading in (("spearman", f"over the truth's {readout['n_truth_words']} single-token words; "
                                          f"CI over {unit}"),
                             ("precision@50", f"base rate {readout['base_rate']:.3f}; CI over {unit}"),
                             ("recall@50", f"of {readout['n_positive']} positive words; CI over {unit}")):
            metric = readout["metrics"].get(key) or {}
            if is_missing(metric.get("value")):
                continue
            values.append({"name": f"{prefix}diffing {method}: {key}", "value": round(metric["value"], 4),
                           "ci": _ci(metric.get("ci")), "decimals": 3, "reading": reading})
        profile = (d.get("readout") or {}).get("depth_profile") or []
        for key in ("spearman", "precision@50"):
            level, first = READABLE, first_readable_block(profile, key)
            if profile and key in profile[0]:
                values.append({"name": f"{prefix}diffing {method}: first block whose readout has {key} >= {level}",
                               "value": "none" if first is None else f"block {first} of {len(profile)}",
                               "reading": "the depth profile: the mean difference after each block through the "
                                          "unembedding"})
        top = d.get("words")
        if top is not None and len(top):
            values.append({"name": f"{prefix}diffing {method}: words ranked first",
                           "value": ", ".join(top["word"].head(10))})
    return values


def recovery_values(table) -> list[dict]:
    """The calibration recovery's rows beyond each arm's own readout (record-run has those from its diffing
    folders): the null arm against VADER and every arm against the words its policy learned to write; point
    values beside what chance gives (``report.recovery``)."""
    from .recovery import chance_range

    values = []
    for r in table[table["truth"] != "own"].to_dict("records"):
        what = ("against VADER (the like-for-like null)" if r["truth"] == "vader" else
                f"against the {int(r['n_learned'])} of its {int(r['n_planted'])} table words its policy learned to write")
        for key in ("spearman", "precision@50", "recall@50"):
            if is_missing(r.get(key)):
                continue
            if key == "spearman":
                chance = f"permutation null |rho| 95%: {r['spearman_null_abs_95']:.3f}"
            else:
                found = chance_range(r, key)
                chance = f"{found[0]}: [{found[1][0]:.3f}, {found[1][1]:.3f}]" if found else "no chance range"
            values.append({"name": f"{r['arm']}, {r['method']}, {what}: {key}", "value": round(float(r[key]), 4),
                           "decimals": 3, "signed": key == "spearman", "reading": f"point value; {chance}"})
    return values


def run_results(run_dir: str | os.PathLike) -> list[RewardResults]:
    """Every evaluated reward's results under ``results/{run}/`` (the summary's inputs, found by path)."""
    run_dir = Path(run_dir)
    out = []
    for eval_summary in sorted(run_dir.glob("rl/*/eval_summary.json")):
        reward = eval_summary.parent.name

        def one(path: Path) -> Path | None:
            return path if path.exists() else None

        out.append(load_reward_results(
            reward, rl_eval=eval_summary, rl_metrics=one(eval_summary.parent / "metrics.parquet"),
            layers=one(run_dir / "divergence" / f"{reward}_layers.json"),
            sae_metrics=sorted(run_dir.glob(f"sae/{reward}/*/layer*/*/metrics.json")),
            features=one(run_dir / "features" / reward / "summary.parquet"),
            autointerp=sorted(run_dir.glob(f"autointerp/{reward}/*/layer*.parquet")),
            stats=one(run_dir / "scores" / f"{reward}_stats.json"),
            diffing={p.parent.name: p.parent for p in sorted(run_dir.glob(f"diffing/{reward}/*/readout.json"))}))
    return out


def record_run(run_dir: str | os.PathLike, name: str, command: str, root: str | os.PathLike = ".",
               env: dict | None = None, notes: str = "") -> Path:
    """Write ``docs/results/records/{name}.json`` under ``root`` from the finished run in ``run_dir``.

    The machine, commit and versions are this process's: run it on the machine and checkout that ran the run.
    """
    results = run_results(run_dir)
    if not results:
        raise FileNotFoundError(f"{run_dir}: no rl/*/eval_summary.json: the run has not been evaluated")
    several = len(results) > 1
    values = [v for r in results for v in reward_values(r, f"{r.reward}: " if several else "")]
    recovery = Path(run_dir) / "calibration" / "recovery.parquet"
    if recovery.is_file():
        import pandas as pd

        values += recovery_values(pd.read_parquet(recovery))
    run = Path(run_dir).name
    return write_record(
        name, f"Run `{run}`",
        f"The headline numbers of `results/{run}/` (as `summary.md` states them) for reward(s) "
        f"{', '.join(r.reward for r in results)}. Brackets: the stages' CIs (bootstrap over prompts for RL, "
        "over features within layers for the scores).", command, values, root=root, notes=notes, env=env)
