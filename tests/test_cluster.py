"""Cluster submission: the tiny workflow through profiles/slurm on a one-node SLURM cluster.

The cluster tests need the test cluster of ``tests/cluster/start_slurm.sh`` (root; ``.ci/run``
starts it when the machine allows) and skip, saying why, when it is not up. They never submit
to another cluster: a real cluster's partitions and GPUs are not the test cluster's.

One module-scoped fixture runs the first stage's targets twice on the tiny test config:
locally, and through ``--profile profiles/slurm --profile tests/cluster/profile`` (the real
profile plus test-only settings: partition debug, status via squeue; the exact command of
docs/cluster.md). Every snakemake call is wrapped in ``timeout -k``, since the executor plugin
can hang when status checks fail.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from snakemake_helpers import REPO, snakemake_cmd

SLURM_PROFILE = REPO / "profiles" / "slurm"
TEST_OVERLAY = REPO / "tests" / "cluster" / "profile"
TEST_CLUSTER = "rlhflens-test"  # ClusterName written by tests/cluster/start_slurm.sh
START_HINT = "start it with: sudo tests/cluster/start_slurm.sh"
RUN_TIMEOUT_S = 300  # the cluster run takes ~35 s on 2 cores; a hang is killed well before CI's limit
GPU_RULE = "prepare_model"  # asks for gpu=1 through resources.per_rule in the test config
MODEL_JOB = {"mem_mb": 1500, "runtime": 12}  # test config's resources (differ from prompts' fixed 1000/10)


def _slurm(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


def cluster_unavailable() -> str | None:
    """Why the test cluster cannot be used here, or None when it is up and idle."""
    if shutil.which("sinfo") is None:
        return f"no SLURM on this machine (sinfo not found); {START_HINT}"
    try:
        ping = _slurm("scontrol", "ping")  # answers at once; sinfo retries for ~10 s when down
        if ping.returncode != 0:
            first = (ping.stdout.strip().splitlines() or [ping.stderr.strip()])[0]
            return f"SLURM cluster not up ({first}); {START_HINT}"
        config = _slurm("scontrol", "show", "config")
        if config.returncode != 0:
            last = (config.stderr.strip().splitlines() or ["no output"])[-1]
            return f"SLURM cluster not up (scontrol: {last}); {START_HINT}"
        name = re.search(r"^ClusterName\s*=\s*(\S+)", config.stdout, re.M)
        name = name.group(1) if name else "?"
        if name != TEST_CLUSTER:
            return (f"the SLURM cluster here is '{name}', not the test cluster '{TEST_CLUSTER}' of "
                    "tests/cluster/start_slurm.sh; not submitting test jobs to it")
        nodes = _slurm("sinfo", "-h", "-p", "debug", "-o", "%T %G")
    except subprocess.TimeoutExpired as err:
        return f"SLURM does not answer ({err.cmd[0]} timed out); {START_HINT}"
    states = nodes.stdout.split()
    if nodes.returncode != 0 or not states or not states[0].startswith(("idle", "mixed", "allocated")):
        return f"test cluster node is not ready (sinfo: {nodes.stdout.strip() or nodes.stderr.strip()}); {START_HINT}"
    if "gpu" not in nodes.stdout:
        return f"test cluster has no (fake) GPUs (sinfo: {nodes.stdout.strip()}); {START_HINT}"
    return None


@dataclass(frozen=True)
class Submission:
    """One job of the cluster run as the plugin reported it."""

    rule: str
    jobid: int  # Snakemake's job id in the DAG
    slurm_id: int
    log: Path  # the job's SLURM log kept by the plugin


@dataclass(frozen=True)
class RuleJob:
    """A job Snakemake scheduled for remote execution, with what its rule declared."""

    rule: str
    threads: int
    resources: dict[str, str]  # e.g. {"mem_mb": "1000", "runtime": "10", "gpu": "1"}


@dataclass(frozen=True)
class ClusterRun:
    local: Path  # working directory of the local run
    cluster: Path  # working directory of the cluster run
    seconds: float  # wall time of the cluster run
    output: str  # its stdout + stderr
    submissions: tuple[Submission, ...]
    rule_jobs: dict[int, RuleJob]  # non-local jobs of the run by Snakemake job id


def parse_run(text: str) -> tuple[dict[int, RuleJob], tuple[Submission, ...]]:
    """Jobs that had to run remotely (``rule X:`` blocks; ``localrule`` ones run in place) and the
    ``Job N has been submitted with SLURM jobid M (log: ...)`` lines the plugin wrote."""
    rule_jobs = {}
    for block in re.finditer(r"^rule (\w+):\n((?:    .*\n?)+)", text, re.M):
        fields = dict(re.findall(r"^    (\w+): (.*)$", block.group(2), re.M))
        resources = dict(kv.split("=", 1) for kv in fields.get("resources", "").split(", ") if "=" in kv)
        rule_jobs[int(fields["jobid"])] = RuleJob(block.group(1), int(fields.get("threads", 1)), resources)
    submitted = re.findall(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.$", text, re.M)
    subs = tuple(Submission(rule_jobs[int(j)].rule if int(j) in rule_jobs else "?", int(j), int(s), Path(log))
                 for j, s, log in submitted)
    return rule_jobs, subs


# The first stage's artifacts: a GPU-declaring rule (prepare_model) and a CPU one (prompts). Later
# stages add dozens of jobs at ~10 s of sbatch/polling each, so they are left to the local tests.
TARGETS = ["resources/models/tiny", "results/tiny/prompts/train.parquet", "results/tiny/prompts/eval.parquet"]


def tiny_config(model_dir: Path) -> dict:
    """The tiny test config; the lead extends it as stages land (keep it small: each job costs ~10 s)."""
    return {
        "run": "tiny", "device": "cpu",
        "model": {"name": "tiny", "spec": str(model_dir)},
        "prompts": {"max_texts": 40},
        "sae": {"k": 8},  # at most the tiny model's d_model (32): validation refuses more
        "resources": {"threads": 2, "mem_mb": MODEL_JOB["mem_mb"], "runtime": MODEL_JOB["runtime"],
                      "per_rule": {GPU_RULE: {"gpu": 1}}},
    }


@pytest.fixture(scope="module")
def cluster_run(request, tmp_path_factory) -> ClusterRun:
    reason = cluster_unavailable()
    if reason:
        pytest.skip(reason)
    # Built only now, so that a skip costs nothing.
    config = yaml.safe_dump(tiny_config(request.getfixturevalue("tiny_model_dir")))
    local, cluster = tmp_path_factory.mktemp("local_run"), tmp_path_factory.mktemp("cluster_run")
    for workdir in (local, cluster):
        (workdir / "config.yaml").write_text(config)

    # The cluster run mostly waits on sbatch and status polls: the local run goes meanwhile.
    # The documented command (docs/cluster.md): --workflow-profile none keeps profiles/default's
    # local cores limit from capping every job's threads on the cluster.
    out_file = tmp_path_factory.mktemp("cluster_out") / "snakemake.out"
    start = time.monotonic()
    with out_file.open("w") as out:
        proc = subprocess.Popen(
            snakemake_cmd("--profile", str(SLURM_PROFILE), "--profile", str(TEST_OVERLAY),
                          "--workflow-profile", "none", *TARGETS, "--configfile", "config.yaml",
                          cores=None, kill_after_s=RUN_TIMEOUT_S),
            cwd=cluster, stdout=out, stderr=subprocess.STDOUT, text=True)
        local_proc = subprocess.run(snakemake_cmd(*TARGETS, "--configfile", "config.yaml", kill_after_s=RUN_TIMEOUT_S),
                                    cwd=local, capture_output=True, text=True, timeout=RUN_TIMEOUT_S + 30)
        returncode = proc.wait(timeout=RUN_TIMEOUT_S + 30)
    seconds = time.monotonic() - start
    output = out_file.read_text()
    rule_jobs, subs = parse_run(output)
    if returncode != 0:
        # A killed run can leave jobs queued; cancel exactly the ones it submitted.
        ids = [str(s.slurm_id) for s in subs]
        if ids:
            subprocess.run(["scancel", *ids], capture_output=True, timeout=30)
        logs = "".join(f"\n--- {s.log}:\n{s.log.read_text()[-2000:]}" for s in subs if s.log.is_file())
        pytest.fail(f"cluster run failed (rc {returncode}, {seconds:.0f} s; 124/137: hit the "
                    f"{RUN_TIMEOUT_S} s timeout):\n{output[-4000:]}{logs}")
    assert local_proc.returncode == 0, "local run failed:\n" + local_proc.stdout[-3000:] + local_proc.stderr[-3000:]
    print(f"\ncluster run: {len(subs)} SLURM jobs in {seconds:.1f} s")
    return ClusterRun(local, cluster, seconds, output, subs, rule_jobs)


def scontrol_job(slurm_id: int) -> dict[str, str]:
    """``scontrol show job`` as key -> value (finished jobs stay visible for MinJobAge = 300 s)."""
    proc = _slurm("scontrol", "-o", "show", "job", str(slurm_id))
    assert proc.returncode == 0, proc.stderr
    return dict(field.split("=", 1) for field in proc.stdout.split() if "=" in field)


def output_files(workdir: Path) -> list[Path]:
    """Every artifact (relative path) under resources/ and results/; Snakemake's own markers left out."""
    return sorted(p.relative_to(workdir) for top in ("resources", "results")
                  for p in (workdir / top).rglob("*") if p.is_file() and p.name != ".snakemake_timestamp")


def assert_same_file(a: Path, b: Path) -> None:
    """Tables and tensors compared by value (their encodings may carry metadata), the rest byte for byte."""
    if a.suffix == ".parquet":
        import pandas as pd

        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b), check_exact=True)
    elif a.suffix == ".safetensors":
        import torch
        from safetensors.torch import load_file

        ta, tb = load_file(a), load_file(b)
        assert ta.keys() == tb.keys(), a
        for name in ta:
            assert ta[name].dtype == tb[name].dtype and torch.equal(ta[name], tb[name]), f"{a}: tensor {name}"
    else:
        assert a.read_bytes() == b.read_bytes(), a


# --- checks that need no cluster ------------------------------------------------------------


def test_profile_maps_resources_the_way_the_plugin_expects():
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())
    assert profile["executor"] == "slurm"
    defaults = profile["default-resources"]
    # --cpus-per-task from each rule's threads; a number here would override every rule's threads.
    assert defaults["cpus_per_task"] == "threads"
    # Ask for GPUs as gpu=N only: "gpus"/"nvidia_gpu" submit without a GPU.
    assert not {"gpus", "nvidia_gpu", "gpu_model"} & set(defaults)


def test_overlay_repeats_the_profiles_default_resources():
    """Later profiles replace whole top-level keys, so the overlay restates default-resources."""
    profile = yaml.safe_load((SLURM_PROFILE / "config.yaml").read_text())["default-resources"]
    overlay = yaml.safe_load((TEST_OVERLAY / "config.yaml").read_text())
    assert overlay["default-resources"] == {**profile, "slurm_partition": "debug"}
    assert overlay["slurm-status-command"] == "squeue"  # no slurmdbd on the test cluster


def test_parse_run_reads_rule_blocks_and_submissions():
    text = ("rule prompts:\n    output: a\n    jobid: 2\n    wildcards: run=tiny\n"
            "rule prepare_model:\n    jobid: 1\n    threads: 2\n    resources: tmpdir=<TBD>, mem_mb=1500, gpu=1\n"
            "localrule all:\n    input: a\n    jobid: 0\n"
            "Job 2 has been submitted with SLURM jobid 17 (log: /w/.snakemake/slurm_logs/rule_prompts/tiny/17.log).\n")
    rule_jobs, subs = parse_run(text)
    assert rule_jobs == {2: RuleJob("prompts", 1, {}),
                         1: RuleJob("prepare_model", 2, {"tmpdir": "<TBD>", "mem_mb": "1500", "gpu": "1"})}
    assert subs == (Submission("prompts", 2, 17, Path("/w/.snakemake/slurm_logs/rule_prompts/tiny/17.log")),)


# --- the cluster run --------------------------------------------------------------------------


@pytest.mark.cluster
def test_every_job_went_through_sbatch(cluster_run):
    subs = cluster_run.submissions
    assert cluster_run.rule_jobs, "the cluster run ran no job"
    assert {s.jobid for s in subs} == set(cluster_run.rule_jobs), cluster_run.output[-3000:]
    assert len({s.slurm_id for s in subs}) == len(subs)
    assert {"prepare_model", "prompts"} <= {s.rule for s in subs}
    for sub in subs:
        job = scontrol_job(sub.slurm_id)
        assert job["JobState"] == "COMPLETED" and job["ExitCode"] == "0:0", (sub, job)
        assert job["Partition"] == "debug"
        assert sub.log.is_file() and sub.log.name == f"{sub.slurm_id}.log", sub  # its SLURM log, kept
        assert f"rule_{sub.rule}" in sub.log.parts, sub


@pytest.mark.cluster
def test_jobs_got_the_resources_their_rules_declare(cluster_run):
    gpu_rule = next(j for j in cluster_run.rule_jobs.values() if j.rule == GPU_RULE)
    # Known answer: the config's resources (with the per-rule gpu) reached the GPU rule.
    assert (gpu_rule.threads, gpu_rule.resources["gpu"]) == (2, "1")
    assert (gpu_rule.resources["mem_mb"], gpu_rule.resources["runtime"]) == ("1500", "12")
    for sub in cluster_run.submissions:
        declared = cluster_run.rule_jobs[sub.jobid]
        job = scontrol_job(sub.slurm_id)
        assert job["NumCPUs"] == str(declared.threads), (declared, job)  # cpus_per_task from threads
        assert f"mem={declared.resources['mem_mb']}M" in job["TRES"], (declared, job)
        hours, minutes = divmod(int(declared.resources["runtime"]), 60)
        assert job["TimeLimit"] == f"{hours:02d}:{minutes:02d}:00", (declared, job)
        gpus = int(declared.resources.get("gpu", 0))
        assert job.get("TresPerJob", "") == (f"gres:gpu:{gpus}" if gpus else ""), (declared, job)


@pytest.mark.cluster
def test_outputs_equal_a_local_run(cluster_run):
    local, cluster = output_files(cluster_run.local), output_files(cluster_run.cluster)
    assert local == cluster
    assert Path("resources/models/tiny/model.safetensors") in local
    assert Path("results/tiny/prompts/train.parquet") in local
    for rel in local:
        assert_same_file(cluster_run.local / rel, cluster_run.cluster / rel)
