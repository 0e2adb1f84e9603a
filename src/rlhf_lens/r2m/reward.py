"""Reward type ``r2m``: a trained reward model that also reads the policy's hidden states, updated every step.

Score of a rollout at RL step t of T (``score_with_hidden``, called inside the RL step's own policy forward):
``H_last`` (D_rm,) = the RM backbone's last-layer state at the token its score head reads (the last non-pad
token, as Hugging Face's sequence classifiers pool), ``H_attn`` = cross-attention from H_last to the policy's
last-layer hidden states of the response (``attention.CrossAttention``), ``H = (1 - omega(t)) H_attn +
omega(t) H_last``, reward = score head(H). After the policy step (``after_policy_step``) the attention and
the head, nothing else, take one AdamW step on GREBT (``grebt``) over the batch's prompt groups, from the
H_last and hidden states cached at scoring (the RM backbone is frozen, so nothing is recomputed).

``score`` (no policy at hand: held-out evaluation, preference pairs) is the head on H_last alone, i.e. the
RM with R2M's current head. State for a bit-identical resume: attention, head, optimiser (``state_dict``).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch

from ..rewards.base import Reward, RewardError
from ..rewards.reward_model import RewardModelReward
from .attention import CrossAttention, mix, omega
from .config import R2MConfig
from .grebt import grebt

log = logging.getLogger(__name__)


class R2MReward(Reward):
    """R2M over the reward model in ``path``; the attention is built on the first hidden states it sees."""

    per_token = False
    reads_policy_hidden = True

    def __init__(self, path: str, *, name: str = "r2m", device: str = "cpu", config: R2MConfig | None = None,
                 trust_remote_code: bool = False):
        self.name, self.device = name, device
        self.config = config or R2MConfig(path=str(path))
        c = self.config
        self.rm = RewardModelReward(path, name=name, device=device, scope=c.scope, batch_size=c.batch_size,
                                    max_length=c.max_length, append_eos=c.append_eos,
                                    trust_remote_code=trust_remote_code)
        if self.rm.kind != "hf" or not isinstance(getattr(self.rm.model, "score", None), torch.nn.Linear):
            raise RewardError(f"key 'rewards.{name}.path' has value {str(path)!r}: R2M needs a trained reward model "
                              "with a linear score head (a plain reward-model folder)")
        self.rm.model.requires_grad_(False)
        self.head = self.rm.model.score
        if self.head.out_features != 1:
            raise RewardError(f"key 'rewards.{name}.path' has value {str(path)!r}: the reward model has "
                              f"{self.head.out_features} outputs: expected one")
        self.head.requires_grad_(True)
        self.attention: CrossAttention | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._cache: dict | None = None

    @classmethod
    def from_config(cls, config: R2MConfig, *, name: str, device: str = "cpu",
                    trust_remote_code: bool = False) -> "R2MReward":
        return cls(config.path, name=name, device=device, config=config, trust_remote_code=trust_remote_code)

    def to(self, device: str) -> "R2MReward":
        self.device = device
        self.rm.to(device)
        if self.attention is not None:
            self.attention.to(device)
        return self

    # ------------------------------------------------------------------ pieces

    def build(self, d_policy: int) -> None:
        """The attention (D_rm -> width <- D_policy) and the optimiser over attention + head."""
        d_rm = self.head.in_features
        self.attention = CrossAttention(d_rm, d_policy, self.config.width, seed=self.config.seed).to(self.device)
        self.optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=self.config.learning_rate,
                                           weight_decay=0.0)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        """Exactly what GREBT updates: W_q, W_k, W_v, W_o and the score head."""
        return [*(self.attention.parameters() if self.attention is not None else []), *self.head.parameters()]

    @torch.no_grad()
    def embed(self, prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        """H_last (B, D_rm) float32: the RM backbone's state at the token its score head reads."""
        rm, texts, out = self.rm, self.rm.texts(prompts, responses), []
        pad = rm.model.config.pad_token_id
        for i in range(0, len(texts), rm.batch_size):
            enc = rm.tokenizer(texts[i:i + rm.batch_size], return_tensors="pt", padding=True, truncation=True,
                               max_length=rm.max_length, add_special_tokens=True).to(self.device)
            hidden = rm.model.base_model(**enc).last_hidden_state  # (b, L, D_rm)
            ids = enc["input_ids"]
            # the pooling of transformers' *ForSequenceClassification: the last token that is not pad
            positions = torch.arange(ids.shape[1], device=ids.device)
            last = (positions * (ids != pad).int()).argmax(-1) if pad is not None else torch.full_like(ids[:, 0], -1)
            out.append(hidden[torch.arange(len(ids), device=ids.device), last].float())
        return torch.cat(out) if out else torch.zeros(0, self.head.in_features)

    def policy_states(self, hidden: torch.Tensor, step: int) -> torch.Tensor:
        """What the attention reads (B, T, D_policy): the hidden states, or (ablation) noise of their std."""
        hidden = hidden.detach().float().to(self.device)
        if self.config.hidden == "noise":  # seeded per step: the run's global RNG draws nothing here
            gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + step)
            hidden = torch.randn(hidden.shape, generator=gen).to(self.device) * hidden.std()
        return hidden

    def head_scores(self, h_last: torch.Tensor, hidden: torch.Tensor, mask: torch.Tensor, w: float) -> torch.Tensor:
        """Rewards (B,) = head((1 - w) H_attn + w H_last), with gradients to attention and head."""
        return self.head(mix(self.attention(h_last, hidden, mask), h_last, w)).squeeze(-1)

    # ------------------------------------------------------------------ the reward interface

    def score(self, prompts: Sequence[str], responses: Sequence[str]):
        with torch.no_grad():
            return self.head(self.embed(prompts, responses)).squeeze(-1).float().cpu()

    def score_with_hidden(self, prompts, responses, hidden, mask, *, step: int, steps: int):
        h_last = self.embed(prompts, responses)
        states = self.policy_states(hidden, step)
        mask = mask.detach().float().to(self.device)
        if self.attention is None:
            self.build(states.shape[-1])
        w = omega(step, steps, self.config.omega_min)
        with torch.no_grad():
            scores = self.head_scores(h_last, states, mask, w)
        self._cache = {"h_last": h_last, "hidden": states, "mask": mask, "omega": w}
        return scores.float().cpu()

    def after_policy_step(self, groups, *, step: int, steps: int) -> dict[str, float]:
        """One AdamW step of attention + head on GREBT over the batch just scored (one group if ``groups`` is None)."""
        cache, self._cache = self._cache, None
        if cache is None:
            return {}
        stats = {"r2m_omega": cache["omega"]}
        if not self.config.update:
            return stats
        B = cache["h_last"].shape[0]
        groups = torch.zeros(B, dtype=torch.long) if groups is None else groups.to("cpu")
        scores = self.head_scores(cache["h_last"], cache["hidden"], cache["mask"], cache["omega"])
        loss, parts = grebt(scores.cpu(), groups, self.config.alpha)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        stats.update(parts, r2m_loss=float(loss.detach()))
        return stats

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        if self.attention is None:
            return {"head": {k: v.clone() for k, v in self.head.state_dict().items()}}
        a = self.attention
        return {"dims": [a.d_rm, a.d_policy], "attention": a.state_dict(), "head": self.head.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        self.head.load_state_dict(state["head"])
        if "attention" in state:
            self.build(int(state["dims"][1]))
            self.attention.load_state_dict(state["attention"])
            self.optimizer.load_state_dict(state["optimizer"])
