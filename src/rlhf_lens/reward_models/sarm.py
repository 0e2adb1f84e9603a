"""SARM (Zhang et al., AAAI 2026): a reward model whose score is a linear read-out of SAE latents.

Shapes: B texts, T tokens, d = d_model, m = SAE latents.

- **Text**: ``prompt + response`` (string concatenation, as ``rewards.classifier`` with scope
  prompt_and_response and the learned-RM reward score it), tokenised with right padding; a text over
  ``max_length`` tokens loses its *start* (truncation side left), so the read position stays its last token.
- **Truncated LM**: the base causal LM (a prepared folder) keeps blocks 0..``block`` and drops the rest
  (``block`` 0-based; default ``n_blocks // 2 - 1``, the first half kept, as SARM keeps 16 of
  Llama-3.1-8B's 32); the read-out is that block's output (resid_post; the final norm is not applied) at
  the last non-pad token, ``h`` (B, d). A block beyond the depth is an error before any training.
- **Standardised per token** over the hidden dimension: ``x = (h - mean_d h) / (std_d h + 1e-6)``
  (unbiased std, torch's default, as SARM). The statistics are each token's own mean and std: nothing is
  estimated from data, so cfg.json records the formula (``standardise``), not numbers.
- **TopK SAE** (``rlhf_lens.sae.topk`` through the SAE registry): ``z = TopK_k(ReLU(W_enc^T (x - b_dec) + b_enc))``, (B, m).
- **Head**: zero-initialised, bias-free, linear: ``r = sum_i w_i z_i`` (B,), in the units of the
  Bradley-Terry logit (a reward difference of 1 is a preference probability of sigmoid(1) = 0.73).

**Pooling** (``pool``): ``last`` (the default, as SARM) reads the state at the last token; ``mean``
reads the mean of the per-token latents over every position but the first (an attention sink without
BOS; kept only in a one-token text): ``z = mean_t TopK_k(...)(x_t)``, (B, m), so ``r = mean_t sum_i w_i z_it``,
a mean of per-token rewards, still a sum of ``w_i z_i`` terms that attribution reads off, and "fires on a
response" is ``z_i > 0``. Not in SARM: offered because a sum-of-token-utilities overseer is a property of
the whole text, which a half-depth last-token state of a small model carries weakly (measured on
configs/learned_rm.yaml: docs/design-notes.md, and record learned_rm in docs/results.md).

**Head input** (``head_input``): ``topk`` (the default) feeds the k sparse latents, as the paper
describes; ``dense`` feeds all m signed pre-activations ``(x - b_dec) W_enc + b_enc``, as SARM's released
training recipe does (ANCHORS.md section 4). TopK is the default because it is the point of the method:
with dense inputs the reward is a plain linear probe ``r = x . (W_enc w) + const`` in which every latent
contributes to every reward and "the responses on which a latent fires" (the preference-shift target set)
is undefined; with TopK each reward is a sum of at most k terms ``w_i z_i``, which attribution reads off.

**SAE pretraining**: on the standardised hidden states of the RM corpus (every distinct train text), at
sentence-end tokens (``sae_tokens: sentence_end``: tokens whose text ends in . ! or ?, plus each text's
last token, the position the head reads; SARM's "sequence" SAE) or at every token (``all``). A text's
first position is left out unless it is its last (without BOS it is an attention sink, see
``activations.skip_first_positions``). Trained by ``rlhf_lens.sae.train.train_sae`` (seeded, checkpointed,
resumable): MSE + AuxK, decoder rows renormalised after every step. On per-token-standardised inputs
``mean(x^2) = (d-1)/d`` for every token, so SARM's normalised MSE ``mean((x_hat-x)^2) / mean(x^2)`` is the MSE
times the constant d/(d-1): the same objective (metrics report the normalised value). Two differences
from SARM's sibling code, on purpose: ReLU on the kept values (the SAELens TopK, so the dictionary loads in
SAELens; theirs has none) and the AuxK term against dead latents (theirs has none).

**Reward training**: Bradley-Terry ``-log sigmoid(r_chosen - r_rejected)`` + ``recon_coef`` x the SAE's
normalised MSE on the pairs' read states (detached from the LM, as SARM). ``train``: ``head`` (the
default: SAE and LM frozen, so the latents attribution reads are those of the pretrained dictionary that
autointerp explains, and CPU training takes seconds), ``head_sae``, or ``all`` (the truncated LM too, at
``lm_lr``). With the LM frozen the read states (the last token's, or with pool mean every position's but
the first) are computed once and every epoch runs on them.
A checkpoint at each epoch end lets a killed run resume in every mode.

**Files** (one folder): ``cfg.json`` (``"architecture": "sarm"``, the base model folder, block, SAE kind,
size and k, the standardisation, the pooling, the head input, training settings and history), ``sarm.safetensors``
(``sae.W_enc`` (d, m), ``sae.W_dec`` (m, d), ``sae.b_enc`` (m), ``sae.b_dec`` (d), ``head.weight`` (m,),
float32) and, with ``train: all``, ``lm.safetensors`` (the truncated LM body). ``load_sarm(folder)`` reads it back.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ..atomic import atomic_file
from ..model_parts import find_blocks, output_tensor
from ..sae.registry import build_sae
from ..sae.train import SAETrainConfig, train_sae

log = logging.getLogger(__name__)

ARCHITECTURE = "sarm"
CFG, WEIGHTS, LM_WEIGHTS = "cfg.json", "sarm.safetensors", "lm.safetensors"
EPS = 1e-6
"""SARM's standardisation epsilon: x = (h - mean) / (std + EPS)."""
SENTENCE_END = (".", "!", "?")
TRAIN_MODES = ("head", "head_sae", "all")
HEAD_INPUTS = ("topk", "dense")
POOLS = ("last", "mean")
SAE_TOKENS = ("sentence_end", "all")
PAIR_COLUMNS = {"prompt": "string", "chosen": "string", "rejected": "string", "chosen_reward": "float",
                "rejected_reward": "float", "p_chosen": "float", "prompt_index": "integer", "group": "integer"}
"""The columns of a preference file (``results/{run}/preferences/{overseer}/{split}.parquet``) and their kinds."""
STANDARDISE = {"per": "token", "over": "hidden dimension", "formula": "(h - mean(h)) / (std(h) + eps)",
               "std": "unbiased", "eps": EPS,
               "statistics": "each token's own mean and std over its d_model values; none estimated from data"}


class SARMError(ValueError):
    """A SARM that cannot be built or trained as asked; the message names the file or key and what is expected."""


@dataclass(frozen=True)
class SARMConfig:
    """How SARM is built and trained (``sarm:`` in config.yaml, without ``analysis``)."""

    enabled: bool = False
    """Train SARM on the run's preference pairs (those of the plain RM, labelled by ``preferences.overseer``)."""
    block: int | None = None
    """0-based block whose output is read (blocks after it are dropped); null: n_blocks // 2 - 1 (half depth, as SARM)."""
    sae_multiple: int = 4
    """SAE latents as a multiple of d_model (SARM: 16)."""
    k: int = 32
    """Active latents per token of the TopK SAE (SARM: 192 of 65,536)."""
    sae_tokens: str = "sentence_end"
    """Tokens the SAE is pretrained on: sentence_end (ending in . ! ?, plus each text's last token) or all."""
    sae_epochs: int = 10
    """Passes of SAE pretraining over its tokens."""
    sae_lr: float = 5e-4
    """Adam learning rate of SAE pretraining (SARM: 3e-4 to 5e-4)."""
    sae_batch_size: int = 256
    """Tokens per SAE pretraining step."""
    pool: str = "last"
    """Which positions the head reads: last (the last token's latents, as SARM) or mean (the mean of every position's latents but the first)."""
    head_input: str = "topk"
    """What the head reads: topk (the k sparse latents, as the paper) or dense (all signed pre-activations, as the released code)."""
    train: str = "head"
    """What the reward loss trains: head, head_sae, or all (the truncated LM too)."""
    recon_coef: float = 1.0
    """lambda: weight of the SAE's normalised reconstruction loss next to the Bradley-Terry loss (SARM: 1)."""
    lr: float = 1e-3
    """Adam learning rate of the head (and of the SAE with head_sae or all)."""
    lm_lr: float = 2e-6
    """Adam learning rate of the truncated LM with train: all (SARM: 2e-6)."""
    epochs: int = 30
    """Passes over the train pairs."""
    batch_size: int = 32
    """Pairs per optimiser step."""
    max_length: int = 128
    """Tokens of prompt + response read (longer texts lose their start)."""
    forward_batch_size: int = 16
    """Texts per LM forward pass (memory only: results do not depend on it)."""
    bootstrap: int = 1000
    """Bootstrap resamples (over prompt groups) of the accuracy confidence intervals."""

    def problems(self, key: str = "sarm") -> list[str]:
        """Readable problems of the settings a schema also checks (for callers that skip the schema)."""
        out = []
        for name, allowed in (("train", TRAIN_MODES), ("head_input", HEAD_INPUTS), ("sae_tokens", SAE_TOKENS),
                              ("pool", POOLS)):
            if getattr(self, name) not in allowed:
                out.append(f"key '{key}.{name}' has value {getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        return out


# --------------------------------------------------------------------------- preference files


def read_pairs(path: str | os.PathLike) -> pd.DataFrame:
    """A preference file, checked: every column of ``PAIR_COLUMNS``, at least one row, chosen != rejected.

    Raises SARMError naming the file, the bad column or row, and what is expected.
    """
    path = Path(path)
    if not path.is_file():
        raise SARMError(f"preference file {str(path)!r} does not exist")
    df = pd.read_parquet(path)
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise SARMError(f"preference file {str(path)!r} lacks column(s) {', '.join(missing)}: expected "
                        f"{', '.join(PAIR_COLUMNS)}")
    if not len(df):
        raise SARMError(f"preference file {str(path)!r} has no rows: expected at least one pair")
    same = np.flatnonzero((df["chosen"] == df["rejected"]).to_numpy())
    if len(same):
        raise SARMError(f"preference file {str(path)!r} row {int(same[0])}: chosen is identical to rejected "
                        f"({len(same)} such rows); expected two different responses per pair")
    return df.reset_index(drop=True)


def pair_texts(pairs: pd.DataFrame) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(distinct texts prompt + response, index of each pair's chosen text, of its rejected text)."""
    chosen = (pairs["prompt"] + pairs["chosen"]).tolist()
    rejected = (pairs["prompt"] + pairs["rejected"]).tolist()
    texts = list(dict.fromkeys(chosen + rejected))
    where = {t: i for i, t in enumerate(texts)}
    return texts, np.array([where[t] for t in chosen]), np.array([where[t] for t in rejected])


# --------------------------------------------------------------------------- the model


def standardise(h: torch.Tensor) -> torch.Tensor:
    """Per-token standardisation over the last (hidden) dimension: (h - mean) / (std + 1e-6), same shape."""
    return (h - h.mean(-1, keepdim=True)) / (h.std(-1, keepdim=True) + EPS)


def default_block(n_blocks: int) -> int:
    """Half depth: the last block of the first half (SARM keeps blocks 0..15 of 32)."""
    return max(0, n_blocks // 2 - 1)


def resolve_block(block: int | None, n_blocks: int, source: str = "key 'sarm.block'") -> int:
    """``block`` checked against the model's depth (None: ``default_block``)."""
    if block is None:
        return default_block(n_blocks)
    if not isinstance(block, int) or not 0 <= block < n_blocks:
        raise SARMError(f"{source} has value {block!r}: the model has {n_blocks} blocks, expected an integer in "
                        f"0..{n_blocks - 1} (or null for half depth, {default_block(n_blocks)})")
    return block


def model_depth(model_dir: str | os.PathLike) -> int:
    """Number of transformer blocks of a model folder, read from its config.json (no weights loaded)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise SARMError(f"base model folder {str(model_dir)!r}: cannot read its config.json ({exc})") from None
    return int(config.num_hidden_layers)


def read_weights(attention_mask: torch.Tensor, pool: str) -> torch.Tensor:
    """(B, T) float32 weights of the positions the head reads, each row summing to 1 (right padding).

    last: 1 at each text's last token. mean: 1/(n-1) at positions 1..n-1 of a text of n tokens (position 0
    is an attention sink without BOS; a one-token text keeps it).
    """
    mask = attention_mask.float()
    n = attention_mask.sum(1)
    if pool == "last":
        w = torch.zeros_like(mask)
        w[torch.arange(len(w), device=w.device), n - 1] = 1.0
        return w
    if pool != "mean":
        raise SARMError(f"key 'sarm.pool' has value {pool!r}: expected one of {', '.join(POOLS)}")
    w = mask.clone()
    w[:, 0] = (n == 1).float()
    return w / w.sum(1, keepdim=True)


class LastTokenReader(nn.Module):
    """The base LM truncated after ``block``; reads that block's output, standardised per token.

    ``states(ids, mask)`` -> (B, T, d) standardised states at every position; ``last(texts)`` -> (B, d) at
    each text's last token; ``read(texts, pool)`` -> (states (B, T, d), read_weights (B, T)).
    """

    def __init__(self, model, tokenizer, block: int, max_length: int):
        super().__init__()
        blocks = find_blocks(model)
        block = resolve_block(block, len(blocks))
        del blocks[block + 1:]  # the dropped blocks are never run (nor stored with train: all)
        model.config.num_hidden_layers = block + 1
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = model.config.layer_types[:block + 1]
        self.body = model.base_model  # embeddings + kept blocks (+ final norm, whose output is not read)
        self.read_block = blocks[block]
        self.block, self.max_length = block, max_length
        tokenizer.padding_side, tokenizer.truncation_side = "right", "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer

    @property
    def device(self) -> torch.device:
        return next(self.body.parameters()).device

    def encode(self, texts: Sequence[str]):
        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True, truncation=True,
                             max_length=self.max_length, add_special_tokens=True)
        return enc.input_ids.to(self.device), enc.attention_mask.to(self.device)

    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        captured = {}

        def hook(_module, _inputs, output):
            captured["h"] = output_tensor(output)

        handle = self.read_block.register_forward_hook(hook)
        try:
            self.body(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        finally:
            handle.remove()
        return standardise(captured["h"].float())

    def last(self, texts: Sequence[str]) -> torch.Tensor:
        ids, mask = self.encode(texts)
        x = self.states(ids, mask)
        return x[torch.arange(len(x), device=x.device), mask.sum(1) - 1]

    def read(self, texts: Sequence[str], pool: str) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask = self.encode(texts)
        return self.states(ids, mask), read_weights(mask, pool)


class SparseRewardHead(nn.Module):
    """SAE latents of standardised states -> linear, bias-free reward.

    ``forward(x)``: x (B, d) -> r (B,); ``forward(x, weights)``: x (B, T, d) and read weights (B, T) -> r (B,),
    the reward of the weighted mean of the positions' latents (``pooled_latents``).
    """

    def __init__(self, sae, head_input: str = "topk"):
        super().__init__()
        if head_input not in HEAD_INPUTS:
            raise SARMError(f"key 'sarm.head_input' has value {head_input!r}: expected one of {', '.join(HEAD_INPUTS)}")
        self.sae, self.head_input = sae, head_input
        self.weight = nn.Parameter(torch.zeros(sae.m))  # zero-initialised, as SARM

    def latents(self, x: torch.Tensor) -> torch.Tensor:
        """(..., m) for states x (..., d): the TopK latents of each state (k per state, whatever the leading
        dimensions: (B, d) last tokens or (B, T, d) every position), or with head_input dense the signed
        pre-activations of every latent."""
        if self.head_input == "topk":
            return self.sae.encode(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], self.sae.m)
        return (x - self.sae.b_dec) @ self.sae.W_enc + self.sae.b_enc

    def pooled_latents(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """(B, m): sum_t weights[b, t] * latents(x[b, t]) for x (B, T, d), weights (B, T); only positions of
        nonzero weight are encoded (padding and skipped positions cost nothing)."""
        rows, cols = torch.nonzero(weights > 0, as_tuple=True)
        z = self.latents(x[rows, cols]) * weights[rows, cols, None]
        return torch.zeros(len(x), z.shape[-1], dtype=z.dtype, device=z.device).index_add_(0, rows, z)

    def forward(self, x: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
        z = self.latents(x) if weights is None else self.pooled_latents(x, weights)
        return z @ self.weight

    def reconstruction(self, x: torch.Tensor) -> torch.Tensor:
        """SARM's normalised MSE mean((x_hat - x)^2) / mean(x^2) of the SAE on x (B, d); a scalar."""
        x_hat = self.sae.decode(self.sae.encode(x))
        return F.mse_loss(x_hat, x) / x.pow(2).mean().clamp_min(1e-12)


class SARM(nn.Module):
    """Truncated LM + per-token standardisation + SAE + linear head. Texts are prompt + response.

    ``score(texts)`` (N,), ``latents(texts)`` (N, m), ``contributions(texts)`` (N, m) = w_i z_i, whose
    rows sum to the scores; all float32 on the CPU, batched, without gradients.
    """

    def __init__(self, reader: LastTokenReader, head: SparseRewardHead, info: dict, batch_size: int = 16):
        super().__init__()
        self.reader, self.head, self.info, self.batch_size = reader, head, info, batch_size
        self.pool = info.get("pool", "last")  # folders written before pooling existed read the last token

    @property
    def weight(self) -> torch.Tensor:
        """Head weights w (m,)."""
        return self.head.weight

    @torch.no_grad()
    def latents(self, texts: Sequence[str]) -> torch.Tensor:
        """The head's input (N, m): the read positions' pooled latents, on the CPU."""
        texts = list(texts)
        out = [self.head.pooled_latents(*self.reader.read(texts[i:i + self.batch_size], self.pool)).cpu()
               for i in range(0, len(texts), self.batch_size)]
        return torch.cat(out) if out else torch.zeros(0, self.head.sae.m)

    @torch.no_grad()
    def contributions(self, texts: Sequence[str]) -> torch.Tensor:
        return self.latents(texts) * self.head.weight.detach().cpu()

    @torch.no_grad()
    def score(self, texts: Sequence[str]) -> torch.Tensor:
        return (self.latents(texts) @ self.head.weight.detach().cpu()).float()

    @torch.no_grad()
    def token_latents(self, texts: Sequence[str]) -> list[tuple[list[int], torch.Tensor]]:
        """Per text: its token ids and the latents at every token, (T_i, m) (the head's input at each position)."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            ids, mask = self.reader.encode(texts[i:i + self.batch_size])
            z = self.head.latents(self.reader.states(ids, mask)).cpu()
            for row in range(len(ids)):
                n = int(mask[row].sum())
                out.append((ids[row, :n].tolist(), z[row, :n]))
        return out


# --------------------------------------------------------------------------- training


def sae_positions(token_texts: Sequence[str], which: str) -> list[int]:
    """Positions of one text whose states pretrain the SAE: sentence ends (+ the last) or all; never the
    first unless it is the last."""
    n = len(token_texts)
    if which == "all":
        keep = range(1, n)
    else:
        keep = [t for t in range(1, n - 1) if token_texts[t].rstrip().endswith(SENTENCE_END)] + [n - 1]
    return sorted(set(keep) | {n - 1})


@torch.no_grad()
def corpus_states(reader: LastTokenReader, texts: Sequence[str], which: str, batch_size: int, pool: str = "last"):
    """(SAE pretraining states (n_tokens, d), read states (N, R, d), read weights (N, R)), standardised, on
    the CPU: per text the states of the positions the head reads (``read_weights``), zero-padded to the
    most any text has (R = 1 with pool last)."""
    from torch.nn.utils.rnn import pad_sequence

    decoded: dict[int, str] = {}
    tokens, read, weights = [], [], []
    for i in range(0, len(texts), batch_size):
        ids, mask = reader.encode(texts[i:i + batch_size])
        x, w = reader.states(ids, mask).cpu(), read_weights(mask, pool).cpu()
        for row in range(len(ids)):
            n = int(mask[row].sum())
            row_ids = ids[row, :n].tolist()
            for t in row_ids:
                if t not in decoded:
                    decoded[t] = reader.tokenizer.decode([t])
            keep = sae_positions([decoded[t] for t in row_ids], which)
            tokens.append(x[row, keep])
            used = w[row] > 0
            read.append(x[row, used])
            weights.append(w[row, used])
    return torch.cat(tokens), pad_sequence(read, batch_first=True), pad_sequence(weights, batch_first=True)


def pretrain_sae(x: torch.Tensor, cfg: SARMConfig, seed: int, checkpoint: str | os.PathLike | None = None,
                 device: str = "cpu"):
    """The TopK SAE pretrained on standardised states x (n, d); (sae on the CPU, history, its train config)."""
    d = x.shape[1]
    m = cfg.sae_multiple * d
    # Inputs are standardised per token, so their mean is small: the decoder bias starts at zero and the
    # rate stays constant (the interpretation SAEs' mean start and decay are tuned for raw MLP outputs).
    tcfg = SAETrainConfig(kind="topk", d_sae=m, k=min(cfg.k, m), lr=cfg.sae_lr, epochs=cfg.sae_epochs,
                          batch_size=cfg.sae_batch_size, seed=seed, b_dec_init="zeros", lr_decay=0.0)
    sae, history = train_sae(x, tcfg, checkpoint=checkpoint, progress=False, device=device)
    return sae.cpu(), history, tcfg


def _trainable(sarm_head: SparseRewardHead, reader: LastTokenReader | None, cfg: SARMConfig) -> list[dict]:
    """Optimiser parameter groups of ``cfg.train``; everything else is frozen."""
    groups = [{"params": [sarm_head.weight], "lr": cfg.lr}]
    sae_params = list(sarm_head.sae.parameters())
    for p in sae_params:
        p.requires_grad_(cfg.train in ("head_sae", "all"))
    if cfg.train in ("head_sae", "all"):
        groups.append({"params": sae_params, "lr": cfg.lr})
    if reader is not None:
        for p in reader.parameters():
            p.requires_grad_(cfg.train == "all")
        if cfg.train == "all":
            groups.append({"params": list(reader.parameters()), "lr": cfg.lm_lr})
    return groups


def fit_reward_head(head: SparseRewardHead, chosen: np.ndarray, rejected: np.ndarray, cfg: SARMConfig, seed: int,
                    states=None, cached: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None,
                    reader: LastTokenReader | None = None, checkpoint: str | os.PathLike | None = None) -> list[dict]:
    """Train on pairs ``chosen[j] > rejected[j]`` (indices of texts); returns per-epoch history.

    The states of a batch of text indices come from ``cached`` when the LM is frozen (train head or
    head_sae): (N, d) one state per text, or (read states (N, R, d), read weights (N, R)) as
    ``corpus_states`` gives; else from ``states(indices)`` -> (states (B, T, d), weights (B, T)) run with
    gradients (train all). Loss: mean BT loss + recon_coef * the SAE's normalised MSE on the batch's read
    states (detached). ``checkpoint``: resumed from if it exists, rewritten at each epoch end.
    """
    if cached is None and states is None:
        raise ValueError("fit_reward_head needs cached states or a states function")
    if isinstance(cached, torch.Tensor):
        cached = (cached[:, None], torch.ones(len(cached), 1, device=cached.device))
    module = nn.ModuleDict({"head": head, **({"reader": reader} if reader is not None else {})})
    opt = torch.optim.Adam(_trainable(head, reader, cfg))
    ckpt = Path(checkpoint) if checkpoint else None
    key = {**asdict(cfg), "seed": seed, "n_pairs": len(chosen)}
    start, history = 0, []
    if ckpt and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        if state["key"] == key:
            module.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            start, history = state["epoch"], state["history"]
            log.info("resuming SARM training from %s at epoch %d", ckpt, start)
    head.train()
    for epoch in range(start, cfg.epochs):
        order = torch.randperm(len(chosen), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).numpy()
        sums = {"loss": 0.0, "bt": 0.0, "recon": 0.0, "accuracy": 0.0}
        for s in range(0, len(order), cfg.batch_size):
            idx = order[s:s + cfg.batch_size]
            both = np.concatenate([chosen[idx], rejected[idx]])
            if cached is not None:
                x, wts = cached[0][torch.as_tensor(both)], cached[1][torch.as_tensor(both)]
            else:
                x, wts = states(both)
            r = head(x, wts)
            margin = r[:len(idx)] - r[len(idx):]
            bt = -F.logsigmoid(margin).mean()
            recon = head.reconstruction(x[wts > 0].detach())
            loss = bt + cfg.recon_coef * recon
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.train != "head":
                head.sae.after_step()  # unit-norm decoder rows
            w = len(idx) / len(order)
            sums["loss"] += w * loss.item()
            sums["bt"] += w * bt.item()
            sums["recon"] += w * recon.item()
            sums["accuracy"] += w * (margin > 0).float().mean().item()
        history.append({"epoch": epoch, **sums})
        log.info("SARM head epoch %d/%d: loss %.4f (BT %.4f, recon %.4f), train accuracy %.3f", epoch + 1,
                 cfg.epochs, sums["loss"], sums["bt"], sums["recon"], sums["accuracy"])
        if ckpt:
            with atomic_file(ckpt) as tmp:
                torch.save({"key": key, "model": module.state_dict(), "opt": opt.state_dict(), "epoch": epoch + 1,
                            "history": history}, tmp)
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return history


def train_sarm(model_dir: str | os.PathLike, pairs: pd.DataFrame, cfg: SARMConfig, seed: int = 0,
               device: str = "cpu", work_dir: str | os.PathLike | None = None) -> SARM:
    """SARM trained on ``pairs`` (a checked preference table) from the prepared model ``model_dir``.

    ``work_dir``: where the SAE and reward checkpoints live while training (resumed from if present).
    The SAE is pretrained on the states of the pairs' distinct texts only (the held-out file stays unseen).
    """
    from ..models import load_prepared

    problems = cfg.problems()
    if problems:
        raise SARMError("; ".join(problems))
    block = resolve_block(cfg.block, model_depth(model_dir))  # before loading weights
    started = time.monotonic()
    torch.manual_seed(seed)
    model, tokenizer = load_prepared(model_dir, device)
    reader = LastTokenReader(model, tokenizer, block, cfg.max_length)
    texts, chosen, rejected = pair_texts(pairs)
    x_tokens, x_read, w_read = corpus_states(reader, texts, cfg.sae_tokens, cfg.forward_batch_size, cfg.pool)
    log.info("SARM: %d texts, %d SAE tokens (%s), d %d, block %d, head reads %s", len(texts), len(x_tokens),
             cfg.sae_tokens, x_tokens.shape[1], block, "the last token" if cfg.pool == "last" else "the mean of the tokens")
    work = Path(work_dir) if work_dir else None
    sae, sae_history, tcfg = pretrain_sae(x_tokens, cfg, seed, work / "sae.ckpt.pt" if work else None, device)
    sae_seconds = time.monotonic() - started
    head = SparseRewardHead(sae, cfg.head_input).to(device)
    ckpt = work / "reward.ckpt.pt" if work else None
    if cfg.train == "all":
        history = fit_reward_head(head, chosen, rejected, cfg, seed, reader=reader, checkpoint=ckpt,
                                  states=lambda idx: reader.read([texts[i] for i in idx], cfg.pool))
    else:
        history = fit_reward_head(head, chosen, rejected, cfg, seed, cached=(x_read.to(device), w_read.to(device)),
                                  checkpoint=ckpt)
    reader.eval()
    for p in reader.parameters():
        p.requires_grad_(False)
    with torch.no_grad():
        sae_nmse = head.cpu().reconstruction(x_tokens).item()
    head.to(device)
    info = {"architecture": ARCHITECTURE, "base_model": str(model_dir), "block": block,
            "n_blocks_base": model_depth(model_dir), "d_model": sae.d, "text": "prompt + response",
            "max_length": cfg.max_length, "standardise": STANDARDISE,
            "sae": {"kind": "topk", "d_sae": sae.m, "multiple": cfg.sae_multiple, "k": sae.k, "tokens": cfg.sae_tokens,
                    "train_tokens": len(x_tokens), "train_config": asdict(tcfg),
                    "normalised_mse": sae_nmse, "history": sae_history},
            "pool": cfg.pool, "head_input": cfg.head_input, "train": cfg.train, "recon_coef": cfg.recon_coef, "seed": seed,
            "settings": asdict(cfg), "n_pairs": len(pairs), "n_texts": len(texts), "history": history,
            "sae_seconds": sae_seconds, "train_seconds": time.monotonic() - started}
    return SARM(reader, head, info, cfg.forward_batch_size)


# --------------------------------------------------------------------------- files


def save_sarm(sarm: SARM, folder: str | os.PathLike) -> Path:
    """Write ``sarm`` into ``folder``: weights first, cfg.json last, each file atomically."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sae = sarm.head.sae
    tensors = {f"sae.{k}": v.detach().float().cpu().contiguous() for k, v in sae.saelens_tensors().items()}
    tensors["head.weight"] = sarm.head.weight.detach().float().cpu().contiguous()
    with atomic_file(folder / WEIGHTS) as tmp:
        save_file(tensors, str(tmp))
    lm = folder / LM_WEIGHTS
    if sarm.info["train"] == "all":
        body = {k: v.detach().cpu().contiguous().clone() for k, v in sarm.reader.body.state_dict().items()}
        with atomic_file(lm) as tmp:
            save_file(body, str(tmp))
    else:
        lm.unlink(missing_ok=True)
    with atomic_file(folder / CFG) as tmp:
        tmp.write_text(json.dumps(sarm.info, indent=2, sort_keys=True) + "\n")
    return folder


def read_sarm_cfg(folder: str | os.PathLike) -> dict:
    """cfg.json of a SARM folder; SARMError naming the file and key if it is not one."""
    path = Path(folder) / CFG
    if not path.is_file():
        raise SARMError(f"{str(path)!r} does not exist: a SARM folder holds {CFG} and {WEIGHTS}")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SARMError(f"{str(path)!r}: not valid JSON ({exc})") from None
    if cfg.get("architecture") != ARCHITECTURE:
        raise SARMError(f"{str(path)!r}: key 'architecture' has value {cfg.get('architecture')!r}: expected "
                        f"{ARCHITECTURE!r}")
    return cfg


def _find_base_model(folder: Path, recorded: str) -> Path:
    """The base model folder cfg.json records: as written (absolute, or relative to the working directory),
    else relative to a parent of the SARM folder (the workflow writes it relative to its own directory,
    results/{run}/reward_models/sarm/ -> resources/models/{name})."""
    path = Path(recorded)
    if path.is_absolute() or path.is_dir():
        return path
    for parent in folder.resolve().parents:
        if (parent / path).is_dir():
            return parent / path
    raise SARMError(f"{str(folder / CFG)!r}: key 'base_model' has value {recorded!r}, a folder that does not exist "
                    "here or under any parent of the SARM folder; pass base_model= to load_sarm")


def load_sarm(folder: str | os.PathLike, device: str = "cpu", base_model: str | os.PathLike | None = None,
              batch_size: int | None = None) -> SARM:
    """The SARM saved in ``folder``; ``base_model`` overrides the model folder cfg.json names (moved files)."""
    from safetensors.torch import load_file

    from ..models import load_prepared

    folder = Path(folder)
    info = read_sarm_cfg(folder)
    base = base_model or _find_base_model(folder, info["base_model"])
    model, tokenizer = load_prepared(base, device)
    reader = LastTokenReader(model, tokenizer, info["block"], info["max_length"])
    if (folder / LM_WEIGHTS).is_file():
        reader.body.load_state_dict(load_file(str(folder / LM_WEIGHTS)))
    tensors = load_file(str(folder / WEIGHTS))
    sae = build_sae(info["sae"]["kind"], info["d_model"], info["sae"]["d_sae"], k=info["sae"]["k"])
    sae.load_saelens_tensors({k.removeprefix("sae."): v for k, v in tensors.items() if k.startswith("sae.")})
    head = SparseRewardHead(sae, info["head_input"])
    with torch.no_grad():
        head.weight.copy_(tensors["head.weight"])
    head = head.to(device).eval()
    reader.eval()
    for p in [*reader.parameters(), *head.parameters()]:
        p.requires_grad_(False)
    return SARM(reader, head, info, batch_size or info["settings"]["forward_batch_size"])


# --------------------------------------------------------------------------- the stage


def sarm_stage(model_dir: str | os.PathLike, train_path: str | os.PathLike, heldout_path: str | os.PathLike,
               out_dir: str | os.PathLike, cfg: SARMConfig, seed: int = 0, device: str = "cpu") -> dict:
    """Rule sarm: train on ``train_path``'s pairs, save into ``out_dir`` (cfg.json, sarm.safetensors), and
    write ``accuracy.json`` and ``pair_scores.parquet`` (each held-out pair's two scores) there.

    Both preference files and the block are checked before any training.
    """
    from ..atomic import write_json, write_parquet
    from ..missing import json_safe
    from .accuracy import accuracy_report

    train, heldout = read_pairs(train_path), read_pairs(heldout_path)
    resolve_block(cfg.block, model_depth(model_dir))
    out = Path(out_dir)
    work = out.parent / f".{out.name}.work"  # checkpoints beside the output: Snakemake clears outputs of failed jobs
    sarm = train_sarm(model_dir, train, cfg, seed=seed, device=device, work_dir=work)
    # The plain RM's measures on the same pairs (accuracy.accuracy_report), so the two are compared like for like.
    report, table = accuracy_report(lambda p, r: sarm.score([a + b for a, b in zip(p, r)]).double().numpy(), heldout,
                                    n_boot=cfg.bootstrap, seed=seed)
    summary = {"rm": "sarm", "architecture": ARCHITECTURE, "train_pairs": len(train), "heldout_pairs": len(heldout),
               "block": sarm.info["block"], "pool": cfg.pool, "head_input": cfg.head_input, "train": cfg.train,
               "train_seconds": sarm.info["train_seconds"], "sae_seconds": sarm.info["sae_seconds"],
               "train_accuracy_last_epoch": sarm.info["history"][-1]["accuracy"] if sarm.info["history"] else None,
               "sae_normalised_mse": sarm.info["sae"]["normalised_mse"], "seed": seed,
               "heldout": str(heldout_path), **report}
    save_sarm(sarm, out)
    write_parquet(table, out / "pair_scores.parquet")
    write_json(json_safe(summary, finite=True), out / "accuracy.json")
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    acc, rho = summary["pair_accuracy"], summary["spearman"]
    log.info("SARM held-out pair accuracy %.3f %s, Spearman %.3f %s (%.1f s)", acc["mean"], acc["ci95"], rho["mean"],
             rho["ci95"], summary["train_seconds"])
    return summary
