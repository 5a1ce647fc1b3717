#!/usr/bin/env bash
# A private single-node Slurm cluster (munged, slurmctld, slurmd) for trying `--backend slurm`
# by hand and for the tests (tests/slurm_cluster.py starts this same script). Needs root and
# Debian's `slurm-wlm` + `munge` (apt-get install --no-install-recommends slurm-wlm munge).
#
#   launch/slurm_cluster.sh start DIR     # config, key, state, spool, logs all under DIR
#   export SLURM_CONF=DIR/slurm.conf      # then sbatch, squeue, scontrol ... talk to it
#   launch/slurm_cluster.sh stop DIR      # stops the three daemons by their PID files
#
# Settings (environment, read by `start`):
#   SLURM_CPUS=4          CPUs the node advertises (may exceed the real count: config_overrides)
#   SLURM_MAX_ARRAY=1001  MaxArraySize (array indices 0..N-1); the tests set it low
#   SLURM_CRED_EXPIRE=10  seconds a requeued job waits before it may start again (Slurm's
#                         default is 120: the "requeued task restarts 2 minutes later" delay)
# Nothing outside DIR is written; ports are picked free on 127.0.0.1. Other Slurm clusters on
# the machine are untouched (their SLURM_CONF, sockets and ports are not ours).
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
cmd=$1
dir=$(mkdir -p "$2" && cd "$2" && pwd)

stop() {
  local name pid
  for name in slurmd slurmctld munged; do
    [ -f "$dir/$name.pid" ] || continue
    pid=$(cat "$dir/$name.pid")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/$name.pid"
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  for prog in munged slurmctld slurmd sbatch scontrol; do
    command -v "$prog" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
    command -v "$prog" >/dev/null || { echo "$prog not found: apt-get install slurm-wlm munge" >&2; exit 1; }
  done
  [ "$(id -u)" = 0 ] || { echo "the private cluster runs its daemons as root" >&2; exit 1; }
  chmod 700 "$dir"
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
  chmod 700 "$dir/munge"
  if [ ! -f "$dir/munge/munge.key" ]; then
    head -c 1024 /dev/urandom > "$dir/munge/munge.key"
    chmod 400 "$dir/munge/munge.key"
  fi
  local host ctld_port slurmd_port
  host=$(hostname -s)
  ctld_port=$(free_port)
  slurmd_port=$(free_port)
  while [ "$slurmd_port" = "$ctld_port" ]; do slurmd_port=$(free_port); done
  cat > "$dir/slurm.conf" <<EOF
# Written by launch/slurm_cluster.sh: a private single-node cluster under $dir.
ClusterName=anchoral-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=${SLURM_CRED_EXPIRE:-10}
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
MaxArraySize=${SLURM_MAX_ARRAY:-1001}
MinJobAge=300
KillWait=5
SchedulerParameters=sched_interval=1
NodeName=$host NodeAddr=127.0.0.1 CPUs=${SLURM_CPUS:-4} RealMemory=4096 State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  stop  # a cluster left running in DIR by an earlier start
  munged --force --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/munge/munged.seed"
  slurmctld -f "$dir/slurm.conf" -i
  slurmd -f "$dir/slurm.conf" -N "$host"
  export SLURM_CONF=$dir/slurm.conf
  for _ in $(seq 150); do  # up to 30 s: the node registers and goes idle
    if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
      echo "Slurm is up: export SLURM_CONF=$dir/slurm.conf"
      return 0
    fi
    sleep 0.2
  done
  echo "Slurm did not come up; logs in $dir/log:" >&2
  tail -n 20 "$dir"/log/*.log >&2 || true
  stop
  exit 1
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
