"""A rule script's log file holds the traceback of the exception that ended it (not only the scheduler's stderr)."""

from __future__ import annotations

import subprocess
import sys


def test_an_uncaught_exception_is_written_to_the_log_file(tmp_path):
    log = tmp_path / "logs" / "job.log"
    code = ("from rlhf_lens.jobs import start_job\n"
            f"start_job({str(log)!r})\n"
            "raise RuntimeError('selected index k out of range')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    text = log.read_text()
    assert "job failed" in text and "Traceback" in text and "RuntimeError: selected index k out of range" in text
    assert proc.stderr.count("RuntimeError: selected index k out of range") == 1  # on stderr once, as before
