"""The ``rl_eval`` rule: base vs policy on held-out prompts, with bootstrap confidence intervals.

Each held-out prompt (cut to ``query_max_tokens``) gets ``samples_per_prompt`` sampled responses
of ``response_max_tokens`` tokens from each model, scored by the reward. The KL of the policy
from the base is estimated on the policy's own samples: mean over them of
sum_t [log pi_policy(y_t) - log pi_base(y_t)] (nats per response). Confidence intervals
resample prompts (not samples: samples of one prompt are correlated), 95% percentile bootstrap.

Cost: log pi_policy comes from the logits the policy's generation computed anyway, and log pi_base
from one forward pass of the base over the policy's samples; the base's own samples need neither
(their ``logp_*`` and ``kl`` are NaN), so evaluation runs one full forward pass per policy batch
instead of two per batch of either model.

With a gold reward (config ``rl.gold``, the overseer), every sample is also scored by it (column
``gold``) and the summary reports it as it does the trained (proxy) reward: ``gold_base_mean``,
``gold_policy_mean``, ``gold_difference`` with their CIs. Without one, table and summary are unchanged.
"""

from __future__ import annotations

import logging
import os

import pandas as pd
import torch
from tqdm import tqdm

from ..atomic import write_json, write_parquet
from ..bootstrap import bootstrap_ci
from ..model_parts import pad_token_id
from ..models import load_prepared
from ..rewards import Reward
from .config import EvalConfig, PPOConfig
from .rollout import pad_batch, response_logprobs, sample_responses
from .text import check_context, decode_with_spans, tokenize_prompts
from .train import read_prompts

log = logging.getLogger(__name__)


@torch.no_grad()
def sample_and_score(model, scorer_models: dict, tokenizer, reward: Reward, queries, ppo: PPOConfig,
                     samples: int, batch_size: int, device: str, desc: str, gold: Reward | None = None,
                     own_name: str | None = None) -> pd.DataFrame:
    """Sample ``samples`` responses per query from ``model``; score them; their summed log-probs under
    ``scorer_models`` (one forward pass each) and, when ``own_name`` is given, under ``model`` itself
    as column ``logp_{own_name}`` (from generation's logits: no pass)."""
    pad_id = pad_token_id(tokenizer)
    jobs = [(p, s) for p in range(len(queries)) for s in range(samples)]
    rows = []
    for start in tqdm(range(0, len(jobs), batch_size), desc=desc, mininterval=5):
        chunk = jobs[start:start + batch_size]
        qs = [queries[p] for p, _ in chunk]
        # generation keeps its logits only when the sampler's own log-probs are wanted (the policy's samples)
        sampled = sample_responses(model, qs, ppo.response_max_tokens, pad_id=pad_id,
                                   eos_id=tokenizer.eos_token_id, temperature=ppo.temperature,
                                   stop_at_eos=ppo.stop_at_eos, device=device, with_logprobs=own_name is not None)
        responses, own = sampled if own_name is not None else (sampled, None)
        batch = pad_batch(qs, responses, pad_id, device)
        logps = {name: (response_logprobs(m, None, batch)[0] * batch.mask).sum(1).cpu()
                 for name, m in scorer_models.items()}
        if own_name is not None:
            logps[own_name] = torch.stack([lp.sum() for lp in own])
        prompts = [tokenizer.decode(q, skip_special_tokens=True) for q in qs]
        texts = [decode_with_spans(tokenizer, r)[0] for r in responses]
        scores = reward.score(prompts, texts)
        golds = gold.score(prompts, texts) if gold is not None else None
        for i, (p, s) in enumerate(chunk):
            row = {"prompt": prompts[i], "prompt_index": p, "sample": s, "response": texts[i],
                   "reward": float(scores[i]), "n_tokens": len(responses[i])}
            if golds is not None:
                row["gold"] = float(golds[i])
            row.update({f"logp_{name}": float(v[i]) for name, v in logps.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def gold_summary(table: pd.DataFrame, name: str, n_boot: int, seed: int) -> dict:
    """The gold reward's base and policy means and their difference, each with a bootstrap CI over prompts."""
    per_prompt = table.pivot_table(index="prompt_index", columns="model", values="gold", aggfunc="mean")
    out = {"gold": name}
    for key, values in (("base", per_prompt["base"]), ("policy", per_prompt["policy"]),
                        ("difference", per_prompt["policy"] - per_prompt["base"])):
        label = "gold_difference" if key == "difference" else f"gold_{key}_mean"
        out[label] = float(values.to_numpy().mean())
        out[f"gold_{key}_ci95" if key != "difference" else "gold_difference_ci95"] = list(
            bootstrap_ci(values.to_numpy(), n_boot, 0.95, seed))
    out["gold_difference_ci_excludes_zero"] = bool(out["gold_difference_ci95"][0] > 0
                                                   or out["gold_difference_ci95"][1] < 0)
    return out


def evaluate_policy(base_dir: str | os.PathLike, policy_dir: str | os.PathLike, prompts_path: str | os.PathLike,
                    reward: Reward, ppo: PPOConfig, eval_cfg: EvalConfig, *, out_table: str | os.PathLike,
                    out_summary: str | os.PathLike, seed: int = 0, device: str = "cpu",
                    gold: Reward | None = None) -> dict:
    """Write the sample table (columns prompt, model, sample, response, reward, [gold,] ...) and the summary JSON."""
    texts = read_prompts(prompts_path)
    if eval_cfg.prompts is not None:
        texts = texts[:eval_cfg.prompts]
    base, tokenizer = load_prepared(base_dir, device)
    policy, _ = load_prepared(policy_dir, device)
    check_context(policy.config, ppo.query_max_tokens, ppo.response_max_tokens)
    reward.to(device)
    if gold is not None:
        gold.to(device)
    queries = [q[:ppo.query_max_tokens] for q in
               tokenize_prompts(tokenizer, texts, f"prompt file {str(prompts_path)!r}")]
    # (model, the models that score its samples, the column of its own log-probs): only the policy's
    # samples enter the KL estimate
    plan = {"base": (base, {}, None), "policy": (policy, {"base": base}, "policy")}
    tables = []
    for i, (name, (model, scorers, own)) in enumerate(plan.items()):
        torch.manual_seed(seed * 1000 + i)
        df = sample_and_score(model, scorers, tokenizer, reward, queries, ppo, eval_cfg.samples_per_prompt,
                              eval_cfg.batch_size, device, desc=f"eval {name}", gold=gold, own_name=own)
        df.insert(1, "model", name)
        tables.append(df)
    table = pd.concat(tables, ignore_index=True)  # base rows: logp_base, logp_policy NaN
    table["kl"] = table["logp_policy"] - table["logp_base"]
    write_parquet(table, out_table)

    per_prompt = table.pivot_table(index="prompt_index", columns="model", values="reward", aggfunc="mean")
    kl_prompt = table[table.model == "policy"].groupby("prompt_index")["kl"].mean()
    n = eval_cfg.bootstrap
    summary = {"reward": reward.name, "n_prompts": len(queries), "samples_per_prompt": eval_cfg.samples_per_prompt,
               "response_tokens": ppo.response_max_tokens, "bootstrap": n, "seed": seed}
    for key, values in (("base", per_prompt["base"]), ("policy", per_prompt["policy"]),
                        ("difference", per_prompt["policy"] - per_prompt["base"]), ("kl", kl_prompt)):
        mean, (lo, hi) = float(values.to_numpy().mean()), bootstrap_ci(values.to_numpy(), n, 0.95, seed)
        name = key if key == "kl" else f"reward_{key}" if key != "difference" else "reward_difference"
        summary[f"{name}_mean" if key != "difference" else name] = mean
        summary[f"{name}_ci95"] = [lo, hi]
    summary["difference_ci_excludes_zero"] = bool(summary["reward_difference_ci95"][0] > 0
                                                  or summary["reward_difference_ci95"][1] < 0)
    if gold is not None:
        summary.update(gold_summary(table, gold.name, n, seed))
        log.info("held-out gold (%s) base %.3f policy %.3f difference %.3f [%.3f, %.3f]", gold.name,
                 summary["gold_base_mean"], summary["gold_policy_mean"], summary["gold_difference"],
                 *summary["gold_difference_ci95"])
    write_json(summary, out_summary)
    log.info("held-out reward base %.3f policy %.3f difference %.3f [%.3f, %.3f], KL %.2f",
             summary["reward_base_mean"], summary["reward_policy_mean"], summary["reward_difference"],
             *summary["reward_difference_ci95"], summary["kl_mean"])
    return summary
