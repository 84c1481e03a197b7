#!/usr/bin/env bash
# Start a private single-node Slurm (munged, slurmctld, slurmd) for the tests.
#
#   tests/slurm/setup.sh DIR     installs slurm-wlm and munge when missing (apt, as root),
#                                writes DIR/slurm.conf and starts the daemons with their
#                                state, logs, pid files and munge socket under DIR.
#   SLURM_CONF=DIR/slurm.conf    is then what sbatch/squeue/scancel need (DIR/env says so).
#   tests/slurm/teardown.sh DIR  cancels the jobs and stops exactly these daemons.
#
# Everything lives in DIR, on free ports, with its own munge socket: two runs on one machine
# (two engineers' test sessions) do not meet. Needs root: SlurmUser=root, munged as munge.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dir=$(realpath -m "${1:?usage: setup.sh DIR}")
cpus=${SLURM_TEST_CPUS:-8}  # slots advertised; config_overrides lets a 2-core box run 4 jobs
mkdir -p "$dir"/{state,spool,log}
started=$(date +%s.%N)

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: must run as root (SlurmUser=root, munged runs as munge)" >&2
    exit 3
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >"$dir/log/apt.log" 2>&1 \
        || { apt-get update -qq >>"$dir/log/apt.log" 2>&1 \
             && apt-get install -y -qq --no-install-recommends slurm-wlm munge \
                >>"$dir/log/apt.log" 2>&1; }
fi
installed=$(date +%s.%N)

# munge: key owned by munge, mode 400; munged on a socket of its own.
start_munge "$dir"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
ctld_port=$(free_port)
slurmd_port=$(free_port)
cluster="t$(basename "$dir" | tr -cd 'a-z0-9' | tail -c 8)$$"

cat >"$dir/slurm.conf" <<CONF
ClusterName=${cluster}
SlurmctldHost=localhost
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${munge_dir}/munge.socket
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
InactiveLimit=0
KillWait=5
MinJobAge=30
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=localhost CPUs=${cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
echo "export SLURM_CONF=${dir}/slurm.conf" >"$dir/env"
export SLURM_CONF="$dir/slurm.conf"

slurmctld -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF" -N localhost

# Up when the node takes jobs.
for _ in $(seq 1 100); do
    state=$(sinfo -h -N -o '%T' 2>/dev/null | head -n1 || true)
    if [[ $state == idle* || $state == mixed* || $state == allocated* ]]; then
        ready=$(date +%s.%N)
        python3 -c "import sys; a, b, c = map(float, sys.argv[1:]); \
print(f'slurm up in {c - a:.1f} s (install {b - a:.1f} s, daemons {c - b:.1f} s)')" \
            "$started" "$installed" "$ready"
        exit 0
    fi
    sleep 0.1
done
echo "setup.sh: slurmd did not become idle in 10 s; node state: '${state:-none}'" >&2
tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
exit 4
