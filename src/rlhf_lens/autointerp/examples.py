"""Choose the example windows a feature is explained and scored on, as one ``FeatureExamples`` record.

For one feature, from its activation on every token of a corpus, in four steps:

- ``top_windows``: top-activating tokens, one per document (so a single long text cannot fill
  the set), best first;
- ``quantile_samples``: the remaining activating tokens binned by activation quantile, a few
  drawn from each bin (so explanations are not judged on the extreme examples alone);
- ``silent_windows``: random windows where the feature is silent throughout, for scoring and
  detection;
- ``alternate``: the explanation / held-out scoring split, alternating within the top windows
  and within each quantile bin.

A feature with fewer activating tokens than asked for is flagged ``rare`` with its counts and
still explained on what there is; nothing is dropped silently.

The record then flows through the pipeline (``pipeline.explain_and_score``): the explainer
writes ``explanation``, the scorers (``scorers``) read the windows and write ``simulated``; every
LLM call adds its tokens to ``usage``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .llm import TokenUsage
from .prompts import Window

SILENT_KIND = "random"
"""The kind of a silent window in ``score_kinds`` and the output tables (a random non-activating window)."""


@dataclass(frozen=True)
class ExampleConfig:
    """How many windows of which kind (``autointerp.examples`` in config.yaml)."""

    n_top: int = 8
    """Top-activating windows; alternately explanation / scoring."""
    n_quantiles: int = 3
    """Quantile bins of the activating tokens."""
    per_quantile: int = 2
    """Windows per quantile bin; half explanation, half scoring."""
    n_random: int = 3
    """Non-activating windows for scoring and detection."""
    before: int = 12
    """Tokens of context before the centre token."""
    after: int = 4
    """Tokens of context after the centre token."""


@dataclass
class FeatureExamples:
    """One feature's record: its windows (chosen by ``select_examples``) and what the pipeline adds to it."""

    feature: int
    """Index of the feature in its dictionary."""
    max_activation: float
    """The feature's largest activation over the whole corpus (the one global maximum for scaling)."""
    n_active: int
    """Tokens on which the feature is > 0."""
    rare: bool
    """True when there were fewer activating tokens than windows asked for."""
    explain: list[Window] = field(default_factory=list)
    """Windows shown to the explainer (the train examples)."""
    held_out: list[Window] = field(default_factory=list)
    """Held-out activating windows the explanation is scored on."""
    held_out_kinds: list[str] = field(default_factory=list)
    """For each held-out window: top or quantile."""
    silent: list[Window] = field(default_factory=list)
    """Held-out windows where the feature is silent throughout (scoring and detection)."""
    explanation: str | None = None
    """Written by the explainer."""
    simulated: list[list[float | None]] | None = None
    """Simulated activations (0-10) of each ``score`` window, written by the first scorer that simulates."""
    usage: TokenUsage = field(default_factory=TokenUsage)
    """Tokens of every LLM call made for this feature."""

    @property
    def score(self) -> list[Window]:
        """Every held-out window: the activating ones, then the silent ones."""
        return self.held_out + self.silent

    @property
    def score_kinds(self) -> list[str]:
        """For each ``score`` window: top, quantile or random (silent)."""
        return self.held_out_kinds + [SILENT_KIND] * len(self.silent)


@dataclass(frozen=True)
class _Documents:
    """Where each document's rows start and end (documents are contiguous in the token table)."""

    ids: np.ndarray
    starts: dict
    ends: dict

    @classmethod
    def of(cls, tokens: pd.DataFrame) -> _Documents:
        doc = tokens["doc_id"].to_numpy()
        # Each document starts at its first row and ends after its last.
        names, first = np.unique(doc, return_index=True)
        _, last = np.unique(doc[::-1], return_index=True)
        starts = dict(zip(names.tolist(), first.tolist()))
        return cls(doc, starts, dict(zip(names.tolist(), (len(doc) - last).tolist())))


def _window(tokens: pd.DataFrame, acts: np.ndarray, docs: _Documents, centre: int, cfg: ExampleConfig) -> Window:
    doc = tokens["doc_id"].iat[centre]
    lo = max(docs.starts[doc], centre - cfg.before)
    hi = min(docs.ends[doc], centre + cfg.after + 1)
    return Window(tokens=tokens["token_text"].iloc[lo:hi].tolist(), activations=acts[lo:hi].astype(float).tolist())


def alternate(items: list) -> tuple[list, list]:
    """The explanation / scoring split: items 0, 2, 4, ... to explain, 1, 3, 5, ... held out."""
    return items[0::2], items[1::2]


def top_windows(acts: np.ndarray, doc_ids: np.ndarray, active: np.ndarray, n_top: int) -> list[int]:
    """Centres of the top windows: the highest token of each document, best documents first."""
    order = active[np.argsort(-acts[active], kind="stable")]
    seen, top = set(), []
    for i in order:
        if doc_ids[i] not in seen:
            seen.add(doc_ids[i])
            top.append(i)
        if len(top) == n_top:
            break
    return top


def quantile_samples(acts: np.ndarray, rest: np.ndarray, n_quantiles: int, per_quantile: int,
                     rng: np.random.Generator) -> list[list[int]]:
    """Per quantile bin of the activating tokens ``rest`` (lowest bin first), up to ``per_quantile``
    centres drawn without replacement; an empty bin draws nothing."""
    if not len(rest) or not n_quantiles:
        return []
    ranked = rest[np.argsort(acts[rest], kind="stable")]
    return [[int(i) for i in rng.choice(bin_tokens, size=min(per_quantile, len(bin_tokens)), replace=False)]
            for bin_tokens in np.array_split(ranked, n_quantiles) if len(bin_tokens)]


def silent_windows(acts: np.ndarray, docs: _Documents, n_random: int, rng: np.random.Generator) -> list[int]:
    """Centres of up to ``n_random`` windows, each a random token of a random document where the feature is silent."""
    silent_docs = [d for d in docs.starts if acts[docs.starts[d]:docs.ends[d]].max() <= 0]
    centres = []
    for d in rng.permutation(len(silent_docs))[:n_random]:
        name = silent_docs[int(d)]
        centres.append(int(rng.integers(docs.starts[name], docs.ends[name])))
    return centres


def select_examples(tokens: pd.DataFrame, acts: np.ndarray, feature: int, cfg: ExampleConfig,
                    seed: int = 0) -> FeatureExamples:
    """The record of one feature: top windows, quantile samples and silent windows, split into explanation
    and held-out sets.

    ``tokens``: one row per token in corpus order, with ``doc_id`` and ``token_text`` (rows of
    a document are contiguous). ``acts``: shape (n_tokens,), the feature's activation on each.
    """
    if len(tokens) != len(acts):
        raise ValueError(f"{len(tokens)} tokens but {len(acts)} activations")
    rng = np.random.default_rng([seed, feature])
    docs = _Documents.of(tokens)
    active = np.flatnonzero(acts > 0)
    wanted = cfg.n_top + cfg.n_quantiles * cfg.per_quantile
    out = FeatureExamples(feature=feature, max_activation=float(acts.max(initial=0.0)), n_active=len(active),
                          rare=len(active) < wanted)

    def add(centres: list[int], kind: str) -> None:
        explain, held_out = alternate([_window(tokens, acts, docs, int(i), cfg) for i in centres])
        out.explain.extend(explain)
        out.held_out.extend(held_out)
        out.held_out_kinds.extend([kind] * len(held_out))

    top = top_windows(acts, docs.ids, active, cfg.n_top)
    add(top, "top")
    # The rng draws the quantile samples first, then the silent windows.
    for picks in quantile_samples(acts, np.setdiff1d(active, top), cfg.n_quantiles, cfg.per_quantile, rng):
        add(picks, "quantile")
    out.silent = [_window(tokens, acts, docs, i, cfg) for i in silent_windows(acts, docs, cfg.n_random, rng)]
    return out
