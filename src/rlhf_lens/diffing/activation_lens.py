"""activation_lens: the Activation Difference Lens (ADL; Minder, Dumas, Slocum, Casademunt, Holmes, West,
Nanda 2025, "Narrow Finetuning Leaves Clearly Readable Traces in Activation Differences", arXiv 2510.13900;
code: science-of-finetuning/diffing-toolkit, ``src/diffing/methods/activation_difference_lens``).

Both models read the same corpus texts. At every block's output (the residual stream after block L, taken
by a forward hook on the block, so before the final norm even at the last block) the difference
policy - base is averaged (a) over positions 1..k of each text (default k = 4; position 0 is left out: with no
BOS token, SmolLM2's first position is an attention sink whose state barely depends on the text) and (b) over
all positions from 1 on (prompt included: the difference of a state on given tokens, not of a prediction).
Each mean difference, one per prompt group, is read through a model's final norm (its elementwise weight)
and unembedding (``vocab.logit_lens``): a token's score is the logit the difference adds to it.

``token_scores``: the positions-1..k difference at ``block`` read through the **base** model's norm and
unembedding (the frame the base model reads a shift in; the steering check adds the same vector to the base
model). Variants: ``policy_unembed`` (the same difference through the policy's norm and unembedding) and
``all_positions`` (difference (b) through the base model's). The depth profile reads difference (a) at every
block through the base model's unembedding (a logit lens, so early blocks are read poorly by construction).

Causal check (``steer``): the all-positions mean difference at ``block``, times ``steer_scale``, is added to
the base model's block output at every position while it samples completions of corpus prompts; the overseer
scores steered and unsteered samples drawn with the same seed, and the gain's CI is a bootstrap over prompts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from ..bootstrap import bootstrap_ci
from ..model_parts import find_blocks, output_tensor, pad_token_id, replace_output
from .base import MethodResult
from .corpus import batches, tokenize, unit_rows
from .vocab import logit_lens

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ActivationLensConfig:
    """``diffing.activation_lens``."""

    positions: int = 4
    """k: the mean difference of positions 1..k of each text (position 0, an attention sink, left out)."""
    block: int | None = None
    """Block (0-based) whose difference gives the method's scores; None: the second-to-last block (the
    strongest readout measured on the default run, issue 28: block 28 of SmolLM2-135M's 30)."""
    steer: bool = True
    """Run the causal check (costs generation: 2 x steer_prompts x steer_samples completions)."""
    steer_scale: float = 1.0
    """Multiple of the all-positions mean difference added to the base model's block output."""
    steer_prompts: int = 16
    """Corpus prompts (distinct prompt groups) the check samples from."""
    steer_samples: int = 2
    """Completions per prompt and arm."""
    steer_tokens: int = 24
    """Tokens per completion."""


def readout_block(cfg: ActivationLensConfig, n_blocks: int) -> int:
    block = n_blocks - 2 if cfg.block is None else cfg.block
    block = max(block, 0)
    if block >= n_blocks:
        raise ValueError(f"diffing.activation_lens.block = {cfg.block}: the model has {n_blocks} blocks (0..{n_blocks - 1})")
    return block


class _Capture:
    """Forward hooks that keep every block's output (B, T, d) of the last forward."""

    def __init__(self, model):
        self.blocks = find_blocks(model)
        self.out: list[torch.Tensor | None] = [None] * len(self.blocks)
        self.handles = []

    def __enter__(self):
        for i, block in enumerate(self.blocks):
            self.handles.append(block.register_forward_hook(self._hook(i)))
        return self

    def _hook(self, i):
        def hook(_module, _inputs, output):
            self.out[i] = output_tensor(output).detach().float()
        return hook

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()


@torch.no_grad()
def mean_differences(base, policy, tokenizer, docs, batch_size: int, k: int, device: str = "cpu"):
    """Per prompt group and block, the mean residual difference policy - base.

    Returns (first (n_groups, n_blocks, d) at positions 1..k, all (n_groups, n_blocks, d) at positions >= 1,
    the groups in row order, position counts (n_groups,) of each). Groups without a position >= 1 are dropped.
    """
    groups, row_of = unit_rows(docs)
    n_blocks = len(find_blocks(base))
    d_model = base.config.hidden_size
    first = torch.zeros(len(groups), n_blocks, d_model, dtype=torch.float64)
    every = torch.zeros_like(first)
    n_first, n_every = np.zeros(len(groups)), np.zeros(len(groups))
    with _Capture(base) as cb, _Capture(policy) as cp:
        for chunk, ids, mask in batches(docs, batch_size, tokenizer):
            ids, mask = ids.to(device), mask.to(device)
            # only the block outputs are needed: skip the unembedding of all but the last position
            base(input_ids=ids, attention_mask=mask, logits_to_keep=1)
            policy(input_ids=ids, attention_mask=mask, logits_to_keep=1)
            diff = torch.stack([p - b for p, b in zip(cp.out, cb.out)], dim=1).cpu().double()  # (B, L, T, d)
            for row, doc in enumerate(chunk):
                u, n = row_of[doc.group], len(doc.ids)
                first[u] += diff[row, :, 1:min(k, n - 1) + 1].sum(1)
                every[u] += diff[row, :, 1:n].sum(1)
                n_first[u] += min(k, n - 1)
                n_every[u] += n - 1
    keep = n_every > 0
    return (first[keep] / torch.as_tensor(n_first[keep])[:, None, None],
            every[keep] / torch.as_tensor(n_every[keep])[:, None, None], groups[keep], n_first[keep])


class _Steer:
    """Adds ``vector`` (d,) to a block's output at every position while active."""

    def __init__(self, block, vector: torch.Tensor):
        self.block, self.vector, self.handle = block, vector, None

    def __enter__(self):
        def hook(_module, _inputs, output):
            h = output_tensor(output)
            return replace_output(output, h + self.vector.to(h.dtype))
        self.handle = self.block.register_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def steering_check(base, tokenizer, reward, corpus, vector: torch.Tensor, block: int, cfg: ActivationLensConfig,
                   seed: int, device: str = "cpu") -> dict:
    """The overseer's mean score of the base model's samples with ``vector`` added at ``block`` vs without.

    Prompts: the prompt part of the first ``steer_prompts`` prompt groups of the corpus (the first 8 tokens of
    the text where a text has no prompt). Both arms draw with the same torch seed, so the sampling noise is
    shared. Returns the means, the per-prompt gain's mean and bootstrap CI over prompts, and a few examples.
    """
    from ..rl.rollout import sample_responses

    firsts = corpus.drop_duplicates("group").head(cfg.steer_prompts)
    prompts = []
    for text, chars in zip(firsts["text"], firsts["prompt_chars"]):
        if chars > 0:
            prompts.append(text[:int(chars)])
        else:
            prompts.append(tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"][:8]))
    queries = [torch.tensor(tokenizer(p, add_special_tokens=True)["input_ids"], dtype=torch.long)
               for p in prompts for _ in range(cfg.steer_samples)]
    kwargs = dict(pad_id=pad_token_id(tokenizer), eos_id=tokenizer.eos_token_id, device=device)

    def sample():
        torch.manual_seed(seed)
        return [tokenizer.decode(r, skip_special_tokens=True) for r in sample_responses(base, queries, cfg.steer_tokens, **kwargs)]

    plain = sample()
    with _Steer(find_blocks(base)[block], vector * cfg.steer_scale):
        steered = sample()
    flat_prompts = [p for p in prompts for _ in range(cfg.steer_samples)]
    r_plain = np.asarray(reward.score(flat_prompts, plain), dtype=np.float64).reshape(len(prompts), -1)
    r_steer = np.asarray(reward.score(flat_prompts, steered), dtype=np.float64).reshape(len(prompts), -1)
    gain = (r_steer - r_plain).mean(axis=1)
    lo, hi = bootstrap_ci(gain, seed=seed)
    return {"block": block, "scale": cfg.steer_scale, "n_prompts": len(prompts), "samples_per_prompt": cfg.steer_samples,
            "tokens": cfg.steer_tokens, "vector_norm": float(vector.norm() * cfg.steer_scale),
            "unsteered_mean": float(r_plain.mean()), "steered_mean": float(r_steer.mean()),
            "gain": float(gain.mean()), "gain_ci": [lo, hi],
            "examples": [{"prompt": p, "unsteered": a, "steered": b}
                         for p, a, b in list(zip(flat_prompts, plain, steered))[:3]]}


class ActivationLens:
    name: ClassVar[str] = "activation_lens"
    config_class: ClassVar[type] = ActivationLensConfig

    def run(self, ctx, cfg: ActivationLensConfig) -> MethodResult:
        base, policy, tokenizer = ctx.models()
        vocab = len(tokenizer)
        docs = tokenize(tokenizer, ctx.corpus, ctx.corpus_cfg.max_length)
        first, every, groups, n_first = mean_differences(base, policy, tokenizer, docs, ctx.corpus_cfg.batch_size,
                                                         cfg.positions, ctx.device)
        n_blocks = first.shape[1]
        block = readout_block(cfg, n_blocks)
        scores = logit_lens(first[:, block], base, vocab)
        variants = {"policy_unembed": logit_lens(first[:, block], policy, vocab),
                    "all_positions": logit_lens(every[:, block], base, vocab)}
        mean_first, mean_every = first.mean(0), every.mean(0)  # (n_blocks, d)
        profile = logit_lens(mean_first, base, vocab)  # (n_blocks, vocab)
        extra = {"block": block, "positions": cfg.positions, "n_blocks": n_blocks, "n_texts": len(docs),
                 "readout": "positions 1..k at block, through the base model's final norm and unembedding",
                 "score_units": "logits added per token by the mean residual difference",
                 "difference_norm": {"positions_1_k": mean_first.norm(dim=1).tolist(),
                                     "all_positions": mean_every.norm(dim=1).tolist()}}
        if cfg.steer and ctx.reward is not None:
            extra["steering"] = steering_check(base, tokenizer, ctx.reward, ctx.corpus, mean_every[block].float(),
                                               block, cfg, ctx.seed, ctx.device)
            log.info("activation_lens steering at block %d: gain %+.3f %s", block, extra["steering"]["gain"],
                     extra["steering"]["gain_ci"])
        elif cfg.steer:
            extra["steering"] = None
            log.info("activation_lens: no overseer given, steering check skipped")
        return MethodResult(token_scores=scores, unit="prompt_group", variants=variants,
                            depth_profile={b: profile[b] for b in range(n_blocks)}, extra=extra)


METHOD_CLASS = ActivationLens
