"""SHAP values of the reward over the response's own tokens: shap's Partition explainer with a Text masker.

``shap.Explainer(f, shap.maskers.Text(tokens), algorithm="partition")`` with ``max_evals`` reward
evaluations per response (config ``rl.shaping.shap_max_evals``). The masker's "tokenizer" is
``ResponseTokens``: it hands shap the policy's sampled tokens (their character spans in the decoded
response) instead of re-tokenising the text, so each SHAP value belongs to one token the policy
emitted. shap's Text masker replaces a run of masked tokens by " ..." (its mask for tokenizers
without a mask token) and collapses whitespace. The Partition explainer builds its coalition tree
from the token strings (words stay together) and computes Owen values; with evaluations enough to
open the whole tree they are exact Shapley values of an additive reward, and they sum to
f(all tokens) - f(no tokens) in any case.

Batched across a rollout: one explainer per response, run in threads by ``BatchedScorer.run``, so
the reward scores every response's masked texts of a round in one call.
"""

from __future__ import annotations

import re

import numpy as np

from .base import Explainer, token_texts

_WORDS = re.compile(r"\s*\S+")


class ResponseTokens:
    """A tokenizer for shap's Text masker that returns the known token spans of one text.

    Other strings (shap probes "" and its mask token when the masker is built) are cut into
    whitespace-led words; ids are positions (the masker only needs their number).
    """

    def __init__(self, text: str, spans):
        self.text, self.spans = text, [tuple(s) for s in spans]

    def __call__(self, s, return_offsets_mapping=True, **kwargs):
        spans = self.spans if s == self.text else [m.span() for m in _WORDS.finditer(s)]
        out = {"input_ids": list(range(len(spans)))}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out


class Shap(Explainer):
    """Owen/Shapley values of the reward over the response tokens (shap 0.51 Partition explainer)."""

    name = "shap"

    def settings(self):
        return (self.config.shap_max_evals, self.config.shap_batch_size)

    def explain_one(self, score, prompt: str, response: str, spans) -> np.ndarray:
        """SHAP values (len(spans),) of one response; ``score(prompt, texts)`` evaluates the reward."""
        import shap

        keep, kept = token_texts(response, spans)
        out = np.zeros(len(spans))
        if not keep:
            return out
        masker = shap.maskers.Text(ResponseTokens(response, kept))

        def f(texts):
            return score(prompt, [str(t) for t in texts])

        if len(kept) == 1:
            # One token has no clustering tree (shap's Text masker divides by the max of an empty linkage,
            # and its exact explainer needs the tree too): its Shapley value is f(x) - f(masked), on the
            # masker's own two texts.
            texts = [str(masker(np.full(1, keep_token), response)[0][0]) for keep_token in (True, False)]
            with_token, without = f(texts)
            values = np.array([with_token - without])
        else:
            explainer = shap.Explainer(f, masker, algorithm="partition")
            values = explainer([response], max_evals=self.config.shap_max_evals,
                               batch_size=self.config.shap_batch_size, silent=True).values[0]
        out[keep] = np.asarray(values, dtype=np.float64).reshape(-1)
        return out

    def attribute(self, scorer, prompts, responses, spans):
        jobs = [lambda score, p=p, r=r, s=s: self.explain_one(score, p, r, s)
                for p, r, s in zip(prompts, responses, spans)]
        return scorer.run(jobs)
