"""LIME over the response's own tokens: lime's LimeTextExplainer with bow=False, regressing the raw score.

``LimeTextExplainer(split_expression=<the response's tokens>, bow=False, mask_string="",
feature_selection="none")``: every token position is a feature (bow=False), a removed token's text
is deleted, and ``explain_instance`` fits lime's weighted ridge regression of the reward itself
(a ``classifier_fn`` returning an (n, 1) array, ``labels=(0,)``) on ``num_samples`` perturbed texts
(config ``rl.shaping.lime_num_samples``). The coefficients are the attributions; they sum to
f(x) - intercept only approximately (ridge shrinkage, kernel weights). The perturbations are drawn
from a RandomState seeded by ``rl.shaping.seed`` and the text, so a text gets the same draws in
any batch and the run's global RNG is untouched (resume stays exact).

Batched across a rollout: lime calls the model once per response with all its samples; those
calls are merged into one reward call by ``BatchedScorer.run``.
"""

from __future__ import annotations

import numpy as np

from .base import Explainer, text_seed, token_texts


class Lime(Explainer):
    """Local linear coefficients of the reward on token presence (lime 0.2.0.1)."""

    name = "lime"

    def settings(self):
        return (self.config.lime_num_samples, self.config.seed)

    def explain_one(self, score, prompt: str, response: str, spans) -> np.ndarray:
        """LIME coefficients (len(spans),) of one response; ``score(prompt, texts)`` evaluates the reward."""
        from lime.lime_text import LimeTextExplainer

        keep, kept = token_texts(response, spans)
        out = np.zeros(len(spans))
        if not keep:
            return out
        pieces = [response[s:e] for s, e in kept]
        explainer = LimeTextExplainer(split_expression=lambda _text: pieces, bow=False, mask_string="",
                                      feature_selection="none",
                                      random_state=text_seed(self.config.seed, prompt, response))

        def classifier_fn(texts):
            return score(prompt, list(texts)).reshape(-1, 1)

        exp = explainer.explain_instance(response, classifier_fn, labels=(0,), num_features=len(pieces),
                                         num_samples=self.config.lime_num_samples)
        coef = np.zeros(len(pieces))
        for j, c in exp.local_exp[0]:
            coef[j] = c
        out[keep] = coef
        return out

    def attribute(self, scorer, prompts, responses, spans):
        jobs = [lambda score, p=p, r=r, s=s: self.explain_one(score, p, r, s)
                for p, r, s in zip(prompts, responses, spans)]
        return scorer.run(jobs)
