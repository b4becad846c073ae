#!/usr/bin/env bash
# Drives our greeter-server and the C++ gRPC peer with two load generators,
# h2load (the same command as run.sh) and client-load (closed-loop calls
# through our client runtime), and compares what each one drives.
#
# usage: contrib/bench/client-load.sh --ours PATH [options]
#
#   --ours PATH          our server binary (takes --port N --io-threads N --workers N)
#   --ours-args "ARGS"   extra arguments for ours   (default: "--io-threads 1 --workers 1")
#   --client PATH        client-load binary (default: client-load next to --ours)
#   --peer PATH          use this peer binary instead of building cxx-greeter
#   --peer-args "ARGS"   extra arguments for the peer (default: "--mode async --threads 1")
#   --build-dir DIR      where the peer is built (default: $BENCH_BUILD_DIR or contrib/bench/.build)
#   --connections N      connections of both load generators (default 50)
#   --streams N          calls in flight per connection (default 10)
#   --duration S         measured seconds per run (default 10)
#   --warmup S           warm-up seconds before each measurement (default 2)
#   --rounds N           repeat N times, alternating the order of servers and
#                        of load generators; medians are reported (default 1)
#   --target-ratio R     the client-load/h2load QPS ratio to reach (default 0.8)
#   --require-ratio      exit non-zero when a server's median ratio is below it
#   --server-cpu N       CPU the servers are pinned to (default 0)
#   --client-cpu N       CPU the load generators are pinned to (default 1)
#   --keep               keep the scratch directory (outputs and latency logs)
#
# Everything runs on 127.0.0.1 with free ports; the processes started here are
# stopped on exit.  Exit status is non-zero if a server fails its gRPC checks,
# any h2load request failed, or any client-load call failed.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit "${1:-2}"; }

ours="" ours_args="--io-threads 1 --workers 1" client=""
peer="" peer_args="--mode async --threads 1"
build_dir=${BENCH_BUILD_DIR:-$BENCH_DIR/.build}
connections=50 streams=10 duration=10 warmup=2 rounds=1
target_ratio=0.8 require_ratio=0 server_cpu=0 client_cpu=1

while (($#)); do
  case $1 in
    --ours) ours=$2; shift 2 ;;
    --ours-args) ours_args=$2; shift 2 ;;
    --client) client=$2; shift 2 ;;
    --peer) peer=$2; shift 2 ;;
    --peer-args) peer_args=$2; shift 2 ;;
    --build-dir) build_dir=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --target-ratio) target_ratio=$2; shift 2 ;;
    --require-ratio) require_ratio=1; shift ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h|--help) usage 0 ;;
    *) log "unknown argument: $1"; usage ;;
  esac
done
[[ -n $ours ]] || { log "--ours PATH is required"; usage; }
[[ -x $ours ]] || die "--ours $ours is not an executable file"
[[ -n $client ]] || client=$(dirname "$ours")/client-load
[[ -x $client ]] || die "client-load not found at $client (build it, or pass --client PATH)"
for v in connections streams duration warmup rounds server_cpu client_cpu; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-} wants a whole number, got '${!v}'"
done
((connections > 0 && streams > 0 && duration > 0 && rounds > 0)) ||
  die "--connections, --streams, --duration and --rounds must be positive"
[[ $target_ratio =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--target-ratio wants a number, got '$target_ratio'"

need h2load nghttp taskset timeout ps
[[ -x $SYS_PYTHON ]] || die "$SYS_PYTHON not found (apt-get install python3 python3-grpcio)"
"$SYS_PYTHON" -c 'import grpc' 2>/dev/null || die "python3-grpcio missing for $SYS_PYTHON"
ncpu=$(nproc)
((server_cpu < ncpu && client_cpu < ncpu)) || die "only $ncpu CPUs: cannot pin to $server_cpu/$client_cpu"
((server_cpu != client_cpu)) || log "warning: server and client share CPU $server_cpu"

bench_init
if [[ -z $peer ]]; then
  log "building the C++ peer in $build_dir ..."
  peer=$("$BENCH_DIR/build-peer.sh" "$build_dir")
fi
[[ -x $peer ]] || die "peer $peer is not executable"

# gRPC-framed HelloRequest{name: "world"}, as in run.sh
body=$BENCH_TMP/hello-world.grpc
printf '\x00\x00\x00\x00\x07\x0a\x05world' >"$body"

results=$BENCH_TMP/results.tsv
printf 'round\tserver\ttool\tqps\tp50_us\tp99_us\tsrv_cpu_pct\tcli_cpu_pct\tother_cpu_pct\terrors\n' >"$results"
clk_tck=$(getconf CLK_TCK)
wall=$((warmup + duration))
failed=0

# measure TAG SERVER_PID CMD...: runs CMD (a load generator) with a time
# limit and sets RUN_RC, RUN_OUT (its stdout+stderr) and RUN_SRV_PCT,
# RUN_CLI_PCT, RUN_OTHER_PCT (CPU in % of one CPU over the run's wall time).
measure() {
  local tag=$1 pid=$2
  shift 2
  RUN_OUT=$BENCH_TMP/$tag.out
  local times_file=$BENCH_TMP/$tag.times s0 s1 b0 b1 runner
  s0=$(tree_cpu_ticks "$pid")
  b0=$(cpus_busy_ticks "$server_cpu" "$client_cpu")
  # In a background subshell so that signals are handled at once; `times`
  # there reports the CPU time of its reaped child, the load generator.
  (
    trap 'kill -TERM "$child" 2>/dev/null; exit 143' TERM
    timeout -k 5 $((wall + 60)) "$@" >"$RUN_OUT" 2>&1 &
    child=$!
    wait "$child" && rc=0 || rc=$?
    times >"$times_file"
    exit "$rc"
  ) &
  runner=$!
  BENCH_PIDS+=("$runner")
  wait "$runner" && RUN_RC=0 || RUN_RC=$?
  forget_pid "$runner"
  s1=$(tree_cpu_ticks "$pid")
  b1=$(cpus_busy_ticks "$server_cpu" "$client_cpu")
  local cli_ticks
  cli_ticks=$(sed -n 2p "$times_file" | awk -v hz="$clk_tck" '
    function sec(t, a) { split(t, a, /[ms]/); return a[1] * 60 + a[2] }
    { printf "%.0f", (sec($1) + sec($2)) * hz }')
  read -r RUN_SRV_PCT RUN_CLI_PCT RUN_OTHER_PCT < <(awk -v s=$((s1 - s0)) -v c="$cli_ticks" \
    -v b=$((b1 - b0)) -v hz="$clk_tck" -v w="$wall" 'BEGIN {
      o = b - s - c; if (o < 0) o = 0
      printf "%.0f %.0f %.0f\n", 100 * s / hz / w, 100 * c / hz / w, 100 * o / hz / w }')
}

# record ROUND ROLE TOOL QPS P50 P99 ERRORS
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$5" "$6" \
    "$RUN_SRV_PCT" "$RUN_CLI_PCT" "$RUN_OTHER_PCT" "$7" >>"$results"
  log "  $2 $3: $4 req/s  p50 ${5}us  p99 ${6}us  errors $7  (server cpu ${RUN_SRV_PCT}%, $3 cpu ${RUN_CLI_PCT}%, other ${RUN_OTHER_PCT}%)"
  if ((RUN_CLI_PCT >= 90)); then
    log "  warning: $3 used ${RUN_CLI_PCT}% of its CPU: this result may be client-bound"
  fi
  if ((RUN_OTHER_PCT >= 10)); then
    log "  warning: other processes/steal took ${RUN_OTHER_PCT}% of a CPU during this run: noisy"
  fi
}

# run_h2load ROUND ROLE PID PORT: the command of run.sh, at this shape
run_h2load() {
  local round=$1 role=$2 pid=$3 port=$4
  local lat=$BENCH_TMP/$role.r$round.latency.tsv
  rm -f "$lat"   # h2load appends to an existing log file
  measure "$role.r$round.h2load" "$pid" taskset -c "$client_cpu" h2load -t 1 \
    -c "$connections" -m "$streams" -D "$duration" --warm-up-time "$warmup" \
    -d "$body" -H 'content-type: application/grpc' -H 'te: trailers' \
    --log-file="$lat" "http://127.0.0.1:$port/helloworld.Greeter/SayHello"
  if ((RUN_RC != 0)); then
    log "  $role h2load: failed (exit status $RUN_RC):"
    tail -n 5 "$RUN_OUT" >&2
    failed=1
    return
  fi
  local qps total succeeded failed_n errored timeout_n ok2xx p50 p99
  qps=$(awk '/^finished in/ {printf "%.0f", $4}' "$RUN_OUT")
  read -r total succeeded failed_n errored timeout_n < <(awk '/^requests:/ {print $2, $8, $10, $12, $14}' "$RUN_OUT")
  ok2xx=$(awk '/^status codes:/ {print $3}' "$RUN_OUT")
  read -r p50 p99 < <("$SYS_PYTHON" "$BENCH_DIR/h2log_stats.py" "$lat" | awk '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print v["p50_us"], v["p99_us"] }')
  # as in run.sh: failed, errored and timed-out requests, and any non-2xx
  local errors=$((failed_n + errored + timeout_n + total - ok2xx))
  ((succeeded > 0)) || errors=$((errors + 1))
  ((errors == 0)) || { failed=1; log "  error: $role h2load: $errors failed or non-2xx requests"; }
  record "$round" "$role" h2load "$qps" "$p50" "$p99" "$errors"
}

# run_client_load ROUND ROLE PID PORT
run_client_load() {
  local round=$1 role=$2 pid=$3 port=$4
  measure "$role.r$round.client-load" "$pid" taskset -c "$client_cpu" "$client" \
    --target "127.0.0.1:$port" --connections "$connections" --concurrency "$streams" \
    --duration "$duration" --warmup "$warmup"
  local line qps p50 p99 nfailed
  line=$(grep '^qps=' "$RUN_OUT" || true)
  if [[ -z $line ]]; then
    log "  $role client-load: no result (exit status $RUN_RC):"
    tail -n 5 "$RUN_OUT" >&2
    failed=1
    return
  fi
  read -r qps p50 p99 nfailed < <(awk '{
      for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
      print v["qps"], v["p50_us"], v["p99_us"], v["failed"] }' <<<"$line")
  if ((RUN_RC != 0 || nfailed != 0)); then
    failed=1
    log "  error: $role client-load: exit status $RUN_RC, $nfailed failed calls:"
    grep -v '^qps=' "$RUN_OUT" | tail -n 3 >&2
  fi
  record "$round" "$role" client-load "$qps" "$p50" "$p99" "$nfailed"
}

# bench_server ROLE ROUND BIN ARGS...
bench_server() {
  local role=$1 round=$2 bin=$3
  shift 3
  log "[$role] starting $bin $* on CPU $server_cpu"
  start_server "$role" "$server_cpu" "$bin" "$@"
  local pid=$SERVER_PID port=$SERVER_PORT
  if ! verify_grpc "$role" "$port" "$body"; then
    stop_server "$pid"
    die "$role failed the gRPC check; not benchmarking it"
  fi
  if ((round % 2)); then
    run_h2load "$round" "$role" "$pid" "$port"
    run_client_load "$round" "$role" "$pid" "$port"
  else
    run_client_load "$round" "$role" "$pid" "$port"
    run_h2load "$round" "$role" "$pid" "$port"
  fi
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
log "client-load: $client"
log "servers on CPU $server_cpu, load generators on CPU $client_cpu; ${connections}x${streams}, ${warmup}s warm-up + ${duration}s; rounds: $rounds"
log "load average before start: $(cut -d' ' -f1-3 /proc/loadavg)"

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
echo "== SayHello, ${connections} connections x ${streams} streams, ${warmup}s warm-up + ${duration}s, rounds: $rounds =="
echo "ours: $ours $ours_args"
echo "peer: $peer $peer_args"
echo "client-load: $client"
below=0
"$SYS_PYTHON" - "$results" "$target_ratio" <<'EOF' || below=1
import statistics, sys

rows = []
with open(sys.argv[1]) as f:
    cols = f.readline().rstrip("\n").split("\t")
    rows = [dict(zip(cols, l.rstrip("\n").split("\t"))) for l in f]
target = float(sys.argv[2])

def med(server, tool, key):
    vals = [float(r[key]) for r in rows if r["server"] == server and r["tool"] == tool]
    return statistics.median(vals) if vals else None

# req/cli-cpu-s: requests per second of the load generator's own CPU time,
# what it could drive if it had a whole CPU; less sensitive to a busy
# machine than QPS.
line = "%-6s %-12s %9s %9s %9s %8s %8s %6s %14s %7s"
print(line % ("server", "tool", "QPS", "p50", "p99", "srv-cpu", "cli-cpu", "other",
              "req/cli-cpu-s", "errors"))
below = False
for server in ("ours", "peer"):
    for tool in ("h2load", "client-load"):
        if med(server, tool, "qps") is None:
            continue
        errs = sum(int(r["errors"]) for r in rows if r["server"] == server and r["tool"] == tool)
        per_cpu = statistics.median(
            float(r["qps"]) * 100 / float(r["cli_cpu_pct"]) if float(r["cli_cpu_pct"]) else 0
            for r in rows if r["server"] == server and r["tool"] == tool)
        print(line % (server, tool, "%.0f" % med(server, tool, "qps"),
                      "%.0fus" % med(server, tool, "p50_us"), "%.0fus" % med(server, tool, "p99_us"),
                      "%.0f%%" % med(server, tool, "srv_cpu_pct"),
                      "%.0f%%" % med(server, tool, "cli_cpu_pct"),
                      "%.0f%%" % med(server, tool, "other_cpu_pct"), "%.0f" % per_cpu, errs))
    h, c = med(server, "h2load", "qps"), med(server, "client-load", "qps")
    if h and c is not None:
        ok = c / h >= target
        below |= not ok
        print("%-6s %-12s %8.2fx  (client-load/h2load; target >= %.2f: %s)"
              % (server, "ratio", c / h, target, "met" if ok else "NOT met"))
    # the same ratio per round, with the larger `other` of its two runs:
    # rounds on a busy machine are the ones to distrust
    per_round = []
    for rnd in sorted({r["round"] for r in rows}, key=int):
        pair = {r["tool"]: r for r in rows if r["server"] == server and r["round"] == rnd}
        if "h2load" in pair and "client-load" in pair and float(pair["h2load"]["qps"]) > 0:
            other = max(float(pair[t]["other_cpu_pct"]) for t in pair)
            per_round.append("%.2f (other %.0f%%)" % (
                float(pair["client-load"]["qps"]) / float(pair["h2load"]["qps"]), other))
    if len(per_round) > 1:
        print("%-6s %-12s %s" % (server, "per round", ", ".join(per_round)))
sys.exit(1 if below else 0)
EOF
[[ $BENCH_KEEP == 1 ]] && echo "raw outputs and latency logs: $BENCH_TMP"
if ((below && require_ratio)); then
  failed=1
fi
exit "$failed"
