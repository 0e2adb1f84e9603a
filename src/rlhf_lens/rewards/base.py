"""The reward interface every reward implements, and the word/token alignment it relies on.

A reward scores a batch of (prompt, response) texts. ``score`` returns one sequence reward per
pair, shape (B,). ``token_rewards`` spreads a reward over the response's tokens, given each
token's character span in the response text; shape (B, T) with T the longest token list, zeros
past each row's end. Rewards that cannot attribute their score to tokens put the whole
sequence reward on the last token (what TRL's PPO did for every reward); ``per_token`` says
which of the two a reward does.

Each reward type's keys under ``rewards.<name>`` are a ``RewardConfig`` dataclass (one field per
key, typed, with a docstring and a default unless the key is required); config validation reads
the allowed keys, defaults and required keys from it, so this module and every config class
import no torch.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

Span = tuple[int, int]


class RewardError(ValueError):
    """A reward that cannot be built as configured; the message names the key or file."""


@dataclass(frozen=True, kw_only=True)
class RewardConfig:
    """The keys of one reward type under ``rewards.<name>`` (besides ``type``): subclasses add fields.

    A field without a default is a required key; ``field(metadata={"hint": ...})`` says what a
    missing one should hold (it appears in the error message).
    """

    @classmethod
    def keys(cls) -> set[str]:
        """Allowed keys of an entry of this type, ``type`` included."""
        return {"type"} | {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Key -> default of every optional key."""
        out = {}
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                out[f.name] = f.default
            elif f.default_factory is not dataclasses.MISSING:
                out[f.name] = f.default_factory()
        return out

    @classmethod
    def required(cls) -> dict[str, str]:
        """Key -> hint of every required key (fields without a default), in field order."""
        return {f.name: f.metadata.get("hint", "") for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}

    @classmethod
    def missing(cls, entry: dict, name: str) -> list[str]:
        """One problem per required key that the entry ``rewards.<name>`` lacks."""
        need = [f"{k} ({hint})" if hint else k for k, hint in cls.required().items()]
        needs = " and ".join([", ".join(need[:-1]), need[-1]] if len(need) > 1 else need)
        return [f"key 'rewards.{name}.{k}' is missing: a {entry.get('type')} reward needs {needs}"
                for k in cls.required() if k not in entry]

    @classmethod
    def from_dict(cls, entry: dict, name: str = "reward") -> "RewardConfig":
        """The config of a ``rewards.<name>`` entry: known keys only, defaults filled, required keys checked."""
        missing = cls.missing(entry, name)
        if missing:
            raise RewardError(missing[0])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in entry.items() if k in names})

    @classmethod
    def result_entry(cls, entry: dict) -> dict:
        """The keys of a defaults-filled ``rewards.<name>`` entry that change what the reward scores: all of them
        unless a type says otherwise. Rules pass this as their param, so a key that does not apply (a default
        filled in for another option) reruns nothing."""
        return dict(entry)

    def problems(self, prefix: str) -> list[str]:
        """Readable problems a schema cannot check (files that must exist); ``prefix`` is ``rewards.<name>``."""
        return []


class Reward(ABC):
    """Scores (prompt, response) pairs. Subclasses set ``name`` and implement ``score`` and ``from_config``."""

    name: str = "reward"
    per_token: ClassVar[bool] = False
    """True when ``token_rewards`` splits the score over the tokens that earned it; False puts it on the last token."""

    @classmethod
    def from_config(cls, config: RewardConfig, *, name: str, device: str = "cpu",
                    trust_remote_code: bool = False) -> "Reward":
        """The reward ``rewards.<name>`` built from its config; RewardError naming the key or file if it cannot be."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from config")

    @abstractmethod
    def score(self, prompts: Sequence[str], responses: Sequence[str]):
        """Sequence rewards, a float32 tensor of shape (B,)."""

    def token_rewards(self, prompts: Sequence[str], responses: Sequence[str],
                      token_spans: Sequence[Sequence[Span]]):
        """Per-token rewards, float32 (B, T): by default the sequence reward on each row's last token.

        ``token_spans[i][t]`` is the (start, end) character span of response token t in
        ``responses[i]``; T = max number of tokens. Each row sums to ``score(...)[i]``.
        """
        seq = self.score(prompts, responses)
        return last_token_rewards(seq, [len(s) for s in token_spans])

    def to(self, device: str) -> "Reward":
        """Move any model the reward holds to ``device``; table rewards ignore it."""
        return self

    def step_stats(self) -> dict[str, float]:
        """What the last ``token_rewards`` call cost, named for the RL metrics (a shaped reward's explainers);
        empty for rewards whose per-token form is free."""
        return {}

    # A reward that reads the policy (R2M) sets ``reads_policy_hidden``: the RL step then scores with
    # ``score_with_hidden`` inside its own policy forward and calls ``after_policy_step`` after the update;
    # ``state_dict`` joins the RL checkpoint. The defaults below make every other reward a no-op here.
    reads_policy_hidden: ClassVar[bool] = False
    """True when the reward scores with the policy's last-layer hidden states of the response."""

    def score_with_hidden(self, prompts: Sequence[str], responses: Sequence[str], hidden, mask, *, step: int,
                          steps: int):
        """Sequence rewards (B,) from the texts and the policy's hidden states ``hidden`` (B, T, D_policy) of the
        response tokens, ``mask`` (B, T) 1 on real tokens, at RL step ``step`` of ``steps``."""
        return self.score(prompts, responses)

    def after_policy_step(self, groups, *, step: int, steps: int) -> dict[str, float]:
        """Called after each policy update with the batch's prompt groups (B,) long; returns logged statistics."""
        return {}

    def state_dict(self) -> dict:
        """What a bit-identical resume needs of a reward that changes during RL (empty for a fixed one)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore ``state_dict``; a fixed reward has nothing to restore."""


def last_token_rewards(seq_rewards, lengths: Sequence[int]):
    """Place each sequence reward (B,) on its row's last token: (B, max(lengths)) float32.

    Rows of length 0 get nothing (an empty response cannot carry a reward token).
    """
    import torch

    out = torch.zeros(len(lengths), max(lengths, default=0) or 1, dtype=torch.float32)
    for i, n in enumerate(lengths):
        if n > 0:
            out[i, n - 1] = float(seq_rewards[i])
    return out
