"""Pick the torch device a job runs on.

Snakemake does not set CUDA_VISIBLE_DEVICES for local runs, and SLURM does for cluster
jobs, so every script asks here: ``auto`` means the first visible CUDA device, else CPU.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def pick_device(preference: str = "auto") -> str:
    """Return a torch device string for ``preference`` (auto, cpu, mps, cuda, cuda:N).

    Raises RuntimeError when an explicit accelerator is asked for but not available.
    """
    import torch

    if preference == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {preference!r} was asked for (config key 'device') but no CUDA GPU is visible")
        device = preference
    elif preference == "mps":
        if not torch.backends.mps.is_available():
            raise RuntimeError("device 'mps' was asked for (config key 'device') but MPS is not available")
        device = "mps"
    else:
        device = "cpu"
    log.info("device: %s", device)
    return device
