#!/usr/bin/env bash
# Start a private multi-node Slurm on this machine: each slurmd in its own network and UTS
# namespace (hostname node<i>), slurmctld in a namespace of its own holding a bridge that
# links them. All traffic stays inside these namespaces (10.77.0.0/24 exists only there).
#
#   tests/slurm/multinode_setup.sh DIR [NODES]   (root; slurm-wlm and munge installed, as
#                                                 tests/slurm/setup.sh does)
#   DIR/env    SLURM_CONF and CONTROL_NS: run sbatch, srun and the campaign's driver with
#              `ip netns exec $CONTROL_NS ...` (the controller's namespace).
#   tests/slurm/multinode_teardown.sh DIR        stops the daemons, deletes the namespaces.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dir=$(realpath -m "${1:?usage: multinode_setup.sh DIR [NODES]}")
nodes=${2:-2}
cpus=${SLURM_TEST_CPUS:-4}
mkdir -p "$dir"/{state,log}
if [[ $(id -u) -ne 0 ]]; then
    echo "multinode_setup.sh: must run as root (namespaces, SlurmUser=root)" >&2
    exit 3
fi
for tool in ip unshare slurmctld slurmd munged sinfo; do
    command -v "$tool" >/dev/null || { echo "multinode_setup.sh: $tool missing" >&2; exit 3; }
done

tag="mc$(printf '%05d' $(( $$ % 100000 )))"   # namespace and link names (<= 15 chars)
control="${tag}c"
echo "$tag" >"$dir/tag"
ip netns add "$control"
ip -n "$control" link set lo up
ip -n "$control" link add br0 type bridge
ip -n "$control" addr add 10.77.0.1/24 dev br0
ip -n "$control" link set br0 up
for i in $(seq 1 "$nodes"); do
    ns="${tag}n$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "${tag}v$i" netns "$control" type veth peer name eth0 netns "$ns"
    ip -n "$control" link set "${tag}v$i" master br0 up
    ip -n "$ns" addr add "10.77.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
done

# munge: as tests/slurm/setup.sh (a Unix socket: every network namespace reaches it)
start_munge "$dir"

host=$(hostname -s)
cat >"$dir/slurm.conf" <<CONF
ClusterName=${tag}
SlurmctldHost=${host}(10.77.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=${munge_dir}/munge.socket
MpiDefault=pmi2
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=${dir}/state
SlurmdSpoolDir=${dir}/spool-%n
SlurmctldPidFile=${dir}/slurmctld.pid
SlurmdPidFile=${dir}/slurmd-%n.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd-%n.log
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
InactiveLimit=0
KillWait=5
MinJobAge=30
Waittime=0
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=DEFAULT CPUs=${cpus} State=UNKNOWN
CONF
for i in $(seq 1 "$nodes"); do
    echo "NodeName=node$i NodeAddr=10.77.0.$((10 + i)) NodeHostname=node$i" >>"$dir/slurm.conf"
done
echo "PartitionName=debug Nodes=node[1-$nodes] Default=YES MaxTime=INFINITE State=UP" \
    >>"$dir/slurm.conf"
{ echo "export SLURM_CONF=$dir/slurm.conf"; echo "export CONTROL_NS=$control"; } >"$dir/env"
export SLURM_CONF="$dir/slurm.conf"

nsenter --net="/run/netns/$control" slurmctld -f "$SLURM_CONF"
for i in $(seq 1 "$nodes"); do
    mkdir -p "$dir/spool-node$i"
    # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup file system
    nsenter --net="/run/netns/${tag}n$i" unshare --uts sh -c \
        "hostname node$i && exec slurmd -f '$SLURM_CONF' -N node$i"
done

for _ in $(seq 1 200); do
    idle=$(ip netns exec "$control" sinfo -h -N -o '%T' 2>/dev/null | grep -c '^idle' || true)
    if [[ $idle -eq $nodes ]]; then
        echo "slurm up: $nodes nodes in namespaces ${tag}n1..${tag}n$nodes, controller in $control"
        exit 0
    fi
    sleep 0.1
done
echo "multinode_setup.sh: the nodes did not become idle in 20 s" >&2
ip netns exec "$control" sinfo -N >&2 || true
tail -n 20 "$dir"/log/*.log >&2 || true
exit 4
