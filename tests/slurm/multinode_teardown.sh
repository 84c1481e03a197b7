#!/usr/bin/env bash
# Stop what tests/slurm/multinode_setup.sh DIR started (its daemons, by pid file) and
# delete the namespaces it made.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dir=$(realpath -m "${1:?usage: multinode_teardown.sh DIR}")
tag=$(cat "$dir/tag" 2>/dev/null || true)
export SLURM_CONF="$dir/slurm.conf"
if [[ -n $tag && -f $SLURM_CONF ]]; then
    ip netns exec "${tag}c" scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 1 50); do
        [[ -z $(ip netns exec "${tag}c" squeue -h -o %i 2>/dev/null) ]] && break
        sleep 0.1
    done
fi
munge_dir=$(cat "$dir/munge_dir" 2>/dev/null || true)
stop_pidfiles "$dir"/slurmd-*.pid "$dir/slurmctld.pid" ${munge_dir:+"$munge_dir/munged.pid"}
if [[ -n $tag ]]; then
    for ns in $(ip netns list | awk '{print $1}' | grep "^${tag}[cn][0-9]*$"); do
        ip netns del "$ns" 2>/dev/null || true
    done
fi
remove_munge_dir
exit 0
