"""Logging for rule scripts and the CLI: one format, to stderr and to the rule's log file."""

from __future__ import annotations

import logging
import os
from pathlib import Path


def setup_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Send ``rlhf_lens`` and library logs to stderr and, if given, to ``log_file`` (appending)."""
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file))
    logging.basicConfig(level=level, handlers=handlers, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    _log_uncaught_exceptions()


def _log_uncaught_exceptions() -> None:
    """An exception that ends the job is logged with its traceback (so it is in the rule's log file, not only on
    the scheduler's stderr), then handled as Python would."""
    import sys

    default = sys.__excepthook__

    def hook(kind, value, tb):
        if not issubclass(kind, KeyboardInterrupt):
            logging.getLogger("rlhf_lens").critical("job failed", exc_info=(kind, value, tb))
        else:
            default(kind, value, tb)

    sys.excepthook = hook
