"""A real OpenAI-compatible server on loopback: llama.cpp's, serving the packaged SmolLM2 GGUF.

llama-cpp-python compiles llama.cpp when pip installs it (about 5 min on 2 cores), so it
lives in its own environment, ``.venv-llama`` (``make llama-server``; CI builds it). Tests that
need the server skip with that instruction when it is missing, unless RLHF_LENS_REQUIRE_LLAMA=1
(set by CI), which turns the skip into a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]
LLAMA_PYTHON = Path(os.environ.get("RLHF_LENS_LLAMA_PYTHON") or REPO / ".venv-llama" / "bin" / "python")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def require_llama_python() -> Path:
    # The Makefile's stamp is written last, so an environment still being built (python there,
    # llama_cpp not yet) counts as missing, as the SAELens environment's does.
    stamp = REPO / ".venv-llama" / ".installed"
    if LLAMA_PYTHON.is_file() and ("RLHF_LENS_LLAMA_PYTHON" in os.environ or stamp.is_file()):
        return LLAMA_PYTHON
    message = f"llama.cpp server not built ({stamp} missing): run `make llama-server`"
    if os.environ.get("RLHF_LENS_REQUIRE_LLAMA") == "1":
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def llama_server(gguf: Path, startup_timeout_s: float = 180.0) -> Iterator[str]:
    """Start the server on a free loopback port; yield its base URL; stop it."""
    python = require_llama_python()
    port = _free_port()
    cmd = [str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "4096", "--n_threads", "2", "--model_alias", "smollm2"]
    # The server logs a lot: into a file, since an unread pipe would fill up and stall it.
    log = tempfile.NamedTemporaryFile("w+", prefix="llama-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama.cpp server exited with {proc.returncode}: "
                                   f"{Path(log.name).read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama.cpp server did not answer within {startup_timeout_s:.0f} s")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        Path(log.name).unlink(missing_ok=True)
