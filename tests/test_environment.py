"""``rlhf-lens env``: the machine facts a bug report or a record needs, parsed from known text."""

from __future__ import annotations

import json
import subprocess

from rlhf_lens.cli import main
from rlhf_lens.environment import environment, format_environment, git_commit, package_versions, parse_cpuinfo

# The first processor of an Intel Xeon with AMX (family 6 model 207) as /proc/cpuinfo prints it, trimmed.
XEON = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 207
model name\t: Intel(R) Xeon(R) Platinum 8581C CPU @ 2.10GHz
flags\t\t: fpu sse2 avx avx2 fma f16c avx512f avx512bw avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8

processor\t: 1
model name\t: another CPU that must not be read
flags\t\t: fpu
"""
ZEN2 = "processor : 0\ncpu family : 23\nmodel : 49\nmodel name : AMD EPYC 7B12\nflags : fpu avx avx2 fma f16c\n"


def test_parse_cpuinfo_reads_the_first_cpu_and_the_numeric_flags():
    info = parse_cpuinfo(XEON)
    assert info["cpu_model"] == "Intel(R) Xeon(R) Platinum 8581C CPU @ 2.10GHz"
    assert (info["cpu_family"], info["cpu_model_number"]) == ("6", "207")
    assert info["cpu_flags"] == ["avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16"]
    zen = parse_cpuinfo(ZEN2)
    assert zen["cpu_model"] == "AMD EPYC 7B12" and zen["cpu_flags"] == ["avx2", "fma", "f16c"]
    assert parse_cpuinfo("")["cpu_flags"] is None  # no cpuinfo text: unknown, not "no flags"


def test_package_versions_without_importing():
    versions = package_versions(("torch", "no-such-distribution-rlhf-lens"))
    assert versions["torch"].startswith("2.") and versions["no-such-distribution-rlhf-lens"] is None


def test_git_commit_of_a_checkout_and_outside_one(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f").write_text("a")
    run("add", "f")
    run("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = git_commit(tmp_path)
    assert len(clean["commit"]) >= 7 and clean["dirty"] is False
    (tmp_path / "f").write_text("b")
    assert git_commit(tmp_path)["dirty"] is True


def test_environment_is_json_and_prints(capsys):
    env = environment()
    assert env["cores"] >= 1 and env["python"].count(".") == 2
    assert env["aten_cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "NO AVX", "SVE256", "SVE"}
    assert set(env["versions"]) >= {"torch", "transformers", "trl", "snakemake", "sae-lens"}
    text = format_environment(env)
    assert "ATen CPU capability" in text and "trl" in text
    assert main(["env", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["versions"] == env["versions"] and printed["cpu_model"] == env["cpu_model"]
    assert main(["env"]) == 0
    assert "Numeric CPU flags" in capsys.readouterr().out
