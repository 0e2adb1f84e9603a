"""Save and load SAEs of any registered architecture in the SAELens 6 folder layout.

A folder holds ``cfg.json`` and ``sae_weights.safetensors`` (``W_enc`` (d_in, d_sae), ``W_dec``
(d_sae, d_in), ``b_enc`` (d_sae), ``b_dec`` (d_in), float32), as ``sae_lens.SAE.load_from_disk``
reads them. ``cfg.json`` is SAELens 6's ``SAEConfig.to_dict()``::

    {"architecture": "standard" | "topk" (SAELens's name), "d_in", "d_sae", "dtype", "device",
     "apply_b_dec_to_input", "normalize_activations": "none", "reshape_activations": "none",
     <the architecture's SAELens fields, e.g. TopK's "k", "rescale_acts_by_decoder_norm">,
     "metadata": {"sae_lens_version", "sae_lens_training_version", "model_name", "hook_name"
                  (TransformerLens form, blocks.19.hook_mlp_out), "hook_head_index", "context_size",
                  "prepend_bos": false, "seqpos_slice", "model_from_pretrained_kwargs", ...},
     "rlhf_lens": {"architecture": our registry name (relu, topk), "config": its config's fields,
                   <the caller's extra settings: layer, site, size, seed, train_config, ...>}}

Loading dispatches on ``rlhf_lens.architecture`` through the registry. Files of the older flat
layout (``rlhf_lens.kind``, ``l1_coefficient``, ``dead_after_tokens`` at the top level) still load.
Nothing here names an architecture: a new one needs only its own file and its registry line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from .base import SAE
from .registry import UnknownArchitecture, architectures, get_sae_class

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"
SAELENS_VERSION = "6.54.12"
"""The SAELens release whose cfg.json layout we write (and test loading with)."""
_LEGACY_NAMES = {"l1_coefficient": "l1", "dead_after_tokens": "dead_after"}
"""Flat-layout cfg.json keys (before the registry) -> config field names."""


class SAEFormatError(ValueError):
    """An SAE folder is missing a file or tensor, or a tensor has the wrong shape."""


def saelens_hook_name(layer: int, site: str) -> str:
    """TransformerLens's name of a hook site: ``(19, "mlp_out")`` -> ``blocks.19.hook_mlp_out``
    (``resid_post`` -> ``blocks.L.hook_resid_post``)."""
    return f"blocks.{layer}.hook_{site}"


def saelens_cfg(sae: SAE, *, hook_name: str = "", model_name: str | None = None, context_size: int | None = None,
                extra: dict | None = None) -> dict[str, Any]:
    """The cfg.json of ``sae`` (SAELens 6 layout, our settings under ``rlhf_lens``)."""
    return {
        "architecture": sae.saelens_architecture,
        "d_in": sae.d,
        "d_sae": sae.m,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        **sae.saelens_config(),
        "metadata": {
            "sae_lens_version": SAELENS_VERSION,
            "sae_lens_training_version": SAELENS_VERSION,
            "model_name": model_name,
            "hook_name": hook_name,
            "hook_head_index": None,
            "context_size": context_size,
            "prepend_bos": False,
            "seqpos_slice": [None],
            "model_from_pretrained_kwargs": {},
        },
        "rlhf_lens": {"architecture": sae.architecture, "config": sae.config().to_dict(), **(extra or {})},
    }


def save_sae(sae: SAE, folder: str | os.PathLike, *, hook_name: str = "", model_name: str | None = None,
             context_size: int | None = None, extra: dict | None = None) -> None:
    """Write ``sae`` into ``folder`` (which must exist; callers wrap it in ``atomic_dir``).

    ``hook_name``: the site in TransformerLens form (``saelens_hook_name``); ``model_name``,
    ``context_size``: SAELens metadata; ``extra``: our own settings, kept under ``rlhf_lens``.
    """
    folder = Path(folder)
    tensors = {k: v.float().contiguous() for k, v in sae.saelens_tensors().items()}
    save_file(tensors, str(folder / WEIGHTS))
    cfg = saelens_cfg(sae, hook_name=hook_name, model_name=model_name, context_size=context_size, extra=extra)
    (folder / CFG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def read_sae_cfg(cfg: dict, cfg_path: Path) -> tuple[str, dict]:
    """(architecture name, its settings) from a cfg.json of either layout; the name is checked
    against the registry (an unknown one names the file, the key and the known ones)."""
    ours = cfg.get("rlhf_lens") if isinstance(cfg.get("rlhf_lens"), dict) else {}
    if "architecture" in ours:  # this layout
        key, name, settings = "rlhf_lens.architecture", ours["architecture"], ours.get("config") or {}
    else:  # the flat layout before the registry: the kind, and settings at the top level
        settings = {_LEGACY_NAMES.get(k, k): v for k, v in cfg.items()}
        if "kind" in ours:
            key, name = "rlhf_lens.kind", ours["kind"]
        else:  # no settings of ours: the architecture whose SAELens name this is
            key = "architecture"
            matches = [n for n in architectures(None) if get_sae_class(n)[0].saelens_architecture == cfg.get(key)]
            name = matches[0] if len(matches) == 1 else cfg.get(key)
    try:
        get_sae_class(name)
    except UnknownArchitecture:
        raise SAEFormatError(f"{cfg_path}: key {key!r} has value {name!r}: expected one of "
                             f"{', '.join(architectures(None))} (the registered SAE architectures)") from None
    return name, settings


def load_sae(folder: str | os.PathLike):
    """Read an SAE folder back into a model of its architecture; checks every tensor's presence and shape.

    Returns (sae in eval mode, the cfg.json dict).
    """
    folder = Path(folder)
    cfg_path, w_path = folder / CFG, folder / WEIGHTS
    for path in (cfg_path, w_path):
        if not path.is_file():
            raise SAEFormatError(f"{path}: missing; an SAE folder needs {CFG} and {WEIGHTS}")
    try:
        cfg = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as exc:
        raise SAEFormatError(f"{cfg_path}: not valid JSON ({exc})") from None
    for key in ("d_in", "d_sae"):
        if not isinstance(cfg.get(key), int) or cfg[key] < 1:
            raise SAEFormatError(f"{cfg_path}: key {key!r} has value {cfg.get(key)!r}: expected a positive integer")
    d, m = cfg["d_in"], cfg["d_sae"]
    name, settings = read_sae_cfg(cfg, cfg_path)
    cls, cfg_cls = get_sae_class(name)
    sae = cls.from_config(d, m, cfg_cls.from_dict(settings))
    # The file's SAELens settings must be those under which SAELens computes this architecture.
    for key, value in sae.saelens_config().items():
        if key in cfg and cfg[key] != value:
            raise SAEFormatError(f"{cfg_path}: key {key!r} has value {cfg[key]!r}: architecture {name!r} "
                                 f"computes its function with {value!r}")
    try:
        tensors = load_file(str(w_path))
    except Exception as exc:  # safetensors raises its own error types for truncated headers/data
        raise SAEFormatError(f"{w_path}: cannot be read as safetensors ({exc})") from None
    expected = sae.saelens_shapes(d, m)  # on the instance: a crosscoder's shapes depend on its n_models
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise SAEFormatError(f"{w_path}: missing tensor(s) {', '.join(missing)}; expected {', '.join(expected)}")
    for tname, shape in expected.items():
        if tuple(tensors[tname].shape) != shape:
            raise SAEFormatError(f"{w_path}: tensor {tname} has shape {tuple(tensors[tname].shape)}: expected {shape} "
                                 f"(d_in={d}, d_sae={m} from {CFG})")
    sae.load_saelens_tensors({k: v.float() for k, v in tensors.items()})
    return sae.eval(), cfg
