# Shell functions the Slurm test scripts share (sourced, not run): munge for a private
# Slurm, and stopping daemons by pid file.
#
#   start_munge DIR      the key (owned by munge, mode 400) and munged on a socket of its
#                        own in a new /run/munge/test.* folder, named in DIR/munge_dir;
#                        sets $munge_dir.
#   stop_pidfiles FILE.. for each non-empty pid file: SIGTERM, up to 5 s, then SIGKILL.
#   remove_munge_dir     the folder start_munge made for this run (named in $munge_dir).

start_munge() {
    local dir=$1
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    # munged's own folder under /run/munge: DIR may sit where the munge user cannot reach
    # (pytest's temporary folders are private to root). A Unix socket: every network
    # namespace on this machine reaches it.
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    munge_dir=$(mktemp -d /run/munge/test.XXXXXX)
    echo "$munge_dir" >"$dir/munge_dir"
    chown munge:munge "$munge_dir"
    chmod 755 "$munge_dir"
    runuser -u munge -- munged --socket="$munge_dir/munge.socket" \
        --pid-file="$munge_dir/munged.pid" --log-file="$munge_dir/munged.log" \
        --seed-file="$munge_dir/munged.seed"
}

stop_pidfiles() {
    local pidfile pid
    for pidfile in "$@"; do
        [[ -s $pidfile ]] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || continue
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
    done
}

remove_munge_dir() {
    if [[ ${munge_dir:-} == /run/munge/test.* ]]; then
        rm -rf -- "$munge_dir"
    fi
}
