"""Seeded, resumable SAE training on an in-memory activation matrix.

Deterministic on CPU for a given seed and thread count: the initialisation and the per-epoch
shuffles come from generators seeded by ``seed``. A checkpoint (model, optimiser, epoch, step)
is written every ``checkpoint_every`` steps and at each epoch end; ``train_sae`` resumes from it
and reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from ..atomic import atomic_file
from .precision import autocast, autocast_dtype
from .registry import build_sae

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SAETrainConfig:
    """How one SAE is trained (built from ``sae:`` in config.yaml and the {size} wildcard)."""

    kind: str = "relu"
    """Architecture (a registry name): relu (the paper's tied ReLU + L1) or topk (TopK + AuxK)."""
    d_sae: int = 576
    """Dictionary size m (number of latents)."""
    l1: float = 1e-3
    """relu only: L1 coefficient on mean over tokens of sum_i |f_i|."""
    k: int = 32
    """topk only: active latents per token."""
    aux_coef: float = 1 / 32
    """topk only: weight of the AuxK loss for dead latents."""
    dead_after: int = 10_000
    """topk only: a latent that has not fired for this many training tokens counts as dead."""
    decoder: str = "unit"
    """topk only: unit (atoms renormalised after every step) or free (SAELens's training: atom norms start
    at 0.1 and scale the pre-activations; folded away when saved)."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_decay: float = 0.0
    """Fraction of the optimiser steps, at the end, over which the learning rate falls linearly to 0
    (0: constant)."""
    epochs: int = 3
    """Passes over the training tokens."""
    batch_size: int = 256
    """Tokens per optimiser step (each epoch takes the full batches of a fresh shuffle; the remainder is left out)."""
    b_dec_init: str = "mean"
    """Starting decoder bias: mean (of ``x``: the latents need not carry the offset, so fewer become
    always-on; measured at block 19, 25k tokens: 2% dense latents instead of 9%) or zeros."""
    autocast: str = "off"
    """Dtype of the step's matrix products: off (float32), bfloat16 (torch.autocast; parameters, optimiser
    state and loss stay float32), or auto (bfloat16 where the device computes it natively; rlhf_lens.sae.precision)."""
    seed: int = 0
    """Seeds the initialisation and the shuffles."""
    checkpoint_every: int = 500
    """Optimiser steps between checkpoints (also one at every epoch end)."""


def train_sae(x: torch.Tensor, cfg: SAETrainConfig, checkpoint: str | os.PathLike | None = None,
              progress: bool = True, stop_after: int | None = None, device: str = "cpu"):
    """Train an SAE on activations ``x`` (tokens, d) float32; returns (sae, history list of dicts).

    ``device``: where the SAE and each batch live while training (the job's device: a GPU when the
    rule asks for one); the initialisation and the token order are drawn on the CPU either way, so
    a seed gives the same starting point everywhere. The SAE is returned on ``device``.

    ``checkpoint``: a file path; if it exists training resumes from it, and it is rewritten as
    training goes. The caller deletes it when the result is safely stored. ``stop_after``: return
    after this many optimiser steps in this call (checkpoint saved first), as if interrupted.
    """
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"training activations must be a non-empty (tokens, d) matrix, got shape {tuple(x.shape)}")
    sae = _initial_sae(cfg, x.shape[1])
    if cfg.b_dec_init == "mean":
        with torch.no_grad():
            sae.b_dec.copy_(x.double().mean(0).float())
    elif cfg.b_dec_init != "zeros":
        raise ValueError(f"b_dec_init {cfg.b_dec_init!r}: expected mean or zeros")
    sae = sae.to(device)
    x = x.to(device)
    products = autocast_dtype(cfg.autocast, device)
    opt = torch.optim.Adam(sae.parameters(), lr=cfg.lr, fused=True)  # fused: one kernel, not one per tensor
    steps_per_epoch = _steps_per_epoch(len(x), cfg.batch_size)
    ckpt = Path(checkpoint) if checkpoint else None
    epoch, step, history = _resume(ckpt, cfg, len(x), sae, opt)

    def save(epoch_, step_):
        if ckpt:
            _save_checkpoint(ckpt, cfg, len(x), sae, opt, epoch_, step_, history)

    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=epoch * steps_per_epoch + step,
               desc=f"SAE {cfg.kind} m={cfg.d_sae}", unit="step", disable=not progress)
    sae.train()
    done = 0
    while epoch < cfg.epochs:
        perm = _epoch_order(cfg, epoch, len(x)).to(device)
        sums: dict[str, float] = {}
        while step < steps_per_epoch:
            _set_lr(opt, cfg, (epoch * steps_per_epoch + step) / (cfg.epochs * steps_per_epoch))
            parts = _optimiser_step(sae, opt, x[perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]], products,
                                    device)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            step += 1
            done += 1
            bar.update(1)
            if stop_after is not None and done >= stop_after and step < steps_per_epoch:
                save(epoch, step)
                bar.close()
                return sae.eval(), history
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < steps_per_epoch:
                save(epoch, step)
        history.append({"epoch": epoch, **{k: v / steps_per_epoch for k, v in sums.items()}})
        log.info("epoch %d: %s", epoch, {k: round(v, 5) for k, v in history[-1].items()})
        epoch, step = epoch + 1, 0
        save(epoch, step)
    bar.close()
    return sae.eval(), history


def _initial_sae(cfg: SAETrainConfig, d: int):
    """The seeded initial SAE of ``cfg``, d inputs."""
    # The initialisation depends on the size too: with one seed for both, the small dictionary's
    # initial atoms would be the first rows of the large one's, and a briefly trained pair would
    # "agree" (MMCS ~0.95 measured) only because it started from the same vectors.
    torch.manual_seed(cfg.seed * 1_000_003 + cfg.d_sae)
    return build_sae(cfg.kind, d, cfg.d_sae, l1=cfg.l1, k=cfg.k, aux_coef=cfg.aux_coef, dead_after=cfg.dead_after,
                     decoder=cfg.decoder)


def _steps_per_epoch(n: int, batch_size: int) -> int:
    """Full batches per pass over ``n`` tokens; the remainder (a different random few each epoch) is left out.

    A last partial batch gets a full-size Adam step from however few tokens it holds: at 25,602 training
    tokens and batch 512, a 2-token batch ended every epoch and cost 0.016 held-out EV (0.648 vs 0.664 with
    it left out, as SAELens and torch's ``drop_last`` do). With fewer tokens than one batch, one batch of all."""
    return max(1, n // batch_size)


def _epoch_order(cfg: SAETrainConfig, epoch: int, n: int) -> torch.Tensor:
    """The token order of ``epoch``: depends only on (seed, epoch), so a resumed run sees the same order."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch))


def _set_lr(opt, cfg: SAETrainConfig, progress: float) -> None:
    """The learning rate at ``progress`` (fraction of all steps done): constant, then a linear decay to 0
    over the last ``lr_decay`` of training. A function of the position alone, so a resumed run matches."""
    left = 1.0 - progress
    factor = 1.0 if cfg.lr_decay <= 0 or left >= cfg.lr_decay else left / cfg.lr_decay
    for group in opt.param_groups:
        group["lr"] = cfg.lr * factor


def _optimiser_step(sae, opt, xb: torch.Tensor, products: torch.dtype | None = None, device: str = "cpu"
                    ) -> dict[str, float]:
    """One step on batch ``xb``, its products in ``products`` (None: float32); returns the loss and its parts."""
    with autocast(products, device):
        loss, parts = sae.loss(xb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    sae.after_step()
    return {"loss": loss.item(), **parts}


def _resume(ckpt: Path | None, cfg: SAETrainConfig, n_tokens: int, sae, opt) -> tuple[int, int, list]:
    """Load ``ckpt`` into ``sae`` and ``opt`` if it exists and was made with ``cfg`` on as many tokens;
    returns (epoch, step, history) to go on from ((0, 0, []) for a fresh start)."""
    if not (ckpt and ckpt.is_file()):
        return 0, 0, []
    # Tensors, numbers, strings and lists/dicts of them only: no pickled objects to trust.
    state = torch.load(ckpt, weights_only=True, map_location=next(sae.parameters()).device)
    if state["cfg"] != cfg.__dict__ or state["n_tokens"] != n_tokens:
        log.warning("checkpoint %s was made with other settings or data; starting afresh", ckpt)
        return 0, 0, []
    sae.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    log.info("resuming SAE training from %s at epoch %d step %d", ckpt, state["epoch"], state["step"])
    return state["epoch"], state["step"], state["history"]


def _save_checkpoint(ckpt: Path, cfg: SAETrainConfig, n_tokens: int, sae, opt, epoch: int, step: int,
                     history: list) -> None:
    with atomic_file(ckpt) as tmp:
        torch.save({"cfg": cfg.__dict__, "n_tokens": n_tokens, "model": sae.state_dict(),
                    "opt": opt.state_dict(), "epoch": epoch, "step": step, "history": history}, tmp)
