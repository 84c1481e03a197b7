#!/usr/bin/env bash
# Stop what tests/slurm/setup.sh DIR started: cancel its jobs, then its daemons by pid file.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

dir=$(realpath -m "${1:?usage: teardown.sh DIR}")
export SLURM_CONF="$dir/slurm.conf"
if [[ -f $SLURM_CONF ]]; then
    scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
    # give slurmd a moment to kill the job steps it owns
    for _ in $(seq 1 50); do
        [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
        sleep 0.1
    done
fi
munge_dir=$(cat "$dir/munge_dir" 2>/dev/null || true)
stop_pidfiles "$dir/slurmd.pid" "$dir/slurmctld.pid" ${munge_dir:+"$munge_dir/munged.pid"}
remove_munge_dir  # only the folder setup.sh made for this run
exit 0
