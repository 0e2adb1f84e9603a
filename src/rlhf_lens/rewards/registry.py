"""The registry of reward types: ``type`` name -> (reward class, config class).

Torch-free, like every reward module at import time, so config validation can list the types,
their keys, defaults and required keys in well under a second. ``rlhf_lens.rewards`` holds the
registration lines of the built-in types. A type may be registered by "module:attribute" strings,
imported on first use: how a reward type that lives above ``rewards`` in the import layers (``r2m``,
which reads the policy) registers without ``rewards`` importing it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import RewardError

if TYPE_CHECKING:
    from .base import Reward, RewardConfig

_REGISTRY: dict[str, tuple[type["Reward"] | str, type["RewardConfig"] | str]] = {}


def register_reward(type_name: str, cls: type["Reward"] | str, cfg_cls: type["RewardConfig"] | str) -> None:
    """Make ``rewards.<name>.type: <type_name>`` build ``cls`` from a ``cfg_cls`` read from config (either may be
    a "module:attribute" string, imported when first asked for)."""
    if type_name in _REGISTRY and _REGISTRY[type_name] != (cls, cfg_cls):
        raise ValueError(f"reward type {type_name!r} is already registered to {_REGISTRY[type_name][0].__name__}")
    _REGISTRY[type_name] = (cls, cfg_cls)


def unregister_reward(type_name: str) -> None:
    """Remove a registered type (for tests that register a throwaway one)."""
    _REGISTRY.pop(type_name, None)


def reward_types() -> list[str]:
    """The registered type names, in registration order."""
    return list(_REGISTRY)


def _entry(type_name: str, name: str | None):
    if type_name not in _REGISTRY:
        where = f"key 'rewards.{name}.type'" if name else "reward type"
        names = reward_types()
        expected = " or ".join([", ".join(names[:-1]), names[-1]] if len(names) > 1 else names)
        raise RewardError(f"{where} has value {type_name!r}: expected {expected}")
    return tuple(_resolve(x) for x in _REGISTRY[type_name])


def _resolve(entry):
    if isinstance(entry, str):
        module, attr = entry.split(":")
        return getattr(importlib.import_module(module), attr)
    return entry


def get_reward_class(type_name: str, name: str | None = None) -> type["Reward"]:
    """The reward class registered as ``type_name``; RewardError naming ``rewards.<name>.type`` if none."""
    return _entry(type_name, name)[0]


def get_reward_config_class(type_name: str, name: str | None = None) -> type["RewardConfig"]:
    """The config dataclass of reward type ``type_name`` (its keys, defaults and required keys)."""
    return _entry(type_name, name)[1]
