"""Crosscoder quality metrics: per-model reconstruction, sparsity, and each model's CE/KL with its
own reconstruction spliced in.

- Per model m: explained variance around the mean (float64 sums over the whole evaluation set, as
  ``metrics.ReconstructionStats``), the legacy variant around zero, MSE, cosine and l2 ratio of
  ``x^m_hat`` against ``x^m``, in raw activation units. Keys end in ``_<model name>``.
- Sparsity of the shared code: L0 (mean active latents per token, at inference: BatchTopK's
  threshold), dead fraction (never active on the evaluation tokens), dense fraction (>10%).
- ``spliced_model_losses``: model m run on the evaluation documents with its site's output replaced
  by ``x^m_hat`` at content tokens. The crosscoder reads both models' activations of a token, so the
  splice of model m needs the other models' activations of the same tokens: ``CrosscoderSplice``
  records them from the other models' forward on the same batch (``metrics.spliced_losses`` calls
  its ``prepare_batch`` first), then the hook encodes the concatenation and returns model m's part.
"""

from __future__ import annotations

import torch

from ..activations import capture
from .crosscoder import Crosscoder
from .metrics import ReconstructionStats, spliced_losses

PER_MODEL_KEYS = ("explained_variance", "explained_variance_legacy_around_zero", "mse", "cosine", "l2_ratio")


@torch.no_grad()
def crosscoder_reconstruction_metrics(xc: Crosscoder, xs: list[torch.Tensor], names: list[str],
                                      batch_size: int = 4096) -> dict:
    """Metrics of ``xc`` on raw activations ``xs`` (one (tokens, d_model) matrix per model, rows aligned)."""
    if len(xs) != xc.models or len(names) != xc.models:
        raise ValueError(f"crosscoder reads {xc.models} models; got {len(xs)} activation matrices, {len(names)} names")
    per_model = [ReconstructionStats(xc.d_model) for _ in xs]
    code = ReconstructionStats(xc.d, xc.m)  # for the latents' statistics
    for i in range(0, len(xs[0]), batch_size):
        parts = [x[i:i + batch_size] for x in xs]
        x = torch.cat(parts, 1)
        f = xc.encode(x)
        x_hat = xc.split(xc.decode(f))
        for mdl, stats in enumerate(per_model):
            stats.update(parts[mdl], x_hat[:, mdl])
        code.update(x, x_hat.reshape(len(x), -1), f)
    out = {}
    for name, stats in zip(names, per_model):
        res = stats.result()
        out.update({f"{key}_{name}": res[key] for key in PER_MODEL_KEYS})
    res = code.result()
    out.update({"n_tokens": res["n_tokens"], "l0": res["l0"], "dead_fraction": res["dead_fraction"],
                "dense_fraction": res["dense_fraction"], "dense_threshold": res["dense_threshold"],
                "explained_variance_joint": res["explained_variance"]})
    return out


class CrosscoderSplice:
    """Model ``index``'s reconstruction as a splice for ``metrics.spliced_losses``.

    ``others``: for every other model j, ``(model_j, layer, site)``: its activations of the batch are
    recorded by ``prepare_batch`` (one forward up to ``layer``), so ``__call__(h)`` (h: model
    ``index``'s activations at the content tokens, (tokens, d_model), in the batch's row-major order)
    can encode ``[x^1, ..., x^n]`` of exactly those tokens.
    """

    def __init__(self, xc: Crosscoder, index: int, others: dict[int, tuple], device: str = "cpu"):
        if set(others) != set(range(xc.models)) - {index}:
            raise ValueError(f"splice of model {index}: need the other models {sorted(set(range(xc.models)) - {index})}, "
                             f"got {sorted(others)}")
        self.xc, self.index, self.others, self.device = xc.to(device), index, others, device
        self._batch: dict[int, torch.Tensor] = {}

    def prepare_batch(self, ids, attn, content) -> None:
        self._batch = {}
        for j, (model, layer, site) in self.others.items():
            h = capture(model, [layer], site, ids, attn)[layer]
            self._batch[j] = h[content].float()

    @torch.no_grad()
    def __call__(self, h: torch.Tensor):
        parts = [h if j == self.index else self._batch[j] for j in range(self.xc.models)]
        if any(len(p) != len(h) for p in parts):
            raise ValueError("crosscoder splice: the models' content tokens differ in number; both must read one batch")
        f = self.xc.encode(torch.cat(parts, 1))
        x_hat = self.xc.split(self.xc.decode(f))[:, self.index]
        return x_hat, f


def spliced_model_losses(xc: Crosscoder, models: list, layer: int, site: str, modules: list, docs: list[list[int]],
                         names: list[str], mean_vectors: list[torch.Tensor], **kwargs) -> dict:
    """Each model's CE/KL with its own crosscoder reconstruction spliced in at ``modules[m]``
    (``metrics.spliced_losses`` per model, same documents); keys are suffixed ``_<name>``.
    ``kwargs``: spliced_losses' (exclude, pad_id, device, max_tokens, skip_first, batch_size)."""
    out = {}
    device = kwargs.get("device", "cpu")
    for mdl, (model, module, name) in enumerate(zip(models, modules, names)):
        others = {j: (models[j], layer, site) for j in range(len(models)) if j != mdl}
        splice = CrosscoderSplice(xc, mdl, others, device=device)
        res = spliced_losses(model, module, splice, docs, mean_vector=mean_vectors[mdl], **kwargs)
        out.update({f"{key}_{name}": value for key, value in res.items()})
    return out
