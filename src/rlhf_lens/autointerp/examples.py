"""Choose the example windows a feature is explained and scored on, as one ``FeatureExamples`` record.

For one feature, from its activation on every token of a corpus, in four steps:

- ``explain_side``: the prompt groups (documents that share a prompt, hence a prefix and its
  activations) are split in two, seeded: explanation windows come from one half, every held-out
  scoring window from the other, so no scoring window repeats what the explainer saw;
- ``top_windows``: top-activating tokens, one per group (so a single prompt cannot fill the
  set), best first, on each side;
- ``quantile_samples``: the remaining activating tokens binned by activation quantile, a few
  drawn from each bin on each side (so explanations are not judged on the extreme examples alone);
- ``silent_windows``: random windows of the scoring side where the feature is silent throughout,
  for scoring and detection.

Windows with the same tokens as one already chosen are skipped.

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


def explain_side(groups: np.ndarray, seed: int) -> np.ndarray:
    """(n_tokens,) True where a token's group is on the explanation side: a seeded half of the groups
    (the larger half when odd), the same for every feature of a run."""
    names = np.unique(groups)
    chosen = names[np.random.default_rng(seed).permutation(len(names))[: (len(names) + 1) // 2]]
    return np.isin(groups, chosen)


def top_windows(acts: np.ndarray, doc_ids: np.ndarray, active: np.ndarray, n_top: int) -> list[int]:
    """Centres of the top windows: the highest token of each group (``doc_ids``: the group of each
    token), best groups first."""
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


def silent_windows(acts: np.ndarray, docs: _Documents, n_random: int, rng: np.random.Generator,
                   allowed: np.ndarray | None = None) -> list[int]:
    """Centres of up to ``n_random`` windows, each a random token of a random document where the feature
    is silent (of the documents whose first token ``allowed`` marks, when given)."""
    silent_docs = [d for d in docs.starts if acts[docs.starts[d]:docs.ends[d]].max() <= 0
                   and (allowed is None or allowed[docs.starts[d]])]
    centres = []
    for d in rng.permutation(len(silent_docs))[:n_random]:
        name = silent_docs[int(d)]
        centres.append(int(rng.integers(docs.starts[name], docs.ends[name])))
    return centres


def select_examples(tokens: pd.DataFrame, acts: np.ndarray, feature: int, cfg: ExampleConfig,
                    seed: int = 0) -> FeatureExamples:
    """The record of one feature: top windows, quantile samples and silent windows, explanation windows
    from one half of the prompt groups and held-out ones from the other.

    ``tokens``: one row per token in corpus order, with ``doc_id``, ``token_text`` and, when the store
    records it, ``group`` (without it every document is its own group); rows of a document are
    contiguous. ``acts``: shape (n_tokens,), the feature's activation on each.
    """
    if len(tokens) != len(acts):
        raise ValueError(f"{len(tokens)} tokens but {len(acts)} activations")
    rng = np.random.default_rng([seed, feature])
    docs = _Documents.of(tokens)
    groups = tokens["group"].to_numpy() if "group" in tokens.columns else docs.ids
    side = explain_side(groups, seed)
    active = np.flatnonzero(acts > 0)
    wanted = cfg.n_top + cfg.n_quantiles * cfg.per_quantile
    out = FeatureExamples(feature=feature, max_activation=float(acts.max(initial=0.0)), n_active=len(active),
                          rare=len(active) < wanted)
    seen: set[tuple[str, ...]] = set()

    def windows(centres) -> list[Window]:
        kept = []
        for i in centres:
            w = _window(tokens, acts, docs, int(i), cfg)
            if tuple(w.tokens) not in seen:  # a repeated prefix must not count twice, nor on both sides
                seen.add(tuple(w.tokens))
                kept.append(w)
        return kept

    def add(explain_centres, held_centres, kind: str) -> None:
        out.explain.extend(windows(explain_centres))
        held = windows(held_centres)
        out.held_out.extend(held)
        out.held_out_kinds.extend([kind] * len(held))

    n_explain_top = (cfg.n_top + 1) // 2
    top_e = top_windows(acts, groups, active[side[active]], n_explain_top)
    top_s = top_windows(acts, groups, active[~side[active]], cfg.n_top - n_explain_top)
    add(top_e, top_s, "top")
    # Quantile bins over all activating tokens left; each bin gives its explanation picks from the
    # explanation side and its held-out picks from the other. The rng draws them, then the silent windows.
    rest = np.setdiff1d(active, top_e + top_s)
    n_explain_q = (cfg.per_quantile + 1) // 2
    for bin_tokens in quantile_bins(acts, rest, cfg.n_quantiles):
        add(_draw(rng, bin_tokens[side[bin_tokens]], n_explain_q),
            _draw(rng, bin_tokens[~side[bin_tokens]], cfg.per_quantile - n_explain_q), "quantile")
    out.silent = windows(silent_windows(acts, docs, cfg.n_random, rng, allowed=~side))
    return out


def quantile_bins(acts: np.ndarray, rest: np.ndarray, n_quantiles: int) -> list[np.ndarray]:
    """The activating tokens ``rest`` in ``n_quantiles`` bins of activation (lowest first); empty bins dropped."""
    if not len(rest) or not n_quantiles:
        return []
    ranked = rest[np.argsort(acts[rest], kind="stable")]
    return [b for b in np.array_split(ranked, n_quantiles) if len(b)]


def _draw(rng: np.random.Generator, pool: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` of ``pool`` without replacement."""
    if n <= 0 or not len(pool):
        return []
    return [int(i) for i in rng.choice(pool, size=min(n, len(pool)), replace=False)]
