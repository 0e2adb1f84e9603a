"""Run one diffing method for one reward and write its recovered utility table and readout.

Output folder ``diffing/{reward}/{method}/`` (written whole, atomically):

- ``words.parquet``: one row per word-like token (``vocab.word_vocab``): token_id, token_text, word, score
  (the method's mean score over units), rank (1 = the token the policy favours most), one column per variant
  (``MethodResult.variants``, their means), and with a truth: truth (the overseer's value) and in_truth.
- ``latents.parquet``: dictionary methods' latents, when the method has them.
- ``readout.json``: method, unit, n_units and, with a truth, ``readout`` (``readouts.readout``: every metric
  with its CI, base rates, the Spearman null), ``variants`` (the same per variant) and ``depth_profile``
  (per block the point metrics and top words); without a truth, the depth profile's top words only.
- ``extra.json``: the method's ``extra`` (settings, steering check, ...).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_dir
from .base import CorpusConfig, DiffContext, MethodResult
from .dictionary_readout import latent_token_utility
from .readouts import point_metrics, readout
from .registry import get_method_class
from .truth import Truth

log = logging.getLogger(__name__)

TOP_WORDS = 30
"""Top words listed per depth-profile block."""


@dataclass(frozen=True)
class ReadoutConfig:
    """How the readouts are resampled (``diffing.readout``)."""

    n_boot: int = 1000
    """Bootstrap resamples of the units (prompt groups or seeds) for every metric's CI."""
    n_perm: int = 1000
    """Permutations of the truth for Spearman's null."""
    ci_level: float = 0.95
    """Confidence level of the CIs."""


@dataclass(frozen=True)
class StageSettings:
    """What a diffing job needs besides its inputs: the corpus, the readout and the method's own keys."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    readout: ReadoutConfig = field(default_factory=ReadoutConfig)
    method: dict[str, Any] = field(default_factory=dict)
    """``diffing.<method>``: the method's own keys (its config dataclass's fields)."""


def method_config(name: str, settings: dict[str, Any] | None = None):
    """The config dataclass of method ``name`` from its keys (unknown keys are an error naming them)."""
    cls = get_method_class(name).config_class
    settings = dict(settings or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(f"diffing.{name}: unknown key(s) {', '.join(unknown)}; expected {', '.join(sorted(known))}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})  # YAML lists


def words_table(result: MethodResult, vocab: pd.DataFrame, truth: Truth | None = None) -> pd.DataFrame:
    """The recovered utility table: one row per word-like token, sorted by rank (1 = highest score)."""
    ids = vocab["token_id"].to_numpy()
    table = vocab[["token_id", "token_text", "word"]].copy()
    table["score"] = result.mean_scores[ids]
    for name, values in result.variants.items():
        table[name] = values.mean(axis=0)[ids]
    if truth is not None:
        table["truth"] = truth.frame["value"].to_numpy()
        table["in_truth"] = truth.frame["in_truth"].to_numpy()
    table = table.sort_values(["score", "token_id"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table.insert(4, "rank", np.arange(1, len(table) + 1, dtype=np.int64))
    return table


def depth_readout(result: MethodResult, vocab: pd.DataFrame, truth: Truth | None) -> list[dict]:
    """Per block of ``result.depth_profile``: the top words and, with a truth, the point metrics."""
    ids = vocab["token_id"].to_numpy()
    words = vocab["word"].to_numpy()
    out = []
    for block, scores in sorted(result.depth_profile.items()):
        s = np.asarray(scores, dtype=np.float64)[ids]
        row = {"block": int(block), "top_words": words[np.argsort(-s, kind="stable")[:TOP_WORDS]].tolist()}
        if truth is not None:
            row.update({k: (float(v) if np.isfinite(v) else None) for k, v in point_metrics(s, truth).items()})
        out.append(row)
    return out


def write_outputs(result: MethodResult, method: str, vocab: pd.DataFrame, truth: Truth | None, out_dir: str | Path,
                  cfg: ReadoutConfig = ReadoutConfig(), seed: int = 0) -> dict:
    """Write the method's folder (see the module docstring) atomically; returns readout.json's content."""
    kw = dict(unit=result.unit, n_boot=cfg.n_boot, n_perm=cfg.n_perm, level=cfg.ci_level, seed=seed)
    report: dict[str, Any] = {"method": method, "unit": result.unit, "n_units": int(result.token_scores.shape[0]),
                              "truth": truth.source if truth is not None else None}
    if truth is not None:
        report["readout"] = readout(result.token_scores, truth, **kw)
        report["variants"] = {name: readout(v, truth, **kw) for name, v in result.variants.items()}
    if result.depth_profile:
        report["depth_profile"] = depth_readout(result, vocab, truth)
    with atomic_dir(out_dir) as tmp:
        words_table(result, vocab, truth).to_parquet(tmp / "words.parquet", index=False)
        if result.latents is not None:
            latents = result.latents
            if truth is not None and "decoded_ids" in latents.columns:  # each card's decoded tokens' mean truth
                token_truth = np.zeros(result.token_scores.shape[1])
                token_truth[truth.frame["token_id"].to_numpy()] = truth.frame["value"].to_numpy()
                latents = latents.assign(token_utility=latent_token_utility(latents, token_truth))
            latents.to_parquet(tmp / "latents.parquet", index=False)
        (tmp / "readout.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
        (tmp / "extra.json").write_text(json.dumps(result.extra, indent=2, sort_keys=True, default=str) + "\n")
    return report


def diffing_stage(ctx: DiffContext, method: str, settings: StageSettings, out_dir: str | Path,
                  truth_reward=None, reward_name: str | None = None) -> dict:
    """Run ``method`` on ``ctx`` and write its folder at ``out_dir``; the truth comes from ``truth_reward``
    (a ``rewards.Reward``; None writes no readout). Returns readout.json's content."""
    from .truth import truth_for_reward
    from .vocab import word_vocab

    cfg = method_config(method, settings.method)
    ctx = dataclasses.replace(ctx, corpus_cfg=settings.corpus)
    _, _, tokenizer = ctx.models()
    vocab = word_vocab(tokenizer)
    truth = truth_for_reward(truth_reward, vocab, reward_name) if truth_reward is not None else None
    log.info("diffing %s on %d texts (%d groups)", method, len(ctx.corpus), ctx.corpus["group"].nunique())
    result = get_method_class(method)().run(ctx, cfg)
    report = write_outputs(result, method, vocab, truth, out_dir, settings.readout, seed=ctx.seed)
    if truth is not None:
        m = report["readout"]["metrics"]
        log.info("%s: Spearman %s, precision@50 %s (base rate %.3f), AUROC %s", method, m["spearman"]["value"],
                 m["precision@50"]["value"], report["readout"]["base_rate"], m["auroc"]["value"])
    return report


def diffing_job(*, base_dir: str | Path, policy_dir: str | Path, corpus_path: str | Path, method: str,
                settings: StageSettings, out_dir: str | Path, reward_name: str | None = None,
                rewards: dict | None = None, seed: int = 0, device: str = "cpu", layers_json: str | Path | None = None,
                stores: dict[str, Path] | None = None, sae_dirs: dict[int, Path] | None = None,
                crosscoder_dirs: dict[int, Path] | None = None, autointerp_tables: dict[int, Path] | None = None,
                work_dir: str | Path | None = None) -> dict:
    """What a workflow job (and ``rlhf-lens diff``) runs: read the corpus, build the overseer ``rewards[reward_name]``
    (the truth and the steering check; none when ``reward_name`` is None), run ``method``, write ``out_dir``."""
    from ..rewards import build_reward
    from .corpus import read_corpus

    corpus = read_corpus(settings.corpus, corpus_path, seed)
    layers = json.loads(Path(layers_json).read_text())["layers"] if layers_json else []
    reward = build_reward(reward_name, rewards or {}, device=device) if reward_name else None
    ctx = DiffContext(base_dir=Path(base_dir), policy_dir=Path(policy_dir), corpus=corpus, corpus_cfg=settings.corpus,
                      layers=list(layers), stores={k: Path(v) for k, v in (stores or {}).items()},
                      sae_dirs={int(k): Path(v) for k, v in (sae_dirs or {}).items()},
                      crosscoder_dirs={int(k): Path(v) for k, v in (crosscoder_dirs or {}).items()},
                      autointerp_tables={int(k): Path(v) for k, v in (autointerp_tables or {}).items()},
                      work_dir=Path(work_dir) if work_dir else None, device=device, seed=seed, reward=reward)
    return diffing_stage(ctx, method, settings, out_dir, truth_reward=reward, reward_name=reward_name)
