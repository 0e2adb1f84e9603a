"""What a bug report or a measured number needs to say about the machine (``rlhf-lens env``).

Float kernels differ between CPUs (AVX2 vs AVX-512 vs AMX, bfloat16 or not), and one last-digit
difference changes the sampled text of an RL run and everything after it; so a number is only
reproducible with the CPU model, its numeric flags, torch's ATen CPU capability, the GPU and the
library versions beside it. Modelled on TRL's ``trl env``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

#: Distributions whose versions change results or behaviour; absent ones are reported as None.
PACKAGES = ("rlhf-lens", "torch", "transformers", "trl", "snakemake", "sae-lens", "safetensors",
            "numpy", "scikit-learn", "scipy")

#: CPU flags (as /proc/cpuinfo names them) that select different float kernels in torch/oneDNN.
NUMERIC_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None if not installed), without importing it."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def parse_cpuinfo(text: str) -> dict:
    """CPU model, family/model numbers and numeric flags from the text of /proc/cpuinfo (first CPU)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: all cores of a VM are alike
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {
        "cpu_model": fields.get("model name"),
        "cpu_family": fields.get("cpu family"),
        "cpu_model_number": fields.get("model"),
        "cpu_flags": [flag for flag in NUMERIC_FLAGS if flag in flags] if flags else None,
    }


def cpu_info(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict:
    """CPU facts: from /proc/cpuinfo where it exists (Linux), else what ``platform`` knows."""
    if cpuinfo.exists():
        info = parse_cpuinfo(cpuinfo.read_text(errors="replace"))
    else:
        info = {"cpu_model": platform.processor() or None, "cpu_family": None, "cpu_model_number": None,
                "cpu_flags": None}
    info["cores"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return info


def torch_info() -> dict:
    """torch's ATen CPU capability (the kernel set it dispatches to) and the visible GPUs."""
    try:
        import torch
    except ImportError:
        return {"aten_cpu_capability": None, "gpus": [], "cuda": None}
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch older than 2.1
        capability = None
    gpus = []
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                         "capability": f"{props.major}.{props.minor}"})
    return {"aten_cpu_capability": capability, "gpus": gpus, "cuda": torch.version.cuda}


def git_commit(directory: str | os.PathLike = ".") -> dict:
    """The checkout's commit (short hash) and whether tracked files differ from it; None outside git."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--short", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if commit is not None and dirty is not None else None}


def environment(directory: str | os.PathLike = ".") -> dict:
    """Everything above as one JSON-able dict: platform, Python, CPU, torch, GPU, versions, commit."""
    return {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        **cpu_info(),
        **torch_info(),
        "versions": package_versions(),
        **git_commit(directory),
    }


def format_environment(env: dict) -> str:
    """``env`` as aligned ``key: value`` lines, for pasting into a bug report."""
    gpus = "; ".join(f"{g['name']} ({g['memory_gib']} GiB, sm {g['capability']})" for g in env["gpus"]) or "none"
    rows = [
        ("Platform", env["platform"]),
        ("Python", env["python"]),
        ("CPU", env["cpu_model"]),
        ("CPU family / model", f"{env['cpu_family']} / {env['cpu_model_number']}"),
        ("Cores available", env["cores"]),
        ("Numeric CPU flags", " ".join(env["cpu_flags"]) if env["cpu_flags"] is not None else "unknown"),
        ("ATen CPU capability", env["aten_cpu_capability"]),
        ("GPU", gpus),
        ("CUDA (torch build)", env["cuda"]),
        *((name, version or "not installed") for name, version in env["versions"].items()),
        ("Git commit", f"{env['commit']}{' (modified)' if env['dirty'] else ''}" if env["commit"] else "not a checkout"),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"- {key + ':':<{width + 1}} {value}" for key, value in rows) + "\n"
