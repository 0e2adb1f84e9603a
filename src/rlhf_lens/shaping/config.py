"""Settings of dense reward shaping (config ``rl.shaping``): which attributions, their weights, their budgets.

Torch-free, so config validation reads it in well under a second. The schema
(``schemas/config.schema.yaml``, ``rl.shaping``) holds the same defaults (tests/test_defaults.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def _default_weights() -> dict[str, float]:
    return {"last_token": 0.5, "shap": 0.5}


@dataclass(frozen=True)
class ShapingConfig:
    """``rl.shaping``: the shaped reward r'_t = (sum_k w_k e_{k,t}) * r(x, y) and each explainer's budget."""

    enabled: bool = False
    """Train the rl rule's policies on the shaped reward (false: the reward's own per-token form, as before)."""
    weights: dict[str, float] = field(default_factory=_default_weights)
    """Component -> weight w_k (>= 0, summing to 1): last_token (the sparse reward on the last token),
    uniform (r / T on every token), shap, lime, ig. Components of weight 0 are not computed."""
    shap_max_evals: int = 200
    """Reward evaluations per response for shap's Partition explainer (its max_evals)."""
    shap_batch_size: int = 50
    """Masked texts per model call of one response's Partition explainer (shap's batch_size)."""
    lime_num_samples: int = 200
    """Perturbed texts per response for lime's LimeTextExplainer (its num_samples)."""
    ig_n_steps: int = 20
    """Riemann steps of integrated gradients (captum's n_steps): forward + backward passes per response."""
    ig_batch_size: int = 64
    """Interpolated inputs per forward pass of integrated gradients (captum's internal_batch_size)."""
    min_net_share: float = 0.1
    """An explainer's attributions a_t become e_t = a_t / sum(a) only when sum(a) has the reward's sign and
    |sum(a)| >= min_net_share * sum(|a|); otherwise (all zero, cancelling, or of the other sign) e is uniform."""
    cache_size: int = 4096
    """Attributions kept per explainer, keyed by (prompt, response text, token spans): a response sampled
    again is not explained again."""
    seed: int = 0
    """Seed of lime's perturbations (mixed with a hash of each text, so the same text gets the same draws)."""

    def components(self) -> list[str]:
        """The components with a positive weight, in config order."""
        return [k for k, w in self.weights.items() if w > 0]

    def problems(self, prefix: str = "rl.shaping") -> list[str]:
        """Readable problems a schema cannot check: unknown components, weights off the simplex."""
        from .registry import explainer_names

        out = []
        known = explainer_names()
        for name in self.weights:
            if name not in known:
                out.append(f"key '{prefix}.weights.{name}' names no attribution: expected one of {', '.join(known)}")
        values = list(self.weights.values())
        if any((not isinstance(w, (int, float))) or w < 0 or not math.isfinite(w) for w in values):
            out.append(f"key '{prefix}.weights' has value {self.weights!r}: expected non-negative numbers")
        elif not values or abs(sum(values) - 1.0) > 1e-6:
            out.append(f"key '{prefix}.weights' has value {self.weights!r}: expected weights summing to 1 "
                       f"(they sum to {sum(values):.6g})")
        return out
