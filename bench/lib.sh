# bench/lib.sh: helpers the bench scripts share (sourced by bench/compare
# and bench/fleet, never run). Each script keeps its own state in these
# globals, which the helpers read or fill:
#   W            the run's work directory
#   PIDS         every process started, stopped by PID on exit
#   PID LOGF     associative arrays: a front's main PID and its log
#   START_WAIT_S how long a front may take to start
# Messages are prefixed with the script's name.

# Start-up wait per front. Generous because the machine may be shared
# (a loaded 2-core box can take seconds to start nginx or the registry),
# bounded so a broken front fails the run instead of hanging it.
START_WAIT_S=${COMPARE_START_WAIT:-60}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# target_dir ROOT: where cargo puts binaries (CARGO_TARGET_DIR,
# .cargo/config.toml, a workspace); ask it rather than assume ./target.
target_dir() {
    local root=$1 dir=""
    if command -v cargo >/dev/null 2>&1; then
        dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])') || dir=""
    fi
    echo "${dir:-$root/target}"
}

# wait_http NAME URL PID LOG: waits until something answers HTTP at URL (any
# status). On failure names the target and shows the end of its log.
wait_http() {
    local name=$1 url=$2 pid=$3 logf=$4 deadline code
    deadline=$(($(date +%s) + START_WAIT_S))
    while (($(date +%s) < deadline)); do
        code=$(curl -sk -o /dev/null -w '%{http_code}' --max-time 2 "$url" || true)
        [[ $code != 000 ]] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            start_failed "$name" "$url" "$logf" "exited during start-up"
        fi
        sleep 0.2
    done
    start_failed "$name" "$url" "$logf" "nothing answers after ${START_WAIT_S}s"
}

start_failed() {
    local name=$1 url=$2 logf=$3 why=$4 me=${0##*/}
    {
        echo "$me: target $name ($url): $why"
        if [[ -s $logf ]]; then
            echo "$me: last lines of $logf:"
            tail -n 20 "$logf" | sed 's/^/    /'
        else
            echo "$me: its log $logf is empty"
        fi
    } >&2
    exit 1
}

# make_certs DIR: a throw-away CA and a leaf for localhost and 127.0.0.1:
# ca.crt (what clients trust), domain.crt (leaf + CA), domain.key, and
# haproxy.pem (chain and key in one file).
make_certs() (
    cd "$1"
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
    openssl req -x509 -new -key ca.key -days 2 -subj "/CN=regbench compare CA" -out ca.crt 2>/dev/null
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out domain.key 2>/dev/null
    openssl req -new -key domain.key -subj "/CN=localhost" -out domain.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >ext.cnf
    openssl x509 -req -in domain.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile ext.cnf -out leaf.crt 2>/dev/null
    cat leaf.crt ca.crt >domain.crt
    cat domain.crt domain.key >haproxy.pem
)

# start_nginx NAME DIR: nginx with DIR/nginx.conf in the foreground; sets
# PID[NAME] and LOGF[NAME].
start_nginx() {
    local name=$1 dir=$2
    mkdir -p "$dir/logs"
    # Process settings only; the configuration itself is untouched.
    nginx -p "$dir" -c "$dir/nginx.conf" -g "daemon off; user root; pid $dir/nginx.pid; error_log $dir/error.log;" \
        >"$dir/log" 2>&1 &
    PID[$name]=$!
    LOGF[$name]=$dir/error.log
    PIDS+=($!)
}

# The PIDs a proxy runs as: the main one and its children (nginx workers).
proc_pids() {
    local main=$1
    echo "$main"
    pgrep -P "$main" 2>/dev/null || true
}

CLK_TCK=$(getconf CLK_TCK)
# utime + stime (fields 14 and 15 of /proc/PID/stat, counted after the
# parenthesised command name), summed, in clock ticks.
cpu_ticks() {
    local total=0 pid stat rest
    for pid in "$@"; do
        stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
        rest=${stat##*) }
        read -r -a f <<<"$rest"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}
peak_rss_kib() {
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}
reset_rss() {
    local pid
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs" 2>/dev/null || true; done
}

# rotated REP T...: the targets in the order repetition REP runs them, each
# repetition starting one further along. In a fixed order each target always
# follows the same one, and that alone can decide a tie: of alternating TLS
# uploads behind the registry, regproxy's beat HAProxy's in 7 of 10 when it
# ran just before HAProxy, and in 5 of 12 when it ran just after.
rotated() {
    local rep=$1 n i
    shift
    n=$#
    ((n)) || return 0
    local targets=("$@")
    for ((i = 0; i < n; i++)); do printf '%s\n' "${targets[(rep - 1 + i) % n]}"; done
}
