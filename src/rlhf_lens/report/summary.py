"""``results/{run}/summary.md``: the headline numbers of a run in words, one section per reward.

Every claim follows ``wording``'s rule (significant only when the CI excludes 0 and p < 0.05
where a test was run; otherwise "not significant", "no effect at this size"). A stage whose
output is not given is reported as not available. Model-written text is escaped.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..atomic import atomic_file
from ..scoring.config import MEASURES
from .learned import learned_section, load_diffing
from .tables import mmcs_vs_noise_floor, sae_metrics_table
from .wording import (ALPHA, ci_label, effect_words, fmt, fmt_ci, fmt_p, is_number, is_significant, md_escape, md_table,
                      overlap_words)

NOT_AVAILABLE = "Not available: this stage's output was not given (not run yet, or left out of the run)."


@dataclass
class RewardResults:
    """What the summary reports for one reward; a part left None is reported as not available."""

    reward: str
    """The reward's name (the {reward} of result paths)."""
    rl_eval: dict | None = None
    """rl/{reward}/eval_summary.json (``rl.evaluate.evaluate_policy``)."""
    rl_metrics: pd.DataFrame | None = None
    """rl/{reward}/metrics.parquet: one row per PPO step."""
    layers: dict | None = None
    """divergence/{reward}_layers.json: layers (sorted), ranked, top_n, n_blocks."""
    sae: pd.DataFrame | None = None
    """``tables.sae_metrics_table`` of the reward's SAEs."""
    features: pd.DataFrame | None = None
    """features/{reward}/summary.parquet (``features.summarise``)."""
    autointerp: pd.DataFrame | None = None
    """Every autointerp/{reward}/{role}/layer{L}.parquet of the reward, concatenated."""
    stats: dict | None = None
    """The scoring stage's statistics JSON: table3, token_utility, unembed_utility, ci_level, ..."""
    diffing: dict | None = None
    """``learned.load_diffing`` of the reward's diffing folders (method -> top words, readout, extra); None
    (``diffing.methods`` empty, or a caller that reads no diffing output) leaves the section out."""
    run_dir: Path | None = None
    """results/{run}/, so that images of the diffing folders are linked relative to summary.md."""


def load_reward_results(reward: str, *, rl_eval=None, rl_metrics=None, layers=None, sae_metrics=(), features=None,
                        autointerp=(), stats=None, diffing=None, run_dir=None) -> RewardResults:
    """Read a reward's files into ``RewardResults``; a path left None (or an empty list) stays None.

    ``sae_metrics``: SAE metrics.json paths (or SAE folders); ``autointerp``: autointerp parquet paths;
    ``diffing``: method -> its diffing folder.
    """
    def read_json(path):
        return None if path is None else json.loads(Path(path).read_text())

    def read_parquet(path):
        return None if path is None else pd.read_parquet(path)

    sae_metrics, autointerp = list(sae_metrics), list(autointerp)
    return RewardResults(
        reward=reward, rl_eval=read_json(rl_eval), rl_metrics=read_parquet(rl_metrics), layers=read_json(layers),
        sae=sae_metrics_table(sae_metrics) if sae_metrics else None, features=read_parquet(features),
        autointerp=pd.concat([pd.read_parquet(p) for p in autointerp], ignore_index=True) if autointerp else None,
        stats=read_json(stats), diffing=load_diffing(diffing) if diffing else None,
        run_dir=Path(run_dir) if run_dir else None)


def rl_section(rl_eval: dict | None, rl_metrics: pd.DataFrame | None) -> str:
    if rl_eval is None:
        return NOT_AVAILABLE
    e = rl_eval
    d, ci = e.get("reward_difference"), e.get("reward_difference_ci95")
    text = (f"Held-out reward on {e.get('n_prompts')} prompts × {e.get('samples_per_prompt')} sampled responses "
            f"({e.get('bootstrap')} bootstrap resamples over prompts): base model {fmt(e.get('reward_base_mean'))} "
            f"{fmt_ci(e.get('reward_base_ci95'))}, RLHF policy {fmt(e.get('reward_policy_mean'))} "
            f"{fmt_ci(e.get('reward_policy_ci95'))}. Policy − base = {fmt(d, signed=True)}: "
            f"{effect_words(ci, 0.95)}.")
    if is_significant(ci):
        text += f" The policy scores {'higher' if ci[0] > 0 else 'lower'} than the base model on this reward."
    text += (f" Mean KL(policy ‖ base) = {fmt(e.get('kl_mean'))} nats per response {fmt_ci(e.get('kl_ci95'))} "
             "(95% CI).")
    if rl_metrics is not None and len(rl_metrics):
        last = rl_metrics.iloc[-1]
        text += (f" Training ran {len(rl_metrics)} PPO steps; at the last step the training reward was "
                 f"{fmt(last.get('reward_mean'))} and the KL {fmt(last.get('kl_mean'))}.")
    return text


def layers_section(layers: dict | None) -> str:
    if layers is None:
        return NOT_AVAILABLE
    ranked = layers.get("ranked") or layers.get("layers") or []
    return (f"Blocks studied: the top {layers.get('top_n')} of {layers.get('n_blocks')} by parameter divergence "
            f"(sum of ||Δθ||_F), highest first: {', '.join(str(int(x)) for x in ranked)}.")


def sae_section(sae: pd.DataFrame | None) -> str:
    if sae is None or sae.empty:
        return NOT_AVAILABLE
    main = sae[~sae["sae"].str.contains("_seed")]
    rows = [[md_escape(r["role"]), str(int(r["layer"])), md_escape(r["sae"]), fmt(r["explained_variance"]),
             fmt(r["l0"]), fmt(r["dead_fraction"], 2), fmt(r["dense_fraction"], 2), fmt(r["ce_loss_score_zero"]),
             fmt(r["ce_loss_score_mean"]), fmt(r["kl_sae"])] for r in main.to_dict("records")]
    table = md_table(["role", "layer", "SAE", "EV", "L0", "dead", "dense", "CE rec. (zero abl.)",
                      "CE rec. (mean abl.)", "KL (nats/token)"], rows)
    return (table + f"\n\nEV: explained variance around the mean on held-out tokens; dead: never fired; dense: fired "
            f"on more than 10% of tokens; CE recovered: fraction of the ablation's loss increase that the SAE's "
            f"reconstruction recovers. Seed replicas ({len(sae) - len(main)}) are left out of this table.")


def mmcs_section(features: pd.DataFrame | None) -> str:
    if features is None or features.empty:
        return NOT_AVAILABLE
    table = mmcs_vs_noise_floor(features)
    rows = [[md_escape(r["role"]), str(int(r["layer"])), md_escape(r["kind"]),
             f"{fmt(r['mmcs_small_to_large'])} {fmt_ci([r['mmcs_ci_low'], r['mmcs_ci_high']])}",
             f"{fmt(r['baseline_mmcs'])} {fmt_ci([r['baseline_ci_low'], r['baseline_ci_high']])}"
             + (f" ({md_escape(r['baseline'])})" if r["baseline"] else ""),
             r["verdict"]] for r in table.to_dict("records")]
    n_above = sum(v is True for v in table["above_noise_floor"])
    headers = ["role", "layer", "kind", "MMCS small→large [CI]", "cross-seed floor [CI]", "verdict"]
    chance = pd.to_numeric(features.get("chance_mmcs", pd.Series(dtype=float)), errors="coerce").dropna()
    chance_words = (f" Random unit vectors with the same pool sizes give {fmt(chance.min())}-{fmt(chance.max())}."
                    if len(chance) else "")
    return (md_table(headers, rows)
            + f"\n\n{n_above} of {len(table)} (role, layer, kind) are above the noise floor. MMCS here is the "
            "many-to-one mean max cosine of the small dictionary's atoms against the large one's (Sharkey et al.); "
            "the floor is the same number for small dictionaries trained with other seeds against the same large "
            "dictionary (the same pool of candidates), its CI across those seeds. Above the noise floor means the "
            "two CIs do not overlap." + chance_words)


def autointerp_section(autointerp: pd.DataFrame | None) -> str:
    if autointerp is None or autointerp.empty:
        return NOT_AVAILABLE
    rows = []
    for role in sorted(autointerp["role"].unique()):
        for selected in (True, False):
            g = autointerp[(autointerp["role"] == role) & (autointerp["selected"].astype(bool) == selected)]
            if g.empty:
                continue
            ok = g[g["status"] == "ok"]
            rows.append([md_escape(role), "selected (top-k matched)" if selected else "random baseline",
                         str(len(ok)), str(len(g) - len(ok)), fmt(pd.to_numeric(ok["score"]).mean()),
                         fmt(pd.to_numeric(ok["detection_auroc"]).mean())])
    parts = [md_table(["role", "features", "explained", "failed", "mean simulation score", "mean detection AUROC"],
                      rows),
             "Simulation score: Pearson correlation of simulated vs true activations over held-out windows "
             "(mean over explained features; no test of selected vs random is made here)."]
    failed = autointerp[autointerp["status"] != "ok"]
    if len(failed):
        reason, count = Counter(failed["reason"].fillna("")).most_common(1)[0]
        parts.append(f"Most common failure reason ({count} of {len(failed)} failures): "
                     f"“{md_escape(reason) or 'none given'}”.")
    best = autointerp[(autointerp["status"] == "ok") & autointerp["selected"].astype(bool)].copy()
    best["score"] = pd.to_numeric(best["score"])
    best = best.dropna(subset=["score"]).sort_values("score", ascending=False).head(3)
    if len(best):
        parts.append("Best-simulated selected features:\n\n" + "\n".join(
            f"- {md_escape(r['role'])} layer {int(r['layer'])} feature {int(r['feature'])} "
            f"(score {fmt(r['score'])}): “{md_escape(r['explanation'])}”" for r in best.to_dict("records")))
    return "\n\n".join(parts)


def role_points(key: str, r: dict) -> list[tuple]:
    """[(value, ci) of the explained features, (value, ci) of the random features] of one role's stats.

    ``key``: "table3" (sum of |utility|, random baseline nested) or a mean-|utility| measure.
    """
    if key == "table3":
        rand = r.get("random_baseline") or {}
        return [(r.get("sum_abs_utility"), r.get("ci")), (rand.get("sum_abs_utility"), rand.get("ci"))]
    return [(r.get("mean_abs"), r.get("ci")), (r.get("random_mean_abs"), r.get("random_ci"))]


def _role_line(key: str, role: str, s: dict | None, level) -> str:
    """One role's value with CI next to its random baseline, and whether their CIs overlap."""
    if not s:
        return f"- {role}: not available."
    (value, ci), (r_value, r_ci) = role_points(key, s)
    n, r_n = s.get("n_features"), (s.get("random_baseline") or {}).get("n_features")
    failed = f" ({s['n_failed']} failed)" if s.get("n_failed") else ""
    line = (f"- {role}: {MEASURES[key]} = {fmt(value)} ({ci_label(level)} {fmt_ci(ci)}) over {fmt(n, 9)} "
            f"features{failed}; random features: {fmt(r_value)} {fmt_ci(r_ci)}"
            + (f" over {fmt(r_n, 9)} features" if r_n is not None else ""))
    if key == "table3" and is_number(n) and is_number(r_n) and n != r_n:
        # A sum grows with the number of features: compare per feature instead of by CI overlap.
        per = [v / k if is_number(v) and k else None for v, k in ((value, n), (r_value, r_n))]
        return line + f". Per feature: {fmt(per[0])} vs {fmt(per[1])} random (different feature counts, no CI)."
    overlap = overlap_words(ci, r_ci)
    if overlap is None:
        return line + "."
    verdict = ("not distinguishable from the random baseline" if overlap == "overlap"
               else "above the random baseline" if ci[0] > r_ci[1] else "below the random baseline")
    return line + f": {verdict} (CIs {overlap})."


def measure_section(key: str, stats: dict | None) -> str:
    """Base, RLHF and their difference for one measure of the scoring statistics."""
    if stats is None or stats.get(key) is None:
        return NOT_AVAILABLE
    s, level = stats[key], stats.get("ci_level")
    lines = [_role_line(key, role, s.get(role), level) for role in ("base", "rlhf")]
    diff = s.get("difference") or {}
    d, ci, p = diff.get("rlhf_minus_base"), diff.get("ci"), diff.get("p_value")
    verdict = effect_words(ci, level, p, tested=True)
    text = "\n".join(lines) + f"\n\nRLHF − base = {fmt(d, signed=True)}: {verdict}."
    beats = s.get("rlhf_vs_random")
    if beats:
        b_ci, b_p = beats.get("ci"), beats.get("p_value")
        text += (f" RLHF's selected features vs its random ones: {fmt(beats.get('selected_minus_random_mean'), signed=True)}"
                 f" per feature ({ci_label(level)} {fmt_ci(b_ci)}, p = {fmt_p(b_p)}).")
    if is_significant(ci, p, tested=True):
        if s.get("effect") is False:
            text += (" Not an effect by the report's rule: RLHF's selected features do not beat its random"
                     " features, so the difference is not in what the method selected; no effect at this size.")
        else:
            text += f" The RLHF model's features carry {'more' if ci[0] > 0 else 'less'} of this measure than the base's."
    return text


def reward_section(r: RewardResults) -> str:
    stats = r.stats or {}
    method = (f"CIs: {ci_label(stats.get('ci_level'))}, bootstrap over features ({stats.get('n_boot')} resamples); "
              f"p-values: permutation test of base vs RLHF ({stats.get('n_permutations')} permutations)."
              if r.stats else "")
    learned = ([("What the policy learned (model diffing against the reward's truth)",
                 learned_section(r.diffing, r.run_dir))] if r.diffing else [])
    sections = [
        *learned,
        ("RL: held-out reward, policy vs base", rl_section(r.rl_eval, r.rl_metrics)),
        ("Layers", layers_section(r.layers)),
        ("SAE quality", sae_section(r.sae)),
        ("Do the small and large dictionaries agree? (MMCS vs seed noise)", mmcs_section(r.features)),
        ("Autointerp", autointerp_section(r.autointerp)),
        ("Utility of the explanations (Table 3)", measure_section("table3", r.stats)),
        ("LLM-free measures: token utility", measure_section("token_utility", r.stats)),
        ("LLM-free measures: unembedding utility", measure_section("unembed_utility", r.stats)),
    ]
    body = "\n\n".join(f"### {title}\n\n{text}" for title, text in sections)
    return f"## Reward: {md_escape(r.reward)}\n\n" + (f"{method}\n\n" if method else "") + body


def summary_markdown(run: str, results: list[RewardResults]) -> str:
    """The whole summary: a header, then one section per reward."""
    header = (f"# rlhf-lens results: run {md_escape(run)}\n\n"
              f"Reading rule: a difference is called significant only when its confidence interval excludes 0 "
              f"and, where a permutation test was run, p < {ALPHA:g}; anything else is written as not "
              f"significant, no effect at this size.")
    return "\n\n".join([header] + [reward_section(r) for r in results]) + "\n"


def write_summary(run: str, results: list[RewardResults], out_path: str | os.PathLike) -> str:
    """Write ``summary_markdown`` atomically to ``out_path`` (results/{run}/summary.md); return the text."""
    text = summary_markdown(run, results)
    with atomic_file(out_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return text
