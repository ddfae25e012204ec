#!/usr/bin/env bash
# stop_slurm.sh - stop what ci/slurm/start_slurm.sh started (by pid file, checking that
# the pid really is that program). Idempotent. Must run as root.
# Usage: bash ci/slurm/stop_slurm.sh [--purge]
#   --purge also removes job state and logs, so the next start is a fresh cluster
#   whose job ids begin at 1.
set -euo pipefail
PURGE=0; [[ "${1:-}" == "--purge" ]] && PURGE=1
log() { printf '[stop_slurm %(%T)T] %s\n' -1 "$*"; }

stop_pidfile() { # <pidfile> <comm>
  local pid
  [[ -s "$1" ]] || return 0
  pid=$(<"$1")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 0
  [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == "$2" ]] || return 0
  log "stopping $2 (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  log "$2 did not exit in 15 s, killing it"; kill -9 "$pid" 2>/dev/null || true
}

# cancel what is still queued or running: slurmstepd would outlive slurmd
if [[ -s /run/slurmctld.pid ]] && kill -0 "$(cat /run/slurmctld.pid)" 2>/dev/null; then
  jobs=$(timeout 10 squeue -h -o %i 2>/dev/null || true)
  if [[ -n "$jobs" ]]; then
    log "cancelling jobs: $(echo $jobs)"; timeout 10 scancel $jobs || true; sleep 1
  fi
fi
stop_pidfile /run/slurmd.pid slurmd
stop_pidfile /run/slurmctld.pid slurmctld
stop_pidfile /run/munge/munged.pid munged

if ((PURGE)); then
  log "purging job state and logs"
  rm -rf /var/spool/slurmctld/* /var/spool/slurmd/* /var/log/slurm/*
fi
log "stopped"
