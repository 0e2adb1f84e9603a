"""The registry of diffing methods: name -> "module" (imported on first use, so the names are known
without importing torch and config validation can check ``diffing.methods`` fast).

Adding a method: write ``diffing/<name>.py`` with its config dataclass and its class (``name``,
``config_class``, ``run(ctx, cfg) -> base.MethodResult``), set ``METHOD_CLASS`` at its end, and add one
``register_method_module`` line below. Nothing else changes.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

_REGISTRY: dict[str, Any] = {}
_NEEDS: dict[str, frozenset[str]] = {}

NEEDS = ("layers", "stores", "saes", "crosscoders", "autointerp")
"""What a method may need from earlier stages besides the two models and the corpus (the workflow's inputs):
the divergence stage's studied blocks, the activation stores, the base model's SAEs, the crosscoders, the
autointerp tables of the policy's features (the paper's chain)."""


class UnknownMethod(ValueError):
    """No diffing method of that name is registered."""


def register_method_module(name: str, module: str, needs: tuple[str, ...] = ()) -> None:
    """Register the method ``name`` defined in ``rlhf_lens.diffing.<module>`` (its ``METHOD_CLASS``); ``needs``:
    which of ``NEEDS`` its job must wait for."""
    unknown = set(needs) - set(NEEDS)
    if unknown:
        raise ValueError(f"diffing method {name!r}: unknown needs {sorted(unknown)}; expected some of {NEEDS}")
    _REGISTRY.setdefault(name, module)
    _NEEDS[name] = frozenset(needs)


def needs(name: str) -> frozenset[str]:
    """Which of ``NEEDS`` method ``name`` reads (empty for corpus-only methods and classes registered directly)."""
    return _NEEDS.get(name, frozenset())


def register_method_class(cls: type) -> None:
    """Register an already imported method class under its ``name`` (e.g. from a user's plugin or a test)."""
    _REGISTRY[cls.name] = cls


def unregister_method(name: str) -> None:
    """Remove a registered method (for tests that register a throwaway one)."""
    _REGISTRY.pop(name, None)


def methods() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_REGISTRY)


def available(name: str) -> bool:
    """Whether method ``name`` can run in this checkout: registered, and its module present (found without
    importing it, so this stays torch-free). The workflow plans only available methods, so a registered name
    whose file is not written yet does not break a run."""
    entry = _REGISTRY.get(name)
    if entry is None:
        return False
    return not isinstance(entry, str) or importlib.util.find_spec(f"{__package__}.{entry}") is not None


def get_method_class(name: str) -> type:
    """The class registered under ``name``; UnknownMethod listing the known names if none."""
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise UnknownMethod(f"unknown diffing method {name!r}: expected one of {', '.join(methods())}") from None
    if isinstance(entry, str):
        cls = importlib.import_module(f"{__package__}.{entry}").METHOD_CLASS
        if cls.name != name:
            raise ValueError(f"rlhf_lens.diffing.{entry}.METHOD_CLASS is named {cls.name!r}, not {name!r}")
        _REGISTRY[name] = entry = cls
    return entry


# One line per built-in method (the order is the report's ladder).
register_method_module("logit_shift", "logit_shift")
register_method_module("activation_lens", "activation_lens")
register_method_module("sae_shift", "sae_shift", needs=("layers", "stores", "saes"))
register_method_module("diff_sae", "diff_sae", needs=("layers", "stores"))
register_method_module("crosscoder", "crosscoder", needs=("layers", "stores", "crosscoders"))
register_method_module("paper", "paper", needs=("layers", "autointerp"))
