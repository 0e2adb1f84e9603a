"""Sparse autoencoders: architectures (``model``), training (``train``), SAELens-layout files (``io``),
metrics (``metrics``) and the stage that fits one SAE on one layer of an activation store (``fit``)."""

from .io import SAEFormatError, load_sae, save_sae
from .model import KINDS, TiedReLUSAE, TopKSAE, build_sae
from .train import SAETrainConfig, train_sae

__all__ = ["KINDS", "SAEFormatError", "SAETrainConfig", "TiedReLUSAE", "TopKSAE", "build_sae", "load_sae",
           "save_sae", "train_sae"]
