"""Choose the example windows a feature is explained and scored on.

For one feature, from its activation on every token of a corpus:

- top-activating windows (one per document, so a single long text cannot fill the set),
  alternated between the explanation set and the held-out scoring set;
- quantile samples: activating tokens binned by activation quantile, a few windows from each
  bin, half for explaining and half for scoring (so explanations are not judged on the
  extreme examples alone);
- random non-activating windows for scoring and detection.

A feature with fewer activating tokens than asked for is flagged ``rare`` with its counts and
still explained on what there is; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .prompts import Window


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
    """The windows chosen for one feature."""

    feature: int
    """Index of the feature in its dictionary."""
    max_activation: float
    """The feature's largest activation over the whole corpus (the one global maximum for scaling)."""
    n_active: int
    """Tokens on which the feature is > 0."""
    rare: bool
    """True when there were fewer activating tokens than windows asked for."""
    explain: list[Window] = field(default_factory=list)
    """Windows shown to the explainer."""
    score: list[Window] = field(default_factory=list)
    """Held-out windows the simulation is scored on."""
    score_kinds: list[str] = field(default_factory=list)
    """For each scoring window: top, quantile or random."""


def _window(tokens: pd.DataFrame, acts: np.ndarray, doc_starts: dict, doc_ends: dict, centre: int,
            cfg: ExampleConfig) -> Window:
    doc = tokens["doc_id"].iat[centre]
    lo = max(doc_starts[doc], centre - cfg.before)
    hi = min(doc_ends[doc], centre + cfg.after + 1)
    return Window(tokens=tokens["token_text"].iloc[lo:hi].tolist(), activations=acts[lo:hi].astype(float).tolist())


def select_examples(tokens: pd.DataFrame, acts: np.ndarray, feature: int, cfg: ExampleConfig,
                    seed: int = 0) -> FeatureExamples:
    """Windows for one feature.

    ``tokens``: one row per token in corpus order, with ``doc_id`` and ``token_text`` (rows of
    a document are contiguous). ``acts``: shape (n_tokens,), the feature's activation on each.
    """
    if len(tokens) != len(acts):
        raise ValueError(f"{len(tokens)} tokens but {len(acts)} activations")
    rng = np.random.default_rng([seed, feature])
    doc = tokens["doc_id"].to_numpy()
    # Documents are contiguous: each starts at its first row and ends after its last.
    names, first = np.unique(doc, return_index=True)
    _, last = np.unique(doc[::-1], return_index=True)
    starts = dict(zip(names.tolist(), first.tolist()))
    ends = dict(zip(names.tolist(), (len(doc) - last).tolist()))
    active = np.flatnonzero(acts > 0)
    wanted = cfg.n_top + cfg.n_quantiles * cfg.per_quantile
    out = FeatureExamples(feature=feature, max_activation=float(acts.max(initial=0.0)), n_active=len(active),
                          rare=len(active) < wanted)

    # Top: the highest token of each document, best documents first.
    order = active[np.argsort(-acts[active], kind="stable")]
    seen, top = set(), []
    for i in order:
        if doc[i] not in seen:
            seen.add(doc[i])
            top.append(i)
        if len(top) == cfg.n_top:
            break
    for rank, i in enumerate(top):
        window = _window(tokens, acts, starts, ends, i, cfg)
        if rank % 2 == 0:
            out.explain.append(window)
        else:
            out.score.append(window)
            out.score_kinds.append("top")

    # Quantiles of the remaining activating tokens.
    rest = np.setdiff1d(active, top)
    if len(rest) and cfg.n_quantiles:
        ranked = rest[np.argsort(acts[rest], kind="stable")]
        for bin_tokens in np.array_split(ranked, cfg.n_quantiles):
            if not len(bin_tokens):
                continue
            picks = rng.choice(bin_tokens, size=min(cfg.per_quantile, len(bin_tokens)), replace=False)
            for j, i in enumerate(picks):
                window = _window(tokens, acts, starts, ends, int(i), cfg)
                if j % 2 == 0:
                    out.explain.append(window)
                else:
                    out.score.append(window)
                    out.score_kinds.append("quantile")

    # Random windows where the feature is silent throughout.
    silent_docs = [d for d in starts if acts[starts[d]:ends[d]].max() <= 0]
    for d in rng.permutation(len(silent_docs))[: cfg.n_random]:
        name = silent_docs[int(d)]
        centre = int(rng.integers(starts[name], ends[name]))
        out.score.append(_window(tokens, acts, starts, ends, centre, cfg))
        out.score_kinds.append("random")
    return out
