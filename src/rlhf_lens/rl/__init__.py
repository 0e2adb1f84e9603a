"""RLHF by PPO with per-token rewards: engine (``ppo``), settings and presets (``config``),
training run with checkpoint/resume (``train``) and held-out evaluation (``evaluate``).

Importing this package loads no torch; import the submodules for the engine.
"""

from .config import PRESETS, EvalConfig, PPOConfig, ppo_config

__all__ = ["PRESETS", "EvalConfig", "PPOConfig", "ppo_config"]
