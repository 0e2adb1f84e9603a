"""Planted utility tables: a secret one nobody can guess, and VADER shuffled (the like-for-like null).

``table: secret``: N ordinary words, each with the same utility U (``secret_words``, ``secret_utility``),
drawn with the run's seed from the words the base model itself writes on the training prompts (so RL
can find them by sampling), that are not in VADER (so no sentiment prior names them), not English
stop words (sklearn's list), lowercase alphabetic with at least 3 letters, written in the completions
of at least ``min_prompts`` different prompts (1% of them, at least 2), and one vocabulary token with a
leading space (" word"), so a readout over the vocabulary can rank each planted word as one token.

``table: vader_shuffled``: VADER's values permuted over VADER's words (seeded): the same reward scale
and distribution of values, on other words. A policy trained on it is a null for one trained on VADER:
its readouts against VADER must sit at chance. It learns less per step (its values follow no direction),
so configs/calibration.yaml gives it a lower KL coefficient to move the model nearer as far.

A permutation is a null only on average: what a policy learns is the values of the few dozen words it
writes, and one draw can leave those correlated with VADER. The first calibration's draw (seed 0, plain
permutation) gave "good" +2.9, "great" +2.1, "growth" +2.6, "helpful" +1.5: Spearman 0.01 with VADER over
all 7,494 words, but a correlation of 0.20 over the words the base model writes, weighted by how many
prompts' completions hold them, and its policy's readouts then correlated with VADER (0.21, permutation
null 0.04). So the shuffle is re-randomised (Morgan and Rubin 2012, "Rerandomization to improve covariate
balance"): permutations are drawn in seeded order until that written-word correlation is within
``shuffle_balance`` of 0 (``balanced_shuffle``); ``shuffle_balance: null`` keeps the first, unbalanced one.

Both are drawn by a keyed hash (BLAKE2b keyed with the seed) of each word, not by a random stream: the
draw is the same on every platform and library version, and when a different machine samples slightly
different completions, only the words whose eligibility changed change in the secret table (a stream
drawing from a sorted list would reshuffle every pick after the first difference).

A planted table is materialised once, before RL, by the workflow's ``reward_table`` rule into
``table_path(run, reward)`` (a word,utility CSV); the RL, evaluation, scoring and diffing stages all read
that CSV, through ``resolved_table`` (a dict) or ``table_file`` (the path to pass on). This module
imports no torch: sampling the base model lives in ``rlhf_lens.rl.planted_table``.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from ..atomic import atomic_file
from .base import RewardError

PLANTED = ("secret", "vader_shuffled")
"""The ``table`` values whose table is drawn with the run's seed and materialised before RL."""

MIN_PROMPTS = 2
"""A secret word must appear in the sampled completions of at least this many different prompts (and of
``MIN_PROMPT_SHARE`` of them): a word the base model wrote once is a quirk of one prompt."""

MIN_PROMPT_SHARE = 0.01
"""... and of at least this share of the prompts: a word RL can find. The default run's policy samples ~500
rollouts, so a word the base model writes for 1% of prompts comes up about five times. Measured on SmolLM2-135M
with the 288 built-in training prompts (one completion each): 261 eligible words written for >= 2 prompts,
100 for >= 3 (this share), 56 for >= 4."""


def min_prompts(n_prompts: int) -> int:
    """How many prompts' completions must hold a secret word, of ``n_prompts`` sampled: 1% of them, at least 2."""
    return max(MIN_PROMPTS, math.ceil(MIN_PROMPT_SHARE * n_prompts))

WORD = re.compile(r"[a-z]{3,}")
"""What a secret word looks like: lowercase ASCII letters only, at least 3."""


def table_path(run: str, reward: str) -> str:
    """Where the ``reward_table`` rule writes reward ``reward``'s planted table:
    results/{run}/rewards/{reward}/table.csv (with ``run="{run}", reward="{reward}"`` the rule's output pattern)."""
    return f"results/{run}/rewards/{reward}/table.csv"


def is_planted(spec: Mapping) -> bool:
    """Whether a ``rewards.<name>`` entry is a utility table drawn before RL (table secret or vader_shuffled)."""
    return spec.get("type") == "utility_table" and spec.get("table", "vader") in PLANTED


def samples_base_words(spec: Mapping) -> bool:
    """Whether a validated ``rewards.<name>`` entry's planted table is drawn from the base model's own words,
    so the reward_table rule must sample it: table secret, and vader_shuffled balanced on them
    (``shuffle_balance`` not null)."""
    table = spec.get("table") if spec.get("type") == "utility_table" else None
    return table == "secret" or (table == "vader_shuffled" and spec.get("shuffle_balance") is not None)


def table_file(config: Mapping, reward: str) -> str:
    """The table reward ``reward`` of a validated workflow config scores with, as ``load_table`` reads it:
    vader, a word,utility CSV path, or for a planted table the CSV the reward_table rule writes. A reward
    that is no utility table gives vader (the scoring stage's table for any overseer)."""
    spec = config["rewards"][reward]
    if is_planted(spec):
        return table_path(config["run"], reward)
    return spec.get("table", "vader") if spec.get("type") == "utility_table" else "vader"


def resolved_table(config: Mapping, reward: str) -> dict[str, float]:
    """{word: utility} of reward ``reward`` of a validated workflow config: the table its policy was trained
    on (the materialised CSV for table secret or vader_shuffled; VADER for a reward that is no utility table).

    RewardError naming the file when a planted table has not been materialised yet (rule reward_table)."""
    from .utility_table import load_table

    path = table_file(config, reward)
    if is_planted(config["rewards"][reward]) and not Path(path).is_file():
        raise RewardError(f"reward {reward!r} (table {config['rewards'][reward]['table']}): its table "
                          f"{path!r} does not exist yet; the workflow's reward_table rule writes it "
                          f"(snakemake {path})")
    return load_table(path)


def with_table_file(config: Mapping, reward: str, spec: dict) -> dict:
    """``spec`` (reward ``reward``'s entry, as a rule passed it) with a planted table replaced by its CSV's path,
    so the reward is built from the materialised table; any other spec unchanged."""
    return {**spec, "table": table_path(config["run"], reward)} if is_planted(spec) else spec


def _keyed_order(words, seed: int, draw: int = 0) -> list[str]:
    """``words`` in the seeded order of their BLAKE2b hashes keyed with ``seed`` (and ``draw`` > 0 for a
    re-draw): a reproducible random order that is the same on every platform, whatever else is in the list."""
    key = (str(int(seed)) if draw == 0 else f"{int(seed)}:{int(draw)}").encode()
    return sorted(words, key=lambda w: (hashlib.blake2b(w.encode(), digest_size=8, key=key).digest(), w))


MAX_SHUFFLES = 100_000
"""Re-draws ``balanced_shuffle`` tries before it gives up (a balance no permutation reaches)."""


def shuffled_vader(seed: int, vader: Mapping[str, float] | None = None, draw: int = 0) -> dict[str, float]:
    """VADER's values permuted over its words: the value of the i-th word in seeded order (draw ``draw``) goes
    to the i-th word in alphabetical order. The same words and the same multiset of values as ``vader``
    (default: the lexicon)."""
    from .utility_table import load_vader

    vader = dict(load_vader() if vader is None else vader)
    words = sorted(vader)
    return dict(zip(words, (vader[w] for w in _keyed_order(words, seed, draw))))


def written_correlation(table: Mapping[str, float], vader: Mapping[str, float], written: Mapping[str, int]) -> float:
    """Pearson correlation of ``table`` with ``vader`` over the lexicon words in ``written`` (word -> how many
    prompts' completions hold it), each weighted by that count: how much a policy that learns ``table`` on the
    words it writes would also move along VADER. 0 when fewer than two such words or a constant side."""
    words = [w for w in written if w in vader and w in table and written[w] > 0]
    if len(words) < 2:
        return 0.0
    values = np.array([[vader[w], table[w]] for w in words], dtype=np.float64)
    cov = np.cov(values, rowvar=False, aweights=[written[w] for w in words])
    scale = np.sqrt(cov[0, 0] * cov[1, 1])
    return float(cov[0, 1] / scale) if scale > 0 else 0.0


def balanced_shuffle(seed: int, written: Mapping[str, int], balance: float,
                     vader: Mapping[str, float] | None = None) -> tuple[dict[str, float], int, float]:
    """The first of ``shuffled_vader``'s seeded draws whose ``written_correlation`` with VADER is within
    ``balance`` of 0; returns (table, draw index, that correlation). RewardError after ``MAX_SHUFFLES`` draws."""
    from .utility_table import load_vader

    vader = dict(load_vader() if vader is None else vader)
    for draw in range(MAX_SHUFFLES):
        table = shuffled_vader(seed, vader, draw)
        r = written_correlation(table, vader, written)
        if abs(r) <= balance:
            return table, draw, r
    raise RewardError(f"table vader_shuffled: no permutation of {MAX_SHUFFLES} has a correlation with VADER within "
                      f"{balance} on the words the base model writes; raise shuffle_balance")


def secret_candidates(word_prompts: Mapping[str, int], vocabulary_words: set[str], exclude: set[str],
                      least: int = MIN_PROMPTS) -> list[str]:
    """The words a secret table may plant, alphabetically: written for at least ``least`` prompts
    (``word_prompts``: word -> number of prompts whose completions contain it), shaped like ``WORD``, one
    vocabulary token with a leading space (``vocabulary_words``: those tokens' words), not in ``exclude``
    (VADER's words) and not an English stop word."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return sorted(w for w, k in word_prompts.items()
                  if k >= least and WORD.fullmatch(w) and w in vocabulary_words and w not in exclude
                  and w not in ENGLISH_STOP_WORDS)


def secret_table(word_prompts: Mapping[str, int], vocabulary_words: set[str], *, n: int, utility: float,
                 seed: int, exclude: set[str] | None = None, least: int = MIN_PROMPTS) -> dict[str, float]:
    """``n`` of ``secret_candidates`` (written for >= ``least`` prompts, ``min_prompts`` of those sampled) drawn
    with ``seed`` (the first ``n`` in keyed-hash order), each worth ``utility``; ``exclude`` defaults to VADER's
    words. RewardError when fewer than ``n`` are eligible."""
    from .utility_table import load_vader

    if n < 1:
        raise RewardError(f"secret table: expected at least 1 word, got {n}")
    exclude = set(load_vader()) if exclude is None else exclude
    candidates = secret_candidates(word_prompts, vocabulary_words, exclude, least)
    if len(candidates) < n:
        raise RewardError(f"secret table: {n} words asked for (secret_words) but only {len(candidates)} words "
                          f"the base model wrote qualify (ordinary, not in VADER, one token, written for >= "
                          f"{least} prompts): lower secret_words or give more prompts")
    return {w: float(utility) for w in sorted(_keyed_order(candidates, seed)[:n])}


def vocabulary_words(token_texts: list[str]) -> set[str]:
    """The words that are one vocabulary token with a leading space: "word" for every token text " word"
    shaped like ``WORD`` (``token_texts``: every token's decoded text, ``model_parts.token_texts``)."""
    return {t[1:] for t in token_texts if t.startswith(" ") and WORD.fullmatch(t[1:])}


def write_table_csv(table: Mapping[str, float], path: str) -> None:
    """Write ``table`` as a word,utility CSV (header row, words in alphabetical order), atomically."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["word", "utility"])
        for word in sorted(table):
            value = float(table[word])
            if not math.isfinite(value):
                raise RewardError(f"table for {str(path)!r}: word {word!r} has utility {value}")
            writer.writerow([word, repr(value)])
