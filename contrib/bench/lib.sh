# Shared helpers for run.sh and idle-rss.sh (sourced, not executed).
# shellcheck shell=bash

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SYS_PYTHON=/usr/bin/python3   # Debian's python (python3-grpcio lives there)

BENCH_PIDS=()     # every process we started and must stop
BENCH_TMP=""      # scratch directory, removed at exit unless BENCH_KEEP=1
BENCH_KEEP=${BENCH_KEEP:-0}
SERVER_PID="" SERVER_PORT=""   # set by start_server, read by its callers

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    local i
    for ((i = 0; i < 30; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  if [[ -n $BENCH_TMP && -d $BENCH_TMP ]]; then
    if [[ $BENCH_KEEP == 1 ]]; then
      log "kept scratch files in $BENCH_TMP"
    else
      rm -rf "$BENCH_TMP"
    fi
  fi
}

bench_init() {
  BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/tasker-bench.XXXXXX")
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

forget_pid() {
  local drop=$1 p keep=()
  for p in "${BENCH_PIDS[@]}"; do [[ $p == "$drop" ]] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
}

need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
  done
}

# A currently free TCP port on 127.0.0.1 (kernel-chosen).  The probe socket
# does not set SO_REUSEADDR, so a port still held by a TIME-WAIT socket is
# never returned.
free_port() {
  "$SYS_PYTHON" -c '
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Process and all its descendants (a server that forks is measured whole).
tree_pids() {
  local pid=$1 child
  echo "$pid"
  for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
    tree_pids "$child"
  done
}

# utime+stime in clock ticks, summed over the process tree.
tree_cpu_ticks() {
  local total=0 p rest
  for p in $(tree_pids "$1"); do
    [[ -r /proc/$p/stat ]] || continue
    rest=$(<"/proc/$p/stat") || continue
    rest=${rest##*) }          # drop "pid (comm) "; comm may hold spaces
    # shellcheck disable=SC2086
    set -- $rest               # $1 = state (field 3); utime/stime = fields 14/15
    total=$((total + ${12} + ${13}))
  done
  echo "$total"
}

# VmRSS in KiB, summed over the process tree.
tree_rss_kib() {
  local total=0 p v
  for p in $(tree_pids "$1"); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null) || continue
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# Busy clock ticks (user+nice+system+steal, without irq/softirq time, which
# here is mostly loopback packet processing done for the benchmark itself)
# summed over the given CPU numbers, from /proc/stat.
cpus_busy_ticks() {
  local want=" $* "
  awk -v want="$want" '$1 ~ /^cpu[0-9]+$/ {
      n = substr($1, 4)
      if (index(want, " " n " ")) busy += $2 + $3 + $4 + $9
    } END { print busy + 0 }' /proc/stat
}

tree_fd_count() {
  local total=0 p n
  for p in $(tree_pids "$1"); do
    n=$(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l) || continue
    total=$((total + n))
  done
  echo "$total"
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_server NAME CPU BIN ARGS...   (ARGS must not include --port)
# Starts BIN pinned to CPU with --port <free port>, waits until it accepts
# connections.  Sets SERVER_PID and SERVER_PORT; its output goes to
# $BENCH_TMP/NAME.server.log.  Retries with a new port if the first one is
# taken between probing and binding.
start_server() {
  local name=$1 cpu=$2 bin=$3
  shift 3
  local attempt port pid i out="$BENCH_TMP/$name.server.log"
  for attempt in 1 2 3; do
    port=$(free_port)
    taskset -c "$cpu" "$bin" --port "$port" "$@" >"$out" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    for ((i = 0; i < 150; i++)); do   # up to 15 s
      if ! kill -0 "$pid" 2>/dev/null; then
        break
      fi
      if port_open "$port"; then
        # the listener must be ours, not a stranger that grabbed the port
        # while ours fails to bind: still alive a moment later
        sleep 0.2
        if kill -0 "$pid" 2>/dev/null; then
          # shellcheck disable=SC2034  # read by the scripts sourcing this file
          SERVER_PID=$pid
          # shellcheck disable=SC2034
          SERVER_PORT=$port
          return 0
        fi
      fi
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      stop_server "$pid"
      log "$name: not accepting connections on 127.0.0.1:$port after 15 s"
    else
      wait "$pid" 2>/dev/null || true
      forget_pid "$pid"
      log "$name: exited during start-up (attempt $attempt, port $port):"
      sed 's/^/    /' "$out" | tail -n 5 >&2
    fi
  done
  die "$name: could not start $bin"
}

# stop_server PID: SIGTERM, up to 5 s grace, then SIGKILL.
stop_server() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  forget_pid "$pid"
}

# verify_grpc NAME PORT BODYFILE: one real call through python3-grpcio, and
# one with exactly h2load's request bytes and headers through nghttp, whose
# trailers must carry grpc-status 0 and whose body must be "Hello world".
verify_grpc() {
  local name=$1 port=$2 body=$3
  local out="$BENCH_TMP/$name.nghttp.$port.log" msg
  if ! msg=$(timeout 20 "$SYS_PYTHON" "$BENCH_DIR/grpc_check.py" "127.0.0.1:$port" world 2>&1); then
    log "$name: $msg"
    return 1
  fi
  log "  $name: $msg"
  if ! timeout 20 nghttp -v -H 'content-type: application/grpc' -H 'te: trailers' \
        -d "$body" "http://127.0.0.1:$port/helloworld.Greeter/SayHello" >"$out" 2>&1; then
    log "$name: nghttp request failed (see below)"
    tail -n 20 "$out" >&2
    return 1
  fi
  if ! grep -aq ') :status: 200$' "$out" || ! grep -aq ') grpc-status: 0$' "$out" \
      || ! grep -aq 'Hello world' "$out"; then
    log "$name: raw h2 request did not get :status 200 + 'Hello world' + grpc-status 0:"
    grep -a -E 'recv \(stream_id|Hello' "$out" >&2 || true
    return 1
  fi
  log "  $name: nghttp raw request: :status 200, grpc-status 0, body 'Hello world'"
}

# Raise the open-file limit of this shell (inherited by the servers and
# clients it starts) to at least $1, as far as the hard limit allows.
raise_nofile() {
  local want=$1 hard soft
  soft=$(ulimit -Sn)
  [[ $soft == unlimited || $soft -ge $want ]] && return 0
  hard=$(ulimit -Hn)
  if [[ $hard != unlimited && $hard -lt $want ]]; then
    ulimit -Hn "$want" 2>/dev/null || true
    hard=$(ulimit -Hn)
  fi
  if [[ $hard == unlimited || $hard -ge $want ]]; then
    ulimit -Sn "$want"
  else
    ulimit -Sn "$hard"
  fi
  soft=$(ulimit -Sn)
  [[ $soft == unlimited || $soft -ge $want ]] ||
    die "open-file limit is $soft (hard $hard) but $want are needed; run as root or lower --conns"
}

# Builds the idle-connection client into $1 (build dir); prints its path.
build_idle_client() {
  local dir=$1 out=$1/idle-h2-client
  mkdir -p "$dir"
  if [[ ! -x $out || $BENCH_DIR/idle-h2-client.c -nt $out ]]; then
    ${CC:-cc} -O2 -Wall -Wextra -o "$out" "$BENCH_DIR/idle-h2-client.c" >&2 ||
      die "could not build idle-h2-client"
  fi
  echo "$out"
}
