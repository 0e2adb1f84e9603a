"""The ``preferences`` stage: pairs of responses to one prompt, labelled by a known overseer.

Sampling (reused from ``rl``): each train prompt is cut once to a length drawn from
[query_min_tokens, query_max_tokens] (``rl.text.truncate_queries``), and every model in
``sample_from`` (the base model and/or trained policies) samples ``samples_per_prompt`` responses of
``response_max_tokens`` tokens (``rl.rollout.sample_responses``: top-k off, top-p 1, temperature 1).
All responses of one prompt are paired with each other (or a seeded ``pairs_per_prompt`` of those
pairs); pairs whose two texts are identical, and ties of the overseer (|r_a - r_b| <= 1e-9), are dropped.

Labels, Bradley-Terry: P(a > b) = sigmoid((r_a - r_b) / tau). ``tau = 0`` is deterministic (the
higher reward is chosen); otherwise the label is drawn with that probability. Then each label is
flipped with probability ``flip_rate`` (symmetric noise). ``p_chosen`` is the Bradley-Terry probability
of the label as drawn, before any flip (1.0 when tau = 0); ``flipped`` records the flip.

Held out by prompt: a seeded ``heldout_fraction`` of the prompts, all their pairs together.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..atomic import write_parquet
from ..rewards import Reward
from .table import as_pairs, check_pairs, read_external, source_kind, split_by_prompt

log = logging.getLogger(__name__)

TIE = 1e-9
"""Overseer rewards closer than this are a tie (the pair carries no preference and is dropped)."""


@dataclass(frozen=True)
class PreferencesConfig:
    """The preference pairs (``preferences:`` in config.yaml)."""

    overseer: str | None = None
    """Name of the reward (under ``rewards``) that labels the pairs and is the gold standard; null: no
    preference stage, unless ``source`` is a file (then its labels are used and there is no gold)."""
    source: str = "sample"
    """sample (responses drawn here and labelled by the overseer), a local .parquet/.csv/.jsonl file with
    chosen and rejected (and optionally prompt) columns, or hf:<dataset id> for Hugging Face datasets."""
    sample_from: tuple[str, ...] = ("base",)
    """Models whose responses are paired: base (the prepared base model) and/or reward names, whose
    trained policies (rl/{reward}/policy) sample too."""
    prompts: int | None = None
    """Train prompts to sample for (the first N of the train split); null uses all."""
    samples_per_prompt: int = 2
    """Responses per prompt from each model in sample_from (K >= 2 gives K(K-1)/2 pairs per model)."""
    pairs_per_prompt: int | None = None
    """At most this many pairs per prompt (a seeded sample of all pairs among its responses); null keeps all."""
    tau: float = 0.0
    """Bradley-Terry temperature of the labels, in reward units: P(a > b) = sigmoid((r_a - r_b) / tau); 0 is
    deterministic."""
    flip_rate: float = 0.0
    """Probability that a label is flipped after it is drawn (symmetric label noise)."""
    heldout_fraction: float = 0.2
    """Fraction of prompts whose pairs are held out (the reward model's accuracy is measured on them)."""
    hf_split: str = "train"
    """Split read from a Hugging Face preference dataset (source hf:<id>)."""
    batch_size: int = 64
    """Responses generated per forward batch."""

    def set_name(self) -> str:
        """The folder name of the preference set: the overseer, or ``external`` for a file without one."""
        return self.overseer or "external"


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # overflow-free logistic


def bt_labels(r_a: np.ndarray, r_b: np.ndarray, tau: float, flip_rate: float,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bradley-Terry labels of pairs (a, b): (a_chosen bool (n,), p of that label before flipping (n,),
    flipped bool (n,)). ``tau = 0``: a is chosen iff r_a > r_b, with probability 1."""
    r_a, r_b = np.asarray(r_a, dtype=np.float64), np.asarray(r_b, dtype=np.float64)
    if tau == 0:
        a_chosen, p = r_a > r_b, np.ones(len(r_a))
    else:
        p_a = sigmoid((r_a - r_b) / tau)
        a_chosen = rng.random(len(r_a)) < p_a
        p = np.where(a_chosen, p_a, 1.0 - p_a)
    flipped = rng.random(len(r_a)) < flip_rate
    return a_chosen ^ flipped, p, flipped


def label_pairs(prompts: list[str], responses: list[list[tuple[str, str]]], rewards: list[np.ndarray],
                cfg: PreferencesConfig, seed: int) -> pd.DataFrame:
    """The labelled pairs of every prompt: ``responses[p]`` = [(model, text), ...], ``rewards[p]`` their
    overseer rewards (same order). Identical texts and ties dropped; columns of ``table.COLUMNS`` plus
    ``chosen_model``, ``rejected_model`` and ``flipped``."""
    rng = np.random.default_rng([seed, 3])
    rows, n_ties, n_same = [], 0, 0
    for p, (prompt, resp, r) in enumerate(zip(prompts, responses, rewards)):
        pairs = list(itertools.combinations(range(len(resp)), 2))
        if cfg.pairs_per_prompt is not None and len(pairs) > cfg.pairs_per_prompt:
            keep = rng.choice(len(pairs), size=cfg.pairs_per_prompt, replace=False)
            pairs = [pairs[i] for i in sorted(keep)]
        for a, b in pairs:
            if resp[a][1] == resp[b][1]:
                n_same += 1
            elif abs(r[a] - r[b]) <= TIE:
                n_ties += 1
            else:
                rows.append((p, prompt, a, b, resp, r))
    if not rows:
        raise ValueError(f"no preference pairs left: {n_ties} tie(s) of the overseer and {n_same} pair(s) of "
                         f"identical responses dropped; sample more (preferences.samples_per_prompt, "
                         f"preferences.prompts) or use an overseer that separates the responses")
    r_a = np.array([r[a] for _, _, a, _, _, r in rows])
    r_b = np.array([r[b] for _, _, _, b, _, r in rows])
    a_chosen, p_label, flipped = bt_labels(r_a, r_b, cfg.tau, cfg.flip_rate, rng)
    out = []
    for (p, prompt, a, b, resp, r), pick_a, pl, fl in zip(rows, a_chosen, p_label, flipped):
        c, j = (a, b) if pick_a else (b, a)
        out.append({"prompt": prompt, "chosen": resp[c][1], "rejected": resp[j][1], "chosen_reward": float(r[c]),
                    "rejected_reward": float(r[j]), "p_chosen": float(pl), "prompt_index": p, "group": p,
                    "chosen_model": resp[c][0], "rejected_model": resp[j][0], "flipped": bool(fl)})
    log.info("%d pairs from %d prompts (%d ties and %d identical pairs dropped, %d labels flipped)", len(out),
             len(prompts), n_ties, n_same, int(flipped.sum()))
    return as_pairs(pd.DataFrame(out))


def sample_responses_per_prompt(model_dirs: dict[str, str | os.PathLike], texts: list[str], ppo, cfg: PreferencesConfig,
                                *, seed: int, device: str) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """(decoded prompts, [(model, response text)] per prompt): each prompt cut once, K samples per model."""
    import torch
    from tqdm import tqdm

    from ..model_parts import pad_token_id
    from ..models import load_prepared
    from ..rl.rollout import sample_responses
    from ..rl.text import check_context, decode_with_spans, tokenize_prompts, truncate_queries

    prompts: list[str] | None = None
    responses: list[list[tuple[str, str]]] = [[] for _ in texts]
    for m, (name, folder) in enumerate(model_dirs.items()):
        model, tokenizer = load_prepared(folder, device)
        check_context(model.config, ppo.query_max_tokens, ppo.response_max_tokens)
        if prompts is None:  # one cut per prompt, shared by every model (the tokenizer is the base model's)
            ids = tokenize_prompts(tokenizer, texts, "train prompts")
            queries = truncate_queries(ids, ppo.query_min_tokens, ppo.query_max_tokens,
                                       np.random.default_rng([seed, 2]))
            prompts = [tokenizer.decode(q, skip_special_tokens=True) for q in queries]
        torch.manual_seed(seed * 1000 + 17 + m)
        jobs = [(p, s) for p in range(len(queries)) for s in range(cfg.samples_per_prompt)]
        for start in tqdm(range(0, len(jobs), cfg.batch_size), desc=f"preference samples ({name})", unit="batch",
                          mininterval=5):
            chunk = jobs[start:start + cfg.batch_size]
            out = sample_responses(model, [queries[p] for p, _ in chunk], ppo.response_max_tokens,
                                   pad_id=pad_token_id(tokenizer), eos_id=tokenizer.eos_token_id,
                                   temperature=ppo.temperature, stop_at_eos=ppo.stop_at_eos, device=device)
            for (p, _), ids_ in zip(chunk, out):
                responses[p].append((name, decode_with_spans(tokenizer, ids_)[0]))
        del model
    return prompts or [], responses


def score_responses(overseer: Reward, prompts: list[str], responses: list[list[tuple[str, str]]]) -> list[np.ndarray]:
    """The overseer's reward of every response, per prompt (float64 arrays)."""
    flat_p = [prompts[p] for p, resp in enumerate(responses) for _ in resp]
    flat_r = [text for resp in responses for _, text in resp]
    scores = np.asarray(overseer.score(flat_p, flat_r), dtype=np.float64) if flat_r else np.zeros(0)
    out, i = [], 0
    for resp in responses:
        out.append(scores[i:i + len(resp)])
        i += len(resp)
    return out


def sampled_pairs(model_dirs: dict[str, str | os.PathLike], prompts_path: str | os.PathLike, overseer: Reward, ppo,
                  cfg: PreferencesConfig, *, seed: int = 0, device: str = "cpu") -> pd.DataFrame:
    """Pairs of responses to the train prompts from ``model_dirs`` (model name -> folder), labelled by ``overseer``."""
    from ..rl.train import read_prompts

    texts = read_prompts(prompts_path)
    if cfg.prompts is not None:
        texts = texts[:cfg.prompts]
    overseer.to(device)
    prompts, responses = sample_responses_per_prompt(model_dirs, texts, ppo, cfg, seed=seed, device=device)
    return label_pairs(prompts, responses, score_responses(overseer, prompts, responses), cfg, seed)


def external_pairs(cfg: PreferencesConfig, overseer: Reward | None, device: str = "cpu") -> pd.DataFrame:
    """The pairs of ``cfg.source`` (a file or hf:<id>), their labels as given. Pairs that share a prompt
    text share a group (the resampling unit); without prompts each pair is its own. The overseer, if any,
    scores both responses (the gold rewards); otherwise they are NaN."""
    df = read_external(cfg.source, hf_split=cfg.hf_split)
    if (df["prompt"] == "").all():
        index = np.arange(len(df))
    else:
        index = pd.factorize(df["prompt"])[0]
    df["prompt_index"] = index.astype(np.int64)
    df["group"] = df["prompt_index"]
    if overseer is not None:
        overseer.to(device)
        df["chosen_reward"] = np.asarray(overseer.score(list(df.prompt), list(df.chosen)), dtype=np.float64)
        df["rejected_reward"] = np.asarray(overseer.score(list(df.prompt), list(df.rejected)), dtype=np.float64)
    else:
        df["chosen_reward"] = np.nan
        df["rejected_reward"] = np.nan
    df["p_chosen"] = 1.0
    return as_pairs(df)


def write_splits(pairs: pd.DataFrame, train_path: str | os.PathLike, heldout_path: str | os.PathLike,
                 heldout_fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``pairs`` by prompt group and write both parquet files; each must hold at least one pair."""
    held = split_by_prompt(pairs["group"].to_numpy(), heldout_fraction, seed)
    train, heldout = pairs[~held].reset_index(drop=True), pairs[held].reset_index(drop=True)
    for name, part in (("train", train), ("heldout", heldout)):
        check_pairs(part, f"the {name} split of the preference pairs ({len(pairs)} pairs, "
                          f"{pairs['group'].nunique()} prompts; preferences.heldout_fraction {heldout_fraction})")
    write_parquet(train, train_path)
    write_parquet(heldout, heldout_path)
    log.info("preference pairs: %d train, %d held out (%d and %d prompts)", len(train), len(heldout),
             train["group"].nunique(), heldout["group"].nunique())
    return train, heldout


def preference_stage(cfg: PreferencesConfig, *, model_dirs: dict, prompts_path, overseer: Reward | None, ppo,
                     train_path, heldout_path, seed: int = 0, device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rule's work: sampled or external pairs, split by prompt and written."""
    if source_kind(cfg.source) == "sample":
        pairs = sampled_pairs(model_dirs, prompts_path, overseer, ppo, cfg, seed=seed, device=device)
    else:
        pairs = external_pairs(cfg, overseer, device)
    return write_splits(pairs, train_path, heldout_path, cfg.heldout_fraction, seed)


__all__ = ["PreferencesConfig", "bt_labels", "external_pairs", "label_pairs", "preference_stage", "sampled_pairs",
           "write_splits"]
