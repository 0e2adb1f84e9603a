"""The registry of SAE architectures, as SAELens has it: name -> (module class, config class).

``register_sae_class(name, cls, cfg_cls)`` adds one; ``get_sae_class(name)`` returns the pair;
``build_sae`` builds from the name, and ``io.load_sae`` dispatches on the name saved in cfg.json
(``rlhf_lens.architecture``), so no code anywhere branches on the architecture.

Adding an architecture (e.g. a crosscoder): write ``sae/<name>.py`` with its config (a subclass of
``base.ArchitectureConfig`` holding only its own fields) and its module (a subclass of
``base.SAE``), then add one ``register_sae_class`` line below. Nothing else changes: training,
saving, loading and metrics go through the registry and the ``SAE`` interface.
"""

from __future__ import annotations

from typing import Any

from .base import SAE, ArchitectureConfig
from .tied_relu import TiedReLUConfig, TiedReLUSAE
from .topk import TopKConfig, TopKSAE

_REGISTRY: dict[str, tuple[type[SAE], type[ArchitectureConfig]]] = {}


class UnknownArchitecture(ValueError):
    """No architecture of that name is registered."""


def register_sae_class(name: str, cls: type[SAE], cfg_cls: type[ArchitectureConfig]) -> None:
    """Register ``cls`` (a ``base.SAE``) with its config class under ``name`` (its ``architecture``)."""
    if getattr(cls, "architecture", None) != name:
        raise ValueError(f"register_sae_class({name!r}, {cls.__name__}): the class's architecture is "
                         f"{getattr(cls, 'architecture', None)!r}; they must match (it is what cfg.json records)")
    if name in _REGISTRY and _REGISTRY[name] != (cls, cfg_cls):
        raise ValueError(f"SAE architecture {name!r} is already registered to {_REGISTRY[name][0].__name__}")
    _REGISTRY[name] = (cls, cfg_cls)


def get_sae_class(name: str) -> tuple[type[SAE], type[ArchitectureConfig]]:
    """(module class, config class) registered under ``name``."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownArchitecture(f"unknown SAE architecture {name!r}: expected one of {', '.join(architectures())}") \
            from None


def architectures() -> tuple[str, ...]:
    """Every registered architecture's name, in registration order."""
    return tuple(_REGISTRY)


def build_sae(kind: str, d: int, m: int, **settings: Any) -> SAE:
    """A fresh SAE of architecture ``kind`` (relu: tied ReLU + L1; topk: TopK + AuxK), d inputs, m latents.

    ``settings``: any architecture's settings (l1, k, aux_coef, dead_after, ...); each architecture's
    config keeps its own and ignores the rest, so callers may pass one set for every kind.
    """
    cls, cfg_cls = get_sae_class(kind)
    return cls.from_config(d, m, cfg_cls.from_dict(settings))


register_sae_class("relu", TiedReLUSAE, TiedReLUConfig)
register_sae_class("topk", TopKSAE, TopKConfig)

KINDS = architectures()
"""The built-in architectures (the values ``sae.kinds`` accepts in config.yaml)."""
