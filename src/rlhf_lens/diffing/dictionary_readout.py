"""How a dictionary's latents become vocabulary scores and cards; shared by the dictionary methods
(``sae_shift``, ``diff_sae``).

A latent j of an SAE adds ``f_j * s_j * a_j`` to the reconstruction, with ``a_j`` its unit atom and
``s_j`` the norm of its decoder row (1 for the registry's SAEs as saved; computed here for any). Its
*change* is a difference of mean ``f_j * s_j``: how far, in the site's own units, the mean activation
moves along ``a_j``. Every atom is normalised to unit length before it is read, and its scale goes
into the change: a latent with a huge decoder norm but a small activation then weighs what it adds
to the activations, not what its norm alone would say.

Decoding (``unembed_directions``): a unit atom through the final norm's elementwise weight and the
unembedding gives its direct effect on the logits, (m, vocab), centred over the vocabulary (a logit
added to every token changes no probability). The method's token score is ``sum_j change_j *
decoded_j``: the direct logit effect of the dictionary's reconstruction of the mean change. This is
valid only for sites whose output is added to the residual stream (``mlp_out``, ``resid_post``).

``unembed_directions`` reads the unembedding through ``model_parts.direction_logits``, the logit lens that
the activation lens and the scoring stage's unembedding utility use too.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..model_parts import direction_logits


def unembed_directions(directions: torch.Tensor, model, vocab_size: int) -> torch.Tensor:
    """(m, vocab_size) float32 on the CPU: the direct logit effect of each direction (m, d) added to the
    residual stream (``model_parts.direction_logits``: the final norm's weight, LayerNorm's centring, the
    unembedding), padded with zeros where the lm_head is smaller than the tokenizer, and centred over the
    vocabulary (a logit added to every token changes no probability)."""
    device = next(model.parameters()).device
    logits = direction_logits(directions.detach().to(device), model, vocab_size).cpu()
    if logits.shape[1] < vocab_size:  # an lm_head smaller than the tokenizer: the extra tokens get nothing
        logits = torch.nn.functional.pad(logits, (0, vocab_size - logits.shape[1]))
    return logits - logits.mean(dim=1, keepdim=True)


def decode_latents(atoms: torch.Tensor, weights: np.ndarray, model, vocab_size: int, n_words: int,
                   chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """(token scores (n_units, vocab_size) float64 = weights @ decoded, decoded ids (m, n_words)).

    ``atoms``: (m, d) unit atoms; ``weights``: (n_units, m) each unit's change per latent. Decoded a
    chunk of latents at a time, so the (m, vocab) logits are never held whole (1152 x 49152 floats).
    """
    w = torch.as_tensor(np.asarray(weights), dtype=torch.float64)
    scores = torch.zeros(w.shape[0], vocab_size, dtype=torch.float64)
    ids = []
    for lo in range(0, atoms.shape[0], chunk):
        logits = unembed_directions(atoms[lo:lo + chunk], model, vocab_size)
        scores += (w[:, lo:lo + chunk].float() @ logits).double()  # float32 product: 4x faster than float64
        ids.append(logits.topk(min(n_words, vocab_size), dim=1).indices)
    return scores.numpy(), torch.cat(ids).numpy()


def latent_directions(sae) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit atoms (m, d), decoder scales (m,)): what one unit of latent j adds to the reconstruction,
    split into direction and length; read through ``decode`` so it holds for any architecture."""
    with torch.no_grad():
        eye = torch.eye(sae.m)
        rows = sae.decode(eye) - sae.decode(torch.zeros(1, sae.m))
    scales = rows.norm(dim=1)
    return rows / scales.clamp_min(1e-12)[:, None], scales


class LatentAccumulator:
    """Streams latent activations (batches of tokens) into per-unit sums and each latent's top tokens.

    ``add(f, units)``: f (batch, m) float activations (already times the decoder scale), units (batch,)
    int unit index of each token. ``sums`` (n_units, m) float64, ``counts`` (n_units,) tokens per unit,
    ``top_values``/``top_rows`` (top_n, m): the largest activations of each latent and their token rows
    (``top_n`` 0: not kept, which saves a third of the time).
    """

    def __init__(self, n_units: int, m: int, top_n: int = 64):
        self.sums = np.zeros((n_units, m))
        self.counts = np.zeros(n_units, dtype=np.int64)
        self.sq = np.zeros(m)
        self.top_n = top_n
        self.top_values = torch.full((0, m), -float("inf"))
        self.top_rows = torch.zeros((0, m), dtype=torch.long)
        self.seen = 0

    def add(self, f: torch.Tensor, units: np.ndarray) -> None:
        f64 = f.double()
        np.add.at(self.counts, units, 1)
        sums = torch.zeros(len(self.counts), f.shape[1])
        sums.index_add_(0, torch.as_tensor(units, dtype=torch.long), f.float())  # float32 within a batch
        self.sums += sums.double().numpy()
        self.sq += (f64 ** 2).sum(0).numpy()
        if not self.top_n:
            self.seen += len(f)
            return
        rows = torch.arange(self.seen, self.seen + len(f))[:, None].expand_as(f)
        values = torch.cat([self.top_values, f.float()])
        idx = torch.cat([self.top_rows, rows])
        keep = values.topk(min(self.top_n, len(values)), dim=0).indices
        self.top_values, self.top_rows = values.gather(0, keep), idx.gather(0, keep)
        self.seen += len(f)

    def unit_means(self) -> np.ndarray:
        """(n_units, m) mean activation per unit (0 for a unit without tokens)."""
        return self.sums / np.maximum(self.counts, 1)[:, None]

    def mean(self) -> np.ndarray:
        """(m,) mean activation over every token."""
        return self.sums.sum(0) / max(int(self.counts.sum()), 1)


def top_token_texts(acc: LatentAccumulator, token_text: list[str], n: int) -> list[list[str]]:
    """Per latent, the distinct texts of the (up to ``n``) tokens it fires on most (positive activation)."""
    vals, rows = acc.top_values.numpy(), acc.top_rows.numpy()
    out = []
    for j in range(vals.shape[1]):
        seen: list[str] = []
        for v, r in zip(vals[:, j], rows[:, j]):
            if v <= 0 or len(seen) == n:
                break
            if token_text[r] not in seen:
                seen.append(token_text[r])
        out.append(seen)
    return out


def latent_token_utility(latents: pd.DataFrame, token_truth: np.ndarray) -> np.ndarray:
    """(n_latents,) mean truth value of each latent's decoded tokens (``decoded_ids``); ``token_truth``
    is (vocab,), the overseer's value of every token read as a word (0 where it has none)."""
    return np.array([float(np.mean(token_truth[ids])) if len(ids) else 0.0 for ids in latents["decoded_ids"]])


def parallel_groups(atoms: torch.Tensor, min_cosine: float) -> np.ndarray:
    """(m,) group label (0..g-1, by first member) of each unit atom (m, d): complete-linkage clusters in
    which every two atoms have cosine >= ``min_cosine``. A TopK dictionary trained on data with one
    dominant direction learns up to k copies of it that fire together (measured in the tests: exactly k,
    cosines > 0.95); a group is one latent of the reading. ``min_cosine`` >= 1 keeps every atom alone."""
    m = atoms.shape[0]
    if m < 2 or min_cosine >= 1:
        return np.arange(m)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist

    dist = np.clip(pdist(atoms.detach().double().numpy(), "cosine"), 0, 2)
    raw = fcluster(linkage(dist, "complete"), t=1 - min_cosine, criterion="distance")
    _, first, labels = np.unique(raw, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # renumber groups by their first member
    return order[labels]
