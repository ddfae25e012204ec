#!/usr/bin/env bash
# start_slurm.sh - a real single-node SLURM for CI (Debian 12, SLURM 22.05), shaped like
# one A100 node: partitions debug (default), cpu and gpu, and a fake gpu:a100 GRES so
# that `--gpus=a100:1` jobs are scheduled. No systemd, no cgroups, no accounting database
# (the profile's `slurm-status-command: squeue` needs none).
#
# Idempotent: installs (apt) what is missing, rewrites the config only when it differs,
# restarts slurmctld/slurmd only when their config changed, starts only daemons that
# are not running, then waits until the node is idle. Must run as root.
#
# Usage:  bash ci/slurm/start_slurm.sh
# Env (all optional):
#   EQUIVOX_CI_SLURM_CPUS=64        CPUs announced for the node (more than the hardware
#                                   has, so jobs asking for 16 CPUs per GPU fit)
#   EQUIVOX_CI_SLURM_MEM_MB=256000  memory announced (nothing enforces it without cgroups)
#   EQUIVOX_CI_SLURM_GPUS=2         fake GPUs, character devices made with mknod
#   EQUIVOX_CI_SLURM_GPU_TYPE=a100  GRES type
#   EQUIVOX_CI_SLURM_WAIT_S=60      how long to wait for the node to become idle
set -euo pipefail

NCPUS=${EQUIVOX_CI_SLURM_CPUS:-64}
MEM_MB=${EQUIVOX_CI_SLURM_MEM_MB:-256000}
NGPUS=${EQUIVOX_CI_SLURM_GPUS:-2}
GPU_TYPE=${EQUIVOX_CI_SLURM_GPU_TYPE:-a100}
WAIT_S=${EQUIVOX_CI_SLURM_WAIT_S:-60}

CLUSTER=equivoxci
NODE=$(hostname -s)
ETC=/etc/slurm
LOG=/var/log/slurm
FAKEGPU_DIR=/run/equivox-fakegpu

log() { printf '[start_slurm %(%T)T] %s\n' -1 "$*"; }
die() { log "ERROR: $*"; exit 1; }
[[ $EUID -eq 0 ]] || die "must run as root"

# running <pidfile> <comm>: the pid in pidfile is alive and is that program
running() {
  local pid
  [[ -s "$1" ]] || return 1
  pid=$(<"$1")
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
    [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == "$2" ]]
}
stop_pidfile() { # <pidfile> <comm>
  running "$1" "$2" || return 0
  local pid; pid=$(<"$1")
  kill "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
wait_tcp() { # <port> <seconds>
  for _ in $(seq 1 $(( $2 * 10 ))); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
# daemons fork away; their stdio must not hold the caller's pipes open (pytest waits on them)
start_daemon() { # <logfile> <command...>
  local logfile=$1; shift
  "$@" </dev/null >>"$logfile" 2>&1
}

# ---------------------------------------------------------------- 1. packages
PKGS=(slurmctld slurmd slurm-client munge)
MISSING=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || MISSING+=("$p")
done
if ((${#MISSING[@]})); then
  log "installing: ${MISSING[*]}"
  # apt's maintainer scripts must not try to start daemons (there is no init system)
  POLICY_ADDED=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; POLICY_ADDED=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
  ((POLICY_ADDED)) && rm -f /usr/sbin/policy-rc.d
fi
log "slurm $(dpkg-query -W -f='${Version}' slurmctld), munge $(dpkg-query -W -f='${Version}' munge)"

# ---------------------------------------------------------------- 2. dirs, munge key, fake GPUs
mkdir -p "$ETC" "$LOG" /var/spool/slurmctld /var/spool/slurmd /run/munge
chown munge:munge /run/munge; chmod 755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  mkdir -p /etc/munge
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi

# slurmd drops a GPU without File= ("Removing file-less GPU"): point each at a character
# device (a copy of /dev/null's major/minor); one GPU on /dev/null itself if mknod is refused
mkdir -p "$FAKEGPU_DIR"
GPU_FILE="$FAKEGPU_DIR/gpu[0-$((NGPUS - 1))]"
for ((i = 0; i < NGPUS; i++)); do
  [[ -c "$FAKEGPU_DIR/gpu$i" ]] && continue
  if ! mknod -m 666 "$FAKEGPU_DIR/gpu$i" c 1 3 2>/dev/null; then
    log "mknod not permitted: one fake GPU on /dev/null"; NGPUS=1; GPU_FILE=/dev/null; break
  fi
done
((NGPUS == 1)) && [[ "$GPU_FILE" != /dev/null ]] && GPU_FILE="$FAKEGPU_DIR/gpu0"

# ---------------------------------------------------------------- 3. config files
SLURM_CONF=$(cat <<EOF
# written by equivox ci/slurm/start_slurm.sh
ClusterName=${CLUSTER}
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
SlurmctldLogFile=${LOG}/slurmctld.log
SlurmdLogFile=${LOG}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no systemd/cgroups here. pgid, not linuxproc: under linuxproc an orphaned child that
# ignores SIGTERM (Snakemake does) survives scancel
ProctrackType=proctrack/pgid
TaskPlugin=task/none
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# a durable record of every finished job (squeue forgets them after MinJobAge)
JobCompType=jobcomp/filetxt
JobCompLoc=${LOG}/jobcomp.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# trust the node line below (an A100 node's CPUs and memory) over the hardware
SlurmdParameters=config_overrides
DefMemPerCPU=256
# finished jobs stay visible to squeue for 300 s: the squeue status command relies on it
MinJobAge=300
ReturnToService=2
KillWait=10
MailProg=/bin/true
GresTypes=gpu
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${NCPUS} RealMemory=${MEM_MB} Gres=gpu:${GPU_TYPE}:${NGPUS} State=UNKNOWN
# debug is the default, so a job that lands in cpu or gpu was sent there on purpose
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=${NODE} MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=${NODE} MaxTime=INFINITE State=UP
EOF
)
GRES_CONF=$(cat <<EOF
# written by equivox ci/slurm/start_slurm.sh
AutoDetect=off
NodeName=${NODE} Name=gpu Type=${GPU_TYPE} File=${GPU_FILE}
EOF
)

CHANGED=0
write_if_changed() { # <path> <content>
  if [[ ! -f "$1" ]] || [[ "$(cat "$1")" != "$2" ]]; then
    printf '%s\n' "$2" > "$1"; chmod 644 "$1"; CHANGED=1; log "wrote $1"
  fi
}
write_if_changed "$ETC/slurm.conf" "$SLURM_CONF"
write_if_changed "$ETC/gres.conf" "$GRES_CONF"

# slurmctld refuses a state directory written for another ClusterName
if [[ -f /var/spool/slurmctld/clustername ]] && [[ "$(cat /var/spool/slurmctld/clustername)" != "$CLUSTER" ]]; then
  log "clearing the state of another cluster"; rm -rf /var/spool/slurmctld/*
fi

# ---------------------------------------------------------------- 4. daemons
if ! running /run/munge/munged.pid munged; then
  log "starting munged"
  start_daemon "$LOG/munged.out" runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
munge -n | unmunge >/dev/null || die "munge does not work"

if ((CHANGED)); then
  stop_pidfile /run/slurmd.pid slurmd
  stop_pidfile /run/slurmctld.pid slurmctld
fi
if ! running /run/slurmctld.pid slurmctld; then
  log "starting slurmctld"; start_daemon "$LOG/slurmctld.out" slurmctld
fi
wait_tcp 6817 30 || die "slurmctld is not listening (see $LOG/slurmctld.log)"
if ! running /run/slurmd.pid slurmd; then
  log "starting slurmd"; start_daemon "$LOG/slurmd.out" slurmd
fi

# ---------------------------------------------------------------- 5. wait for an idle node
state=""
for ((i = 0; i < WAIT_S * 2; i++)); do
  state=$(sinfo -h -n "$NODE" -o '%T' 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mixed|allocated) break ;;
    # left over from an earlier run or config; slurmd registered again, so resume it
    *drain*|*inval*|down*|*fail*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
  esac
  sleep 0.5
done
case "$state" in
  idle|mixed|allocated) ;;
  *) sinfo -N -o '%N %T %E' || true; die "node $NODE is '$state', not idle (see $LOG/)" ;;
esac
log "cluster up: node $NODE $state, cpus=$NCPUS mem=${MEM_MB}MB gres=gpu:$GPU_TYPE:$NGPUS"
sinfo
