"""The RL algorithm interface and its registry: the few things PPO, GRPO and RLOO do differently.

The shared trainer (``rl.trainer.RLTrainer``) does what they have in common: sampling rollouts,
log-probs of the policy and the frozen reference, the per-token KL estimate and its controller,
epochs and minibatches, the optimiser with gradient clipping, and checkpoint state. An
``Algorithm`` supplies only:

- ``needs_value_head``: whether the trainer puts a value head on the policy (and trains it);
- ``samples_per_prompt(config)``: K responses per prompt in a rollout batch (PPO: 1). The run
  draws batch_size / K prompts, cuts each once, and repeats it K times; ``Rollout.groups``
  holds each rollout's prompt index (0 .. batch_size / K - 1), so the K copies share an id;
- ``advantages(rollout, config)``: per-token advantages, the per-token rewards they came from
  (for the logs) and the returns a value loss regresses on (None without a value head);
- ``loss(logp, values, old, config)``: one minibatch's loss from the policy's fresh log-probs
  (and values) and the rollout's tensors of the same rows, plus named scalar statistics;
- ``problems(config, prefix)``: relations between settings the algorithm needs;
- ``unused_settings``: the PPOConfig fields it never reads (left out of the workflow's params and
  of the checkpoint fingerprint by ``algorithm_settings``, so changing one reruns nothing).

A new algorithm is its own file with an ``Algorithm`` subclass and one ``register_algorithm``
line in ``rl/__init__.py`` (the schema's ``rl.algorithm`` has no enum: config validation asks
the registry). The two group methods, ``rl.grpo`` and ``rl.rloo``:

- GRPO (Shao et al. 2024): ``needs_value_head = False``; ``samples_per_prompt`` = the group
  size K (``problems``: K >= 2 and batch_size divisible by K; mini_batch_size need not be, as
  advantages come from the whole batch before it is shuffled into minibatches); ``advantages``:
  each response's sequence score ``rollout.score.sum(1)`` standardised within its group
  (``rollout.groups``), put on every token of the response, with no KL in the reward; ``loss``:
  the clipped token-level policy loss plus beta times the k3 KL estimate against
  ``old.ref_logp`` (beta from ``old.kl_coef``).
- RLOO (Ahmadian et al. 2024): no value head, K samples; ``advantages``: sequence reward minus
  ``kl_coef`` times the sequence KL, minus the mean of the other K - 1 in its group, on every
  token; ``loss``: the clipped loss on the sequence's probability ratio (the response is one
  action; REINFORCE when the ratio is 1).

This module imports no torch (config validation asks it for ``problems``); neither may an
algorithm's module at import time: import torch inside the methods.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch

    from .config import PPOConfig
    from .rollout import Batch


@dataclass
class Advantages:
    """What an algorithm's ``advantages`` returns; all (B, T) over response tokens."""

    advantages: "torch.Tensor"
    """Per-token advantages the policy loss weighs the ratio with (0 on padding)."""
    rewards: "torch.Tensor"
    """The per-token rewards the advantages were estimated from (after any KL penalty); logged."""
    returns: "torch.Tensor | None" = None
    """Targets of a value loss (None for algorithms without a value head)."""
    stats: dict[str, float] = field(default_factory=dict)
    """Rollout-level statistics of the algorithm (e.g. group reward spread), logged with the step."""


@dataclass
class Rollout:
    """One rollout batch: its tokens, rewards and every per-token quantity of the policy at sampling time.

    Per-token tensors are (B, T) over response tokens, 0 on padding. ``rows(idx)`` gives the same
    fields for a minibatch; the trainer fills ``advantages``, ``rewards`` and ``returns`` from
    the algorithm before any gradient step.
    """

    batch: "Batch"
    """Query + response token ids, attention mask, positions and the response mask."""
    score: "torch.Tensor"
    """The reward's per-token scores (a sequence reward sits on the last token)."""
    logp: "torch.Tensor"
    """Log-probs of the sampled tokens under the policy that sampled them (the 'old' policy)."""
    ref_logp: "torch.Tensor"
    """Log-probs of the sampled tokens under the frozen reference model."""
    kl: "torch.Tensor"
    """Per-token KL estimate logp - ref_logp (k1)."""
    kl_coef: float
    """The KL controller's coefficient at sampling time."""
    entropy: "torch.Tensor | None" = None
    """Per-token entropy of the old policy (logged; None in minibatches)."""
    values: "torch.Tensor | None" = None
    """Value-head predictions at sampling time (None without a value head)."""
    groups: "torch.Tensor | None" = None
    """(B,) long: index of each rollout's prompt in the batch; rollouts of one prompt share it."""
    advantages: "torch.Tensor | None" = None
    """Filled from ``Algorithm.advantages``."""
    rewards: "torch.Tensor | None" = None
    """Filled from ``Algorithm.advantages``."""
    returns: "torch.Tensor | None" = None
    """Filled from ``Algorithm.advantages``."""
    stats: dict[str, float] | None = None
    """Filled from ``Algorithm.advantages`` (None in minibatches)."""

    @property
    def mask(self) -> "torch.Tensor":
        """(B, T) float: 1 on real response tokens."""
        return self.batch.mask

    def rows(self, idx: "torch.Tensor") -> "Rollout":
        """The rollouts ``idx`` (a minibatch), every tensor indexed alike; entropy and stats are left out."""
        out = {"batch": self.batch.rows(idx), "kl_coef": self.kl_coef, "entropy": None, "stats": None}
        for f in dataclasses.fields(self):
            if f.name not in out:
                value = getattr(self, f.name)
                out[f.name] = None if value is None else value[idx]
        return Rollout(**out)


class Algorithm(ABC):
    """One RL algorithm's own parts; the shared ``RLTrainer`` does the rest (see the module docstring)."""

    name: ClassVar[str] = ""
    needs_value_head: ClassVar[bool] = False
    """True: the trainer adds a value head to the policy, passes its values and trains it with the policy."""
    unused_settings: ClassVar[tuple[str, ...]] = ()
    """PPOConfig fields this algorithm never reads (a test checks that changing one changes no step)."""

    def samples_per_prompt(self, config: "PPOConfig") -> int:
        """Responses sampled per prompt in one rollout batch (group size); 1 unless the algorithm compares samples."""
        return 1

    def problems(self, config: "PPOConfig", prefix: str = "rl.ppo") -> list[str]:
        """Readable problems with settings this algorithm cannot run with."""
        return []

    @abstractmethod
    def advantages(self, rollout: Rollout, config: "PPOConfig") -> Advantages:
        """Advantages (and rewards, returns) of a rollout batch; runs under no_grad."""

    @abstractmethod
    def loss(self, logp: "torch.Tensor", values: "torch.Tensor | None", old: Rollout,
             config: "PPOConfig") -> tuple["torch.Tensor", dict[str, Any]]:
        """(loss to minimise, {name: scalar}) of one minibatch.

        ``logp`` (and ``values`` with a value head) come from the policy being optimised, for the
        rows of ``old``. The statistics are averaged over the step's minibatches into its metrics.
        """


_REGISTRY: dict[str, type[Algorithm]] = {}


def algorithm_settings(config: "PPOConfig") -> dict[str, Any]:
    """The fields of ``config`` that can change a run by ``config.algorithm`` (all but its ``unused_settings``).

    The workflow's rl params and the checkpoint fingerprint use this, so a setting that only another
    algorithm reads (e.g. ``group_size`` under PPO) neither reruns a finished job nor voids a checkpoint.
    """
    unused = set(get_algorithm(config.algorithm).unused_settings)
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in unused}


def register_algorithm(name: str, cls: type[Algorithm]) -> None:
    """Make ``rl.algorithm: <name>`` train with ``cls``."""
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"RL algorithm {name!r} is already registered to {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls


def unregister_algorithm(name: str) -> None:
    """Remove a registered algorithm (for tests that register a throwaway one)."""
    _REGISTRY.pop(name, None)


def algorithm_names() -> list[str]:
    """The registered algorithm names, in registration order."""
    return list(_REGISTRY)


def get_algorithm(name: str) -> Algorithm:
    """A fresh instance of the algorithm registered as ``name``; KeyError naming the known ones if none."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown RL algorithm {name!r}: expected one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]()
