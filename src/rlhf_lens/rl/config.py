"""RL settings: a typed dataclass with one docstring per field, and named presets.

``paper`` = the settings of Marks et al. (TRL 0.7 defaults); ``cpu_default`` = what the default
experiment runs on a 2-core CPU within its time budget (docs/results.md, record default_run). Config
``rl.preset`` picks one and ``rl.ppo`` overrides single fields; ``rl.algorithm`` names the
registered algorithm (see ``rlhf_lens.rl.algorithm``) that trains with them. No torch import here, so config
validation stays fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class PPOConfig:
    """One RL run's settings. Lengths are in tokens; rewards in the reward's own units."""

    algorithm: str = "ppo"
    """The registered RL algorithm (config ``rl.algorithm``; every other field comes from ``rl.ppo``)."""
    steps: int = 30
    """Number of PPO steps (one rollout batch + its optimisation each)."""
    batch_size: int = 16
    """Prompts (and sampled responses) per PPO step."""
    mini_batch_size: int = 8
    """Rollouts per gradient step; must divide batch_size."""
    ppo_epochs: int = 2
    """Passes over each rollout batch."""
    learning_rate: float = 3e-5
    """AdamW learning rate (policy and value head)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    adam_eps: float = 1e-8
    """AdamW epsilon."""
    init_kl_coef: float = 0.2
    """Initial coefficient of the per-token KL penalty against the reference (base) model."""
    adaptive_kl: bool = True
    """Adapt the KL coefficient towards target_kl (Ziegler et al. 2019); false keeps it fixed."""
    target_kl: float = 6.0
    """Target of the adaptive controller: mean per-sequence KL (nats)."""
    kl_horizon: int = 160
    """Horizon of the adaptive controller, in rollouts (larger adapts more slowly)."""
    gamma: float = 1.0
    """Discount factor of GAE."""
    lam: float = 0.95
    """Lambda of GAE."""
    cliprange: float = 0.2
    """Clip range of the policy ratio."""
    cliprange_value: float = 0.2
    """Clip range of the value prediction around its rollout value."""
    vf_coef: float = 0.1
    """Weight of the value loss."""
    max_grad_norm: float = 1.0
    """Gradient-norm clip per optimiser step."""
    whiten_advantages: bool = True
    """Normalise advantages to mean 0, std 1 over each rollout batch (response tokens only)."""
    group_size: int = 4
    """Responses sampled per prompt (K) by the group methods (grpo, rloo): a step draws batch_size / K
    prompts and samples each K times; batch_size must be a multiple of K, K >= 2. PPO ignores it."""
    scale_rewards: str = "group"
    """grpo only: how the group-centred sequence rewards are scaled, as TRL's scale_rewards: group (divided by
    the group's std: Shao et al. 2024, TRL's default), batch (by the batch's std), none (centred only: Dr. GRPO)."""
    query_min_tokens: int = 6
    """Each prompt is cut to a length drawn uniformly from [query_min_tokens, query_max_tokens] (or its own length if shorter)."""
    query_max_tokens: int = 6
    """Upper end of the prompt length range."""
    response_min_tokens: int = 24
    """Each step samples its response length uniformly from [response_min_tokens, response_max_tokens]."""
    response_max_tokens: int = 24
    """Upper end of the response length range."""
    temperature: float = 1.0
    """Sampling temperature; must be 1.0: the ratio and the KL use the policy's own (untempered)
    log-probs, so tempered samples would make both off-policy."""
    reward_placement: str = "per_token"
    """per_token: a reward that can split its score over tokens does (the utility table: each token its
    share of its word's utility); last_token: the whole score on the response's last token, as TRL 0.7's
    PPO did for every reward (the paper preset)."""
    stop_at_eos: bool = True
    """End a response at the end-of-sequence token (tokens after it are masked out)."""
    freeze_embeddings: bool = False
    """Keep the input embeddings (and a tied output layer) fixed; trains faster, changes every block still."""
    checkpoint_every: int = 10
    """Write a resumable checkpoint every N steps (0: never)."""
    keep_checkpoints: bool = False
    """Keep the checkpoints folder after a finished run (false deletes it; it is large)."""

    def problems(self, prefix: str = "rl.ppo") -> list[str]:
        """Readable problems with field values a schema cannot check (relations between fields)."""
        out = []
        if self.batch_size % self.mini_batch_size:
            out.append(f"key '{prefix}.mini_batch_size' has value {self.mini_batch_size}: expected a divisor of "
                       f"batch_size ({self.batch_size})")
        if self.query_min_tokens > self.query_max_tokens:
            out.append(f"key '{prefix}.query_min_tokens' has value {self.query_min_tokens}: expected <= "
                       f"query_max_tokens ({self.query_max_tokens})")
        if self.temperature != 1.0:
            out.append(f"key '{prefix}.temperature' has value {self.temperature}: expected 1.0 (the ratio and the KL "
                       "are computed from the policy's untempered log-probs; other temperatures make them off-policy)")
        if self.reward_placement not in ("per_token", "last_token"):
            out.append(f"key '{prefix}.reward_placement' has value {self.reward_placement!r}: expected per_token or "
                       "last_token")
        if self.response_min_tokens > self.response_max_tokens:
            out.append(f"key '{prefix}.response_min_tokens' has value {self.response_min_tokens}: expected <= "
                       f"response_max_tokens ({self.response_max_tokens})")
        return out


PRESETS: dict[str, PPOConfig] = {
    # 30 steps of batch 16 with a KL coefficient starting at 0.2 and adapting over 10 steps (horizon 160
    # rollouts). Measured over seeds 0 and 2: held-out utility +0.49 [0.40, 0.57] and +0.73 [0.62, 0.84],
    # KL 2.7 and 4.6, fluent text. At init 0.05 (the earlier default) seed 0 gamed the table ("love love
    # love ...", +8.4, KL 40); at 0.1 it reached +2.85 with KL 18.
    "cpu_default": PPOConfig(),
    # Marks et al. 2023 with TRL 0.7.1's PPO defaults: batch 64, mini-batch 16, lr 1e-6, init KL 0.5,
    # adaptive (target 6, horizon 10000), 4 epochs, gamma 1, lambda 0.95, clip 0.2, vf coef 0.1,
    # grad clip 1.0, query 2-9 tokens, response 8-19 tokens, ~390 steps.
    "paper": PPOConfig(
        steps=390, batch_size=64, mini_batch_size=16, ppo_epochs=4, learning_rate=1e-6, init_kl_coef=0.5,
        adaptive_kl=True, target_kl=6.0, kl_horizon=10000, gamma=1.0, lam=0.95, cliprange=0.2,
        cliprange_value=0.2, vf_coef=0.1, max_grad_norm=1.0, query_min_tokens=2, query_max_tokens=9,
        response_min_tokens=8, response_max_tokens=19, checkpoint_every=25, reward_placement="last_token",
    ),
}


def field_names() -> list[str]:
    """The settings ``rl.ppo`` may override: every field but ``algorithm`` (``rl.algorithm``)."""
    return [f.name for f in fields(PPOConfig) if f.name != "algorithm"]


def ppo_config(preset: str = "cpu_default", overrides: dict | None = None, algorithm: str = "ppo") -> PPOConfig:
    """The preset with ``overrides`` (field -> value) applied, trained by ``algorithm``; unknown names raise KeyError."""
    if preset not in PRESETS:
        raise KeyError(f"unknown PPO preset {preset!r}: expected one of {', '.join(PRESETS)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise KeyError(f"unknown PPO setting(s) {', '.join(unknown)}: expected fields of PPOConfig")
    return dataclasses.replace(PRESETS[preset], algorithm=algorithm, **overrides)


@dataclass(frozen=True)
class EvalConfig:
    """Held-out evaluation of base vs policy (``rl.eval`` in config.yaml)."""

    prompts: int | None = None
    """Number of held-out prompts (the first N of the eval split); None uses all."""
    samples_per_prompt: int = 8
    """Sampled responses per prompt and model."""
    bootstrap: int = 2000
    """Bootstrap resamples (over prompts) for the 95% confidence intervals."""
    batch_size: int = 64
    """Responses generated per forward batch."""
