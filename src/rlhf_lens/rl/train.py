"""The ``rl`` rule: PPO-train a policy against one reward and write the policy, metrics and curves.

Outputs (paths given by the caller): ``policy/`` a plain HF folder (no value head inside, so it
loads like any model; a reward that changes during RL, R2M, adds its ``reward_state.pt``),
``metrics.parquet`` one row per PPO step, ``curves.png`` reward and KL per step. Checkpoints go to a separate folder the workflow does not declare as an output, so a
killed job's rerun resumes from the last one instead of starting over.

With a gold reward (config ``rl.gold``: the overseer a learned reward model imitates), each step's
rollouts are also scored by it: ``gold_reward_mean`` / ``gold_reward_std`` in the metrics (sequence
rewards, not used for training), so gold and proxy reward can be drawn against KL (Gao et al. 2022).
Without one the metrics have exactly the columns they had before.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ..atomic import atomic_dir, write_parquet
from ..models import load_prepared
from ..rewards import Reward, last_token_rewards
from .algorithm import algorithm_settings
from .checkpoint import fingerprint, latest_checkpoint, save_checkpoint
from .config import PPOConfig
from .text import RLInputError, check_context, decode_with_spans, tokenize_prompts, truncate_queries
from .trainer import RLTrainer

log = logging.getLogger(__name__)


def read_prompts(path: str | os.PathLike) -> list[str]:
    """The ``text`` column of a prompts parquet (written by the prompts rule)."""
    path = Path(path)
    if not path.is_file():
        raise RLInputError(f"prompt file {str(path)!r} does not exist")
    df = pd.read_parquet(path)
    if "text" not in df.columns:
        raise RLInputError(f"prompt file {str(path)!r}: expected a 'text' column, found {', '.join(df.columns)}")
    texts = [str(t) for t in df["text"]]
    if not texts:
        raise RLInputError(f"prompt file {str(path)!r} holds no prompts")
    return texts


def batch_indices(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Prompt indices of PPO step ``step``: consecutive slices of a fresh seeded permutation per epoch.

    A pure function of (step, seed), so a resumed run reads the same prompts without saved state.
    """
    pos = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs = pos // n
    out = np.empty(batch_size, dtype=np.int64)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(n)
        sel = epochs == e
        out[sel] = perm[pos[sel] % n]
    return out


class RLRun:
    """A PPO run from a prompt list and a reward; ``train`` goes to ``config.steps``, resuming if it can."""

    def __init__(self, policy, ref, tokenizer, reward: Reward, prompts: list[str], config: PPOConfig, *,
                 seed: int = 0, device: str = "cpu", checkpoint_dir: str | os.PathLike | None = None,
                 settings: dict | None = None, prompt_source: str = "prompts", gold: Reward | None = None):
        check_context(policy.config, config.query_max_tokens, config.response_max_tokens)
        self.reward, self.config, self.seed, self.device = reward, config, seed, device
        self.gold = gold
        self.tokenizer = tokenizer
        self.prompts = tokenize_prompts(tokenizer, prompts, prompt_source)
        if len(self.prompts) < 1:
            raise RLInputError(f"{prompt_source}: no prompts")
        torch.manual_seed(seed)
        np.random.seed(seed)
        import random

        random.seed(seed)
        self.trainer = RLTrainer(policy, ref, tokenizer, config, device=device)
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.fp = fingerprint({"ppo": algorithm_settings(config), "seed": seed, **(settings or {})})
        self.step = 0
        self.rows: list[dict] = []

    def _rollout_step(self, step: int) -> dict:
        cfg = self.config
        t0 = time.perf_counter()
        rng = np.random.default_rng([self.seed, 1, step])
        k = self.trainer.samples_per_prompt()  # K responses per prompt (algorithms that compare samples)
        idx = batch_indices(step, cfg.batch_size // k, len(self.prompts), self.seed)
        queries = truncate_queries([self.prompts[i] for i in idx], cfg.query_min_tokens, cfg.query_max_tokens, rng)
        groups = None
        if k > 1:  # each prompt cut once, then repeated: its K rollouts share a query and a group id
            queries = [q for q in queries for _ in range(k)]
            groups = torch.arange(len(idx)).repeat_interleave(k)
        length = int(rng.integers(cfg.response_min_tokens, cfg.response_max_tokens + 1))
        # a reward that reads the policy needs the step's own forward pass; otherwise generation's numbers serve
        sampled = None if self.reward.reads_policy_hidden else self.trainer.sample(queries, length)
        responses = self.trainer.generate(queries, length) if sampled is None else sampled.responses
        t_gen = time.perf_counter() - t0
        prompt_texts = [self.tokenizer.decode(q, skip_special_tokens=True) for q in queries]
        decoded = [decode_with_spans(self.tokenizer, r) for r in responses]
        texts, spans = [d[0] for d in decoded], [d[1] for d in decoded]
        stats_reward = {}
        lengths = [len(s) for s in spans]
        if self.reward.reads_policy_hidden:  # scored inside the step's policy forward (no extra pass)
            def scores(hidden, mask):
                seq = self.reward.score_with_hidden(prompt_texts, texts, hidden, mask, step=step, steps=cfg.steps)
                return last_token_rewards(seq, lengths)
        elif cfg.reward_placement == "last_token":
            scores = last_token_rewards(self.reward.score(prompt_texts, texts), lengths)
        else:
            scores = self.reward.token_rewards(prompt_texts, texts, spans)
            stats_reward = self.reward.step_stats()  # a shaped reward's attribution cost per explainer
        stats = self.trainer.step(queries, responses, scores, groups, sampled)
        stats.update(stats_reward)
        stats.update(self.reward.after_policy_step(groups, step=step, steps=cfg.steps))
        if self.gold is not None:  # scored after the update draws nothing from the RNG, so resume stays exact
            gold = self.gold.score(prompt_texts, texts).float()
            stats.update({"gold_reward_mean": float(gold.mean()),
                          "gold_reward_std": float(gold.std()) if len(gold) > 1 else 0.0})
        stats.update({"step": step, "seconds": time.perf_counter() - t0, "generation_seconds": t_gen,
                      "response_length": length})
        return stats

    def resume(self) -> None:
        if self.checkpoint_dir is None:
            return
        found = latest_checkpoint(self.checkpoint_dir, self.fp)
        if found:
            self.step, state = found
            self.trainer.load_state_dict(state["trainer"])
            self.reward.load_state_dict(state.get("reward") or {})
            self.rows = list(state["rows"])

    def checkpoint(self) -> None:
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, self.step,
                            {"trainer": self.trainer.state_dict(), "rows": self.rows,
                             "reward": self.reward.state_dict()}, self.fp)

    def train(self, until: int | None = None) -> pd.DataFrame:
        """Run PPO steps up to ``until`` (default config.steps); returns the metrics table so far."""
        until = self.config.steps if until is None else until
        every = self.config.checkpoint_every
        log.info("%s: steps %d to %d, batch %d, %d response(s) per prompt", self.config.algorithm.upper(), self.step,
                 until, self.config.batch_size, self.trainer.samples_per_prompt())
        with tqdm(total=until, initial=self.step, desc=self.config.algorithm.upper(), unit="step", mininterval=5) as bar:
            while self.step < until:
                row = self._rollout_step(self.step)
                self.rows.append(row)
                self.step += 1
                bar.update(1)
                bar.set_postfix(reward=f"{row['reward_mean']:.2f}", kl=f"{row['kl_mean']:.2f}")
                log.info("step %d: reward %.3f kl %.3f coef %.4f entropy %.2f (%.1f s)", row["step"],
                         row["reward_mean"], row["kl_mean"], row["kl_coef"], row["entropy"], row["seconds"])
                if every and self.step % every == 0 and self.step < self.config.steps:
                    self.checkpoint()
        return self.metrics()

    def metrics(self) -> pd.DataFrame:
        """One row per step: the shared columns (NaN where an algorithm has no such value, e.g. value_loss
        without a value head), then any the algorithm adds (the group methods' group statistics)."""
        cols = ["step", "reward_mean", "reward_std", "kl_mean", "kl_coef", "entropy", "policy_loss", "value_loss",
                "clip_frac", "value_clip_frac", "approx_kl", "grad_norm", "total_reward_mean", "value_mean",
                "advantage_abs_mean", "response_tokens", "response_length", "seconds", "generation_seconds"]
        if self.gold is not None:
            cols[3:3] = ["gold_reward_mean", "gold_reward_std"]
        cols += [k for k in dict.fromkeys(k for row in self.rows for k in row) if k not in cols]
        return pd.DataFrame(self.rows, columns=cols)


def train_policy(model_dir: str | os.PathLike, prompts_path: str | os.PathLike, reward: Reward, config: PPOConfig,
                 *, out_policy: str | os.PathLike, out_metrics: str | os.PathLike, checkpoint_dir: str | os.PathLike, seed: int = 0, device: str = "cpu",
                 settings: dict | None = None, gold: Reward | None = None, shaping=None) -> pd.DataFrame:
    """Train against ``reward`` from the model in ``model_dir``; write policy/ and the per-step metrics
    (the rule script draws them with ``report.plots.plot_rl_curves``). ``gold``: a reward that scores each
    step's rollouts for the logs only (gold_reward_mean, gold_reward_std).

    ``settings`` (reward and model config) joins the checkpoint fingerprint, so a rerun with
    other settings starts fresh instead of resuming. ``shaping`` (a ``rlhf_lens.shaping.ShapingConfig``):
    with ``enabled``, train on the shaped reward (``ShapedReward``: explanation-weighted per-token shares of
    the reward) and log each step's attribution cost.
    """
    if shaping is not None and shaping.enabled:
        from ..shaping.shaped_reward import ShapedReward

        reward = ShapedReward(reward, shaping)
    prompts = read_prompts(prompts_path)
    policy, tokenizer = load_prepared(model_dir, device)
    ref, _ = load_prepared(model_dir, device)
    reward.to(device)
    if gold is not None:
        gold.to(device)
    run = RLRun(policy, ref, tokenizer, reward, prompts, config, seed=seed, device=device,
                checkpoint_dir=checkpoint_dir, settings=settings, prompt_source=f"prompt file {str(prompts_path)!r}",
                gold=gold)
    run.resume()
    metrics = run.train()
    with atomic_dir(out_policy) as tmp:
        policy.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        reward_state = reward.state_dict()
        if reward_state:  # a reward that changed during RL (R2M's attention + head) is saved beside the policy
            torch.save(reward_state, Path(tmp) / "reward_state.pt")
    write_parquet(metrics, out_metrics)
    if not config.keep_checkpoints:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    log.info("policy written to %s after %d steps", out_policy, len(metrics))
    return metrics
