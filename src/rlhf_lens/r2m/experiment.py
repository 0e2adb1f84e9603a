"""One arm of the R2M comparison (rule ``r2m_arm``): train a policy against one reward with one group method and
seed, then measure it on held-out prompts like-for-like with every other arm.

Writes ``metrics.parquet`` (per RL step: the trained reward, gold reward, KL, R2M's losses), ``samples.parquet``
(per held-out sample: prompt index, response, proxy = the frozen plain RM's score, gold = the overseer's, KL of
policy from base in nats, and the policy's mean last-layer hidden state of the response, for the detection
analysis) and ``summary.json`` (held-out means with CIs over prompts, the reward's held-out pair accuracy
before and after RL). The policy itself is scratch (deleted): 2 x 3 x several arms of full models would not fit.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..atomic import write_json, write_parquet
from ..bootstrap import bootstrap_ci
from ..model_parts import pad_token_id
from ..models import load_prepared
from ..preferences.table import read_pairs
from ..reward_models.accuracy import accuracy_report
from ..rewards import Reward
from ..rl.config import EvalConfig, PPOConfig
from ..rl.rollout import pad_batch, response_logprobs, sample_responses
from ..rl.text import decode_with_spans, tokenize_prompts
from ..rl.train import read_prompts, train_policy

log = logging.getLogger(__name__)


@torch.no_grad()
def heldout_samples(policy, base, tokenizer, proxy: Reward, gold: Reward, texts: list[str], ppo: PPOConfig,
                    eval_cfg: EvalConfig, *, seed: int, device: str) -> pd.DataFrame:
    """``samples_per_prompt`` policy samples per held-out prompt: proxy, gold, KL (nats) and pooled hidden state."""
    pad_id = pad_token_id(tokenizer)
    queries = [q[:ppo.query_max_tokens] for q in tokenize_prompts(tokenizer, texts, "held-out prompts")]
    jobs = [(p, s) for p in range(len(queries)) for s in range(eval_cfg.samples_per_prompt)]
    torch.manual_seed(seed * 1000 + 7)
    rows = []
    for start in tqdm(range(0, len(jobs), eval_cfg.batch_size), desc="held-out", mininterval=5):
        chunk = jobs[start:start + eval_cfg.batch_size]
        qs = [queries[p] for p, _ in chunk]
        responses = sample_responses(policy, qs, ppo.response_max_tokens, pad_id=pad_id,
                                     eos_id=tokenizer.eos_token_id, temperature=ppo.temperature,
                                     stop_at_eos=ppo.stop_at_eos, device=device)
        batch = pad_batch(qs, responses, pad_id, device)
        logp, _, _, hidden = response_logprobs(policy, None, batch, with_hidden=True)
        logp_base = response_logprobs(base, None, batch)[0]
        m = batch.mask
        kl = ((logp - logp_base) * m).sum(1)
        pooled = (hidden.float() * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
        prompts = [tokenizer.decode(q, skip_special_tokens=True) for q in qs]
        out = [decode_with_spans(tokenizer, r)[0] for r in responses]
        px, gd = proxy.score(prompts, out), gold.score(prompts, out)
        for i, (p, s) in enumerate(chunk):
            rows.append({"prompt_index": p, "sample": s, "prompt": prompts[i], "response": out[i],
                         "proxy": float(px[i]), "gold": float(gd[i]), "kl": float(kl[i]),
                         "hidden": pooled[i].cpu().numpy().astype(np.float32).tolist()})
    return pd.DataFrame(rows)


def _mean_ci(values: np.ndarray, n_boot: int, seed: int) -> dict:
    return {"mean": float(np.mean(values)), "ci95": list(bootstrap_ci(values, n_boot, 0.95, seed))}


def run_arm(model_dir: str | os.PathLike, train_prompts: str | os.PathLike, eval_prompts: str | os.PathLike,
            heldout_pairs: str | os.PathLike, reward: Reward, proxy: Reward, gold: Reward, ppo: PPOConfig,
            eval_cfg: EvalConfig, *, seed: int, device: str, scratch: str | os.PathLike, out_metrics, out_samples,
            out_summary, settings: dict | None = None) -> dict:
    """Train against ``reward`` (``ppo.algorithm``, ``seed``), then write samples and summary (see the module)."""
    scratch = Path(scratch)
    pairs = read_pairs(heldout_pairs)
    before, _ = accuracy_report(lambda p, r: reward.score(p, r).numpy(), pairs, n_boot=eval_cfg.bootstrap, seed=seed)
    metrics = train_policy(model_dir, train_prompts, reward, ppo, out_policy=scratch / "policy",
                           out_metrics=out_metrics, checkpoint_dir=scratch / "checkpoints", seed=seed, device=device,
                           settings=settings, gold=gold)
    after, _ = accuracy_report(lambda p, r: reward.score(p, r).numpy(), pairs, n_boot=eval_cfg.bootstrap, seed=seed)
    texts = read_prompts(eval_prompts)
    if eval_cfg.prompts is not None:
        texts = texts[:eval_cfg.prompts]
    policy, tokenizer = load_prepared(scratch / "policy", device)
    base, _ = load_prepared(model_dir, device)
    samples = heldout_samples(policy, base, tokenizer, proxy, gold, texts, ppo, eval_cfg, seed=seed, device=device)
    write_parquet(samples, out_samples)
    per_prompt = samples.groupby("prompt_index")[["proxy", "gold", "kl"]].mean()
    summary = {"reward": reward.name, "algorithm": ppo.algorithm, "seed": seed, "steps": int(len(metrics)),
               "n_prompts": int(len(per_prompt)), "samples_per_prompt": eval_cfg.samples_per_prompt,
               **{k: _mean_ci(per_prompt[k].to_numpy(), eval_cfg.bootstrap, seed) for k in ("proxy", "gold", "kl")},
               "accuracy_before": before["pair_accuracy"], "accuracy_after": after["pair_accuracy"]}
    write_json(summary, out_summary)
    shutil.rmtree(scratch, ignore_errors=True)
    log.info("%s %s seed %d: held-out gold %.3f proxy %.3f KL %.2f; pair accuracy %.3f -> %.3f", ppo.algorithm,
             reward.name, seed, summary["gold"]["mean"], summary["proxy"]["mean"], summary["kl"]["mean"],
             before["pair_accuracy"]["mean"], after["pair_accuracy"]["mean"])
    return summary
