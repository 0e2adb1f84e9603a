"""The ``reward_table`` rule: materialise a planted utility table (``table: secret`` or ``vader_shuffled``)
before RL, as the word,utility CSV that RL, evaluation, scoring and diffing then all read.

``secret`` plants words the base model itself writes: the base model samples one completion per training
prompt under the RL's own sampling conditions (prompt cut to ``query_max_tokens``, ``response_max_tokens``
tokens, temperature 1, ``stop_at_eos``), seeded; the words of those completions, counted by how many prompts'
completions hold them, are the pool ``rewards.planted_tables.secret_table`` draws from. Sampling rather than
the prompt corpus's words: the corpus is what the user wrote, the completions are what the policy starts out
writing, so every planted word is one RL can find by sampling (written for >= 1% of the prompts).
Cost, SmolLM2-135M on the 288 built-in training prompts (6 + 24 tokens), one thread of a 2-core AMD EPYC
shared with other jobs (load ~4.5): 69 s and 78 s (seeds 0 and 1, model load included), under a tenth of
the default RL job it precedes; 2,050 distinct words written, 100 eligible (seed 0), 40 drawn.

``vader_shuffled`` samples the same completions to balance its permutation on the words the base model
writes (``planted_tables.balanced_shuffle``); with ``shuffle_balance: null`` it needs no model (0.02 s).
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter

import torch

from ..model_parts import pad_token_id, token_texts
from ..models import load_prepared
from ..rewards.planted_tables import (balanced_shuffle, min_prompts, samples_base_words, secret_candidates, secret_table,
                                      shuffled_vader, vocabulary_words, write_table_csv, written_correlation)
from ..rewards.utility_table import UtilityTableConfig, load_vader, words_with_spans
from .rollout import sample_responses
from .text import decode_with_spans, tokenize_prompts
from .train import read_prompts

log = logging.getLogger(__name__)

SAMPLE_BATCH = 32
"""Prompts per generate call while sampling the base model's words (memory, not the result: each row's
draws come from one seeded generator in order, so a different batch size samples other tokens; fixed here)."""


@torch.no_grad()
def base_word_prompts(model, tokenizer, prompts: list[str], *, query_max_tokens: int, response_max_tokens: int,
                      stop_at_eos: bool, seed: int, device: str = "cpu") -> Counter:
    """word -> how many prompts' sampled completions contain it: one completion of ``response_max_tokens``
    tokens per prompt (cut to its first ``query_max_tokens`` tokens), temperature 1, seeded by ``seed``.
    Words as the utility table reads them (``words_with_spans``: lowercased, punctuation stripped)."""
    queries = [q[:query_max_tokens] for q in tokenize_prompts(tokenizer, prompts, "training prompts")]
    pad_id = pad_token_id(tokenizer)
    generator = torch.Generator(device=device).manual_seed(seed)  # the stream torch.manual_seed(seed) gives
    counts: Counter = Counter()
    for start in range(0, len(queries), SAMPLE_BATCH):
        batch = queries[start:start + SAMPLE_BATCH]
        responses = sample_responses(model, batch, response_max_tokens, pad_id=pad_id, eos_id=tokenizer.eos_token_id,
                                     temperature=1.0, stop_at_eos=stop_at_eos, device=device, generator=generator)
        for ids in responses:
            counts.update({w for w, _ in words_with_spans(decode_with_spans(tokenizer, ids)[0])})
    return counts


def materialise_table(spec: dict, out_csv: str | os.PathLike, *, seed: int, model_dir=None, prompts_path=None,
                      query_max_tokens: int = 6, response_max_tokens: int = 24, stop_at_eos: bool = True,
                      device: str = "cpu") -> dict[str, float]:
    """Draw the planted table of ``spec`` (a ``rewards.<name>`` entry with table secret or vader_shuffled) with
    ``seed``, write it to ``out_csv`` (word,utility) and return it. ``secret``, and ``vader_shuffled`` unless its
    ``shuffle_balance`` is null, sample the base model in ``model_dir`` on the prompts of ``prompts_path`` (the
    sampling keywords as the RL's ``rl.ppo``)."""
    cfg = UtilityTableConfig.from_dict(spec)
    if cfg.table not in ("secret", "vader_shuffled"):
        raise ValueError(f"materialise_table: table {cfg.table!r} is not planted (expected secret or vader_shuffled)")
    if not samples_base_words({**UtilityTableConfig.defaults(), **spec, "type": "utility_table"}):
        write_table_csv(table := shuffled_vader(seed), str(out_csv))
        return table
    if model_dir is None or prompts_path is None:
        raise ValueError(f"materialise_table: table {cfg.table} samples the base model: pass model_dir and prompts_path")
    t0 = time.perf_counter()
    model, tokenizer = load_prepared(model_dir, device)
    prompts = read_prompts(prompts_path)
    counts = base_word_prompts(model, tokenizer, prompts, query_max_tokens=query_max_tokens,
                               response_max_tokens=response_max_tokens, stop_at_eos=stop_at_eos, seed=seed,
                               device=device)
    if cfg.table == "vader_shuffled":
        table, draw, r = balanced_shuffle(seed, counts, cfg.shuffle_balance)
        log.info("shuffled VADER: draw %d of seed %d correlates %+.4f with VADER over the %d lexicon words the base "
                 "model wrote on %d prompts (weighted by prompts; balance %.3f; first draw %+.4f; %.1f s)", draw, seed,
                 r, sum(w in table for w in counts), len(prompts), cfg.shuffle_balance,
                 written_correlation(shuffled_vader(seed), load_vader(), counts), time.perf_counter() - t0)
    else:
        vocab, least = vocabulary_words(token_texts(tokenizer)), min_prompts(len(prompts))
        table = secret_table(counts, vocab, n=cfg.secret_words, utility=cfg.secret_utility, seed=seed, least=least)
        log.info("secret table: %d words of %d eligible (written for >= %d prompts) of %d distinct words the base "
                 "model wrote on %d prompts (%.1f s): %s", len(table),
                 len(secret_candidates(counts, vocab, set(load_vader()), least)), least, len(counts), len(prompts),
                 time.perf_counter() - t0, ", ".join(sorted(table)))
    write_table_csv(table, str(out_csv))
    return table
