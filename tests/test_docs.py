"""The documentation as a product: the mkdocs site builds strictly (a broken link, a missing anchor or a page
left out of the nav fails), the README stays short and says the two commands on its first screen, and no
tracked file dates a fact by a working period instead of a machine and a commit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WORD = "ses" + "sion"  # spelt in two pieces so that this file does not trip its own check
# pytest's fixture scope is the one use the word may keep
ALLOWED = re.compile(r"""scope\s*=\s*["']""" + WORD + r"""["']""")


def test_mkdocs_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    mkdocs = [sys.executable, "-m", "mkdocs"]
    done = subprocess.run([*mkdocs, "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "results" / "index.html").exists()
    assert (tmp_path / "site" / "troubleshooting" / "index.html").exists()


def test_strict_build_fails_on_a_broken_link(tmp_path):
    """The check must be able to fail: a copy of the docs with one link to a page that does not exist."""
    pytest.importorskip("material")
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    page = tmp_path / "docs" / "rl.md"
    page.write_text(page.read_text() + "\nSee [nowhere](no-such-page.md).\n")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                           str(tmp_path / "site")], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert done.returncode != 0 and "no-such-page.md" in done.stdout + done.stderr


def test_readme_is_short_and_starts_with_what_a_user_needs():
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail to docs/"
    first_screen = "\n".join(lines[:60])
    for needed in ("make run", "make test", "results/default/"):
        assert needed in first_screen, needed


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in out.split("\0") if name and (REPO / name).is_file()]


def test_no_file_dates_a_fact_by_a_working_period():
    """Name the machine and the commit instead; records (docs/results/records/) carry both."""
    found = []
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue  # images and other binary files
        for number, line in enumerate(text.splitlines(), 1):
            if WORD in line.lower() and not (ALLOWED.search(line) and line.lower().count(WORD) == 1):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not found, "\n".join(found)
