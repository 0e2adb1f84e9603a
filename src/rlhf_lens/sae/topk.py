"""TopK SAE with the AuxK loss against dead latents (Gao et al. 2024), registered as ``topk``.

This file holds the whole architecture (its config and module); ``registry`` names it in one line.

SAELens: saved as ``architecture: topk`` with ``apply_b_dec_to_input: true`` and
``rescale_acts_by_decoder_norm: false``. SAELens's TopKSAE computes
``f = TopK_k((x - b_dec) W_enc + b_enc)`` with ReLU on the k chosen values, and
``x_hat = f W_dec + b_dec``: the same function as ``encode``/``decode`` here (ReLU then TopK
keeps the same values as TopK then ReLU), with the tensors saved as they are.

``decoder: free`` trains as SAELens's TopKTrainingSAE does by default (``decoder_init_norm`` 0.1,
``rescale_acts_by_decoder_norm``): the atoms' norms n_i are free, start at 0.1, and the latents are
``TopK(ReLU(pre_i n_i))`` decoded through the unit atoms ``W_dec_i / n_i``. Small starting norms give
Adam relatively larger steps early on, which is what lets a few hundred steps reach SAELens's
reconstruction. The norms are folded into the encoder when the tensors are saved (``W_enc_i n_i``,
``b_enc_i n_i``, unit atoms), so the file is the plain TopK function above.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .base import SAE, ArchitectureConfig


@dataclass(frozen=True)
class TopKConfig(ArchitectureConfig):
    """Settings of the TopK SAE."""

    k: int = 32
    """Active latents per token (clipped to the dictionary size when built)."""
    aux_k: int | None = None
    """Dead latents the AuxK loss reconstructs the residual from; None: min(m, max(2k, d // 2))."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""
    dead_after: int = 10_000
    """A latent that has not fired for this many training tokens counts as dead."""
    decoder: str = "unit"
    """unit: atoms renormalised to unit norm after every step (Gao et al.); free: atoms of free norm,
    starting at 0.1, pre-activations scaled by it (SAELens's default training), folded away when saved."""


DECODERS = ("unit", "free")


class TopKSAE(SAE):
    """TopK SAE (Gao et al. 2024): ``f = TopK_k(ReLU(W_enc^T (x - b_dec) + b_enc))``, ``x_hat = f W_dec + b_dec``.

    Untied; the decoder's atoms (rows of ``W_dec``, (m, d): the "columns" in the d x m
    convention) are kept at unit norm after every step (``decoder: unit``; see the module docstring for
    ``free``). Loss: MSE + aux_coef * AuxK, where
    AuxK reconstructs the residual ``x - x_hat`` from the ``aux_k`` largest pre-activations
    of latents dead for ``dead_after`` tokens, so dead latents get a gradient again.
    """

    architecture = "topk"
    config_class = TopKConfig
    saelens_architecture = "topk"

    def __init__(self, d: int, m: int, k: int = TopKConfig.k, aux_k: int | None = None,
                 aux_coef: float = TopKConfig.aux_coef, dead_after: int = TopKConfig.dead_after,
                 decoder: str = TopKConfig.decoder):
        super().__init__()
        if not 0 < k <= m:
            raise ValueError(f"TopK SAE: k={k} must be in 1..{m} (the dictionary size)")
        if decoder not in DECODERS:
            raise ValueError(f"TopK SAE: decoder {decoder!r}: expected one of {', '.join(DECODERS)}")
        self.d, self.m, self.k = d, m, k
        self.aux_k = aux_k if aux_k is not None else min(m, max(2 * k, d // 2))
        self.aux_coef, self.dead_after, self.decoder = aux_coef, dead_after, decoder
        W = torch.empty(m, d)
        nn.init.kaiming_uniform_(W, a=5 ** 0.5)
        W = F.normalize(W, dim=1) * (0.1 if decoder == "free" else 1.0)
        self.W_dec = nn.Parameter(W.clone())
        self.W_enc = nn.Parameter(W.T.clone())  # encoder starts as the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.b_dec = nn.Parameter(torch.zeros(d))
        # Tokens since each latent last fired (not a parameter: saved in checkpoints via state_dict).
        self.register_buffer("since_fired", torch.zeros(m, dtype=torch.long))

    @classmethod
    def from_config(cls, d: int, m: int, cfg: TopKConfig) -> "TopKSAE":
        return cls(d, m, k=min(cfg.k, m), aux_k=cfg.aux_k, aux_coef=cfg.aux_coef, dead_after=cfg.dead_after,
                   decoder=cfg.decoder)

    def config(self) -> TopKConfig:
        return TopKConfig(k=self.k, aux_k=self.aux_k, aux_coef=self.aux_coef, dead_after=self.dead_after,
                          decoder=self.decoder)

    def atoms(self) -> torch.Tensor:
        return F.normalize(self.W_dec, dim=1)

    def _norms(self) -> torch.Tensor | None:
        """(m,) atom norms n_i when they are free (``decoder: free``), else None (they are 1)."""
        return self.W_dec.norm(dim=1) if self.decoder == "free" else None

    def pre_acts(self, x):
        pre = (x - self.b_dec) @ self.W_enc + self.b_enc
        n = self._norms()
        return F.relu(pre if n is None else pre * n)

    def encode(self, x):
        pre = self.pre_acts(x)
        vals, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, idx, vals)

    def decode(self, f):
        n = self._norms()
        return (f if n is None else f / n) @ self.W_dec + self.b_dec

    def loss(self, x):
        """MSE + aux_coef * AuxK on a batch ``x`` (n, d); the same function as ``decode(encode(x))``.

        With free norms the latents are chosen by ``pre_i n_i`` and decoded as ``relu(pre_i n_i) / n_i``
        through ``W_dec_i``, which is ``relu(pre_i)`` for n_i > 0: the norms only choose (no gradient
        reaches them through the choice, as in SAELens), so the step costs what the unit one does.

        Arranged to skip work autograd would otherwise do (profiled at d 576, m 1152, k 32):
        ``(x - b_dec) W_enc`` is computed as ``x W_enc - b_dec W_enc`` so b_dec's gradient is a
        vector-matrix product instead of a dense (n, m) x (m, d) one; ReLU runs on the k chosen
        values only (TopK then ReLU equals ReLU then TopK); the AuxK term uses only the dead
        latents' columns, so its cost scales with their number rather than with m.
        """
        pre = torch.addmm(self.b_enc - self.b_dec @ self.W_enc, x, self.W_enc)  # (n, m), before ReLU
        with torch.no_grad():  # free norms choose the latents; relu(pre n) / n = relu(pre) is what they decode
            norms = self._norms()
            idx = (pre if norms is None else pre * norms).topk(self.k, dim=1).indices
        vals = F.relu(pre.gather(1, idx))                                 # (n, k)
        f = torch.zeros_like(pre).scatter(1, idx, vals)
        x_hat = torch.addmm(self.b_dec, f, self.W_dec)
        mse = F.mse_loss(x_hat, x)
        with torch.no_grad():
            fired = torch.zeros(self.m, dtype=torch.bool, device=x.device)
            fired[idx[vals > 0]] = True
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
            dead = self.since_fired >= self.dead_after
        aux = torch.zeros((), dtype=x.dtype, device=x.device)
        n_dead = int(dead.sum())
        if n_dead:
            # Only the dead latents' columns are needed: cost scales with their number, not m.
            dead_idx = dead.nonzero().squeeze(1)
            pre_dead = F.relu(pre[:, dead_idx])                          # (n, n_dead)
            with torch.no_grad():
                a_idx = (pre_dead if norms is None else pre_dead * norms[dead_idx]).topk(
                    min(self.aux_k, n_dead), dim=1).indices
            f_aux = torch.zeros_like(pre_dead).scatter(1, a_idx, pre_dead.gather(1, a_idx))
            residual = (x - x_hat).detach()
            aux = F.mse_loss(f_aux @ self.W_dec[dead_idx], residual)
        return mse + self.aux_coef * aux, {"mse": mse.item(), "aux": float(aux.detach()), "dead": n_dead}

    def after_step(self) -> None:
        if self.decoder == "unit":
            with torch.no_grad():
                self.W_dec.copy_(F.normalize(self.W_dec, dim=1))

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        """The tensors as saved: with free norms, n_i folded into the encoder and the atoms made unit
        (``TopK(ReLU(pre_i n_i))`` through ``W_dec_i / n_i`` is the plain TopK of the folded tensors)."""
        t = super().saelens_tensors()
        n = self._norms()
        if n is not None:
            n = n.detach()
            t.update(W_enc=t["W_enc"] * n, b_enc=t["b_enc"] * n, W_dec=t["W_dec"] / n[:, None])
        return t

    def saelens_config(self) -> dict:
        return {"apply_b_dec_to_input": True, "k": self.k, "rescale_acts_by_decoder_norm": False}


SAE_CLASS = TopKSAE
CONFIG_CLASS = TopKConfig
