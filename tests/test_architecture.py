"""The import direction of rlhf_lens (``.importlinter``): entry points above stages, stages in
data-flow order, stages above shared plumbing. Checked with import-linter on the real package, and
shown to fail on a copy of the package with one wrong-way import planted in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(src: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}  # ahead of the editable install on sys.path
    return subprocess.run([str(LINT), "--config", str(REPO / ".importlinter"), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_import_layers_are_kept():
    result = lint(REPO / "src", REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_planted_wrong_way_import_fails(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "rlhf_lens", src / "rlhf_lens", ignore=shutil.ignore_patterns("__pycache__"))
    atomic = src / "rlhf_lens" / "atomic.py"
    # Plumbing reaching up into a stage, the kind of import that made config and models a cycle.
    atomic.write_text(atomic.read_text() + "\n\ndef _planted():\n    from .sae import load_sae  # noqa: F401\n")
    result = lint(src, tmp_path)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout or "broken" in result.stdout
    assert "rlhf_lens.atomic -> rlhf_lens.sae" in result.stdout, result.stdout


def test_every_module_is_placed(tmp_path):
    """A new top-level module that the contract does not place fails (exhaustive), so it must be put in a layer."""
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "rlhf_lens", src / "rlhf_lens", ignore=shutil.ignore_patterns("__pycache__"))
    (src / "rlhf_lens" / "unplaced_stage.py").write_text('"""A stage nobody put in a layer."""\n')
    result = lint(src, tmp_path)
    assert result.returncode != 0
    assert "unplaced_stage" in result.stdout + result.stderr
