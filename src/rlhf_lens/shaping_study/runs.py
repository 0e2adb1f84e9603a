"""One run of the shaping study: PPO on the shaped reward for a fixed number of steps, then held-out gold.

Used by every comparison run (a scheme at a seed) and by every trial of the weight search, so all of
them train and score alike: the same prompts, PPO settings (``rl.ppo`` with ``steps`` replaced),
attribution budgets (``rl.shaping``) and held-out prompts; only the weights, the seed and the number
of steps differ. The held-out score is the gold reward's (``rl.shaping.study.gold``, else ``rl.gold``,
else the trained reward) mean over the first ``eval_prompts`` eval prompts, ``eval_samples`` responses
each, sampled from the final policy; the per-response table keeps the policy's KL to the base.
"""

from __future__ import annotations

import dataclasses
import os

import pandas as pd
import torch

from ..models import load_prepared
from ..rewards import Reward
from ..rl.config import PPOConfig
from ..rl.evaluate import sample_and_score
from ..rl.text import tokenize_prompts
from ..rl.train import RLRun, read_prompts
from ..shaping import ShapingConfig
from ..shaping.shaped_reward import ShapedReward


def study_run(model_dir: str | os.PathLike, train_prompts: str | os.PathLike, eval_prompts: str | os.PathLike,
              reward: Reward, gold: Reward | None, ppo: PPOConfig, shaping: ShapingConfig, weights: dict[str, float],
              *, seed: int, steps: int, n_eval: int, eval_samples: int, device: str = "cpu",
              checkpoint_dir: str | os.PathLike | None = None, settings: dict | None = None,
              eval_batch_size: int = 64) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per-step metrics, held-out table) of PPO on ``reward`` shaped with ``weights``.

    The held-out table has one row per response: prompt_index, sample, response, reward (the trained
    reward), gold (``gold``, or the trained reward when None), kl (log pi - log pi_ref, nats).
    """
    ppo = dataclasses.replace(ppo, steps=steps, reward_placement="per_token")
    shaped = ShapedReward(reward, dataclasses.replace(shaping, enabled=True, weights=dict(weights)))
    policy, tokenizer = load_prepared(model_dir, device)
    ref, _ = load_prepared(model_dir, device)
    reward.to(device)
    if gold is not None:
        gold.to(device)
    run = RLRun(policy, ref, tokenizer, shaped, read_prompts(train_prompts), ppo, seed=seed, device=device,
                checkpoint_dir=checkpoint_dir, settings={"weights": dict(weights), **(settings or {})},
                prompt_source=f"prompt file {str(train_prompts)!r}", gold=gold)
    run.resume()
    metrics = run.train()
    texts = read_prompts(eval_prompts)[:n_eval]
    queries = [q[:ppo.query_max_tokens] for q in tokenize_prompts(tokenizer, texts, f"prompt file {str(eval_prompts)!r}")]
    torch.manual_seed(seed * 1000 + 17)
    table = sample_and_score(policy, {"policy": policy, "base": ref}, tokenizer, reward, queries, ppo, eval_samples,
                             eval_batch_size, device, desc="held-out", gold=gold)
    if gold is None:
        table["gold"] = table["reward"]
    table["kl"] = table["logp_policy"] - table["logp_base"]
    return metrics, table


def held_out_gold(table: pd.DataFrame) -> float:
    """The objective: mean over held-out prompts of the prompt's mean gold reward."""
    return float(table.groupby("prompt_index")["gold"].mean().mean())
