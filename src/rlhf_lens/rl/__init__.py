"""RLHF with per-token rewards: a shared trainer (``trainer``, ``rollout``) and the algorithms that
plug into it (``algorithm``: the interface and registry; ``ppo``), settings and presets
(``config``), training run with checkpoint/resume (``train``) and held-out evaluation (``evaluate``).

``rl.algorithm`` in config.yaml picks a registered algorithm. A new one is its own module and one
``register_algorithm`` line below; ``rl.algorithm``'s docstring says how GRPO and RLOO fit.
Importing this package loads no torch; import the submodules for the engine.
"""

from .algorithm import Algorithm, algorithm_names, get_algorithm, register_algorithm
from .config import PRESETS, EvalConfig, PPOConfig, ppo_config
from .ppo import PPO

register_algorithm("ppo", PPO)

__all__ = ["PRESETS", "Algorithm", "EvalConfig", "PPOConfig", "algorithm_names", "get_algorithm", "ppo_config",
           "register_algorithm"]
