"""What every diffing method returns, and the interface it implements.

A method is a class with a ``name``, a typed config (a dataclass with a docstring per field, only its
own keys) and ``run(ctx, cfg) -> MethodResult``. ``MethodResult.token_scores`` has one row per
independent unit, so readouts can resample that unit (DESIGN.md's statistics rules): prompt groups of
the context corpus for corpus-based methods, seeds for anything trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
import pandas as pd

Unit = Literal["prompt_group", "seed"]


@dataclass
class MethodResult:
    """One method's recovered scores.

    ``token_scores``: (n_units, vocab_size) float64; row u is the score of every vocabulary token
    (by token id) estimated from unit u alone, so their mean is the method's score and resampling rows
    gives its CI. Higher means "the policy favours this token more than the base model".
    """

    token_scores: np.ndarray
    unit: Unit
    latents: pd.DataFrame | None = None
    """Dictionary methods: one row per latent (latent, change, top_tokens, decoded_words, token_utility, ...)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Anything else worth saving as JSON beside the tables (e.g. a steering check)."""
    variants: dict[str, np.ndarray] = field(default_factory=dict)
    """Other scores of the same method, name -> (n_units, vocab_size) like ``token_scores`` (e.g. logit_shift's
    top-k count, the activation lens read through the other model): each becomes a column of words.parquet and
    gets its own readout with CIs."""
    depth_profile: dict[int, np.ndarray] = field(default_factory=dict)
    """Block (0-based) -> (vocab_size,) the method's score read at that block (no units: point readouts only)."""

    def __post_init__(self) -> None:
        scores = np.asarray(self.token_scores, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[0] < 1:
            raise ValueError(f"token_scores must be (n_units >= 1, vocab_size); got shape {scores.shape}")
        self.token_scores = scores
        for name, v in self.variants.items():
            v = np.asarray(v, dtype=np.float64)
            if v.shape != scores.shape:
                raise ValueError(f"variant {name!r} has shape {v.shape}; token_scores have {scores.shape}")
            self.variants[name] = v

    @property
    def mean_scores(self) -> np.ndarray:
        """(vocab_size,) float64: the method's score per token, the mean over units."""
        return self.token_scores.mean(axis=0)


class DiffingMethod(Protocol):
    """A diffing method: ``run`` reads what it needs from ``ctx`` (a ``stage.DiffContext``)."""

    name: ClassVar[str]
    config_class: ClassVar[type]

    def run(self, ctx: Any, cfg: Any) -> MethodResult: ...


@dataclass(frozen=True)
class CorpusConfig:
    """Which texts the corpus-based methods read (``diffing.corpus``)."""

    source: str = "rl_eval"
    """rl_eval (the base model's held-out completions from the reward's eval table) or a .parquet/.csv/.jsonl/.txt file."""
    text_column: str = "text"
    """Column holding the text when ``source`` is a table file."""
    max_texts: int = 192
    """Use at most this many texts (rl_eval: prompts in a seeded order, whole prompt groups first)."""
    max_length: int = 96
    """Tokens per text (prompt included); longer texts are cut."""
    leave_out_prompt: bool = True
    """Methods that average over positions leave out the positions inside the prompt."""
    batch_size: int = 8
    """Texts per forward pass (full-vocabulary log-probs of a batch are held at once)."""


@dataclass
class DiffContext:
    """Everything a method may read. Paths are resolved by the stage; models load on first use.

    Blocks are 0-based block indices (``layers``), as the divergence stage writes them; a method that
    reads the residual stream "after block L" reads transformers' ``hidden_states[L + 1]``.
    """

    base_dir: Path
    """Prepared base model folder (HF layout; also holds the tokenizer)."""
    policy_dir: Path
    """Policy folder (HF layout), loadable like the base model."""
    corpus: pd.DataFrame
    """Context corpus: columns ``text`` (str), ``group`` (int, the independent prompt group) and
    ``prompt_chars`` (int, length of the leading prompt in ``text``; 0 where there is none)."""
    corpus_cfg: CorpusConfig = field(default_factory=CorpusConfig)
    """How the corpus is tokenized and batched, and whether prompt positions count (``diffing.corpus``)."""
    layers: list[int] = field(default_factory=list)
    """Studied blocks (the divergence stage's top n), 0-based."""
    stores: dict[str, Path] = field(default_factory=dict)
    """Activation store folder per role ("base", "rlhf"): identical tokens in both; may be empty."""
    sae_dirs: dict[int, Path] = field(default_factory=dict)
    """Block -> the base model's SAE folder (SAELens layout) that ``sae_shift`` reads; may be empty."""
    crosscoder_dirs: dict[int, Path] = field(default_factory=dict)
    """Block -> crosscoder folder, where crosscoders were trained; may be empty."""
    autointerp_tables: dict[int, Path] = field(default_factory=dict)
    """Block -> the policy SAE's autointerp table (autointerp/{reward}/rlhf/layer{L}.parquet) that ``paper``
    reads; may be empty."""
    work_dir: Path | None = None
    """A folder a method may write checkpoints or caches into (resumable training)."""
    device: str = "cpu"
    seed: int = 0
    reward: Any = None
    """The overseer (a ``rewards.Reward``) for methods that score samples (activation_lens's steering
    check); None skips those checks."""
    _models: tuple | None = field(default=None, repr=False)

    def models(self):
        """(base model, policy model, tokenizer), loaded once, eval mode, on ``device``."""
        if self._models is None:
            from ..models import load_prepared

            base, tokenizer = load_prepared(self.base_dir, device=self.device)
            policy, _ = load_prepared(self.policy_dir, device=self.device)
            self._models = (base, policy, tokenizer)
        return self._models
