"""Sparse autoencoder architectures: the paper's tied ReLU + L1, and TopK with an auxiliary loss.

Shapes: ``x`` is (tokens, d) activations, ``f`` is (tokens, m) latents, m the dictionary size.
Both models expose the SAELens tensors (``W_enc`` (d, m), ``W_dec`` (m, d), ``b_enc`` (m),
``b_dec`` (d)) through ``saelens_tensors`` so they save in the layout other tools load.

Written here rather than taken from SAELens because SAELens pulls TransformerLens and a
training runner built around its own activation store, and its tied ReLU variant differs from
the paper's (it subtracts ``b_dec`` from the input and does not renormalise rows each forward).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

KINDS = ("relu", "topk")


def activation_scale(x: torch.Tensor) -> float:
    """The constant c that gives ``c * x`` a mean L2 norm of sqrt(d) (x: (tokens, d)).

    SAEs are trained on ``c * x`` so that the L1 coefficient means the same at every layer and
    model: MLP outputs differ in norm by >10x between blocks (SmolLM2's last blocks: ~800 vs ~50).
    """
    norm = x.norm(dim=1).mean().item()
    return 1.0 if norm == 0 else x.shape[1] ** 0.5 / norm


@torch.no_grad()
def fold_input_scale(sae: nn.Module, c: float) -> None:
    """Make an SAE trained on ``c * x`` work on raw ``x``: latents become 1/c times theirs, the
    reconstruction 1/c times theirs, atoms unchanged (both kinds are linear up to the ReLU/TopK,
    which commute with a positive scale), so dividing the two biases by c is exact."""
    sae.b_enc.div_(c)
    sae.b_dec.div_(c)


class TiedReLUSAE(nn.Module):
    """Marks et al. (2023): ``f = ReLU(W_n x + b_e)``, ``x_hat = W_n^T f + b_d``.

    ``W`` is (m, d); ``W_n`` is ``W`` with each row L2-normalised on every forward, so the
    L1 penalty cannot be dodged by shrinking latents and growing atoms. Loss: MSE (mean over
    tokens and dimensions) + l1 * mean over tokens of sum_i |f_i|.
    """

    kind = "relu"

    def __init__(self, d: int, m: int, l1: float = 1e-3):
        super().__init__()
        self.d, self.m, self.l1 = d, m, l1
        self.W = nn.Parameter(torch.empty(m, d))
        nn.init.kaiming_uniform_(self.W, a=5 ** 0.5)  # nn.Linear's default init
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.b_dec = nn.Parameter(torch.zeros(d))

    def atoms(self) -> torch.Tensor:
        """Unit-norm dictionary atoms, (m, d)."""
        return F.normalize(self.W, dim=1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x @ self.atoms().T + self.b_enc)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return f @ self.atoms() + self.b_dec

    def forward(self, x):
        f = self.encode(x)
        return self.decode(f), f

    def loss(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        x_hat, f = self(x)
        mse = F.mse_loss(x_hat, x)
        sparsity = f.abs().sum(dim=1).mean()
        return mse + self.l1 * sparsity, {"mse": mse.item(), "l1": sparsity.item()}

    def after_step(self) -> None:
        """Nothing to do: rows are renormalised inside every forward."""

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        atoms = self.atoms().detach()
        return {"W_enc": atoms.T.contiguous(), "W_dec": atoms.contiguous(),
                "b_enc": self.b_enc.detach().clone(), "b_dec": self.b_dec.detach().clone()}

    def load_saelens_tensors(self, t: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            self.W.copy_(t["W_dec"])
            self.b_enc.copy_(t["b_enc"])
            self.b_dec.copy_(t["b_dec"])

    def extra_cfg(self) -> dict:
        # The paper's encoder does not subtract b_dec from its input.
        return {"architecture": "standard", "apply_b_dec_to_input": False, "l1_coefficient": self.l1,
                "tied": True}


class TopKSAE(nn.Module):
    """TopK SAE (Gao et al. 2024): ``f = TopK_k(ReLU(W_enc^T (x - b_dec) + b_enc))``, ``x_hat = f W_dec + b_dec``.

    Untied; the decoder's atoms (rows of ``W_dec``, (m, d): the "columns" in the d x m
    convention) are kept at unit norm after every step. Loss: MSE + aux_coef * AuxK, where
    AuxK reconstructs the residual ``x - x_hat`` from the ``aux_k`` largest pre-activations
    of latents dead for ``dead_after`` tokens, so dead latents get a gradient again.
    """

    kind = "topk"

    def __init__(self, d: int, m: int, k: int = 32, aux_k: int | None = None, aux_coef: float = 1 / 32,
                 dead_after: int = 10_000):
        super().__init__()
        if not 0 < k <= m:
            raise ValueError(f"TopK SAE: k={k} must be in 1..{m} (the dictionary size)")
        self.d, self.m, self.k = d, m, k
        self.aux_k = aux_k if aux_k is not None else min(m, max(2 * k, d // 2))
        self.aux_coef, self.dead_after = aux_coef, dead_after
        W = torch.empty(m, d)
        nn.init.kaiming_uniform_(W, a=5 ** 0.5)
        W = F.normalize(W, dim=1)
        self.W_dec = nn.Parameter(W.clone())
        self.W_enc = nn.Parameter(W.T.clone())  # encoder starts as the decoder's transpose
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.b_dec = nn.Parameter(torch.zeros(d))
        # Tokens since each latent last fired (not a parameter: saved in checkpoints via state_dict).
        self.register_buffer("since_fired", torch.zeros(m, dtype=torch.long))

    def atoms(self) -> torch.Tensor:
        return F.normalize(self.W_dec, dim=1)

    def pre_acts(self, x):
        return F.relu((x - self.b_dec) @ self.W_enc + self.b_enc)

    def encode(self, x):
        pre = self.pre_acts(x)
        vals, idx = pre.topk(self.k, dim=1)
        return torch.zeros_like(pre).scatter_(1, idx, vals)

    def decode(self, f):
        return f @ self.W_dec + self.b_dec

    def forward(self, x):
        f = self.encode(x)
        return self.decode(f), f

    def loss(self, x):
        """MSE + aux_coef * AuxK on a batch ``x`` (n, d); the same function as ``decode(encode(x))``.

        Arranged to skip work autograd would otherwise do (profiled at d 576, m 1152, k 32):
        ``(x - b_dec) W_enc`` is computed as ``x W_enc - b_dec W_enc`` so b_dec's gradient is a
        vector-matrix product instead of a dense (n, m) x (m, d) one; ReLU runs on the k chosen
        values only (TopK then ReLU equals ReLU then TopK); the AuxK term uses only the dead
        latents' columns, so its cost scales with their number rather than with m.
        """
        pre = torch.addmm(self.b_enc - self.b_dec @ self.W_enc, x, self.W_enc)  # (n, m), before ReLU
        top, idx = pre.topk(self.k, dim=1)
        vals = F.relu(top)                                                # (n, k)
        f = torch.zeros_like(pre).scatter(1, idx, vals)
        x_hat = torch.addmm(self.b_dec, f, self.W_dec)
        mse = F.mse_loss(x_hat, x)
        with torch.no_grad():
            fired = torch.zeros(self.m, dtype=torch.bool)
            fired[idx[vals > 0]] = True
            self.since_fired += x.shape[0]
            self.since_fired[fired] = 0
            dead = self.since_fired >= self.dead_after
        aux = torch.zeros((), dtype=x.dtype)
        n_dead = int(dead.sum())
        if n_dead:
            # Only the dead latents' columns are needed: cost scales with their number, not m.
            dead_idx = dead.nonzero().squeeze(1)
            pre_dead = F.relu(pre[:, dead_idx])                          # (n, n_dead)
            a_vals, a_idx = pre_dead.topk(min(self.aux_k, n_dead), dim=1)
            f_aux = torch.zeros_like(pre_dead).scatter(1, a_idx, a_vals)
            residual = (x - x_hat).detach()
            aux = F.mse_loss(f_aux @ self.W_dec[dead_idx], residual)
        return mse + self.aux_coef * aux, {"mse": mse.item(), "aux": float(aux.detach()), "dead": n_dead}

    def after_step(self) -> None:
        with torch.no_grad():
            self.W_dec.copy_(F.normalize(self.W_dec, dim=1))

    def saelens_tensors(self):
        return {"W_enc": self.W_enc.detach().clone(), "W_dec": self.W_dec.detach().clone(),
                "b_enc": self.b_enc.detach().clone(), "b_dec": self.b_dec.detach().clone()}

    def load_saelens_tensors(self, t):
        with torch.no_grad():
            for name in ("W_enc", "W_dec", "b_enc", "b_dec"):
                getattr(self, name).copy_(t[name])

    def extra_cfg(self) -> dict:
        return {"architecture": "topk", "apply_b_dec_to_input": True, "k": self.k, "aux_k": self.aux_k,
                "aux_coef": self.aux_coef, "dead_after_tokens": self.dead_after}


def build_sae(kind: str, d: int, m: int, *, l1: float = 1e-3, k: int = 32, aux_coef: float = 1 / 32,
              dead_after: int = 10_000) -> nn.Module:
    """A fresh SAE of ``kind`` (relu: tied ReLU + L1; topk: TopK + AuxK), d inputs, m latents."""
    if kind == "relu":
        return TiedReLUSAE(d, m, l1=l1)
    if kind == "topk":
        return TopKSAE(d, m, k=min(k, m), aux_coef=aux_coef, dead_after=dead_after)
    raise ValueError(f"unknown SAE kind {kind!r}: expected one of {', '.join(KINDS)}")
