"""The L1 crosscoder (Lindsey et al. 2024), registered as ``crosscoder_l1``.

``f = ReLU(x W_enc + b_enc)``, ``x^m_hat = f W_dec^m + b_dec^m``; loss per token
``sum_m ||x^m - x^m_hat||^2 + l1 * sum_j f_j * sum_m ||d_j^m||`` (averaged over tokens), in the
training space (each model's activations scaled to a mean norm of sqrt(d_model)). The decoder
norms are free: the penalty carries them, which is what lets the L1 shrink one model's atom to
zero although that model uses the concept (complete shrinkage, Minder et al. 2025; ``diffing``'s
Latent Scaling flags it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .crosscoder import Crosscoder, CrosscoderConfig


@dataclass(frozen=True)
class CrosscoderL1Config(CrosscoderConfig):
    """Settings of the L1 crosscoder."""

    l1: float = 1.0
    """lambda: weight of sum_j f_j * sum_m ||d_j^m|| against the summed squared error (per token)."""


class CrosscoderL1(Crosscoder):
    """L1 crosscoder: ReLU latents, sparsity from the decoder-norm-weighted L1 penalty."""

    architecture = "crosscoder_l1"
    config_class = CrosscoderL1Config

    def __init__(self, d: int, m: int, n_models: int = 2, init_norm: float = CrosscoderConfig.init_norm,
                 l1: float = CrosscoderL1Config.l1):
        super().__init__(d, m, n_models, init_norm)
        self.l1 = l1

    @classmethod
    def from_config(cls, d: int, m: int, cfg: CrosscoderL1Config) -> "CrosscoderL1":
        return cls(d, m, n_models=cfg.n_models, init_norm=cfg.init_norm, l1=cfg.l1)

    def config(self) -> CrosscoderL1Config:
        return CrosscoderL1Config(n_models=self.models, init_norm=self.init_norm, l1=self.l1)

    def encode(self, x):
        return self.pre_acts(x)

    def loss(self, x):
        """Loss on a batch ``x`` (n, d) in the training space; returns (loss, parts)."""
        f = torch.relu(torch.addmm(self.b_enc, x, self.W_enc))
        sse = ((x - self.decode_scaled(f)) ** 2).sum(1).mean()
        sparsity = (f * self.decoder_norms().sum(0)).sum(1).mean()
        return sse + self.l1 * sparsity, {"sse": sse.item(), "sparsity": sparsity.item(),
                                          "l0": float((f > 0).sum(1).float().mean())}


SAE_CLASS = CrosscoderL1
CONFIG_CLASS = CrosscoderL1Config
