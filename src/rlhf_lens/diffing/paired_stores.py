"""The two activation stores of a run read side by side: base and policy activations of identical
tokens, each token's prompt group (the independent unit), and the blocks both stores hold."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..activations import doc_groups, read_manifest
from ..sae.crosscoder_fit import read_paired

ROLES = ("base", "rlhf")


class MissingStores(ValueError):
    """The context has no base or no policy activation store."""


@dataclass
class PairedBlock:
    """One block of both stores. ``rows``: doc_id, position, token_id per token (n rows);
    ``base``/``policy``: (n, d_model) float32 activations of the same tokens; ``units``: (n,) int,
    each token's prompt-group index into ``groups`` (the store's group names, sorted)."""

    rows: pd.DataFrame
    base: torch.Tensor
    policy: torch.Tensor
    units: np.ndarray
    groups: np.ndarray


def stores_of(ctx) -> tuple[Path, Path]:
    """(base store, policy store) folders from ``ctx.stores``; MissingStores naming what is absent."""
    missing = [r for r in ROLES if r not in ctx.stores]
    if missing:
        raise MissingStores(f"no activation store for role(s) {missing}: the dictionary methods need the base and "
                            f"rlhf stores of identical tokens (got {sorted(ctx.stores)})")
    return Path(ctx.stores["base"]), Path(ctx.stores["rlhf"])


def shared_blocks(ctx) -> list[int]:
    """Blocks held by both stores (sorted)."""
    base, policy = stores_of(ctx)
    return sorted(set(read_manifest(base)["layers"]) & set(read_manifest(policy)["layers"]))


def read_block(ctx, block: int, doc_ids=None) -> PairedBlock:
    """Both roles' activations of ``block`` (only ``doc_ids`` if given), checked to be identical tokens."""
    base, policy = stores_of(ctx)
    rows, (xb, xp) = read_paired([base, policy], block, doc_ids=doc_ids)
    doc_group = doc_groups(base)
    groups = np.unique(doc_group)
    units = np.searchsorted(groups, doc_group[rows["doc_id"].to_numpy()])
    return PairedBlock(rows=rows, base=xb, policy=xp, units=units, groups=groups)
