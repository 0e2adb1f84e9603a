"""What every crosscoder shares (Lindsey et al. 2024; Minder et al. 2025): one dictionary for several
models on identical tokens: one encoder over the concatenation of the models' activations of a
token, one decoder per model. The kinds (``crosscoder_l1``, ``crosscoder_batchtopk``) subclass
``Crosscoder`` with their sparsity and loss only.

Why it is an ``SAE``: a crosscoder over n models of width d_model is an SAE whose input is the
concatenation ``x = [x^1, ..., x^n]`` (tokens, n * d_model) and whose decoder rows are the
concatenation of the per-model atoms ``[d_j^1, ..., d_j^n]``; only the sparsity (it weighs each
latent by ``sum_m ||d_j^m||``) and the per-model views differ. So the registry (``models=2``),
``train.train_sae`` (seeded, resumable), ``io.save_sae``/``io.load_sae`` (safetensors + cfg.json) and
``metrics.ReconstructionStats`` serve it unchanged; ``d`` is the input width n * d_model.

Per-model input scaling: each model's activations are multiplied by its own constant (``base.
activation_scale`` of that model's training tokens) before training, as the SAEs' are. Unlike the
SAEs' (``fold_input_scale``), the constants are not folded into the weights: folding divides each
model's decoder by its constant, which would move every relative decoder norm by the ratio of the
two constants. They are kept as the buffer ``input_scale`` (n_models,): ``encode`` takes raw
activations and ``decode`` returns raw activations, while the weights (and every decoder norm the
diffing reads) stay in the space the crosscoder was trained in. ``loss`` works in that training space.

Shapes: ``x`` (tokens, n_models * d_model) raw activations, model-major; ``f`` (tokens, m) latents.
Saved tensors (the dictionary_learning CrossCoder layout): ``W_enc`` (n_models, d_model, m),
``W_dec`` (n_models, m, d_model), ``b_enc`` (m), ``b_dec`` (n_models, d_model), ``input_scale``
(n_models); cfg.json's ``d_in`` is the input width n_models * d_model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from .base import SAE, ArchitectureConfig


@dataclass(frozen=True)
class CrosscoderConfig(ArchitectureConfig):
    """Settings every crosscoder has."""

    n_models: int = 2
    """Models whose activations the encoder reads (and which get a decoder each)."""
    init_norm: float = 0.1
    """Norm of each model's decoder atom at initialisation (the encoder starts as the decoder's transpose)."""


class Crosscoder(SAE):
    """Base of the crosscoder modules: parameters, per-model views, scaling and the file layout.

    Parameters (training space): ``W_enc`` (d, m), ``b_enc`` (m), ``W_dec`` (m, d), ``b_dec`` (d)
    with d = n_models * d_model, model-major; ``f = act(x_s W_enc + b_enc)``, ``x_s_hat = f W_dec + b_dec``
    where ``x_s`` is x times each model's ``input_scale``.
    """

    n_models: ClassVar[int] = 2
    """Models per token the registry records (``register_sae_module(..., models=2)``)."""
    saelens_architecture = "crosscoder"  # no SAELens class computes it; written for the record
    EXTRA_TENSORS: ClassVar[tuple[str, ...]] = ()
    """Buffers a kind saves besides the shared tensors (e.g. BatchTopK's threshold), each of shape ()."""

    def __init__(self, d: int, m: int, n_models: int = 2, init_norm: float = CrosscoderConfig.init_norm):
        super().__init__()
        if n_models < 1 or d % n_models:
            raise ValueError(f"crosscoder: input width {d} is not n_models={n_models} times a model width")
        self.d, self.m, self.models, self.d_model = d, m, n_models, d // n_models
        self.init_norm = init_norm
        W = torch.randn(m, n_models, self.d_model)
        W = W / W.norm(dim=2, keepdim=True) * init_norm
        W = W.reshape(m, d)
        self.W_dec = nn.Parameter(W.clone())
        self.W_enc = nn.Parameter(W.T.clone())
        self.b_enc = nn.Parameter(torch.zeros(m))
        self.b_dec = nn.Parameter(torch.zeros(d))
        self.register_buffer("input_scale", torch.ones(n_models))

    # ----------------------------------------------------------------- per-model views

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(tokens, n_models * d_model) -> (tokens, n_models, d_model)."""
        return x.reshape(x.shape[0], self.models, self.d_model)

    def model_decoders(self) -> torch.Tensor:
        """Each model's atoms in the training space, (n_models, m, d_model)."""
        return self.W_dec.reshape(self.m, self.models, self.d_model).permute(1, 0, 2)

    def decoder_norms(self) -> torch.Tensor:
        """``||d_j^m||`` in the training space, (n_models, m)."""
        return self.W_dec.reshape(self.m, self.models, self.d_model).norm(dim=2).T

    def atoms(self) -> torch.Tensor:
        return nn.functional.normalize(self.W_dec, dim=1)

    def _scale_vector(self) -> torch.Tensor:
        """Each input coordinate's scale, (d,)."""
        return self.input_scale.repeat_interleave(self.d_model)

    @torch.no_grad()
    def set_input_scale(self, scales) -> None:
        """Record the per-model constants the training activations were multiplied by."""
        self.input_scale.copy_(torch.as_tensor(scales, dtype=self.input_scale.dtype))

    # ----------------------------------------------------------------- the function

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder pre-activations after ReLU on raw ``x``, (tokens, m)."""
        return torch.relu(torch.addmm(self.b_enc, x * self._scale_vector(), self.W_enc))

    def decode_scaled(self, f: torch.Tensor) -> torch.Tensor:
        """Reconstruction in the training space, (tokens, d)."""
        return torch.addmm(self.b_dec, f, self.W_dec)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """Raw-space reconstruction of every model, (tokens, d)."""
        return self.decode_scaled(f) / self._scale_vector()

    # ----------------------------------------------------------------- files

    def saelens_shapes(self, d: int, m: int) -> dict[str, tuple[int, ...]]:  # an instance method: needs n_models
        n, dm = self.models, d // self.models
        shapes = {"W_enc": (n, dm, m), "W_dec": (n, m, dm), "b_enc": (m,), "b_dec": (n, dm), "input_scale": (n,)}
        return {**shapes, **{name: () for name in self.EXTRA_TENSORS}}

    def saelens_tensors(self) -> dict[str, torch.Tensor]:
        t = {"W_enc": self.W_enc.reshape(self.models, self.d_model, self.m), "W_dec": self.model_decoders(),
             "b_enc": self.b_enc, "b_dec": self.b_dec.reshape(self.models, self.d_model),
             "input_scale": self.input_scale, **{name: getattr(self, name) for name in self.EXTRA_TENSORS}}
        return {k: v.detach().clone().contiguous() for k, v in t.items()}

    @torch.no_grad()
    def load_saelens_tensors(self, t: dict[str, torch.Tensor]) -> None:
        self.W_enc.copy_(t["W_enc"].reshape(self.d, self.m))
        self.W_dec.copy_(t["W_dec"].permute(1, 0, 2).reshape(self.m, self.d))
        self.b_enc.copy_(t["b_enc"])
        self.b_dec.copy_(t["b_dec"].reshape(self.d))
        self.input_scale.copy_(t["input_scale"])
        for name in self.EXTRA_TENSORS:
            getattr(self, name).copy_(t[name])

    def saelens_config(self) -> dict:
        return {"apply_b_dec_to_input": False}
