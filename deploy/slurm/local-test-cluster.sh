#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and trials (Debian's slurm-wlm, Slurm 22.05).
#
# Installs slurm-wlm and munge with apt-get when they are missing, writes a one-node slurm.conf
# and starts munged, slurmctld and slurmd directly (no systemd). Needs root. Idempotent: when the
# node already answers, it does nothing. Exits 0 when `srun hostname` works, 1 otherwise (with
# the reason on stderr); CI calls it as `... || true`, and the `slurm` tests then skip.
#
#   sudo bash deploy/slurm/local-test-cluster.sh          # start (or check) the cluster
#   sudo bash deploy/slurm/local-test-cluster.sh --stop   # stop the daemons it started
set -uo pipefail

say() { echo "local-test-cluster: $*" >&2; }

node_answers() {
    command -v sinfo >/dev/null 2>&1 || return 1
    local state
    state=$(timeout 10 sinfo --noheader --node "$(hostname -s)" --format=%t 2>/dev/null | head -1)
    [[ "$state" == idle* || "$state" == mix* || "$state" == alloc* ]]
}

stop() {
    for daemon in slurmd slurmctld; do
        [[ -f /run/slurm/$daemon.pid ]] && kill "$(cat /run/slurm/$daemon.pid)" 2>/dev/null
    done
    [[ -f /run/munge/munged.pid ]] && kill "$(cat /run/munge/munged.pid)" 2>/dev/null
    return 0
}

if [[ "${1:-}" == "--stop" ]]; then
    stop
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    say "needs root (it installs packages and starts the SLURM daemons as root)"
    exit 1
fi
if node_answers; then
    say "SLURM already up on $(hostname -s)"
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    if ! timeout 300 apt-get update -qq >/dev/null ||
        ! timeout 300 apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null; then
        say "apt-get could not install slurm-wlm and munge"
        exit 1
    fi
fi

host=$(hostname -s)
cpus=$(nproc)
# RealMemory below the machine's (slurmd drains a node that reports less than configured).
memory_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)

mkdir -p /run/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm /etc/slurm
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 0755 /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
fi

cat >/etc/slurm/slurm.conf <<CONF
# Written by amondask deploy/slurm/local-test-cluster.sh: one node, daemons as root.
ClusterName=amondask-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
NodeName=$host CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
CONF

if ! pgrep -u munge -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged || { say "munged did not start"; exit 1; }
fi
if ! pgrep -x slurmctld >/dev/null; then
    /usr/sbin/slurmctld || { say "slurmctld did not start (see /var/log/slurm/slurmctld.log)"; exit 1; }
fi
if ! pgrep -x slurmd >/dev/null; then
    /usr/sbin/slurmd || { say "slurmd did not start (see /var/log/slurm/slurmd.log)"; exit 1; }
fi

for _ in $(seq 30); do
    node_answers && break
    sleep 1
done
if ! node_answers; then
    say "node $host did not become idle; sinfo says: $(sinfo --noheader 2>&1 | head -3)"
    exit 1
fi
if ! timeout 60 srun --nodes=1 --ntasks=1 --mem=100 hostname >/dev/null 2>&1; then
    say "srun hostname failed; see /var/log/slurm/"
    exit 1
fi
say "SLURM up: node $host, $cpus CPUs, ${memory_mb} MB"
