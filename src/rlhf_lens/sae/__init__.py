"""Sparse autoencoders: one file per architecture (``tied_relu``, ``topk``) on a shared base
(``base``), the registry of architectures (``registry``), training (``train``), SAELens-layout
files (``io``), metrics (``metrics``) and the stage that fits one SAE on one layer of an
activation store (``fit``)."""

from .base import SAE, ArchitectureConfig, activation_scale, fold_input_scale
from .io import SAEFormatError, load_sae, save_sae
from .registry import KINDS, UnknownArchitecture, architectures, build_sae, get_sae_class, register_sae_class
from .tied_relu import TiedReLUConfig, TiedReLUSAE
from .topk import TopKConfig, TopKSAE
from .train import SAETrainConfig, train_sae

__all__ = ["KINDS", "SAE", "ArchitectureConfig", "SAEFormatError", "SAETrainConfig", "TiedReLUConfig", "TiedReLUSAE",
           "TopKConfig", "TopKSAE", "UnknownArchitecture", "activation_scale", "architectures", "build_sae",
           "fold_input_scale", "get_sae_class", "load_sae", "register_sae_class", "save_sae", "train_sae"]
