"""Between token ids and the texts a reward reads: prompt truncation and response decoding with spans."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch


class RLInputError(ValueError):
    """Prompts or settings that cannot be trained on; the message names the key or file."""


def tokenize_prompts(tokenizer, texts: Sequence[str], source: str) -> list[torch.Tensor]:
    """Token ids of each prompt (1-D long tensors). Empty prompts are an error naming ``source``."""
    out = []
    for i, text in enumerate(texts):
        ids = tokenizer(text, return_tensors="pt").input_ids[0]
        if len(ids) == 0:
            raise RLInputError(f"{source}: prompt {i} ({text!r}) has no tokens")
        out.append(ids)
    return out


def check_context(model_config, query_max: int, response_max: int, key: str = "rl.ppo") -> None:
    """Fail if a query plus a response can exceed the model's context length."""
    limit = getattr(model_config, "max_position_embeddings", None) or getattr(model_config, "n_positions", None)
    if limit is not None and query_max + response_max > limit:
        raise RLInputError(f"keys '{key}.query_max_tokens' ({query_max}) + '{key}.response_max_tokens' "
                           f"({response_max}) exceed the model's context of {limit} tokens")


def truncate_queries(prompts: Sequence[torch.Tensor], lo: int, hi: int, rng: np.random.Generator):
    """Cut each prompt to a length drawn uniformly from [lo, hi] (or its own length if shorter)."""
    lengths = rng.integers(lo, hi + 1, size=len(prompts))
    return [p[:max(1, int(n))] for p, n in zip(prompts, lengths)]


def decode_with_spans(tokenizer, ids: torch.Tensor) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``ids`` and the (start, end) character span of each token in it.

    Decodes growing prefixes so each span is exactly what that token added to the text
    (special tokens decode to empty spans). A token that completes a multi-byte character
    claims the whole character. Spans never overlap and lie in the final text: a token whose
    partial character (decoded as U+FFFD) a later token rewrote keeps only what precedes it
    (explainers that cut the text at the spans rely on that: LIME refuses overlapping pieces).
    """
    spans, prev = [], ""
    for t in range(len(ids)):
        cur = tokenizer.decode(ids[:t + 1], skip_special_tokens=True)
        start = len(prev) if cur.startswith(prev) else len(os.path.commonprefix([prev, cur]))
        spans.append((start, len(cur)))
        prev = cur
    limit = len(prev)
    for t in range(len(spans) - 1, -1, -1):  # later tokens win what two tokens claim
        end = min(spans[t][1], limit)
        spans[t] = (min(spans[t][0], end), end)
        limit = min(limit, spans[t][0])
    return prev, spans
