#!/usr/bin/env bash
# Memory per idle HTTP/2 connection: our greeter-server vs the C++ gRPC peer.
#
# usage: contrib/bench/idle-rss.sh --ours PATH [options]
#
#   --ours PATH          our server binary (takes --port N --io-threads N --workers N)
#   --ours-args "ARGS"   extra arguments for ours   (default: "--io-threads 1 --workers 1")
#   --peer PATH          use this peer binary instead of building cxx-greeter
#   --peer-args "ARGS"   extra arguments for the peer (default: "--mode async --threads 1")
#   --build-dir DIR      build directory (default: $BENCH_BUILD_DIR or contrib/bench/.build)
#   --conns N            idle connections to open (default 10000)
#   --settle S           seconds to wait after the last connection before sampling (default 3)
#   --check S            seconds the connections are kept after sampling, to see
#                        that the server does not drop them (default 5)
#   --server-cpu N       CPU the servers are pinned to (default 0)
#   --client-cpu N       CPU the idle client is pinned to (default 1)
#
# For each server: start it, make one real gRPC call (so lazily created state
# exists before the baseline), sample VmRSS, open N connections that each
# send the HTTP/2 preface + SETTINGS, get the server's SETTINGS, then stay
# idle; sample VmRSS again and report (after - before) / N.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit "${1:-2}"; }

ours="" ours_args="--io-threads 1 --workers 1"
peer="" peer_args="--mode async --threads 1"
build_dir=${BENCH_BUILD_DIR:-$BENCH_DIR/.build}
conns=10000 settle=3 check=5 server_cpu=0 client_cpu=1

while (($#)); do
  case $1 in
    --ours) ours=$2; shift 2 ;;
    --ours-args) ours_args=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    --peer-args) peer_args=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --conns) conns=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    --check) check=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) log "unknown argument: $1"; usage ;;
  esac
done
[[ -n $ours ]] || { log "--ours PATH is required"; usage; }
[[ -x $ours ]] || die "--ours $ours is not an executable file"
for v in conns settle check server_cpu client_cpu; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-} wants a whole number, got '${!v}'"
done
((conns > 0)) || die "--conns must be positive"
need taskset timeout ps nghttp
[[ -x $SYS_PYTHON ]] || die "$SYS_PYTHON not found"

# Servers and the client each hold one descriptor per connection.
raise_nofile $((conns + 1024))

bench_init
if [[ -z $peer ]]; then
  log "building the C++ peer in $build_dir ..."
  peer=$("$BENCH_DIR/build-peer.sh" "$build_dir")
fi
client=$(build_idle_client "$build_dir")
body=$BENCH_TMP/hello-world.grpc
printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$body"

declare -A kib_per_conn
failed=0

# measure ROLE BIN ARGS...
measure() {
  local role=$1 bin=$2
  shift 2
  log "[$role] starting $bin $* on CPU $server_cpu (open-file limit $(ulimit -n))"
  start_server "$role" "$server_cpu" "$bin" "$@"
  local pid=$SERVER_PID port=$SERVER_PORT
  verify_grpc "$role" "$port" "$body" || { stop_server "$pid"; die "$role failed the gRPC check"; }
  sleep 1
  local rss0 fd0 rss1 fd1
  rss0=$(tree_rss_kib "$pid")
  fd0=$(tree_fd_count "$pid")

  local out=$BENCH_TMP/$role.idle-client.txt
  taskset -c "$client_cpu" "$client" -p "$port" -n "$conns" -t 120 -H 600 >"$out" 2>&1 &
  local cpid=$!
  BENCH_PIDS+=("$cpid")
  local i
  for ((i = 0; i < 1300; i++)); do   # the client gives up connecting after 120 s
    grep -q '^established' "$out" && break
    kill -0 "$cpid" 2>/dev/null || break
    sleep 0.1
  done
  local est
  est=$(grep '^established' "$out" || true)
  [[ -n $est ]] || { cat "$out" >&2; stop_server "$pid"; die "$role: idle client did not report"; }
  log "  $role: $est"
  sleep "$settle"
  rss1=$(tree_rss_kib "$pid")
  fd1=$(tree_fd_count "$pid")
  sleep "$check"
  local alive=yes
  kill -0 "$pid" 2>/dev/null || alive=no
  kill -TERM "$cpid" 2>/dev/null || true
  wait "$cpid" 2>/dev/null || true
  forget_pid "$cpid"
  local fin
  fin=$(grep '^final' "$out" || echo "final ?")
  log "  $role: after ${check}s more: $fin"

  local n_est n_open
  n_est=$(awk '{print $2}' <<<"$est")
  n_open=$(awk '{print $3}' <<<"$fin")
  if [[ $alive != yes ]]; then
    log "  $role: server died while holding the connections"; failed=1
  fi
  if [[ $n_est != "$conns" || $n_open != "$conns" ]]; then
    log "  $role: WARNING: wanted $conns connections, established $n_est, still open at the end $n_open"
    failed=1
  fi
  local per
  per=$(awk -v a="$rss0" -v b="$rss1" -v n="${n_est:-0}" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / n; else print "nan" }')
  kib_per_conn[$role]=$per
  printf '%-5s RSS %8d KiB -> %8d KiB with %5s idle connections (fds %d -> %d): %s KiB/connection\n' \
    "$role" "$rss0" "$rss1" "$n_est" "$fd0" "$fd1" "$per"
  stop_server "$pid"
}

# shellcheck disable=SC2206
ours_argv=($ours_args)
# shellcheck disable=SC2206
peer_argv=($peer_args)

echo "== memory per idle HTTP/2 connection ($conns connections, server VmRSS incl. children) =="
echo "ours: $ours $ours_args"
echo "peer: $peer $peer_args"
measure ours "$ours" "${ours_argv[@]}"
measure peer "$peer" "${peer_argv[@]}"
awk -v o="${kib_per_conn[ours]}" -v p="${kib_per_conn[peer]}" \
  'BEGIN { if (p + 0 > 0) printf "ratio ours/peer: %.2fx (below 1 means ours uses less memory per idle connection)\n", o / p; else print "ratio ours/peer: n/a" }'
exit "$failed"
