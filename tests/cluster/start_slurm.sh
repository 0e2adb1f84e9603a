#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this machine, for tests/test_cluster.py.
#
#   sudo tests/cluster/start_slurm.sh     # ~10 s once the packages are installed
#   sudo tests/cluster/stop_slurm.sh      # stops the daemons by their pid files
#
# Debian/Ubuntu, root, no systemd needed. Installs slurmctld, slurmd, slurm-client and munge
# with apt-get if they are missing, writes /etc/slurm/slurm.conf and gres.conf (the job step
# of snakemake-executor-plugin-slurm drops SLURM_CONF, so the config must sit at the default
# path), declares two fake GPUs (character devices made with mknod) so that rules asking for
# gpu=N get scheduled, starts munged, slurmctld and slurmd, waits for the node to be idle and
# runs a CPU and a GPU smoke job. Safe to rerun: a cluster that is already up is left alone,
# and it refuses to overwrite a slurm.conf it did not write. See /work/shared/SLURM.md-style
# notes in docs/cluster.md.
set -euo pipefail

STATE=${RLHF_LENS_SLURM_STATE:-/var/tmp/rlhf-lens-slurm}
CLUSTER=rlhflens-test
MARKER="# Written by rlhf-lens tests/cluster/start_slurm.sh"
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
FAKE_GPUS=2

say() { echo "start_slurm: $*"; }
die() { echo "start_slurm: error: $*" >&2; exit 1; }
alive() { [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

[[ $(id -u) -eq 0 ]] || die "needs root (it installs packages, writes /etc/slurm and starts daemons)"

# 1. Packages, only when missing.
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "SLURM is not installed and there is no apt-get to install it"
    say "installing slurmctld slurmd slurm-client munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || die "apt-get update failed (no package mirror reachable?)"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null \
        || die "apt-get install of slurmctld slurmd slurm-client munge failed"
fi

HOST=$(hostname -s)
# At least 4 CPU slots, even on a 2-core machine: the test jobs are tiny and mostly wait on
# sbatch/srun/polling, so letting a 2-thread and a 1-thread job run side by side saves ~10 s a job.
CPUS=$(( $(nproc) > 4 ? $(nproc) : 4 ))
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
PIDS="$STATE/run"

# 2. The config this machine gets.
conf_text=$(cat <<CONF_EOF
$MARKER
# A one-node test cluster; remove with tests/cluster/stop_slurm.sh --purge.
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
# No cgroups on this kind of machine: track processes by /proc, no task confinement.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
# No slurmdbd: the workflow's status checks must use squeue (see tests/cluster/profile).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# Finished jobs stay visible to squeue/scontrol for 300 s (>= 3x the plugin's first status delay).
MinJobAge=300
ReturnToService=2
# Accept the node line's CPU count even where it exceeds the cores slurmd finds (see CPUS above).
SlurmdParameters=config_overrides
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmdSpoolDir=$STATE/spool
StateSaveLocation=$STATE/state
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:$FAKE_GPUS State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF_EOF
)
gres_text=$(cat <<GRES_EOF
$MARKER
# Fake GPUs: scheduling slots only (jobs get CUDA_VISIBLE_DEVICES, their code still runs on CPU).
NodeName=$HOST Name=gpu Count=$FAKE_GPUS File=$STATE/dev/nvidia[0-$((FAKE_GPUS - 1))]
GRES_EOF
)

# 3. Already up with this very config? Leave it alone. Up with an older one? Restart it.
ours() { [[ -f $1 ]] && head -n1 "$1" | grep -qxF "$MARKER"; }
if [[ -f $CONF ]] && ! ours "$CONF"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's config"
fi
if alive "$PIDS/slurmctld.pid" || alive "$PIDS/slurmd.pid"; then
    if [[ "$(cat "$CONF" 2>/dev/null)" == "$conf_text" && "$(cat "$GRES" 2>/dev/null)" == "$gres_text" ]] \
        && alive "$PIDS/slurmctld.pid" && alive "$PIDS/slurmd.pid" \
        && [[ $(sinfo -h -o %T 2>/dev/null | head -n1) =~ ^(idle|mixed|allocated|completing) ]]; then
        say "cluster $CLUSTER already up ($(sinfo -h -o '%P %D %T %G' | head -n1))"
        exit 0
    fi
    say "cluster $CLUSTER is up with another config or not healthy; restarting it"
    "$(dirname "$0")/stop_slurm.sh"
fi

mkdir -p /etc/slurm "$STATE"/{spool,state,log,dev,run}
for i in $(seq 0 $((FAKE_GPUS - 1))); do
    # SLURM accepts only character devices as GPU files; 1:3 is /dev/null's number, harmless.
    [[ -c "$STATE/dev/nvidia$i" ]] || { rm -f "$STATE/dev/nvidia$i"; mknod "$STATE/dev/nvidia$i" c 1 3; }
done
printf '%s\n' "$conf_text" > "$CONF"
printf '%s\n' "$gres_text" > "$GRES"

# 4. Daemons; each backgrounds itself and writes its pid file.
if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating /etc/munge/munge.key"
    install -d -o munge -g munge -m 0700 /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
if ! alive /run/munge/munged.pid; then
    say "starting munged"
    runuser -u munge -- munged
fi
if ! alive "$PIDS/slurmctld.pid"; then
    say "starting slurmctld"
    slurmctld
fi
if ! alive "$PIDS/slurmd.pid"; then
    say "starting slurmd"
    slurmd
fi

# 5. Wait for the node to be idle (a node that was down from an earlier run is resumed).
for _ in $(seq 1 60); do
    state=$(sinfo -h -o %T 2>/dev/null | head -n1 || true)
    case $state in
        idle*|mixed*|allocated*) break ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 1
done
[[ $state =~ ^(idle|mixed|allocated) ]] \
    || die "node $HOST is '$state' after 60 s; see $STATE/log/slurmctld.log and slurmd.log"

# 6. Smoke tests: a CPU job and a GPU job.
out=$(timeout -k 5 60 srun -t 1 hostname) || die "smoke job 'srun hostname' failed"
[[ $out == "$HOST" ]] || die "smoke job printed '$out', expected '$HOST'"
gpu=$(timeout -k 5 60 srun -t 1 --gpus=1 printenv CUDA_VISIBLE_DEVICES) \
    || die "GPU smoke job 'srun --gpus=1' failed"
say "cluster $CLUSTER up: node $HOST, $CPUS CPU slots ($(nproc) cores), $MEM_MB MiB, $FAKE_GPUS fake GPUs (GPU job saw CUDA_VISIBLE_DEVICES=$gpu)"
