"""Dense reward shaping from explanations (Koo et al. 2025): per-token rewards from token attributions.

A sequence reward r(x, y) is explained over the response tokens by feature-additive attribution
methods - SHAP (``shap_tokens``), LIME (``lime_tokens``), integrated gradients (``gradients``) - and
the sparse and uniform placements (``simple``); ``normalise`` turns each into shares summing to 1 and
mixes them, r'_t = (sum_k w_k e_{k,t}) * r with w on the simplex (``rl.shaping.weights``), so the
shaped rewards of a response sum to r. ``ShapedReward`` is that as a ``Reward`` (its
``token_rewards`` is the shaped form), which the RL run trains on when ``rl.shaping.enabled``.
``batching.BatchedScorer`` scores every explainer's masked texts of a rollout in shared, cached reward
calls. Config: ``config.ShapingConfig``.

Layer: reads ``rewards``, is read by ``rl``. The Bayesian search over w and the comparison of schemes
run RL and live above it, in ``rlhf_lens.shaping_study``. Importing this package loads no torch.
"""

from .base import Explainer, ShapingError
from .config import ShapingConfig
from .gradients import IntegratedGradients
from .lime_tokens import Lime
from .registry import explainer_names, get_explainer_class, register_explainer
from .shap_tokens import Shap
from .simple import LastToken, Uniform

register_explainer("last_token", LastToken)
register_explainer("uniform", Uniform)
register_explainer("shap", Shap)
register_explainer("lime", Lime)
register_explainer("ig", IntegratedGradients)

__all__ = ["Explainer", "ShapingConfig", "ShapingError", "explainer_names", "get_explainer_class",
           "register_explainer"]
