#!/usr/bin/env bash
# API throughput: GetTask and CreateTask over gRPC and over REST (HTTP/1.1)
# against one taskerd (+ one tasker-worker running the created tasks) on a
# private, throw-away PostgreSQL cluster, driven by h2load; requests/s,
# latency percentiles, the CPU split, and the database round trips of each
# request from PostgreSQL's statement log. See contrib/bench/api/README.md.
#
#   contrib/bench/api/run.sh [--build DIR] [options]
#
# Every wait is bounded; every process started here is stopped and the
# cluster removed on exit (also on Ctrl-C / SIGTERM). Exit status 0 when
# every measurement ran without failed requests and the checks passed.
set -euo pipefail

API_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP_SRCDIR=$(cd "$API_DIR/../../.." && pwd)
# shellcheck disable=SC2034  # read by pg-lib.sh
PGCLUSTER=$TOP_SRCDIR/t/lib/pgcluster.sh
SYS_PYTHON=/usr/bin/python3

build=${TASKER_BUILD_DIR:-}
duration=10
warmup=2
grpc_shape=4x4
rest_conns=16
log_requests=500
worker=1
poll_ms=1000
only="grpc-get rest-get grpc-create rest-create"
populate=1000
keep=0   # read by pg-lib.sh (cleanup)

usage() {
  cat <<EOF
usage: $0 [--build DIR] [options]

  --build DIR          build directory holding taskerd and tasker-worker
                       (default \$TASKER_BUILD_DIR, else the source tree)
  --duration S         measured seconds per case (default $duration)
  --warmup S           h2load warm-up seconds before each (default $warmup)
  --grpc-shape CxM     gRPC: h2load connections x streams each (default $grpc_shape)
  --rest-conns N       REST: HTTP/1.1 connections, one request in flight each
                       (default $rest_conns)
  --log-requests N     requests per case with every statement logged (default
                       $log_requests; 0: no statement analysis)
  --populate N         tasks made (and run) before the measurements, followed by
                       VACUUM ANALYZE and a restart of the programs (default $populate)
  --no-worker          no tasker-worker: created tasks just queue
  --poll-ms MS         taskerd orchestration.poll_interval_ms (default $poll_ms)
  --only "CASES"       subset of: $only
  --keep               keep the scratch directory (logs, h2load output)
EOF
}

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
log() { printf '%s\n' "$*" >&2; }

while [[ $# -gt 0 ]]; do
  case $1 in
  --build) build=$2; shift 2 ;;
  --duration) duration=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --grpc-shape) grpc_shape=$2; shift 2 ;;
  --rest-conns) rest_conns=$2; shift 2 ;;
  --log-requests) log_requests=$2; shift 2 ;;
  --populate) populate=$2; shift 2 ;;
  --no-worker) worker=0; shift ;;
  --poll-ms) poll_ms=$2; shift 2 ;;
  --only) only=$2; shift 2 ;;
  --keep) keep=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
  esac
done
for v in duration warmup rest_conns log_requests poll_ms populate; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-}: not a number: ${!v}"
done
[[ $grpc_shape =~ ^[0-9]+x[0-9]+$ ]] || die "--grpc-shape: want CONNSxSTREAMS"
((duration > 0 && rest_conns > 0)) || die "--duration and --rest-conns must be > 0"
for c in $only; do
  [[ $c =~ ^(grpc|rest)-(get|create)$ ]] || die "--only: unknown case $c"
done

[[ -n $build ]] || build=$TOP_SRCDIR
TASKERD=$build/taskerd
WORKER=$build/tasker-worker
[[ -x $TASKERD && -x $WORKER ]] || die "no taskerd / tasker-worker in $build (use --build DIR)"
for t in h2load psql awk ps timeout; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
[[ -x $SYS_PYTHON ]] || die "missing $SYS_PYTHON"
"$SYS_PYTHON" -c 'import grpc' 2>/dev/null || die "python3-grpcio missing for $SYS_PYTHON"

# ------------------------------------------------------------------ scratch + helpers
# shellcheck source=contrib/bench/pg-lib.sh
source "$TOP_SRCDIR/contrib/bench/pg-lib.sh"
pg_scratch tasker-api-bench
failed=0

tasks_in() {   # tasks_in STATE|all: tasks of the bench namespace
  if [[ $1 == all ]]; then
    psql_q "SELECT count(*) FROM tasker.tasks t JOIN tasker.named_tasks nt USING (named_task_uuid)
            JOIN tasker.task_namespaces ns USING (task_namespace_uuid) WHERE ns.name = 'bench'"
  else
    psql_q "SELECT count(*) FROM tasker.task_transitions WHERE most_recent AND to_state = '$1'"
  fi
}

# ------------------------------------------------------------------ cluster + programs
log "== starting PostgreSQL in $PGDIR"
pg_start_cluster

TPL=$TMP/templates
mkdir -p "$TPL"
cat >"$TPL/api_one.yaml" <<'EOF'
# One noop step; every request makes a new task (contrib/bench/api/run.sh).
name: api_one
namespace_name: bench
version: 1.0.0
description: One noop step, a new task per request
identity_strategy: always_unique
steps:
  - name: only
    handler:
      callable: noop
EOF

# High backpressure thresholds: the bench measures the API, not admission control.
TASKERD_PID="" WORKER_PID=""
start_programs() {
  : >"$TMP/taskerd.log"
  TASKER_TEMPLATE_PATH=$TPL "$TASKERD" --server.listen=127.0.0.1:0 \
    --orchestration.web_bind_address=127.0.0.1:0 "--orchestration.poll_interval_ms=$poll_ms" \
    --backpressure.warning_depth=100000000 --backpressure.critical_depth=200000000 \
    --backpressure.overflow_depth=400000000 >>"$TMP/taskerd.log" 2>&1 &
  TASKERD_PID=$!
  PIDS+=("$TASKERD_PID")
  if ! wait_line "$TMP/taskerd.log" "REST listening on" 30 "$TASKERD_PID" ||
    ! wait_line "$TMP/taskerd.log" "listening h2c" 30 "$TASKERD_PID"; then
    tail -n 20 "$TMP/taskerd.log" >&2
    die "taskerd did not start"
  fi
  GPORT=$(sed -n 's/.*listening h2c 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/taskerd.log" | head -n 1)
  RPORT=$(sed -n 's/.*REST listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TMP/taskerd.log" | head -n 1)
  if ((worker)); then
    TASKER_TEMPLATE_PATH=$TPL TASKER_WORKER_NAMESPACES=bench "$WORKER" \
      --worker.grpc_bind_address=127.0.0.1:0 --worker.poll_interval=200ms >>"$TMP/worker.log" 2>&1 &
    WORKER_PID=$!
    PIDS+=("$WORKER_PID")
    wait_line "$TMP/worker.log" "serving namespace" 30 "$WORKER_PID" ||
      { tail -n 20 "$TMP/worker.log" >&2; die "tasker-worker did not start"; }
  fi
}

stop_programs() {   # and waits (10 s at most) for their sessions to end
  local p i
  for p in $WORKER_PID $TASKERD_PID; do
    stop_pid "$p"
    forget_pid "$p"
  done
  TASKERD_PID="" WORKER_PID=""
  for ((i = 0; i < 100; i++)); do
    [[ $(psql_q "SELECT count(*) FROM pg_stat_activity WHERE application_name IN
                 ('taskerd', 'tasker-worker', 'tasker-listener')") == 0 ]] && break
    sleep 0.1
  done
}

wait_all_complete() {   # with a worker: until every task is complete (60 s at most)
  local i
  ((worker)) || return 0
  for ((i = 0; i < 600; i++)); do
    (($(tasks_in complete) >= $(tasks_in all))) && return 0
    sleep 0.1
  done
  log "warning: tasks still running after 60 s"
}

start_programs
# The task GetTask reads: created over gRPC, run to completion by the worker.
TASK=$("$SYS_PYTHON" "$API_DIR/api_client.py" create "127.0.0.1:$GPORT" bench api_one 1.0.0) ||
  die "cannot create the task GetTask reads"
wait_all_complete
"$SYS_PYTHON" "$API_DIR/api_client.py" bodies "$TMP" "$TASK" bench api_one 1.0.0
for m in GetTask:get CreateTask:create; do
  "$SYS_PYTHON" "$API_DIR/api_client.py" check "127.0.0.1:$GPORT" "$TMP/${m#*:}.grpc" "${m%:*}" >&2 ||
    die "the gRPC request body of ${m%:*} is refused"
done

# ------------------------------------------------------------------ h2load
C=${grpc_shape%x*} M=${grpc_shape#*x}

h2load_cmd() {   # h2load_cmd CASE: the h2load arguments (without -D / -n)
  case $1 in
  grpc-get)
    echo "-c $C -m $M -d $TMP/get.grpc -H content-type:application/grpc -H te:trailers" \
      "http://127.0.0.1:$GPORT/tasker.v1.TaskService/GetTask" ;;
  grpc-create)
    echo "-c $C -m $M -d $TMP/create.grpc -H content-type:application/grpc -H te:trailers" \
      "http://127.0.0.1:$GPORT/tasker.v1.TaskService/CreateTask" ;;
  rest-get)
    echo "--h1 -c $rest_conns -m 1 http://127.0.0.1:$RPORT/v1/tasks/$TASK" ;;
  rest-create)
    echo "--h1 -c $rest_conns -m 1 -d $TMP/create.json -H content-type:application/json" \
      "http://127.0.0.1:$RPORT/v1/tasks" ;;
  esac
}

# run_h2load CASE TAG ARGS...: runs h2load in a subshell that reports its
# CPU time (`times`); sets H_OUT, H_SECS (wall), H_CLIENT_TICKS.
run_h2load() {
  local c=$1 tag=$2 rc=0 t0 t1
  shift 2
  H_OUT=$TMP/$tag.h2load.txt
  rm -f "$TMP/$tag.latency.tsv"
  t0=$(date +%s.%N)
  # shellcheck disable=SC2046  # word splitting wanted
  (
    timeout -k 5 $((warmup + duration + 120)) h2load -t 1 "$@" $(h2load_cmd "$c") \
      >"$H_OUT" 2>&1 || exit $?
    times >"$TMP/$tag.times"
  ) &
  local runner=$!
  PIDS+=("$runner")
  wait "$runner" || rc=$?
  t1=$(date +%s.%N)
  H_SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  H_CLIENT_TICKS=$(awk -v hz="$CLK_TCK" 'NR == 2 {
      split($1, u, /[ms]/); split($2, s, /[ms]/)
      printf "%.0f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * hz }' "$TMP/$tag.times" 2>/dev/null || echo 0)
  [[ -n $H_CLIENT_TICKS ]] || H_CLIENT_TICKS=0
  ((rc == 0)) || { tail -n 5 "$H_OUT" >&2; die "h2load ($c) failed with status $rc"; }
}

declare -A R_RPS R_LAT R_CPU R_NOTE
measure() {   # measure CASE
  local c=$1 d0 w0=0 p0 b0 d1 w1=0 p1 b1 before after line req fail
  before=$(tasks_in all)
  d0=$(proc_ticks "$TASKERD_PID")
  [[ -z $WORKER_PID ]] || w0=$(proc_ticks "$WORKER_PID")
  p0=$(pg_ticks) b0=$(busy_ticks)
  run_h2load "$c" "$c" -D "$duration" --warm-up-time "$warmup" --log-file="$TMP/$c.latency.tsv"
  d1=$(($(proc_ticks "$TASKERD_PID") - d0))
  [[ -z $WORKER_PID ]] || w1=$(($(proc_ticks "$WORKER_PID") - w0))
  p1=$(($(pg_ticks) - p0)) b1=$(($(busy_ticks) - b0))
  kill -0 "$TASKERD_PID" 2>/dev/null || die "taskerd died (see $TMP/taskerd.log; --keep)"
  line=$(grep -E '^finished in' "$H_OUT" || true)
  req=$(grep -E '^requests:' "$H_OUT" || true)
  fail=$(awk '/^requests:/ { for (i = 1; i <= NF; i++) if ($i ~ /^(failed|errored|timeout)/) s += $(i - 1) } END { print s + 0 }' "$H_OUT")
  ((fail == 0)) || { failed=1; log "  $c: $fail failed/errored requests: $req"; }
  R_RPS[$c]=$(sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' <<<"$line")
  R_LAT[$c]=$("$SYS_PYTHON" - "$TMP/$c.latency.tsv" <<'EOF'
import math, sys
lat, n = [], 0
for row in open(sys.argv[1], "rb"):
    p = row.split(b"\t")
    if len(p) < 3:
        continue
    n += 1
    if p[1].startswith(b"2"):
        lat.append(int(p[2]))
lat.sort()
def q(x):
    return lat[max(1, math.ceil(x / 100 * len(lat))) - 1] / 1000 if lat else 0
print("%d %d %.2f %.2f %.2f %.2f" % (n, len(lat), q(50), q(90), q(99), lat[-1] / 1000 if lat else 0))
EOF
  )
  R_CPU[$c]=$(printf 'taskerd %s%%  worker %s%%  postgres %s%%  h2load %s%%  other %s%%' \
    "$(pct "$d1" "$H_SECS")" "$(pct "$w1" "$H_SECS")" "$(pct "$p1" "$H_SECS")" \
    "$(pct "$H_CLIENT_TICKS" "$H_SECS")" "$(pct $((b1 - d1 - w1 - p1 - H_CLIENT_TICKS)) "$H_SECS")")
  after=$(tasks_in all)
  R_NOTE[$c]=""
  if [[ $c == *create ]]; then
    R_NOTE[$c]="$((after - before)) tasks created (warm-up included)"
  fi
  read -r n ok p50 p90 p99 mx <<<"${R_LAT[$c]}"
  if ((n != ok)); then failed=1; log "  $c: $((n - ok)) responses with a non-2xx status"; fi
  printf '  %-12s %9s req/s  p50 %6s ms  p90 %6s ms  p99 %6s ms  max %7s ms  (%s requests)  CPU: %s %s\n' \
    "$c" "${R_RPS[$c]}" "$p50" "$p90" "$p99" "$mx" "$ok" "${R_CPU[$c]}" "${R_NOTE[$c]}" >&2
}

# ------------------------------------------------------------------ populate
# A database that is not empty: --populate tasks made over gRPC (and run),
# then fresh statistics and fresh sessions (plans made on near-empty tables
# are not the steady state).
if ((populate > 0)); then
  log "== populating: $populate tasks over gRPC"
  run_h2load grpc-create populate -n "$populate"
  wait_all_complete
fi
psql_q "VACUUM ANALYZE" >/dev/null
stop_programs
start_programs
"$SYS_PYTHON" "$API_DIR/api_client.py" check "127.0.0.1:$GPORT" "$TMP/get.grpc" GetTask >/dev/null ||
  die "GetTask fails after the restart"

# ------------------------------------------------------------------ measure
log "== $("$TASKERD" --version 2>&1 | head -n 1), PostgreSQL $PGVERSION, $(nproc) CPUs," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); worker: $( ((worker)) && echo yes || echo no)"
log "== gRPC: h2load -c $C -m $M (h2c); REST: h2load --h1 -c $rest_conns; ${warmup}s warm-up + ${duration}s per case"
for c in $only; do measure "$c"; done

echo
echo "== taskerd API throughput, $( ((worker)) && echo "1 taskerd + 1 tasker-worker" || echo "1 taskerd, no worker"), $(nproc) CPUs (load average before: $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-12s %10s %8s %8s %8s %9s   %s\n' case "req/s" "p50 ms" "p90 ms" "p99 ms" "max ms" "CPU (% of one CPU)"
for c in $only; do
  read -r n ok p50 p90 p99 mx <<<"${R_LAT[$c]}"
  printf '%-12s %10s %8s %8s %8s %9s   %s\n' "$c" "${R_RPS[$c]}" "$p50" "$p90" "$p99" "$mx" "${R_CPU[$c]}"
done

# ------------------------------------------------------------------ statements
if ((log_requests > 0)); then
  echo
  echo "== where the time goes: $log_requests requests per case with every statement logged"
  echo "   (log_min_duration_statement=0; durations are inflated by the logging)"
  psql_q "ALTER SYSTEM SET log_min_duration_statement = 0" \
    "ALTER SYSTEM SET log_line_prefix = '%m [%p] %a: '" \
    "ALTER SYSTEM SET log_parameter_max_length = 0" \
    "ALTER SYSTEM SET log_connections = on" \
    "SELECT pg_reload_conf()" >/dev/null
  sleep 1
  for c in $only; do
    wait_all_complete   # the backlog of the measured creates is not this case's work
    before=$(tasks_in all)
    psql_q "SELECT pg_stat_reset()" >/dev/null
    offset=$(stat -c %s "$PGDIR/postgres.log")
    run_h2load "$c" "$c.logged" -n "$log_requests"
    if [[ $c == *create ]]; then
      made=$(($(tasks_in all) - before))
      ((made == log_requests)) || { failed=1; log "  $c: $made tasks made by $log_requests requests"; }
      wait_all_complete   # let the worker run them: their statements count too
    fi
    sleep 1
    tail -c +$((offset + 1)) "$PGDIR/postgres.log" >"$TMP/$c.statements.log"
    "$SYS_PYTHON" "$API_DIR/statements.py" --requests "$log_requests" --label "$c" \
      "$TMP/$c.statements.log"
    # busy sessions flush their statistics about once a second (slept above)
    echo "   table scans per request (pg_stat_user_tables; tasks $(tasks_in all)):"
    psql_q "SELECT format('   %8s %8s %14s  %s', round(seq_scan::numeric / $log_requests, 2),
                          round(COALESCE(idx_scan, 0)::numeric / $log_requests, 2),
                          round(seq_tup_read::numeric / $log_requests), relname)
            FROM pg_stat_user_tables WHERE schemaname = 'tasker' AND seq_tup_read > 0
            ORDER BY seq_tup_read DESC LIMIT 5" | sed '1i\      seq      idx  seq rows read  table'

  done
  psql_q "ALTER SYSTEM RESET log_min_duration_statement" "ALTER SYSTEM RESET log_connections" \
    "SELECT pg_reload_conf()" >/dev/null
fi
((failed == 0))
