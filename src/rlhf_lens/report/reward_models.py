"""``results/{run}/report/reward_models.md``: the learned reward models of a run, read against the overseer.

Sections (each "not available" when its input was not given, e.g. without SARM):

- **Against the overseer**: the plain RM and SARM side by side on the same held-out pairs (pair accuracy
  and Spearman with CIs over prompt groups, and SARM minus plain, a paired difference;
  ``reward_models.comparison``), or the plain RM's accuracy alone;
- **SARM's reward-carrying latents** next to **the policy features that changed** (issue 13 item 7): for
  the latents with the largest |w_i|, their head weight, their attribution on the held-out responses
  (mean ``w_i z_i`` where they fire, and on how many responses), the autointerp explanation and its
  simulation score (examples from the RM corpus), and the mean overseer utility of the tokens they fire
  on; then, per interpreted reward, the selected RLHF-model features (the paper's changed features) with
  their activation-weighted token utility, explanation utility and explanation. The two tables share the
  overseer's utility scale, so they can be read across: does the reward model carry the same concepts
  the policy learned?
- **Preference shift** and **overseer recovery** with their baselines (complement set; shuffled weights);
- **Over-optimisation**: per policy trained on a learned reward, the held-out proxy and gold gains with
  CIs, and its gold-vs-proxy-against-KL figure.

Model-written and corpus text is escaped (``wording.md_escape``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_file
from .wording import effect_words, fmt, fmt_ci, fmt_p, is_number, md_escape, md_table

NOT_AVAILABLE = "Not available: this stage's output was not given (not run, or left out of the run)."
MAX_EXPLANATION = 160
"""Characters of an explanation shown in a table cell."""


@dataclass
class RewardModelResults:
    """What the page reports; a part left None is reported as not available."""

    accuracy: dict = field(default_factory=dict)
    """Reward-model name -> its accuracy.json (``accuracy.accuracy_report`` summary)."""
    comparison: pd.DataFrame | None = None
    """reward_models/comparison.parquet (``comparison.compare_reward_models``)."""
    attribution: pd.DataFrame | None = None
    """SARM's attribution.parquet (per held-out response, its largest terms w_i z_i)."""
    shift: pd.DataFrame | None = None
    """SARM's shift.parquet (``sarm_analysis.preference_shift``)."""
    recovery: dict | None = None
    """SARM's recovery.json (``sarm_analysis.overseer_recovery``)."""
    latent_explanations: pd.DataFrame | None = None
    """SARM's autointerp.parquet (``sarm_autointerp``): feature, weight, explanation, score, status."""
    policy_features: dict = field(default_factory=dict)
    """Interpreted reward -> its scores/{reward}.parquet (the scoring stage's per-latent table)."""
    policies: dict = field(default_factory=dict)
    """Reward trained against (a learned RM) -> {"eval": eval_summary.json, "figure": gold_vs_proxy.png path}."""


def load_results(*, accuracy=None, comparison=None, attribution=None, shift=None, recovery=None,
                 latent_explanations=None, policy_features=None, policies=None) -> RewardModelResults:
    """Read the files into ``RewardModelResults``; a path left None stays None. ``accuracy``: name -> path;
    ``policy_features``: reward -> path; ``policies``: reward -> (eval_summary.json path, figure path)."""
    def js(path):
        return None if path is None else json.loads(Path(path).read_text())

    def pq(path):
        return None if path is None else pd.read_parquet(path)

    return RewardModelResults(
        accuracy={k: js(v) for k, v in (accuracy or {}).items()}, comparison=pq(comparison),
        attribution=pq(attribution), shift=pq(shift), recovery=js(recovery), latent_explanations=pq(latent_explanations),
        policy_features={k: pq(v) for k, v in (policy_features or {}).items()},
        policies={k: {"eval": js(e), "figure": str(f)} for k, (e, f) in (policies or {}).items()})


def _short(text) -> str:
    text = "" if text is None or (isinstance(text, float) and np.isnan(text)) else str(text)
    return md_escape(text if len(text) <= MAX_EXPLANATION else text[:MAX_EXPLANATION - 1] + "…")


def accuracy_section(r: RewardModelResults) -> str:
    if r.comparison is not None and len(r.comparison):
        rows = [[md_escape(row.model), fmt(row.pair_accuracy), fmt_ci([row.pair_accuracy_lo, row.pair_accuracy_hi]),
                 fmt(row.spearman), fmt_ci([row.spearman_lo, row.spearman_hi])]
                for row in r.comparison.itertuples(index=False)]
        first = r.comparison.iloc[0]
        text = [f"Same {int(first.n_pairs)} held-out pairs ({int(first.n_responses)} responses, "
                f"{int(first.n_groups)} prompts) for every model; CIs resample prompts, and a difference row "
                "resamples the same prompts for both models."]
        for row in r.comparison.itertuples(index=False):
            if " - " in row.model:
                text.append(f"{md_escape(row.model)}: pair accuracy "
                            f"{effect_words([row.pair_accuracy_lo, row.pair_accuracy_hi])}; Spearman "
                            f"{effect_words([row.spearman_lo, row.spearman_hi])}.")
        return md_table(["model", "pair accuracy", "95% CI", "Spearman", "95% CI"], rows) + "\n\n" + "\n\n".join(text)
    if not r.accuracy:
        return NOT_AVAILABLE
    rows = [[md_escape(name), fmt(a["pair_accuracy"]["mean"]), fmt_ci(a["pair_accuracy"]["ci95"]),
             fmt(a["spearman"]["mean"]), fmt_ci(a["spearman"]["ci95"])] for name, a in r.accuracy.items()]
    return md_table(["model", "pair accuracy", "95% CI", "Spearman", "95% CI"], rows)


def chance_lines(r: RewardModelResults) -> str:
    """Whether each model's held-out accuracy CI excludes chance (0.5)."""
    out = []
    for name, a in r.accuracy.items():
        lo, hi = a["pair_accuracy"]["ci95"]
        verdict = "beats chance" if is_number(lo) and lo > 0.5 else "does not beat chance at this size"
        out.append(f"- {md_escape(name)}: pair accuracy {fmt(a['pair_accuracy']['mean'])} {fmt_ci([lo, hi])}, "
                   f"{verdict} (the CI {'excludes' if is_number(lo) and lo > 0.5 else 'includes'} 0.5).")
    return "\n".join(out)


def latent_table(r: RewardModelResults) -> pd.DataFrame | None:
    """One row per SARM latent with an explanation or an attribution: weight, attribution, explanation, utility."""
    if r.latent_explanations is None and r.attribution is None:
        return None
    rows = {}
    if r.latent_explanations is not None:
        for e in r.latent_explanations.itertuples(index=False):
            rows[int(e.feature)] = {"latent": int(e.feature), "weight": float(e.weight),
                                    "explanation": e.explanation if e.status == "ok" else f"({e.status}: {e.reason})",
                                    "score": e.score}
    if r.attribution is not None and len(r.attribution):
        a = r.attribution[r.attribution.activation > 0]
        by = a.groupby("latent").agg(mean_contribution=("contribution", "mean"), n_responses=("response", "nunique"),
                                     weight=("weight", "first"))
        n_total = r.attribution.response.nunique()
        for latent, s in by.iterrows():
            row = rows.setdefault(int(latent), {"latent": int(latent), "weight": float(s.weight)})
            row.update(mean_contribution=float(s.mean_contribution), n_responses=int(s.n_responses),
                       n_heldout=int(n_total))
    if r.recovery and r.recovery.get("latents"):
        for u in r.recovery["latents"]:
            if int(u["latent"]) in rows:
                rows[int(u["latent"])].update(mean_utility=u["mean_utility"], n_fired=u["n_fired"])
    table = pd.DataFrame(list(rows.values()))
    table = table.reindex(columns=["latent", "weight", "mean_contribution", "n_responses", "n_heldout", "explanation",
                                   "score", "mean_utility", "n_fired"])
    return table.sort_values("weight", key=np.abs, ascending=False).reset_index(drop=True)


def latents_section(r: RewardModelResults, top: int = 10) -> str:
    table = latent_table(r)
    if table is None or not len(table):
        return NOT_AVAILABLE
    rows = [[str(int(t.latent)), fmt(t.weight, signed=True), fmt(t.mean_contribution, signed=True),
             f"{int(t.n_responses)}/{int(t.n_heldout)}" if is_number(t.n_responses) else "0",
             _short(t.explanation) if isinstance(t.explanation, str) else "(not explained)", fmt(t.score), fmt(t.mean_utility, signed=True),
             str(int(t.n_fired)) if is_number(t.n_fired) else "n/a"]
            for t in table.head(top).itertuples(index=False)]
    return ("Largest |w_i| first. Attribution: the mean term w_i z_i over the held-out responses whose top terms "
            "include the latent; utility: the overseer's mean utility of the held-out tokens it fires on.\n\n"
            + md_table(["latent", "weight w_i", "mean w_i z_i", "responses", "explanation", "sim. score",
                        "token utility", "tokens"], rows))


def policy_section(r: RewardModelResults, top: int = 10) -> str:
    if not r.policy_features:
        return NOT_AVAILABLE + " (no reward in interpret_rewards)"
    parts = []
    for reward, scores in r.policy_features.items():
        if scores is None:
            parts.append(f"**{md_escape(reward)}**: {NOT_AVAILABLE}")
            continue
        sel = scores[(scores.role == "rlhf") & scores.selected].copy()
        sel = sel.sort_values("token_utility", key=np.abs, ascending=False, na_position="last").head(top)
        rows = [[str(int(s.layer)), str(int(s.feature)), fmt(s.token_utility, signed=True),
                 fmt(s.explanation_utility, signed=True), _short(s.explanation)]
                for s in sel.itertuples(index=False)]
        parts.append(f"**{md_escape(reward)}** (selected RLHF-model features, largest |token utility| first)\n\n"
                     + (md_table(["layer", "feature", "token utility", "explanation utility", "explanation"], rows)
                        if rows else "No selected features."))
    return "\n\n".join(parts)


def shift_section(r: RewardModelResults) -> str:
    if r.shift is None or not len(r.shift):
        return NOT_AVAILABLE
    rows = [[str(int(s.latent)), fmt(s.weight, signed=True), fmt(s.alpha), s.set, str(int(s.n_responses)),
             fmt(s.mean_change, signed=True), fmt_ci([s.ci_lo, s.ci_hi]),
             f"{fmt(s.accuracy_before)} → {fmt(s.accuracy_after)}" if "accuracy_before" in r.shift else "n/a"]
            for s in r.shift.itertuples(index=False)]
    return ("Head weight w_i scaled by alpha; the reward change on the responses where the latent fires (target) "
            "against the rest (complement, the baseline: it should not move); CIs over prompts.\n\n"
            + md_table(["latent", "w_i", "alpha", "set", "responses", "mean change", "95% CI",
                        "pair accuracy before → after"], rows))


def recovery_section(r: RewardModelResults) -> str:
    rec = r.recovery
    if rec is None:
        return NOT_AVAILABLE
    if rec.get("spearman") is None:
        return f"No number: {md_escape(rec.get('reason', 'not computed'))}."
    p = rec.get("p_value")
    verdict = ("significant" if is_number(p) and p < 0.05 else "not significant, no effect at this size")
    return (f"Spearman of the head weights with the overseer's mean utility of the tokens each latent fires on, over "
            f"{rec['n_latents_used']} latents firing on >= {rec['min_tokens']} held-out tokens: "
            f"**{fmt(rec['spearman'], signed=True)}**; shuffled-weights baseline mean "
            f"{fmt(rec['baseline_mean'], signed=True)}, central 95% {fmt_ci(rec['baseline_ci95'])} "
            f"({rec['shuffles']} shuffles); permutation p = {fmt_p(p)}: {verdict}.")


def policies_section(r: RewardModelResults, out_dir: Path) -> str:
    if not r.policies:
        return NOT_AVAILABLE + " (no policy trained on a learned reward)"
    parts = []
    for reward, p in r.policies.items():
        e = p["eval"] or {}
        fig = os.path.relpath(p["figure"], out_dir)
        lines = [f"**{md_escape(reward)}**: held-out proxy gain {fmt(e.get('reward_difference'), signed=True)} "
                 f"{fmt_ci(e.get('reward_difference_ci95'))}, gold gain {fmt(e.get('gold_difference'), signed=True)} "
                 f"({effect_words(e.get('gold_difference_ci95'))}), KL {fmt(e.get('kl_mean'))}.",
                 f"![gold and proxy reward against KL, {md_escape(reward)}]({fig})"]
        parts.append("\n\n".join(lines))
    return "\n\n".join(parts)


def reward_model_markdown(run: str, r: RewardModelResults, out_dir: Path) -> str:
    sections = [
        f"# Learned reward models of run {md_escape(run)}",
        "## Against the overseer (held-out pairs)", accuracy_section(r), chance_lines(r),
        "## SARM's reward-carrying latents", latents_section(r),
        "## The policy features that changed", policy_section(r),
        "## Preference shift (SARM)", shift_section(r),
        "## Overseer recovery (SARM)", recovery_section(r),
        "## Over-optimisation: gold and proxy against KL", policies_section(r, out_dir),
    ]
    return "\n\n".join(s for s in sections if s) + "\n"


def write_reward_model_report(run: str, r: RewardModelResults, out_path: str | os.PathLike) -> str:
    out = Path(out_path)
    text = reward_model_markdown(run, r, out.parent)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        tmp.write_text(text)
    return text
