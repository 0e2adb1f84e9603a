#!/usr/bin/env bash
# Stop the one-node test cluster of tests/cluster/start_slurm.sh, daemon by daemon, by their
# pid files (never by process name, so nothing else on the machine is touched). Safe to rerun.
#
#   sudo tests/cluster/stop_slurm.sh           # stop slurmd, slurmctld, munged
#   sudo tests/cluster/stop_slurm.sh --purge   # also remove its config files and state folder
set -euo pipefail

STATE=${RLHF_LENS_SLURM_STATE:-/var/tmp/rlhf-lens-slurm}
MARKER="# Written by rlhf-lens tests/cluster/start_slurm.sh"

stop() {  # stop <name> <pid file>
    local name=$1 pidfile=$2 pid
    [[ -s $pidfile ]] || { echo "stop_slurm: $name: no pid file ($pidfile)"; return 0; }
    pid=$(cat "$pidfile")
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "stop_slurm: $name: not running (stale pid $pid)"
        rm -f "$pidfile"
        return 0
    fi
    kill -TERM "$pid"
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "stop_slurm: $name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
    echo "stop_slurm: $name (pid $pid) stopped"
}

stop slurmd "$STATE/run/slurmd.pid"
stop slurmctld "$STATE/run/slurmctld.pid"
# munged is ours only if we wrote the SLURM config (a real cluster's munged is not ours to stop).
if [[ -f /etc/slurm/slurm.conf ]] && head -n1 /etc/slurm/slurm.conf | grep -qxF "$MARKER"; then
    stop munged /run/munge/munged.pid
fi

if [[ ${1:-} == --purge ]]; then
    for f in /etc/slurm/slurm.conf /etc/slurm/gres.conf; do
        if [[ -f $f ]] && head -n1 "$f" | grep -qxF "$MARKER"; then rm -f "$f"; echo "stop_slurm: removed $f"; fi
    done
    rm -rf "$STATE"
    echo "stop_slurm: removed $STATE"
fi
