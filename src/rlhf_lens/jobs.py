"""What every rule script does first, in one place."""

from __future__ import annotations

import os
from pathlib import Path

from .devices import pick_device
from .logs import setup_logging


def start_job(log_file: str | os.PathLike, threads: int | None = None, device: str | None = None) -> str | None:
    """Log to the rule's log file (and stderr); use the threads the rule declared, not every core
    of the node; pick the torch device for ``device`` (auto, cpu, cuda...) and return it, if given."""
    setup_logging(log_file)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return pick_device(device) if device is not None else None


def weights_fingerprint(folders) -> dict[str, list]:
    """(name, size, mtime_ns) of each folder's safetensors files (of a file: the file's own): part of a resumable
    job's settings, so a model retrained into the same path (new weights), or a planted table drawn again, is
    never resumed against with the old run's checkpoints."""
    return {str(f): sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns)
                           for p in ([Path(f)] if Path(f).is_file() else Path(f).glob("*.safetensors")))
            for f in folders}
