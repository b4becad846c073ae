#!/usr/bin/env bash
# Benchmarks our greeter-server against the C++ gRPC peer with h2load.
#
# usage: contrib/bench/run.sh --ours PATH [options]
#
#   --ours PATH          our server binary (takes --port N --io-threads N --workers N)
#   --ours-args "ARGS"   extra arguments for ours   (default: "--io-threads 1 --workers 1")
#   --peer PATH          use this peer binary instead of building cxx-greeter
#   --peer-args "ARGS"   extra arguments for the peer (default: "--mode async --threads 1")
#   --build-dir DIR      where the peer is built (default: $BENCH_BUILD_DIR or contrib/bench/.build)
#   --duration S         measured seconds per shape (default 10)
#   --warmup S           warm-up seconds before each measurement (default 2)
#   --shapes "CxM ..."   h2load connections x streams per connection (default "50x10 1x1")
#   --rounds N           repeat everything N times, servers alternating; medians are reported (default 1)
#   --server-cpu N       CPU the servers are pinned to (default 0)
#   --client-cpu N       CPU h2load is pinned to (default 1)
#   --idle-rss           afterwards also run idle-rss.sh (idle-connection memory)
#   --conns N            connections for --idle-rss (default 10000)
#   --keep               keep the scratch directory (h2load output and latency logs)
#
# Everything runs on 127.0.0.1 with free ports; the processes started here are
# stopped on exit.  Exit status is non-zero if a server fails its gRPC checks
# or any h2load run had failed requests.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit "${1:-2}"; }

ours="" ours_args="--io-threads 1 --workers 1"
peer="" peer_args="--mode async --threads 1"
build_dir=${BENCH_BUILD_DIR:-$BENCH_DIR/.build}
duration=10 warmup=2 shapes="50x10 1x1" rounds=1
server_cpu=0 client_cpu=1 idle_rss=0 conns=10000

while (($#)); do
  case $1 in
    --ours) ours=$2; shift 2 ;;
    --ours-args) ours_args=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    --peer-args) peer_args=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --shapes) shapes=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    --idle-rss) idle_rss=1; shift ;;
    --conns) conns=$2; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    *) log "unknown argument: $1"; usage ;;
  esac
done
[[ -n $ours ]] || { log "--ours PATH is required"; usage; }
[[ -x $ours ]] || die "--ours $ours is not an executable file"
for v in duration warmup rounds server_cpu client_cpu conns; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-} wants a whole number, got '${!v}'"
done
((duration > 0 && rounds > 0)) || die "--duration and --rounds must be positive"
for s in $shapes; do [[ $s =~ ^[0-9]+x[0-9]+$ ]] || die "bad shape '$s' (want CONNSxSTREAMS)"; done

need h2load nghttp taskset timeout ps
[[ -x $SYS_PYTHON ]] || die "$SYS_PYTHON not found (apt-get install python3 python3-grpcio)"
"$SYS_PYTHON" -c 'import grpc' 2>/dev/null || die "python3-grpcio missing for $SYS_PYTHON"
ncpu=$(nproc)
((server_cpu < ncpu && client_cpu < ncpu)) || die "only $ncpu CPUs: cannot pin to $server_cpu/$client_cpu"
((server_cpu != client_cpu)) || log "warning: server and client share CPU $server_cpu"

bench_init

# (a) build the C++ peer
if [[ -z $peer ]]; then
  log "building the C++ peer in $build_dir ..."
  peer=$("$BENCH_DIR/build-peer.sh" "$build_dir")
fi
[[ -x $peer ]] || die "peer $peer is not executable"

# gRPC-framed HelloRequest{name: "world"}: flag 0, 4-byte big-endian length,
# then field 1 (tag 0x0a), length 5, "world".
body=$BENCH_TMP/hello-world.grpc
printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$body"
[[ $(stat -c %s "$body") == 12 ]] || die "request body has the wrong size"
expected_data_bytes=18   # reply: 5-byte prefix + HelloReply{message: "Hello world"} (13 bytes)

results=$BENCH_TMP/results.tsv
printf 'round\tserver\tshape\tqps\tp50_us\tp99_us\tmean_us\tsrv_cpu_pct\tcli_cpu_pct\tother_cpu_pct\trequests\terrors\n' >"$results"
clk_tck=$(getconf CLK_TCK)
failed=0
shown_cmd=0

# run_shape ROLE ROUND SHAPE PID PORT
run_shape() {
  local role=$1 round=$2 shape=$3 pid=$4 port=$5
  local c=${shape%x*} m=${shape#*x}
  local tag="$role.r$round.$shape"
  local out=$BENCH_TMP/$tag.h2load.txt lat=$BENCH_TMP/$tag.latency.tsv
  local cmd=(taskset -c "$client_cpu" h2load -t 1 -c "$c" -m "$m"
             -D "$duration" --warm-up-time "$warmup"
             -d "$body" -H 'content-type: application/grpc' -H 'te: trailers'
             --log-file="$lat" "http://127.0.0.1:$port/helloworld.Greeter/SayHello")
  if ((!shown_cmd)); then
    log "h2load command (ports and paths vary per run):"
    local a line=""
    for a in "${cmd[@]}"; do
      if [[ $a =~ [[:space:]] ]]; then line+=" '$a'"; else line+=" $a"; fi
    done
    log " $line"
    shown_cmd=1
  fi
  local s0 s1 b0 b1 times_out runner rc times_file=$BENCH_TMP/$tag.times
  rm -f "$lat"   # h2load appends to an existing log file
  s0=$(tree_cpu_ticks "$pid")
  b0=$(cpus_busy_ticks "$server_cpu" "$client_cpu")
  # h2load runs in a background subshell so that this script can react to
  # signals at once (a foreground child would delay the trap); `times` in
  # that subshell then reports the CPU time of its reaped child, h2load.
  (
    trap 'kill -TERM "$child" 2>/dev/null; exit 143' TERM
    timeout -k 5 $((warmup + duration + 60)) "${cmd[@]}" >"$out" 2>&1 &
    child=$!
    wait "$child" && rc=0 || rc=$?
    times >"$times_file"
    exit "$rc"
  ) &
  runner=$!
  BENCH_PIDS+=("$runner")
  wait "$runner" && rc=0 || rc=$?
  forget_pid "$runner"
  if ((rc != 0)); then
    log "  $role $shape: h2load failed (exit status $rc):"
    tail -n 5 "$out" >&2
    failed=1
    return
  fi
  times_out=$(<"$times_file")
  s1=$(tree_cpu_ticks "$pid")
  b1=$(cpus_busy_ticks "$server_cpu" "$client_cpu")

  local qps total ok2xx succeeded failed_n errored timeout_n data_bytes
  qps=$(awk '/^finished in/ {print $4}' "$out")
  read -r total succeeded failed_n errored timeout_n < <(awk '/^requests:/ {print $2, $8, $10, $12, $14}' "$out")
  ok2xx=$(awk '/^status codes:/ {print $3}' "$out")
  data_bytes=$(awk '/^traffic:/ {gsub(/[()]/, "", $(NF-1)); print $(NF-1)}' "$out")
  local stats n okrows mean_us p50 p99
  stats=$("$SYS_PYTHON" "$BENCH_DIR/h2log_stats.py" "$lat")
  read -r n okrows mean_us p50 p99 < <(awk '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print v["n"], v["ok"], v["mean_us"], v["p50_us"], v["p99_us"] }' <<<"$stats")

  local cli_user cli_sys cli_ticks cli_pct srv_pct other_pct wall=$((warmup + duration))
  # second line of `times`: children's user and system time, e.g. "0m1.870s 0m1.380s"
  read -r cli_user cli_sys < <(sed -n 2p <<<"$times_out")
  cli_ticks=$(awk -v u="$cli_user" -v s="$cli_sys" -v hz="$clk_tck" 'function sec(t, a) { split(t, a, /[ms]/); return a[1] * 60 + a[2] }
    BEGIN { printf "%.0f", (sec(u) + sec(s)) * hz }')
  cli_pct=$(awk -v d="$cli_ticks" -v hz="$clk_tck" -v w="$wall" 'BEGIN { printf "%.0f", 100 * d / hz / w }')
  srv_pct=$(awk -v d=$((s1 - s0)) -v hz="$clk_tck" -v w="$wall" 'BEGIN { printf "%.0f", 100 * d / hz / w }')
  # CPU time on the two benchmark CPUs used by anything else (other
  # processes, hypervisor steal), in % of one CPU
  other_pct=$(awk -v d=$((b1 - b0 - (s1 - s0) - cli_ticks)) -v hz="$clk_tck" -v w="$wall" \
    'BEGIN { v = 100 * d / hz / w; if (v < 0) v = 0; printf "%.0f", v }')

  # a request without a 2xx is an error; rows of the latency log without a
  # 200 are the same requests seen from the log, so count the larger set
  local non2xx=$((total - ok2xx)) badrows=$((n - okrows))
  if ((badrows > non2xx)); then non2xx=$badrows; fi
  local errors=$((failed_n + errored + timeout_n + non2xx))
  if ((succeeded == 0)); then errors=$((errors + 1)); fi
  if ((errors)); then
    failed=1
    log "  error: $role $shape: $errors failed or non-2xx requests (use --keep to inspect $out)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$role" "$shape" "$qps" "$p50" "$p99" \
    "$mean_us" "$srv_pct" "$cli_pct" "$other_pct" "$total" "$errors" >>"$results"
  log "  $role $shape: $qps req/s  p50 ${p50}us  p99 ${p99}us  mean ${mean_us}us  (requests $total, 2xx $ok2xx, failed $failed_n, errored $errored, timeout $timeout_n, log rows $n/$okrows ok; server cpu ${srv_pct}%, h2load cpu ${cli_pct}%, other ${other_pct}%)"
  # h2load's traffic counters include the warm-up responses, its request
  # counters do not: every reply must be exactly one 18-byte message, so the
  # DATA total must be a multiple of 18 and cover at least the measured ones.
  if ((data_bytes % expected_data_bytes != 0 || data_bytes < succeeded * expected_data_bytes)); then
    log "  warning: $role $shape: $data_bytes response DATA bytes for $succeeded measured responses (expected $expected_data_bytes each)"
  fi
  if ((cli_pct >= 90)); then
    log "  warning: h2load used ${cli_pct}% of its CPU: this result may be client-bound"
  fi
  if ((other_pct >= 10)); then
    log "  warning: other processes/steal took ${other_pct}% of a CPU on CPUs $server_cpu,$client_cpu during this run: noisy"
  fi
}

# bench_server ROLE ROUND BIN ARGS...
bench_server() {
  local role=$1 round=$2 bin=$3
  shift 3
  log "[$role] starting $bin $* on CPU $server_cpu"
  start_server "$role" "$server_cpu" "$bin" "$@"
  local pid=$SERVER_PID port=$SERVER_PORT
  log "  $role: pid $pid, 127.0.0.1:$port, $(find "/proc/$pid/task" -mindepth 1 -maxdepth 1 | wc -l) threads"
  if ! verify_grpc "$role" "$port" "$body"; then
    stop_server "$pid"
    die "$role failed the gRPC check; not benchmarking it"
  fi
  local shape
  for shape in $shapes; do
    run_shape "$role" "$round" "$shape" "$pid" "$port"
  done
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$role: server died during the benchmark"; failed=1
  elif ! verify_grpc "$role" "$port" "$body"; then
    log "$role: failed the gRPC check after the load"; failed=1
  fi
  stop_server "$pid"
}

# shellcheck disable=SC2206
ours_argv=($ours_args)
# shellcheck disable=SC2206
peer_argv=($peer_args)

log "ours: $ours ${ours_args}"
log "peer: $peer ${peer_args}"
log "servers on CPU $server_cpu, h2load on CPU $client_cpu; ${warmup}s warm-up + ${duration}s per shape; shapes: $shapes; rounds: $rounds"
load=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before start: $load"

for ((round = 1; round <= rounds; round++)); do
  if ((round % 2)); then
    bench_server ours "$round" "$ours" "${ours_argv[@]}"
    bench_server peer "$round" "$peer" "${peer_argv[@]}"
  else
    bench_server peer "$round" "$peer" "${peer_argv[@]}"
    bench_server ours "$round" "$ours" "${ours_argv[@]}"
  fi
done

echo
echo "== gRPC unary SayHello, h2load -t 1, ${warmup}s warm-up + ${duration}s, rounds: $rounds =="
echo "ours: $ours $ours_args"
echo "peer: $peer $peer_args"
"$SYS_PYTHON" "$BENCH_DIR/summarize.py" "$results"
[[ $BENCH_KEEP == 1 ]] && echo "raw h2load output and latency logs: $BENCH_TMP"

if ((idle_rss)); then
  echo
  "$BENCH_DIR/idle-rss.sh" --ours "$ours" --ours-args "$ours_args" \
    --peer "$peer" --peer-args "$peer_args" --conns "$conns" \
    --server-cpu "$server_cpu" --client-cpu "$client_cpu" --build-dir "$build_dir" || failed=1
fi

exit "$failed"
