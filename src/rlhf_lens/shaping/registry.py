"""The registry of token-attribution components: config name -> Explainer class (torch-free).

``rlhf_lens.shaping`` holds the registration lines of the built-in components; a new one is its
own module with an ``Explainer`` subclass and one ``register_explainer`` line there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import Explainer

_REGISTRY: dict[str, type["Explainer"]] = {}


def register_explainer(name: str, cls: type["Explainer"]) -> None:
    """Make ``rl.shaping.weights.<name>`` use ``cls``."""
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"attribution {name!r} is already registered to {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls


def explainer_names() -> list[str]:
    """The registered component names, in registration order."""
    return list(_REGISTRY)


def get_explainer_class(name: str) -> type["Explainer"]:
    """The class registered as ``name``; KeyError naming the known ones if none."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown attribution {name!r}: expected one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
