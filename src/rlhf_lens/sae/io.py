"""Save and load SAEs in the SAELens folder layout.

A folder holds ``cfg.json`` (d_in, d_sae, architecture, ...) and ``sae_weights.safetensors``
with ``W_enc`` (d_in, d_sae), ``W_dec`` (d_sae, d_in), ``b_enc`` (d_sae), ``b_dec`` (d_in), all
float32. SAELens and other tools read this layout; our own settings sit under ``rlhf_lens``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .model import KINDS, build_sae

CFG = "cfg.json"
WEIGHTS = "sae_weights.safetensors"


class SAEFormatError(ValueError):
    """An SAE folder is missing a file or tensor, or a tensor has the wrong shape."""


def save_sae(sae, folder: str | os.PathLike, *, hook_name: str = "", extra: dict | None = None) -> None:
    """Write ``sae`` into ``folder`` (which must exist; callers wrap it in ``atomic_dir``)."""
    folder = Path(folder)
    tensors = {k: v.float().contiguous() for k, v in sae.saelens_tensors().items()}
    save_file(tensors, str(folder / WEIGHTS))
    cfg = {"d_in": sae.d, "d_sae": sae.m, "dtype": "float32", "device": "cpu", "hook_name": hook_name,
           "normalize_activations": "none", **sae.extra_cfg(),
           "rlhf_lens": {"kind": sae.kind, **(extra or {})}}
    (folder / CFG).write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def load_sae(folder: str | os.PathLike):
    """Read an SAE folder back into a model of the right kind; checks every tensor's presence and shape."""
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
    kind = cfg.get("rlhf_lens", {}).get("kind") or ("topk" if cfg.get("architecture") == "topk" else "relu")
    if kind not in KINDS:
        raise SAEFormatError(f"{cfg_path}: key 'rlhf_lens.kind' has value {kind!r}: expected one of {', '.join(KINDS)}")
    try:
        tensors = load_file(str(w_path))
    except Exception as exc:  # safetensors raises its own error types for truncated headers/data
        raise SAEFormatError(f"{w_path}: cannot be read as safetensors ({exc})") from None
    expected = {"W_enc": (d, m), "W_dec": (m, d), "b_enc": (m,), "b_dec": (d,)}
    missing = [k for k in expected if k not in tensors]
    if missing:
        raise SAEFormatError(f"{w_path}: missing tensor(s) {', '.join(missing)}; expected W_enc, W_dec, b_enc, b_dec")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise SAEFormatError(f"{w_path}: tensor {name} has shape {tuple(tensors[name].shape)}: expected {shape} "
                                 f"(d_in={d}, d_sae={m} from {CFG})")
    sae = build_sae(kind, d, m, l1=cfg.get("l1_coefficient", 1e-3), k=cfg.get("k", 32),
                    aux_coef=cfg.get("aux_coef", 1 / 32), dead_after=cfg.get("dead_after_tokens", 10_000))
    sae.load_saelens_tensors({k: v.float() for k, v in tensors.items()})
    return sae.eval(), cfg


def decoder_atoms(folder: str | os.PathLike) -> torch.Tensor:
    """Unit-norm decoder atoms (d_sae, d_in) of a saved SAE."""
    sae, _ = load_sae(folder)
    with torch.no_grad():
        return sae.atoms().detach().clone()
