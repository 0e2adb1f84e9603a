"""A compact PPO engine for causal LMs with per-token rewards (Ouyang/Ziegler-style RLHF).

Why our own: TRL removed its PPO, and that PPO only ever rewarded the last token, while reward
shaping and R2M need dense rewards. The engine follows TRL 0.7's PPO (which the paper used):
a scalar value head on the policy's last hidden state, a frozen reference model, per-token
reward r_t = score_t - kl_coef * (log pi(y_t) - log pi_ref(y_t)), GAE, whitened advantages,
clipped policy and value losses, mini-batches and PPO epochs, gradient clipping, and an
adaptive KL coefficient. Sampling draws from the policy itself (top-k off, top-p 1).

Shapes: B rollouts per step; a query is left-padded to Q tokens and its response right-padded
to T tokens; per-token tensors are (B, T) over response tokens with ``mask`` 1 on real tokens.
Log-probabilities are in nats.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..model_parts import pad_token_id
from .advantages import KLController, gae, masked_mean, masked_whiten
from .config import PPOConfig

log = logging.getLogger(__name__)


class ValueHead(nn.Module):
    """V(s_t) = w . h_t + b on the policy's last hidden state h_t (d_model,). Starts at zero."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.to(self.linear.weight.dtype)).squeeze(-1)


@dataclass
class Batch:
    """A padded batch of query + response token ids, ready for a forward pass."""

    input_ids: torch.Tensor  # (B, Q + T) long
    attention_mask: torch.Tensor  # (B, Q + T) long
    position_ids: torch.Tensor  # (B, Q + T) long
    query_len: int  # Q
    mask: torch.Tensor  # (B, T) float: 1 on real response tokens

    def rows(self, idx: torch.Tensor) -> "Batch":
        return Batch(self.input_ids[idx], self.attention_mask[idx], self.position_ids[idx], self.query_len,
                     self.mask[idx])


def pad_batch(queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], pad_id: int,
              device: str = "cpu") -> Batch:
    """Left-pad queries to Q, right-pad responses to T, and build masks and position ids."""
    Q = max(len(q) for q in queries)
    T = max(max((len(r) for r in responses), default=1), 1)
    B = len(queries)
    ids = torch.full((B, Q + T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, Q + T), dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.float32)
    for i, (q, r) in enumerate(zip(queries, responses)):
        ids[i, Q - len(q):Q] = q
        attn[i, Q - len(q):Q] = 1
        ids[i, Q:Q + len(r)] = r
        attn[i, Q:Q + len(r)] = 1
        mask[i, :len(r)] = 1
    pos = (attn.cumsum(1) - 1).clamp_min(0)
    return Batch(ids.to(device), attn.to(device), pos.to(device), Q, mask.to(device))


def response_logprobs(model, value_head: ValueHead | None, batch: Batch, with_entropy: bool = False):
    """Log-probs (B, T) of the response tokens, values (B, T) or None, entropies (B, T) or None.

    Runs the decoder once and the output layer only on the positions that predict response
    tokens (the vocabulary projection dominates memory for small models).
    """
    out = model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, use_cache=False)
    Q, T = batch.query_len, batch.mask.shape[1]
    hidden = out.last_hidden_state[:, Q - 1:Q + T - 1]  # state before each response token
    logits = model.get_output_embeddings()(hidden).float()
    logz = torch.logsumexp(logits, dim=-1)
    targets = batch.input_ids[:, Q:Q + T]
    logp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logz
    values = value_head(hidden) if value_head is not None else None
    entropy = None
    if with_entropy:
        probs = torch.softmax(logits, dim=-1)
        entropy = logz - (probs * logits).sum(-1)
    return logp, values, entropy


def rng_state() -> dict:
    """Every random state a run draws from: torch, numpy, python (saved in checkpoints)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": random.getstate()}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


@torch.no_grad()
def sample_responses(model, queries: Sequence[torch.Tensor], length: int, *, pad_id: int, eos_id: int | None,
                     temperature: float = 1.0, stop_at_eos: bool = True, device: str = "cpu") -> list[torch.Tensor]:
    """Sample ``length`` tokens after each query (1-D long tensors) from ``model``, top-k off, top-p 1.

    Returns each response's ids, cut after the first end-of-sequence token when ``stop_at_eos``
    (otherwise EOS is never sampled and every response has ``length`` tokens). Draws from torch's
    global RNG, so a seeded run (and a resumed one) samples the same tokens.
    """
    from transformers import GenerationConfig

    batch = pad_batch(queries, [q[:0] for q in queries], pad_id, device)
    Q = batch.query_len
    gen = GenerationConfig(do_sample=True, top_k=0, top_p=1.0, temperature=temperature, max_new_tokens=length,
                           min_new_tokens=0 if stop_at_eos else length, pad_token_id=pad_id, eos_token_id=eos_id)
    was_training = model.training
    model.eval()
    out = model.generate(input_ids=batch.input_ids[:, :Q], attention_mask=batch.attention_mask[:, :Q],
                         generation_config=gen)
    model.train(was_training)
    responses = []
    for row in out[:, Q:].cpu():
        if stop_at_eos and eos_id is not None:
            hits = (row == eos_id).nonzero()
            if len(hits):
                row = row[:int(hits[0]) + 1]
        responses.append(row[:length].clone())
    return responses


class PPOTrainer:
    """Holds policy, value head, reference model, optimiser and KL controller; ``step`` does one PPO update.

    ``policy`` and ``ref`` are Hugging Face causal LMs on the same device; ``ref`` is frozen.
    """

    def __init__(self, policy, ref, tokenizer, config: PPOConfig, device: str = "cpu"):
        self.policy, self.ref, self.tokenizer, self.config, self.device = policy, ref, tokenizer, config, device
        self.ref.eval().requires_grad_(False)
        self.value_head = ValueHead(policy.config.hidden_size).to(device)
        if config.freeze_embeddings:
            policy.get_input_embeddings().requires_grad_(False)
            policy.get_output_embeddings().requires_grad_(not policy.config.tie_word_embeddings)
        params = [p for p in policy.parameters() if p.requires_grad] + list(self.value_head.parameters())
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           eps=config.adam_eps)
        self.kl = KLController(config.init_kl_coef, config.target_kl if config.adaptive_kl else None,
                               config.kl_horizon)
        self.pad_id = pad_token_id(tokenizer)
        self.eos_id = tokenizer.eos_token_id

    # ------------------------------------------------------------------ sampling

    def generate(self, queries: Sequence[torch.Tensor], length: int) -> list[torch.Tensor]:
        """Sample ``length`` tokens after each query from the policy (see ``sample_responses``)."""
        return sample_responses(self.policy, queries, length, pad_id=self.pad_id, eos_id=self.eos_id,
                                temperature=self.config.temperature, stop_at_eos=self.config.stop_at_eos,
                                device=self.device)

    # ------------------------------------------------------------------ one PPO step

    def step(self, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor],
             scores: torch.Tensor) -> dict:
        """One PPO update from a rollout batch.

        ``scores`` (B, T') float: the reward's per-token scores (a sequence reward goes on the
        last token); columns beyond a response's length are ignored. Returns step statistics.
        """
        cfg = self.config
        B = len(queries)
        if B % cfg.mini_batch_size:
            raise ValueError(f"batch of {B} rollouts is not divisible by mini_batch_size {cfg.mini_batch_size}")
        batch = pad_batch(queries, responses, self.pad_id, self.device)
        mask = batch.mask
        T = mask.shape[1]
        score = torch.zeros(B, T, device=self.device)
        width = min(T, scores.shape[1])
        score[:, :width] = scores[:, :width].to(self.device).float()
        score = score * mask

        with torch.no_grad():
            self.policy.eval()
            old_logp, old_values, entropy = response_logprobs(self.policy, self.value_head, batch, with_entropy=True)
            ref_logp, _, _ = response_logprobs(self.ref, None, batch)
            kl = (old_logp - ref_logp) * mask  # per-token KL estimate (k1)
            rewards = score - self.kl.value * kl
            adv, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
            if cfg.whiten_advantages:
                adv = masked_whiten(adv, mask)

        self.policy.train()
        stats: dict[str, list[float]] = {k: [] for k in ("policy_loss", "value_loss", "clip_frac", "value_clip_frac",
                                                        "approx_kl", "grad_norm")}
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B)
            for start in range(0, B, cfg.mini_batch_size):
                idx = order[start:start + cfg.mini_batch_size]
                mb = batch.rows(idx.to(self.device))
                m = mb.mask
                logp, values, _ = response_logprobs(self.policy, self.value_head, mb)
                ratio = torch.exp(logp - old_logp[idx])
                a = adv[idx]
                pg1, pg2 = -a * ratio, -a * ratio.clamp(1 - cfg.cliprange, 1 + cfg.cliprange)
                pg_loss = masked_mean(torch.maximum(pg1, pg2), m)
                v_old = old_values[idx]
                v_clip = v_old + (values - v_old).clamp(-cfg.cliprange_value, cfg.cliprange_value)
                vf1, vf2 = (values - returns[idx]) ** 2, (v_clip - returns[idx]) ** 2
                vf_loss = 0.5 * masked_mean(torch.maximum(vf1, vf2), m)
                loss = pg_loss + cfg.vf_coef * vf_loss
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    [p for g in self.optimizer.param_groups for p in g["params"]], cfg.max_grad_norm)
                self.optimizer.step()
                with torch.no_grad():
                    stats["policy_loss"].append(float(pg_loss))
                    stats["value_loss"].append(float(vf_loss))
                    stats["clip_frac"].append(float(masked_mean((pg2 > pg1).float(), m)))
                    stats["value_clip_frac"].append(float(masked_mean((vf2 > vf1).float(), m)))
                    stats["approx_kl"].append(float(0.5 * masked_mean((logp - old_logp[idx]) ** 2, m)))
                    stats["grad_norm"].append(float(grad_norm))
        self.policy.eval()

        seq_kl = float(kl.sum(1).mean())
        kl_coef = self.kl.value
        self.kl.update(seq_kl, B)
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out.update({
            "reward_mean": float(score.sum(1).mean()),
            "reward_std": float(score.sum(1).std()) if B > 1 else 0.0,
            "kl_mean": seq_kl,
            "kl_coef": kl_coef,
            "entropy": float(masked_mean(entropy, mask)),
            "total_reward_mean": float(rewards.sum(1).mean()),
            "value_mean": float(masked_mean(old_values, mask)),
            "advantage_abs_mean": float(masked_mean(adv.abs(), mask)),
            "response_tokens": float(mask.sum(1).mean()),
        })
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything a bit-identical resume needs except the step counter and data position."""
        return {"policy": self.policy.state_dict(), "value_head": self.value_head.state_dict(),
                "optimizer": self.optimizer.state_dict(), "kl": self.kl.state_dict(), "rng": rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl.load_state_dict(state["kl"])
        set_rng_state(state["rng"])
