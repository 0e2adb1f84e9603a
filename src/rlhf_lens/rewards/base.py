"""The reward interface every reward implements, and the word/token alignment it relies on.

A reward scores a batch of (prompt, response) texts. ``score`` returns one sequence reward per
pair, shape (B,). ``token_rewards`` spreads a reward over the response's tokens, given each
token's character span in the response text; shape (B, T) with T the longest token list, zeros
past each row's end. Rewards that cannot attribute their score to tokens put the whole
sequence reward on the last token (what TRL's PPO did for every reward).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Sequence

Span = tuple[int, int]


class RewardError(ValueError):
    """A reward that cannot be built as configured; the message names the key or file."""


class Reward(ABC):
    """Scores (prompt, response) pairs. Subclasses set ``name`` and implement ``score``."""

    name: str = "reward"

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
