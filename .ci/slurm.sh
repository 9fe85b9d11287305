#!/usr/bin/env bash
# A real one-node SLURM on localhost for the cluster test (tests/test_slurm.py), as in
# ../shared/docs/local-slurm.md: munge, slurmctld and slurmd from Debian, no accounting
# (the profile's status command is then squeue). Needs root.
#
#   .ci/slurm.sh up BASE     install if missing, write /etc/slurm/slurm.conf, start the daemons
#   .ci/slurm.sh down BASE   stop them by their saved pids
#
# FAKE_GPUS=N (up to 4; default 0) gives the node N GPUs as a generic resource backed by character
# devices (/dev/null, ...), so jobs that ask for `--gpus`/`--gres=gpu` (the study's training rules,
# its packed gpu_pack4 groups) schedule on a CPU-only machine, N at a time; torch sees no CUDA.
# NODE_CPUS=C (default: nproc) declares C CPUs: a packed group of k runs asks for at least k CPUs
# per GPU, more than a 2-core machine has, so a rehearsal of packing oversubscribes
# (config_overrides: slurmd takes the declared CPUs over the ones it finds).
set -euo pipefail
action=${1:?usage: slurm.sh up|down BASE}
base=$(realpath -m "${2:?usage: slurm.sh up|down BASE}")

stop() {                     # by saved pid, only if that pid still runs the daemon we started
    local pidfile=$1 name=$2 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if [[ -e /proc/$pid/exe && $(readlink -f "/proc/$pid/exe") == *"$name"* ]]; then
        kill "$pid" && for _ in $(seq 50); do [[ -e /proc/$pid ]] || break; sleep 0.1; done
    fi
    rm -f "$pidfile"
}

if [[ $action == down ]]; then
    stop "$base/slurmd.pid" slurmd
    stop "$base/slurmctld.pid" slurmctld
    stop "$base/munged.pid" munged
    exit 0
fi

if ! command -v slurmctld > /dev/null || ! command -v munged > /dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge > /dev/null
fi
mkdir -p "$base"/{state,spool} /etc/munge /run/munge /var/lib/munge /var/log/munge /etc/slurm
[[ -f /etc/munge/munge.key ]] || mungekey -c
chown -R root /etc/munge /run/munge /var/lib/munge /var/log/munge
munged --force -F > "$base/munged.out" 2>&1 & echo $! > "$base/munged.pid"
for _ in $(seq 50); do munge -n 2> /dev/null | unmunge > /dev/null 2>&1 && break; sleep 0.1; done

gpus=${FAKE_GPUS:-0}
devices=(/dev/null /dev/zero /dev/full /dev/urandom)
if (( gpus > ${#devices[@]} )); then echo "FAKE_GPUS=$gpus: at most ${#devices[@]}" >&2; exit 2; fi
gres_types="" node_gres=""
printf 'AutoDetect=off\n' > /etc/slurm/gres.conf
if (( gpus > 0 )); then
    gres_types="GresTypes=gpu" node_gres="Gres=gpu:$gpus"
    for dev in "${devices[@]:0:$gpus}"; do printf 'NodeName=localhost Name=gpu File=%s\n' "$dev" >> /etc/slurm/gres.conf; done
fi

# Two partitions on the one node; profiles/slurm names none, so every job goes to the default (gpu).
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=local
SlurmctldHost=localhost
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
MinJobAge=600
StateSaveLocation=$base/state
SlurmdSpoolDir=$base/spool
SlurmctldPidFile=$base/slurmctld.daemon.pid
SlurmdPidFile=$base/slurmd.daemon.pid
SlurmctldLogFile=$base/slurmctld.log
SlurmdLogFile=$base/slurmd.log
SlurmUser=root
SlurmdParameters=config_overrides
ReturnToService=2
$gres_types
NodeName=localhost NodeAddr=127.0.0.1 CPUs=${NODE_CPUS:-$(nproc)} RealMemory=16000 $node_gres State=UNKNOWN
PartitionName=gpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=cpu Nodes=localhost MaxTime=INFINITE State=UP
EOF
slurmctld -D > "$base/slurmctld.out" 2>&1 & echo $! > "$base/slurmctld.pid"
slurmd -D -N localhost > "$base/slurmd.out" 2>&1 & echo $! > "$base/slurmd.pid"
for _ in $(seq 100); do
    sinfo -h -o %T 2> /dev/null | grep -q idle && { sinfo; exit 0; }
    sleep 0.2
done
echo "SLURM did not come up; see $base/slurmctld.log and $base/slurmd.log" >&2
exit 1
