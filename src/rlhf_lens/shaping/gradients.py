"""Integrated gradients of a differentiable reward over the response tokens: captum's LayerIntegratedGradients.

``LayerIntegratedGradients(f, model.get_input_embeddings())`` on the reward model's own tokens,
``n_steps`` interpolation steps (config ``rl.shaping.ig_n_steps``) from a baseline to the input,
for the whole rollout batch in one call (``internal_batch_size`` = ``rl.shaping.ig_batch_size``
interpolated inputs per forward pass). The baseline is the same text with every response token
replaced by a blank token (the tokenizer's unknown token, else its token for a space), so the prompt
and special tokens are the same in both and all of f(x) - f(baseline) lands on the response
(completeness: the attributions sum to it up to captum's convergence delta, which shrinks with
n_steps). The attribution of a reward-model token is the sum over the embedding dimensions of
(embedding - baseline embedding) * mean gradient; it is split over the policy tokens whose
character spans it overlaps, by the share of its characters each covers.

Needs a reward with a Hugging Face sequence-classification model inside: the reward_model type
with an HF folder, or the classifier type. The utility table and SARM are not differentiable here.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from .base import Explainer, ShapingError


def differentiable_parts(reward):
    """(model, tokenizer, label index, max_length, texts function) of a reward with an HF classifier inside.

    The texts function maps (prompts, responses) to (texts the model reads, character offset of the
    response in each). ShapingError naming the reward if it has none.
    """
    model, tokenizer = getattr(reward, "model", None), getattr(reward, "tokenizer", None)
    if model is None or tokenizer is None or not hasattr(model, "get_input_embeddings") \
            or getattr(reward, "kind", "hf") != "hf":
        raise ShapingError(f"reward {getattr(reward, 'name', reward)!r} has no differentiable Hugging Face model: "
                           "integrated gradients (rl.shaping.weights.ig) need a reward_model reward with an HF folder "
                           "or a classifier reward")
    scope = getattr(reward, "scope", "response")

    def texts_of(prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[int]]:
        if hasattr(reward, "texts"):  # RewardModelReward: prompt + response (+ EOS)
            texts = reward.texts(prompts, responses)
        else:
            texts = [f"{p}{r}" if scope == "prompt_and_response" else r for p, r in zip(prompts, responses)]
        offsets = [len(p) if scope == "prompt_and_response" else 0 for p in prompts]
        return texts, offsets

    max_length = int(getattr(reward, "max_length", 512))
    return model, tokenizer, int(getattr(reward, "label_index", 0)), max_length, texts_of


def blank_token_id(tokenizer) -> int:
    """The baseline token: the unknown token if the tokenizer has one distinct from padding, else a space."""
    unk, pad = getattr(tokenizer, "unk_token_id", None), getattr(tokenizer, "pad_token_id", None)
    if unk is not None and unk != pad:
        return int(unk)
    ids = tokenizer(" ", add_special_tokens=False).input_ids
    if not ids:
        raise ShapingError("integrated gradients: the reward's tokenizer has neither an unknown token nor a token "
                           "for a space, so no blank baseline")
    return int(ids[-1])


def spread_to_tokens(values: np.ndarray, offsets: Sequence[tuple[int, int]], start: int, length: int,
                     spans: Sequence[tuple[int, int]]) -> np.ndarray:
    """Attributions of reward-model tokens (char ``offsets`` in the text) -> policy tokens (``spans`` in the response).

    ``start``/``length``: where the response sits in the text. A token's value is split by character overlap.
    """
    out = np.zeros(len(spans))
    for v, (s, e) in zip(values, offsets):
        s, e = max(s - start, 0), min(e - start, length)
        if e <= s or v == 0.0:
            continue
        for t, (ts, te) in enumerate(spans):
            overlap = min(te, e) - max(ts, s)
            if overlap > 0:
                out[t] += v * overlap / (e - s)
    return out


class IntegratedGradients(Explainer):
    """Integrated gradients on the reward model's input embeddings (captum 0.9), per policy token."""

    name = "ig"

    def __init__(self, config, reward=None):
        super().__init__(config, reward)
        self.last_delta: np.ndarray | None = None
        """Captum's convergence delta per response of the last batch: sum of attributions - (f(x) - f(baseline))."""
        self.last_gap: np.ndarray | None = None
        """f(x) - f(baseline) per response of the last batch."""

    def settings(self):
        return (self.config.ig_n_steps,)

    def attribute(self, scorer, prompts, responses, spans):
        import torch
        from captum.attr import LayerIntegratedGradients

        model, tok, label, max_length, texts_of = differentiable_parts(self.reward)
        texts, starts = texts_of(prompts, responses)
        device = next(model.parameters()).device
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=max_length,
                  return_offsets_mapping=True, add_special_tokens=True)
        offsets = enc.pop("offset_mapping").tolist()
        ids, mask = enc["input_ids"].to(device), enc["attention_mask"].to(device)
        base = ids.clone()
        blank = blank_token_id(tok)
        for i, (start, resp) in enumerate(zip(starts, responses)):
            for k, (s, e) in enumerate(offsets[i]):
                if e > s and s < start + len(resp) and e > start and mask[i, k]:
                    base[i, k] = blank

        def forward(input_ids, attention_mask):
            return model(input_ids=input_ids, attention_mask=attention_mask).logits[:, label].float()

        t0 = time.perf_counter()
        lig = LayerIntegratedGradients(forward, model.get_input_embeddings())
        with torch.enable_grad():
            attr, delta = lig.attribute(inputs=ids, baselines=base, additional_forward_args=(mask,),
                                        n_steps=self.config.ig_n_steps, internal_batch_size=self.config.ig_batch_size,
                                        return_convergence_delta=True)
        with torch.no_grad():
            gap = forward(ids, mask) - forward(base, mask)
        scorer.stats.seconds += time.perf_counter() - t0
        scorer.stats.calls += -(-len(texts) * (self.config.ig_n_steps + 2) // self.config.ig_batch_size)
        scorer.stats.texts += len(texts) * (self.config.ig_n_steps + 2)
        per_token = attr.sum(-1).detach().float().cpu().numpy().astype(np.float64) * mask.cpu().numpy()
        self.last_delta = delta.detach().cpu().numpy().astype(np.float64)
        self.last_gap = gap.cpu().numpy().astype(np.float64)
        return [spread_to_tokens(per_token[i], offsets[i], starts[i], len(responses[i]), spans[i])
                for i in range(len(texts))]
