"""RLHF with per-token rewards: a shared trainer (``trainer``, ``rollout``) and the algorithms that
plug into it (``algorithm``: the interface and registry; ``ppo``; the group methods ``grpo`` and
``rloo`` on ``group_method``, with their statistics in ``groups``), settings and presets
(``config``), training run with checkpoint/resume (``train``) and held-out evaluation (``evaluate``).

``rl.algorithm`` in config.yaml picks a registered algorithm. A new one is its own module and one
``register_algorithm`` line below; ``rl.algorithm``'s docstring says how GRPO and RLOO fit.
Importing this package loads no torch; import the submodules for the engine.
"""

from .algorithm import Algorithm, algorithm_names, algorithm_settings, get_algorithm, register_algorithm
from .config import PRESETS, EvalConfig, PPOConfig, ppo_config
from .grpo import GRPO
from .ppo import PPO
from .rloo import RLOO

register_algorithm("ppo", PPO)
register_algorithm("grpo", GRPO)
register_algorithm("rloo", RLOO)

__all__ = ["PRESETS", "Algorithm", "EvalConfig", "algorithm_settings", "PPOConfig", "algorithm_names", "get_algorithm", "ppo_config",
           "register_algorithm"]
