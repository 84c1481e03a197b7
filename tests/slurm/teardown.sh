#!/usr/bin/env bash
# Stop what tests/slurm/setup.sh DIR started: cancel its jobs, then its daemons by pid file.
set -uo pipefail

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
for pidfile in "$dir/slurmd.pid" "$dir/slurmctld.pid" ${munge_dir:+"$munge_dir/munged.pid"}; do
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
done
# only the folder setup.sh made for this run
if [[ $munge_dir == /run/munge/test.* ]]; then
    rm -rf -- "$munge_dir"
fi
exit 0
