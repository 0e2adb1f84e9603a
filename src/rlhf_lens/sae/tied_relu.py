"""The paper's SAE (Marks et al. 2023): tied ReLU + L1, registered as ``relu``.

This file holds the whole architecture (its config and module); ``registry`` names it in one line.

SAELens: saved as ``architecture: standard`` with ``apply_b_dec_to_input: false``. SAELens's
StandardSAE computes ``f = ReLU(x W_enc + b_enc)``, ``x_hat = f W_dec + b_dec`` (without b_dec
subtracted from the input when apply_b_dec_to_input is false); with ``W_enc = W_n^T`` and
``W_dec = W_n`` (the unit-norm atoms, written both ways) that is exactly this module's function.

Written here rather than taken from SAELens because SAELens's tied variant differs from the
paper's (it subtracts ``b_dec`` from the input and does not renormalise rows each forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .base import SAE, ArchitectureConfig


@dataclass(frozen=True)
class TiedReLUConfig(ArchitectureConfig):
    """Settings of the tied ReLU SAE."""

    l1: float = 1e-3
    """L1 coefficient on the mean over tokens of sum_i |f_i|."""


class TiedReLUSAE(SAE):
    """Marks et al. (2023): ``f = ReLU(W_n x + b_e)``, ``x_hat = W_n^T f + b_d``.

    ``W`` is (m, d); ``W_n`` is ``W`` with each row L2-normalised on every forward, so the
    L1 penalty cannot be dodged by shrinking latents and growing atoms. Loss: MSE (mean over
    tokens and dimensions) + l1 * mean over tokens of sum_i |f_i|.
    """

    architecture = "relu"
    config_class = TiedReLUConfig
    saelens_architecture = "standard"

    def __init__(self, d: int, m: int, l1: float = TiedReLUConfig.l1):
        super().__init__()
        self.d, self.m, self.l1 = d, m, l1
        self.W = nn.Parameter(torch.empty(m, d))
        nn.init.kaiming_uniform_(self.W, a=5 ** 0.5)  # nn.Linear's default init
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.b_dec = nn.Parameter(torch.zeros(d))

    @classmethod
    def from_config(cls, d: int, m: int, cfg: TiedReLUConfig) -> "TiedReLUSAE":
        return cls(d, m, l1=cfg.l1)

    def config(self) -> TiedReLUConfig:
        return TiedReLUConfig(l1=self.l1)

    def atoms(self) -> torch.Tensor:
        """Unit-norm dictionary atoms, (m, d)."""
        return F.normalize(self.W, dim=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x @ self.atoms().T + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.atoms() + self.b_dec

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        x_hat, f = self(x)
        mse = F.mse_loss(x_hat, x)
        sparsity = f.abs().sum(dim=1).mean()
        return mse + self.l1 * sparsity, {"mse": mse.item(), "l1": sparsity.item()}

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        atoms = self.atoms().detach()
        return {"W_enc": atoms.T.contiguous(), "W_dec": atoms.contiguous(),
                "b_enc": self.b_enc.detach().clone(), "b_dec": self.b_dec.detach().clone()}

    def load_saelens_tensors(self, t: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.W.copy_(t["W_dec"])
            self.b_enc.copy_(t["b_enc"])
            self.b_dec.copy_(t["b_dec"])

    def saelens_config(self) -> dict:
        # The paper's encoder does not subtract b_dec from its input.
        return {"apply_b_dec_to_input": False}


SAE_CLASS = TiedReLUSAE
CONFIG_CLASS = TiedReLUConfig
