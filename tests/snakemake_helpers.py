"""The one way the tests run the workflow: ``snakemake`` in a subprocess, on this checkout's Snakefile.

Every workflow test (test_workflow.py, test_workflow_rl.py, test_interp_workflow.py, test_config.py,
test_cluster.py) calls these, so the command line they share is written once.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "Snakefile"


def snakemake_cmd(*args: str, cores: int | None = 2, kill_after_s: int | None = None) -> list[str]:
    """The command line: this Python's snakemake on the repository's Snakefile, with ``args``.

    ``cores=None`` leaves the core count to the profile. ``kill_after_s`` wraps the command in
    ``timeout -k 10``: an executor plugin may ignore SIGTERM while it waits for a status that never comes.
    """
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE)]
    if cores is not None:
        cmd += ["--cores", str(cores)]
    cmd += [str(a) for a in args]
    if kill_after_s is not None:
        cmd = ["timeout", "-k", "10", str(kill_after_s), *cmd]
    return cmd


def snakemake(*args: str, cwd: str | os.PathLike, cores: int | None = 2, timeout: float = 600,
              env: dict | None = None) -> subprocess.CompletedProcess:
    """Run snakemake with ``args`` in ``cwd`` (its working directory); stdout and stderr captured as text."""
    return subprocess.run(snakemake_cmd(*args, cores=cores), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def run_config(workdir: str | os.PathLike, config: dict, *args: str, timeout: float = 600) -> Path:
    """Write ``config`` as ``workdir``/config.yaml, run the workflow on it there and require success."""
    import yaml

    workdir = Path(workdir)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = snakemake("--configfile", "config.yaml", *args, cwd=workdir, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return workdir


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """Jobs a (dry) run scheduled, by rule, from its "Job stats" table; {} when there is nothing to do."""
    out = proc.stdout + proc.stderr
    if "Nothing to be done" in out:
        return {}
    table = re.search(r"^Job stats:\njob\s+count\n[- ]+\n((?:\S+\s+\d+\n)+)", out, re.M)
    if table is None:
        raise AssertionError(f"no job stats in the snakemake output:\n{out[-3000:]}")
    jobs = dict((name, int(n)) for name, n in (line.split() for line in table.group(1).splitlines()))
    jobs.pop("total", None)
    return jobs
