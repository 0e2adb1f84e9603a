"""The registry of SAE architectures, as SAELens has it: name -> (module class, config class).

``register_sae_class(name, cls, cfg_cls)`` adds one; ``get_sae_class(name)`` returns the pair;
``build_sae`` builds from the name, and ``io.load_sae`` dispatches on the name saved in cfg.json
(``rlhf_lens.architecture``), so no code anywhere branches on the architecture.

Adding an architecture (e.g. a crosscoder): write ``sae/<name>.py`` with its config (a subclass of
``base.ArchitectureConfig`` holding only its own fields) and its module (a subclass of
``base.SAE``), set ``SAE_CLASS`` and ``CONFIG_CLASS`` at its end, then add one
``register_sae_module`` line below. Nothing else changes: training, saving, loading, metrics and
config validation (``sae.kinds`` is checked against ``architectures()``, which imports no torch) go
through the registry and the ``SAE`` interface.

Two-model dictionaries (crosscoders, ``crosscoder.py``) are SAEs over the concatenation of several
models' activations of one token, so they use the same interface, files and training loop; they
register with ``models=2`` (``register_sae_module(name, module, models=2)``, or the class's
``n_models``). ``architectures()`` lists the one-model architectures (what ``sae.kinds`` accepts: a
crosscoder cannot be trained on one role's store), ``architectures(models=2)`` the crosscoders,
``architectures(models=None)`` every one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import SAE, ArchitectureConfig

# name -> (module class, config class), or name -> "module" for built-ins imported on first use:
# the names are then known without importing torch, so config validation can check sae.kinds fast.
_REGISTRY: dict[str, tuple[type[SAE], type[ArchitectureConfig]] | str] = {}
# name -> how many models' activations it reads per token (1: an SAE; 2: a crosscoder), known without torch.
_MODELS: dict[str, int] = {}


class UnknownArchitecture(ValueError):
    """No architecture of that name is registered."""


def register_sae_class(name: str, cls: type[SAE], cfg_cls: type[ArchitectureConfig]) -> None:
    """Register ``cls`` (a ``base.SAE``) with its config class under ``name`` (its ``architecture``)."""
    if getattr(cls, "architecture", None) != name:
        raise ValueError(f"register_sae_class({name!r}, {cls.__name__}): the class's architecture is "
                         f"{getattr(cls, 'architecture', None)!r}; they must match (it is what cfg.json records)")
    if name in _REGISTRY and get_sae_class(name) != (cls, cfg_cls):
        raise ValueError(f"SAE architecture {name!r} is already registered to {_REGISTRY[name][0].__name__}")
    _REGISTRY[name] = (cls, cfg_cls)
    _MODELS[name] = int(getattr(cls, "n_models", 1))


def register_sae_module(name: str, module: str, models: int = 1) -> None:
    """Register the architecture ``name`` defined in ``rlhf_lens.sae.<module>``, imported on first use;
    the module names its classes ``SAE_CLASS`` and ``CONFIG_CLASS``. ``models``: how many models'
    activations it reads per token (2 for a crosscoder)."""
    _REGISTRY.setdefault(name, module)
    _MODELS.setdefault(name, models)


def get_sae_class(name: str) -> tuple[type[SAE], type[ArchitectureConfig]]:
    """(module class, config class) registered under ``name``."""
    try:
        entry = _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownArchitecture(f"unknown SAE architecture {name!r}: expected one of {', '.join(architectures())}") \
            from None
    if isinstance(entry, str):
        module = importlib.import_module(f"{__package__}.{entry}")
        entry = (module.SAE_CLASS, module.CONFIG_CLASS)
        if getattr(entry[0], "architecture", None) != name:
            raise ValueError(f"rlhf_lens.sae.{module.__name__.rsplit('.', 1)[-1]}.SAE_CLASS is "
                             f"{entry[0].__name__}, whose architecture is not {name!r}")
        _REGISTRY[name] = entry
    return entry


def architectures(models: int | None = 1) -> tuple[str, ...]:
    """The registered architectures' names that read ``models`` models per token (1: the SAEs,
    2: the crosscoders; None: every one), in registration order."""
    return tuple(n for n in _REGISTRY if models is None or _MODELS.get(n, 1) == models)


def build_sae(kind: str, d: int, m: int, **settings: Any) -> SAE:
    """A fresh SAE of architecture ``kind`` (relu: tied ReLU + L1; topk: TopK + AuxK), d inputs, m latents.

    ``settings``: any architecture's settings (l1, k, aux_coef, dead_after, ...); each architecture's
    config keeps its own and ignores the rest, so callers may pass one set for every kind.
    """
    cls, cfg_cls = get_sae_class(kind)
    return cls.from_config(d, m, cfg_cls.from_dict(settings))


register_sae_module("relu", "tied_relu")
register_sae_module("topk", "topk")
register_sae_module("crosscoder_batchtopk", "crosscoder_batchtopk", models=2)
register_sae_module("crosscoder_l1", "crosscoder_l1", models=2)

KINDS = architectures()
"""The built-in architectures (the values ``sae.kinds`` accepts in config.yaml)."""
