"""Resumable checkpoints: written atomically, found again after a kill, ignored if the run changed.

A checkpoint is a folder ``step_{N:06d}/`` holding ``state.pt`` (policy, value head, optimiser,
KL controller, RNG states, step, metrics so far) and ``meta.json`` (step and the run's
fingerprint). ``atomic_dir`` makes a folder appear whole or not at all, so a kill during a
write leaves the previous checkpoint as the latest. A fingerprint (hash of everything that
changes the result) keeps a rerun with other settings from resuming someone else's state.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

import torch

from ..atomic import atomic_dir

log = logging.getLogger(__name__)


def fingerprint(settings: dict) -> str:
    """A stable hash of JSON-serialisable run settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_checkpoint(folder: str | Path, step: int, state: dict, fp: str, keep: int = 1) -> Path:
    """Write ``state`` as checkpoint ``step`` under ``folder``; keep only the newest ``keep``."""
    folder = Path(folder)
    target = folder / f"step_{step:06d}"
    with atomic_dir(target) as tmp:
        torch.save(state, tmp / "state.pt")
        (tmp / "meta.json").write_text(json.dumps({"step": step, "fingerprint": fp}) + "\n")
    for old in sorted(folder.glob("step_*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint at step %d written to %s", step, target)
    return target


def latest_checkpoint(folder: str | Path, fp: str) -> tuple[int, dict] | None:
    """(step, state) of the newest complete checkpoint with fingerprint ``fp``, else None.

    Checkpoints of other settings are deleted: they can never be resumed by this run.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for ckpt in sorted(folder.glob("step_*"), reverse=True):
        try:
            meta = json.loads((ckpt / "meta.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("fingerprint") != fp:
            log.info("ignoring checkpoint %s: written with other settings", ckpt)
            shutil.rmtree(ckpt, ignore_errors=True)
            continue
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
        log.info("resuming from checkpoint %s (step %d)", ckpt, meta["step"])
        return int(meta["step"]), state
    return None
