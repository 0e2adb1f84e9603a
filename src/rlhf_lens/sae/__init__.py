"""Sparse autoencoders: one file per architecture (``tied_relu``, ``topk``) on a shared base
(``base``), the registry of architectures (``registry``), training (``train``), SAELens-layout
files (``io``), metrics (``metrics``) and the stage that fits one SAE on one layer of an
activation store (``fit``). Crosscoders for model diffing are two-model SAEs in the same registry
(``crosscoder`` + one file per kind: ``crosscoder_l1``, ``crosscoder_batchtopk``), with their metrics
(``crosscoder_metrics``), the diffing (``diffing``: relative decoder norm, Latent Scaling) and their
stage (``crosscoder_fit``).

The names below load on first use (PEP 562), so ``rlhf_lens.sae.registry.architectures()`` is
available to config validation without importing torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "SAE": "base", "ArchitectureConfig": "base", "activation_scale": "base", "fold_input_scale": "base",
    "SAEFormatError": "io", "load_sae": "io", "save_sae": "io",
    "KINDS": "registry", "UnknownArchitecture": "registry", "architectures": "registry", "build_sae": "registry",
    "get_sae_class": "registry", "register_sae_class": "registry", "register_sae_module": "registry",
    "TiedReLUConfig": "tied_relu", "TiedReLUSAE": "tied_relu", "TopKConfig": "topk", "TopKSAE": "topk",
    "SAETrainConfig": "train", "train_sae": "train",
    "Crosscoder": "crosscoder", "CrosscoderConfig": "crosscoder", "CrosscoderL1": "crosscoder_l1",
    "CrosscoderL1Config": "crosscoder_l1", "CrosscoderBatchTopK": "crosscoder_batchtopk",
    "CrosscoderBatchTopKConfig": "crosscoder_batchtopk", "CrosscoderStageConfig": "crosscoder_fit",
    "fit_crosscoder": "crosscoder_fit",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
