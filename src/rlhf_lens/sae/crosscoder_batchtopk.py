"""The BatchTopK crosscoder (Minder et al. 2025), registered as ``crosscoder_batchtopk``.

Training: ``a = ReLU(x W_enc + b_enc)``; the score of latent j on token i is
``a_ij * sum_m ||d_j^m||``; the ``k * batch`` largest scores of the whole batch are kept (their
``a_ij``, unscaled), everything else is zero; loss ``sum_m ||x^m - x^m_hat||^2 + aux_coef * AuxK``
per token, where AuxK reconstructs the residual from the ``aux_k`` best-scoring dead latents of each
token (dead: not kept for ``dead_after`` training tokens), as the TopK SAE's. No penalty on the
decoder norms, hence no pressure to shrink one model's atom (Minder et al.'s point).

Inference cannot see a batch: a latent is active where its score exceeds ``threshold``, the running
mean (an exponential one, weight ``threshold_beta`` on the past) of the smallest kept score of each
training batch. On data like the training data this keeps about k latents per token.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .crosscoder import Crosscoder, CrosscoderConfig


@dataclass(frozen=True)
class CrosscoderBatchTopKConfig(CrosscoderConfig):
    """Settings of the BatchTopK crosscoder."""

    k: int = 32
    """Mean active latents per token: the batch keeps its k * batch largest scores."""
    aux_k: int | None = None
    """Dead latents per token the AuxK loss reconstructs the residual from; None: min(m, max(2k, d_model // 2))."""
    aux_coef: float = 1 / 32
    """Weight of the AuxK loss."""
    dead_after: int = 10_000
    """A latent not kept for this many training tokens counts as dead."""
    threshold_beta: float = 0.9
    """Weight of the past in the running mean of the smallest kept score (the inference threshold); 0.9
    averages about the last 10 batches, so the threshold does not lag behind a short training run (0.99 left
    14 active latents per token at k=4 after 96 steps, 0.9 left 4.9)."""


class CrosscoderBatchTopK(Crosscoder):
    """BatchTopK crosscoder: sparsity from keeping the batch's k * batch best decoder-norm-weighted latents."""

    architecture = "crosscoder_batchtopk"
    config_class = CrosscoderBatchTopKConfig
    EXTRA_TENSORS = ("threshold",)

    def __init__(self, d: int, m: int, n_models: int = 2, init_norm: float = CrosscoderConfig.init_norm,
                 k: int = CrosscoderBatchTopKConfig.k, aux_k: int | None = None,
                 aux_coef: float = CrosscoderBatchTopKConfig.aux_coef,
                 dead_after: int = CrosscoderBatchTopKConfig.dead_after,
                 threshold_beta: float = CrosscoderBatchTopKConfig.threshold_beta):
        super().__init__(d, m, n_models, init_norm)
        if not 0 < k <= m:
            raise ValueError(f"BatchTopK crosscoder: k={k} must be in 1..{m} (the dictionary size)")
        self.k, self.aux_coef, self.dead_after, self.threshold_beta = k, aux_coef, dead_after, threshold_beta
        self.aux_k = aux_k if aux_k is not None else min(m, max(2 * k, self.d_model // 2))
        # -1: not learned yet (encode then falls back to the batch rule).
        self.register_buffer("threshold", torch.tensor(-1.0))
        self.register_buffer("since_fired", torch.zeros(m, dtype=torch.long))

    @classmethod
    def from_config(cls, d: int, m: int, cfg: CrosscoderBatchTopKConfig) -> "CrosscoderBatchTopK":
        return cls(d, m, n_models=cfg.n_models, init_norm=cfg.init_norm, k=min(cfg.k, m), aux_k=cfg.aux_k,
                   aux_coef=cfg.aux_coef, dead_after=cfg.dead_after, threshold_beta=cfg.threshold_beta)

    def config(self) -> CrosscoderBatchTopKConfig:
        return CrosscoderBatchTopKConfig(n_models=self.models, init_norm=self.init_norm, k=self.k, aux_k=self.aux_k,
                                         aux_coef=self.aux_coef, dead_after=self.dead_after,
                                         threshold_beta=self.threshold_beta)

    def _batch_select(self, a: torch.Tensor, norms: torch.Tensor):
        """(f, kept mask, scores) of the BatchTopK rule on post-ReLU pre-activations ``a`` (n, m)."""
        scores = a * norms
        n_keep = min(self.k * a.shape[0], scores.numel())
        flat_idx = scores.flatten().topk(n_keep).indices
        kept = torch.zeros(scores.numel(), dtype=torch.bool, device=a.device)
        kept[flat_idx] = True
        kept = kept.view_as(scores) & (scores > 0)
        return a * kept, kept, scores

    def encode_batch(self, x):
        """Latents of raw ``x`` by the training rule (the batch's k * n best scores), (tokens, m)."""
        return self._batch_select(self.pre_acts(x), self.decoder_norms().sum(0))[0]

    def encode(self, x):
        """Latents of raw ``x`` at inference: active where the score exceeds the learned threshold."""
        if float(self.threshold) < 0:
            return self.encode_batch(x)
        a = self.pre_acts(x)
        return a * (a * self.decoder_norms().sum(0) > self.threshold)

    def loss(self, x):
        """Loss on a batch ``x`` (n, d) in the training space; returns (loss, parts). Updates the
        threshold and the dead-latent counters (training state, saved in checkpoints)."""
        a = torch.relu(torch.addmm(self.b_enc, x, self.W_enc))
        with torch.no_grad():
            norms = self.decoder_norms().sum(0)
        f, kept, scores = self._batch_select(a, norms)
        x_hat = self.decode_scaled(f)
        sse = ((x - x_hat) ** 2).sum(1).mean()
        with torch.no_grad():
            if kept.any():
                smallest = scores[kept].min()
                beta = self.threshold_beta if float(self.threshold) >= 0 else 0.0
                self.threshold.copy_(beta * self.threshold + (1 - beta) * smallest)
            self.since_fired += x.shape[0]
            self.since_fired[kept.any(0)] = 0
            dead = self.since_fired >= self.dead_after
        aux = torch.zeros((), dtype=x.dtype, device=x.device)
        n_dead = int(dead.sum())
        if n_dead:
            dead_idx = dead.nonzero().squeeze(1)
            s_dead = scores[:, dead_idx]
            top = s_dead.topk(min(self.aux_k, n_dead), dim=1).indices
            f_aux = torch.zeros_like(s_dead).scatter(1, top, a[:, dead_idx].gather(1, top))
            residual = (x - x_hat).detach()
            aux = ((f_aux @ self.W_dec[dead_idx] - residual) ** 2).sum(1).mean()
        return sse + self.aux_coef * aux, {"sse": sse.item(), "aux": float(aux.detach()), "dead": n_dead,
                                           "threshold": float(self.threshold)}


SAE_CLASS = CrosscoderBatchTopK
CONFIG_CLASS = CrosscoderBatchTopKConfig
