"""The shared RL trainer for causal LMs with per-token rewards; the algorithm (``rl.algorithm``) plugs in.

``RLTrainer`` holds the policy (with a value head if the algorithm needs one), the frozen
reference model, the optimiser and the KL controller. One ``step``:

1. ``rollout``: pad the batch, score it, and without gradients take the policy's log-probs,
   values and entropies, the reference's log-probs and the per-token KL estimate; then the
   algorithm's advantages;
2. ``optimise``: ``ppo_epochs`` passes over the batch in shuffled minibatches; each
   ``minibatch_step`` takes the algorithm's loss, one gradient step with clipping;
3. ``step_stats``: the step's metrics; the KL controller adapts to the batch's KL.

Sampling (``generate``) draws from the policy itself (top-k off, top-p 1) with torch's global
RNG, which ``state_dict`` saves, so a resumed run is bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from ..model_parts import pad_token_id
from .advantages import KLController, masked_mean
from .algorithm import Rollout, get_algorithm
from .config import PPOConfig
from .rollout import Generated, ValueHead, pad_batch, response_logprobs, sample_responses, sample_with_states

log = logging.getLogger(__name__)


def rng_state() -> dict:
    """Every random state a run draws from: torch, numpy, python (saved in checkpoints)."""
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
            "python": random.getstate()}


def fork_default_generator(device: str | torch.device = "cpu") -> torch.Generator:
    """A new generator on ``device`` in the state torch's default generator of that device is in now: the
    same stream the global RNG would give from here, but owned by whoever holds it."""
    device = torch.device(device)
    default = torch.random.default_generator if device.type == "cpu" else \
        torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    generator = torch.Generator(device=device)
    if default is not None:
        generator.set_state(default.get_state())
    else:  # mps and others: seeded from the CPU stream
        generator.manual_seed(int(torch.randint(2**62, (1,))))
    return generator


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))


class RLTrainer:
    """Policy, value head (if the algorithm has one), reference, optimiser, KL controller; ``step`` = one update.

    ``policy`` and ``ref`` are Hugging Face causal LMs on the same device; ``ref`` is frozen.
    ``config.algorithm`` names the registered algorithm (``ppo`` by default).
    """

    def __init__(self, policy, ref, tokenizer, config: PPOConfig, device: str = "cpu"):
        self.policy, self.ref, self.tokenizer, self.config, self.device = policy, ref, tokenizer, config, device
        self.algorithm = get_algorithm(config.algorithm)
        self.ref.eval().requires_grad_(False)
        self.value_head = ValueHead(policy.config.hidden_size).to(device) if self.algorithm.needs_value_head else None
        if config.freeze_embeddings:
            policy.get_input_embeddings().requires_grad_(False)
            policy.get_output_embeddings().requires_grad_(not policy.config.tie_word_embeddings)
        params = [p for p in policy.parameters() if p.requires_grad]
        if self.value_head is not None:
            params += list(self.value_head.parameters())
        # fused: one kernel over all tensors; torch's CPU default (one tensor at a time) took ~0.6 s of each
        # ~3.5 s mini-batch step for SmolLM2-135M, fused 0.14 s (the same update to 6e-8)
        self.optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay,
                                           eps=config.adam_eps, fused=True)
        self.kl = KLController(config.init_kl_coef, config.target_kl if config.adaptive_kl else None,
                               config.kl_horizon)
        self.pad_id = pad_token_id(tokenizer)
        self.eos_id = tokenizer.eos_token_id
        # The run's own random streams (sampling; minibatch order), forked from the global RNG as it stands
        # after seeding and the value head's initialisation, so a run draws what it drew when it used the
        # global RNG, but two runs built before either trains (or anything else drawing in between) no
        # longer take each other's numbers. On a CPU both are one stream, as before.
        self.shuffle_generator = fork_default_generator("cpu")
        self.sample_generator = self.shuffle_generator if torch.device(device).type == "cpu" \
            else fork_default_generator(device)

    # ------------------------------------------------------------------ sampling

    def samples_per_prompt(self) -> int:
        """Responses per prompt in a rollout batch (the algorithm's group size; 1 for PPO)."""
        return self.algorithm.samples_per_prompt(self.config)

    def generate(self, queries: Sequence[torch.Tensor], length: int) -> list[torch.Tensor]:
        """Sample ``length`` tokens after each query from the policy (see ``rollout.sample_responses``)."""
        return sample_responses(self.policy, queries, length, pad_id=self.pad_id, eos_id=self.eos_id,
                                temperature=self.config.temperature, stop_at_eos=self.config.stop_at_eos,
                                device=self.device, generator=self.sample_generator)

    def sample(self, queries: Sequence[torch.Tensor], length: int) -> Generated:
        """``generate``'s draws with the policy's log-probs, entropies and (with a value head) last-layer
        states from generation itself; ``step(..., sampled=...)`` then needs no forward pass of the policy."""
        return sample_with_states(self.policy, queries, length, pad_id=self.pad_id, eos_id=self.eos_id,
                                  temperature=self.config.temperature, stop_at_eos=self.config.stop_at_eos,
                                  device=self.device, hidden=self.value_head is not None,
                                  generator=self.sample_generator)

    # ------------------------------------------------------------------ one step

    def step(self, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], scores: torch.Tensor,
             groups: torch.Tensor | None = None, sampled: Generated | None = None) -> dict:
        """One update from a rollout batch; returns the step's statistics.

        ``scores`` (B, T') float: the reward's per-token scores (a sequence reward goes on the
        last token); columns beyond a response's length are ignored. Or a callable
        ``scores(hidden (B, T, d_model), mask (B, T)) -> (B, T')`` given the policy's last-layer hidden
        states of the response from the rollout's own forward (a reward that reads the policy). ``groups`` (B,) long: the
        prompt index of each rollout (see ``Rollout.groups``); None when every prompt is its own.
        ``sampled``: ``sample``'s output for these responses, whose log-probs, entropies and states stand in
        for the rollout's forward pass of the policy (not with a reward that reads the policy).
        """
        B = len(queries)
        if B % self.config.mini_batch_size:
            raise ValueError(f"batch of {B} rollouts is not divisible by mini_batch_size {self.config.mini_batch_size}")
        rollout = self.rollout(queries, responses, scores, groups, sampled)
        stats = self.optimise(rollout)
        seq_kl = float(rollout.kl.sum(1).mean())
        self.kl.update(seq_kl, B)
        return self.step_stats(rollout, stats, seq_kl)

    def rollout(self, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], scores: torch.Tensor,
                groups: torch.Tensor | None = None, sampled: Generated | None = None) -> Rollout:
        """The rollout batch with old and reference log-probs, KL, values and the algorithm's advantages."""
        batch = pad_batch(queries, responses, self.pad_id, self.device)
        mask = batch.mask
        B, T = mask.shape
        with torch.no_grad():
            self.policy.eval()
            if callable(scores):  # a reward that reads the policy (R2M): its hidden states from this forward
                logp, values, entropy, hidden = response_logprobs(self.policy, self.value_head, batch,
                                                                  with_entropy=True, with_hidden=True)
                scores = scores(hidden, mask)
            elif sampled is not None:  # generation computed the policy's side already
                if sampled.logp.shape != (B, T) or (self.value_head is not None and sampled.hidden is None):
                    raise ValueError("the sampled batch does not match these responses (or has no states for "
                                     "the value head): pass trainer.sample's output for exactly these responses")
                logp, entropy = sampled.logp.to(self.device), sampled.entropy.to(self.device)
                values = None if self.value_head is None else self.value_head(sampled.hidden.to(self.device))
            else:
                logp, values, entropy = response_logprobs(self.policy, self.value_head, batch, with_entropy=True)
            score = torch.zeros(B, T, device=self.device)
            width = min(T, scores.shape[1])
            score[:, :width] = scores[:, :width].to(self.device).float()
            score = score * mask
            ref_logp, _, _ = response_logprobs(self.ref, None, batch)
            kl = (logp - ref_logp) * mask  # per-token KL estimate (k1)
            rollout = Rollout(batch, score, logp, ref_logp, kl, self.kl.value, entropy=entropy, values=values,
                              groups=None if groups is None else groups.to(self.device))
            targets = self.algorithm.advantages(rollout, self.config)
        rollout.advantages, rollout.rewards, rollout.returns = targets.advantages, targets.rewards, targets.returns
        rollout.stats = dict(targets.stats)
        return rollout

    def optimise(self, rollout: Rollout) -> dict[str, list[float]]:
        """``ppo_epochs`` passes over the rollout in shuffled minibatches; each statistic per minibatch."""
        cfg = self.config
        B = rollout.mask.shape[0]
        # The policy stays in eval mode: dropout (GPT-2, Pythia) would make the first ratio differ from 1
        # and the gradient noisy; gradients flow in eval mode all the same.
        stats: dict[str, list[float]] = defaultdict(list)
        for _ in range(cfg.ppo_epochs):
            order = torch.randperm(B, generator=self.shuffle_generator)
            for start in range(0, B, cfg.mini_batch_size):
                idx = order[start:start + cfg.mini_batch_size]
                for key, value in self.minibatch_step(rollout.rows(idx.to(self.device))).items():
                    stats[key].append(value)
        self.policy.eval()
        return dict(stats)

    def minibatch_step(self, mb: Rollout) -> dict[str, float]:
        """The algorithm's loss on one minibatch and one clipped gradient step; its statistics."""
        logp, values, _ = response_logprobs(self.policy, self.value_head, mb.batch)
        loss, stats = self.algorithm.loss(logp, values, mb, self.config)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(
            [p for g in self.optimizer.param_groups for p in g["params"]], self.config.max_grad_norm)
        self.optimizer.step()
        with torch.no_grad():
            out = {key: float(value) for key, value in stats.items()}
            out["approx_kl"] = float(0.5 * masked_mean((logp - mb.logp) ** 2, mb.mask))
            out["grad_norm"] = float(grad_norm)
        return out

    def step_stats(self, rollout: Rollout, stats: dict[str, list[float]], seq_kl: float) -> dict:
        """The step's metrics: minibatch statistics averaged, the rollout's reward, KL, entropy, and the
        algorithm's rollout statistics (``Advantages.stats``)."""
        mask, score = rollout.mask, rollout.score
        B = mask.shape[0]
        out = {k: float(np.mean(v)) for k, v in stats.items()}
        out.update({
            "reward_mean": float(score.sum(1).mean()),
            "reward_std": float(score.sum(1).std()) if B > 1 else 0.0,
            "kl_mean": seq_kl,
            "kl_coef": rollout.kl_coef,
            "entropy": float(masked_mean(rollout.entropy, mask)),
            "total_reward_mean": float(rollout.rewards.sum(1).mean()),
        })
        if rollout.values is not None:
            out["value_mean"] = float(masked_mean(rollout.values, mask))
        out.update({
            "advantage_abs_mean": float(masked_mean(rollout.advantages.abs(), mask)),
            "response_tokens": float(mask.sum(1).mean()),
        })
        out.update(rollout.stats or {})
        return out

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        """Everything a bit-identical resume needs except the step counter and data position."""
        return {"policy": self.policy.state_dict(),
                "value_head": None if self.value_head is None else self.value_head.state_dict(),
                "optimizer": self.optimizer.state_dict(), "kl": self.kl.state_dict(), "rng": rng_state(),
                "generators": {"shuffle": self.shuffle_generator.get_state(),
                               "sample": self.sample_generator.get_state()}}

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        if self.value_head is not None:
            self.value_head.load_state_dict(state["value_head"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.kl.load_state_dict(state["kl"])
        set_rng_state(state["rng"])
        generators = state.get("generators")
        if generators is None:  # written before the run owned its generators: the global CPU stream was the run's
            self.shuffle_generator.set_state(state["rng"]["torch"])
            return
        self.shuffle_generator.set_state(generators["shuffle"])
        if self.sample_generator is not self.shuffle_generator:
            self.sample_generator.set_state(generators["sample"])


PPOTrainer = RLTrainer
"""Former name of ``RLTrainer`` (it trains with ``config.algorithm``, PPO by default)."""
