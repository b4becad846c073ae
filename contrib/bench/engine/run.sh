#!/usr/bin/env bash
# Engine throughput: the diamond workflow with `noop` handlers on 1 taskerd
# + 1 tasker-worker, beside the ceiling of a raw SQL claim-and-complete
# loop on the same (private, throw-away) PostgreSQL cluster, in one run.
# See contrib/bench/engine/README.md.
#
#   contrib/bench/engine/run.sh [--tasks N] [--build DIR] [options]
#
# Every wait is bounded; every process started here is stopped and the
# cluster removed on exit (also on Ctrl-C / SIGTERM). Exit status 0 when
# every task completed and passed the checks (with --require-target: and the
# ratio engine/ceiling reached the target), 1 otherwise.
set -euo pipefail

ENGINE_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP_SRCDIR=$(cd "$ENGINE_DIR/../../.." && pwd)
# shellcheck disable=SC2034  # read by pg-lib.sh
PGCLUSTER=$TOP_SRCDIR/t/lib/pgcluster.sh
SYS_PYTHON=/usr/bin/python3

tasks=2000
build=${TASKER_BUILD_DIR:-}
concurrency=8
poll_ms=100
result_threads=""
taskerd_args=""
worker_args=""
clients="1 2 4 8"
warmup=500
vacuum=1
timeout=300
target=0.5
require_target=0
analyze=auto
analyze_tasks=500
floor=1
shared_buffers=1GB
floor_sizes="300 1000 2000"
perf_secs=0
rounds=1
keep=0   # read by pg-lib.sh (cleanup)

usage() {
  cat <<EOF
usage: $0 [--tasks N] [--build DIR] [options]

  --tasks N            tasks of the measured batch (default $tasks; 4 steps each)
  --build DIR          build directory holding taskerd and tasker-worker
                       (default \$TASKER_BUILD_DIR, else the source tree)
  --concurrency N      tasker-worker handler threads (default $concurrency)
  --poll-ms MS         taskerd and worker poll interval (default $poll_ms)
  --result-threads N   taskerd orchestration.result_threads (default: taskerd's, 2)
  --taskerd-args "..."  extra taskerd options, e.g. "--dlq.staleness_enabled=0"
  --worker-args "..."   extra tasker-worker options, e.g. "--worker.batch_size=32"
  --clients "K ..."    session counts tried for the ceiling; the best one is
                       the ceiling (default "$clients")
  --warmup N           tasks run (and not measured) before the batch (default $warmup)
  --no-vacuum          measure right after the warm-up, without VACUUM ANALYZE and
                       without restarting taskerd and the worker
  --rounds N           repeat ceiling + engine batch N times, report medians (default $rounds)
  --timeout S          limit per phase (default $timeout)
  --target R           wanted engine/ceiling ratio (default $target)
  --require-target     exit 1 when the ratio is below the target
  --analyze            always run the statement analysis (default: only when
                       the ratio is below the target); --no-analyze: never
  --analyze-tasks N    tasks of the analysis batch (default $analyze_tasks)
  --floor-sizes "N ..." diamonds per statement tried for the floor, each
                       twice; the cheapest per step counts (default "$floor_sizes")
  --shared-buffers S   PostgreSQL's shared_buffers for the run (default $shared_buffers;
                       the test clusters keep the server default, 128MB)
  --no-floor           skip the floor (the schema's rows alone, set-based)
  --perf S             also profile the whole machine with perf for S seconds
                       of an unlogged batch (needs perf)
  --keep               keep the scratch directory (logs, postgres.log)
EOF
}

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
log() { printf '%s\n' "$*" >&2; }

while [[ $# -gt 0 ]]; do
  case $1 in
  --tasks) tasks=$2; shift 2 ;;
  --build) build=$2; shift 2 ;;
  --concurrency) concurrency=$2; shift 2 ;;
  --poll-ms) poll_ms=$2; shift 2 ;;
  --result-threads) result_threads=$2; shift 2 ;;
  --taskerd-args) taskerd_args=$2; shift 2 ;;
  --worker-args) worker_args=$2; shift 2 ;;
  --clients) clients=$2; shift 2 ;;
  --warmup) warmup=$2; shift 2 ;;
  --no-vacuum) vacuum=0; shift ;;
  --rounds) rounds=$2; shift 2 ;;
  --timeout) timeout=$2; shift 2 ;;
  --target) target=$2; shift 2 ;;
  --require-target) require_target=1; shift ;;
  --analyze) analyze=yes; shift ;;
  --no-analyze) analyze=no; shift ;;
  --analyze-tasks) analyze_tasks=$2; shift 2 ;;
  --floor-sizes) floor_sizes=$2; shift 2 ;;
  --no-floor) floor=0; shift ;;
  --shared-buffers) shared_buffers=$2; shift 2 ;;
  --perf) perf_secs=$2; shift 2 ;;
  --keep) keep=1; shift ;;
  -h | --help) usage; exit 0 ;;
  *) usage >&2; exit 2 ;;
  esac
done
for v in tasks concurrency poll_ms warmup rounds timeout analyze_tasks perf_secs; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "--${v//_/-}: not a number: ${!v}"
done
((tasks > 0 && rounds > 0 && concurrency > 0)) || die "--tasks, --rounds, --concurrency must be > 0"

if [[ -z $build ]]; then
  build=$TOP_SRCDIR
fi
TASKERD=$build/taskerd
WORKER=$build/tasker-worker
[[ -x $TASKERD && -x $WORKER ]] || die "no taskerd / tasker-worker in $build (use --build DIR)"
for t in cc pkg-config psql awk ps timeout; do
  command -v "$t" >/dev/null 2>&1 || die "missing tool: $t"
done
[[ -x $SYS_PYTHON ]] || die "missing $SYS_PYTHON"
if ((perf_secs > 0)); then
  command -v perf >/dev/null 2>&1 || die "--perf: perf is not installed"
fi

# ------------------------------------------------------------------ scratch + helpers
# shellcheck source=contrib/bench/pg-lib.sh
source "$TOP_SRCDIR/contrib/bench/pg-lib.sh"
pg_scratch tasker-engine

# ------------------------------------------------------------------ build + cluster
log "== building sqlbench"
# shellcheck disable=SC2046  # word splitting wanted
cc -O2 -Wall -pthread -o "$TMP/sqlbench" "$ENGINE_DIR/sqlbench.c" \
  $(pkg-config --cflags --libs libpq) || die "cannot build sqlbench.c"
SQLBENCH=$TMP/sqlbench

log "== starting PostgreSQL in $PGDIR (fsync=off, synchronous_commit=off, full_page_writes=off)"
pg_start_cluster
# A server configured as for production: the tables of a run outgrow the
# default 128MB of shared buffers, after which every statement (the
# engine's and the floor's alike) pays for page evictions.
psql_q "ALTER SYSTEM SET shared_buffers = '$shared_buffers'" >/dev/null
timeout 90 "$PGCLUSTER" restart "$PGDIR" >/dev/null || die "the cluster did not restart"
log "   shared_buffers $(psql_q "SHOW shared_buffers")"
timeout 60 psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 -f "$ENGINE_DIR/ceiling.sql" \
  >/dev/null 2>&1 || die "ceiling.sql failed"

# ------------------------------------------------------------------ ceiling
# One ceiling measurement: the best steps/s over the --clients counts, each
# run twice (it is an upper bound: the better run counts). Sets CEIL
# (steps/s), CEIL_K, CEIL_PG_MS; prints a line per run.
ceiling_once() {
  local mode=$1 k line sps t0 p0 b0 t1 secs p1 b1 c1
  CEIL=0 CEIL_K=0 CEIL_PG_MS=0
  for k in $clients $clients; do
    psql_q "SELECT bench.reset($tasks)" "VACUUM ANALYZE bench.steps, bench.edges" "CHECKPOINT" >/dev/null
    p0=$(pg_ticks) b0=$(busy_ticks) t0=$(date +%s.%N)
    bg_run "$TMP/ceiling.out" "$SQLBENCH" ceiling "$CONNINFO" --clients "$k" --mode "$mode" \
      --timeout "$timeout" || die "ceiling ($mode, $k clients) failed: $(cat "$TMP/ceiling.out")"
    line=$(<"$TMP/ceiling.out")
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    sps=$(kv steps_per_s "$line")
    p1=$(($(pg_ticks) - p0)) b1=$(($(busy_ticks) - b0))
    c1=$(awk -v c="$(kv cpu_s "$line")" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", c * hz }')
    printf '  ceiling %-3s K=%-3s %9s steps/s  %6ss  CPU: postgres %4s%%  client %3s%%  other %3s%%  (empty claims %s)\n' \
      "$mode" "$k" "$sps" "$(kv seconds "$line")" "$(pct "$p1" "$secs")" "$(pct "$c1" "$secs")" \
      "$(pct $((b1 - p1 - c1)) "$secs")" "$(kv empty_claims "$line")" >&2
    if awk -v a="$sps" -v b="$CEIL" 'BEGIN { exit !(a > b) }'; then
      CEIL=$sps CEIL_K=$k
      # PostgreSQL CPU milliseconds per step
      CEIL_PG_MS=$(awk -v t="$p1" -v hz="$CLK_TCK" -v n="$(kv steps "$line")" \
        'BEGIN { printf "%.3f", 1000 * t / hz / n }')
    fi
  done
}

# ------------------------------------------------------------------ engine
TPL=$TMP/templates
mkdir -p "$TPL/bench"
cat >"$TPL/bench/noop_diamond.yaml" <<'EOF'
# The diamond of etc/templates/integration/diamond_workflow.yaml with noop
# handlers (contrib/bench/engine/run.sh).
name: noop_diamond
namespace_name: bench
version: 1.0.0
description: Diamond of noop steps
steps:
  - name: step_a
    handler:
      callable: noop
  - name: step_b
    dependencies: [step_a]
    handler:
      callable: noop
  - name: step_c
    dependencies: [step_a]
    handler:
      callable: noop
  - name: step_d
    dependencies: [step_b, step_c]
    handler:
      callable: noop
EOF

TASKERD_PID="" WORKER_PID=""

start_taskerd() {
  local args=(--server.listen=127.0.0.1:0 "--orchestration.poll_interval_ms=$poll_ms")
  [[ -z $result_threads ]] || args+=("--orchestration.result_threads=$result_threads")
  # shellcheck disable=SC2206  # word splitting wanted
  args+=($taskerd_args)
  TASKER_TEMPLATE_PATH=$TPL "$TASKERD" "${args[@]}" >>"$TMP/taskerd.log" 2>&1 &
  TASKERD_PID=$!
  PIDS+=("$TASKERD_PID")
  wait_line "$TMP/taskerd.log" "listening h2c" 30 "$TASKERD_PID" ||
    { tail -n 20 "$TMP/taskerd.log" >&2; die "taskerd did not start"; }
}

start_worker() {
  # shellcheck disable=SC2086  # word splitting wanted
  TASKER_TEMPLATE_PATH=$TPL TASKER_WORKER_NAMESPACES=bench "$WORKER" \
    --worker.grpc_bind_address=127.0.0.1:0 "--worker.poll_interval=${poll_ms}ms" \
    "--worker.concurrency=$concurrency" $worker_args >>"$TMP/worker.log" 2>&1 &
  WORKER_PID=$!
  PIDS+=("$WORKER_PID")
  wait_line "$TMP/worker.log" "serving namespace" 30 "$WORKER_PID" ||
    { tail -n 20 "$TMP/worker.log" >&2; die "tasker-worker did not start"; }
}

# Waits (up to 10 s) until the sessions of the stopped program are gone, so
# that no backend exits in the middle of a CPU reading (pg_ticks).
# Their LISTEN sessions are named tasker-listener: taskerd has two (the
# engine's and the task event stream's), the worker one.
sessions_gone() {   # sessions_gone APP LISTENERS_LEFT
  local i
  for ((i = 0; i < 100; i++)); do
    [[ $(psql_q "SELECT count(*) FILTER (WHERE application_name = '$1') = 0
                        AND count(*) FILTER (WHERE application_name = 'tasker-listener') <= $2
                 FROM pg_stat_activity") == t ]] && { sleep 0.3; return 0; }
    sleep 0.1
  done
  log "warning: sessions of $1 still open after 10 s"
}
stop_taskerd() {
  stop_pid "$TASKERD_PID"; forget_pid "$TASKERD_PID"; TASKERD_PID=""
  sessions_gone taskerd "$([[ -n $WORKER_PID ]] && echo 1 || echo 0)"
}
stop_worker() {
  stop_pid "$WORKER_PID"; forget_pid "$WORKER_PID"; WORKER_PID=""
  sessions_gone tasker-worker "$([[ -n $TASKERD_PID ]] && echo 2 || echo 0)"
}

# run_batch ID N [sqlbench tasks options]: N tasks of run ID, waits for them
# (see sqlbench.c); sets BATCH_LINE and the CPU split over the batch's wall
# time (E_* in % of one CPU; "other" is everything outside taskerd, the
# worker, this cluster and sqlbench).
run_batch() {
  local id=$1 n=$2 d0=0 w0=0 p0 b0 t0 t1 secs rc=0 d1=0 w1=0 p1 b1 c1
  shift 2
  [[ -z $TASKERD_PID ]] || d0=$(proc_ticks "$TASKERD_PID")
  [[ -z $WORKER_PID ]] || w0=$(proc_ticks "$WORKER_PID")
  p0=$(pg_ticks) b0=$(busy_ticks) t0=$(date +%s.%N)
  bg_run "$TMP/batch.out" "$SQLBENCH" tasks "$CONNINFO" --run "$id" --tasks "$n" \
    --namespace bench --name noop_diamond --interval-ms 150 --timeout "$timeout" "$@" || rc=$?
  BATCH_LINE=$(<"$TMP/batch.out")
  t1=$(date +%s.%N)
  secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
  [[ -z $TASKERD_PID ]] || d1=$(($(proc_ticks "$TASKERD_PID") - d0))
  [[ -z $WORKER_PID ]] || w1=$(($(proc_ticks "$WORKER_PID") - w0))
  p1=$(($(pg_ticks) - p0)) b1=$(($(busy_ticks) - b0))
  c1=$(awk -v c="$(kv cpu_s "$BATCH_LINE")" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", c * hz }')
  E_TASKERD=$(pct "$d1" "$secs") E_WORKER=$(pct "$w1" "$secs") E_PG=$(pct "$p1" "$secs")
  E_OTHER=$(pct $((b1 - d1 - w1 - p1 - c1)) "$secs")
  # PostgreSQL CPU milliseconds per task and per step of the batch
  E_PG_MS=$(awk -v t="$p1" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.1f", 1000 * t / hz / n }')
  E_PG_MS_STEP=$(awk -v t="$p1" -v hz="$CLK_TCK" -v n="$n" 'BEGIN { printf "%.2f", 1000 * t / hz / n / 4 }')
  if [[ -n $TASKERD_PID ]] && ! kill -0 "$TASKERD_PID" 2>/dev/null; then
    die "taskerd died (see $TMP/taskerd.log; --keep)"
  fi
  if [[ -n $WORKER_PID ]] && ! kill -0 "$WORKER_PID" 2>/dev/null; then
    die "tasker-worker died (see $TMP/worker.log; --keep)"
  fi
  ((rc == 0)) || die "batch $id did not complete: $BATCH_LINE"
}

cpu_line() {   # the CPU split of the last batch
  printf 'CPU: taskerd %s%%  tasker-worker %s%%  postgres %s%% (%s ms per task)  other %s%%' \
    "$E_TASKERD" "$E_WORKER" "$E_PG" "$E_PG_MS" "$E_OTHER"
}

# The checks of a finished batch: every task and step complete, every step
# started once, queues drained, nothing in the DLQ. Prints problems.
check_batch() {
  local id=$1 n=$2 out
  out=$(psql_q "
    WITH t AS (SELECT task_uuid FROM tasker.tasks WHERE context->>'bench_run' = '$id'),
    s AS (SELECT ws.workflow_step_uuid FROM tasker.workflow_steps ws JOIN t USING (task_uuid))
    SELECT concat_ws(' ',
      CASE WHEN (SELECT count(*) FROM t) <> $n THEN 'tasks=' || (SELECT count(*) FROM t) END,
      CASE WHEN (SELECT count(*) FROM t JOIN tasker.task_transitions tt USING (task_uuid)
                 WHERE tt.most_recent AND tt.to_state = 'complete') <> $n
           THEN 'not-complete-tasks' END,
      CASE WHEN (SELECT count(*) FROM s) <> 4 * $n THEN 'steps=' || (SELECT count(*) FROM s) END,
      CASE WHEN (SELECT count(*) FROM s JOIN tasker.workflow_step_transitions st USING (workflow_step_uuid)
                 WHERE st.most_recent AND st.to_state = 'complete') <> 4 * $n
           THEN 'not-complete-steps' END,
      CASE WHEN (SELECT count(*) FROM s JOIN tasker.workflow_step_transitions st USING (workflow_step_uuid)
                 WHERE st.to_state = 'in_progress') <> 4 * $n
           THEN 'steps-started-twice' END,
      CASE WHEN (SELECT count(*) FROM pgmq.q_orchestration_task_requests) > 0 THEN 'requests-left' END,
      CASE WHEN (SELECT count(*) FROM pgmq.q_orchestration_step_results) > 0 THEN 'results-left' END,
      CASE WHEN (SELECT count(*) FROM pgmq.q_worker_bench_queue) > 0 THEN 'worker-messages-left' END,
      CASE WHEN (SELECT count(*) FROM tasker.tasks_dlq) > 0 THEN 'dlq-entries' END)")
  [[ -z $out ]] || log "  check of batch $id: $out"
  [[ -z $out ]]
}

# ------------------------------------------------------------------ measure
log "== $($TASKERD --version), PostgreSQL $PGVERSION, $(nproc) CPUs; $tasks tasks x 4 steps, worker concurrency $concurrency, poll ${poll_ms} ms"
start_taskerd
start_worker
if ((warmup > 0)); then
  log "== warm-up: $warmup tasks"
  run_batch warmup "$warmup"
fi
if ((vacuum)); then
  # Sessions keep the plans made on the first, near-empty tables; fresh
  # statistics and fresh sessions measure the steady state instead.
  log "== VACUUM ANALYZE; restarting taskerd and tasker-worker"
  stop_worker
  stop_taskerd
  psql_q "VACUUM ANALYZE" >/dev/null
  start_taskerd
  start_worker
fi

declare -a R_TPS R_SPS R_CEIL R_CEIL1 R_RATIO
for ((r = 1; r <= rounds; r++)); do
  log "== round $r/$rounds: ceiling (raw SQL claim-and-complete over $((4 * tasks)) steps)"
  ceiling_once tx
  ceil_tx=$CEIL ceil_tx_k=$CEIL_K ceil_tx_ms=$CEIL_PG_MS
  ceiling_once one
  ceil_one=$CEIL ceil_one_k=$CEIL_K
  psql_q "CHECKPOINT" >/dev/null
  log "== round $r/$rounds: engine, $tasks tasks"
  psql_q "SELECT pg_stat_reset()" >/dev/null
  run_batch "round$r" "$tasks"
  check_batch "round$r" "$tasks" || die "batch round$r failed its checks"
  sleep 2   # busy sessions flush their statistics about once a second
  scans=$(psql_q "SELECT format('%s seq scans reading %s rows per step; %s',
                    round(sum(seq_scan)::numeric / (4 * $tasks), 2),
                    round(sum(seq_tup_read)::numeric / (4 * $tasks)),
                    string_agg(relname || ' ' || round(seq_tup_read::numeric / (4 * $tasks)),
                               ', ' ORDER BY seq_tup_read DESC) FILTER (WHERE seq_tup_read > 0))
                  FROM pg_stat_user_tables
                  WHERE schemaname = 'tasker'
                    AND relname NOT IN ('named_steps', 'named_tasks', 'task_namespaces')")
  tps=$(kv tasks_per_s "$BATCH_LINE")
  sps=$(awk -v t="$tps" 'BEGIN { printf "%.1f", 4 * t }')
  ratio=$(awk -v a="$sps" -v b="$ceil_tx" 'BEGIN { printf "%.3f", a / b }')
  printf '  engine  %9s tasks/s %9s steps/s  %6ss (last task created at %ss)  task latency p50 %ss p99 %ss\n' \
    "$tps" "$sps" "$(kv seconds "$BATCH_LINE")" "$(kv last_created "$BATCH_LINE")" \
    "$(kv latency_p50 "$BATCH_LINE")" "$(kv latency_p99 "$BATCH_LINE")" >&2
  log "  engine $(cpu_line)"
  log "  engine table scans (tasker tables but the 3 small lookup ones): $scans"
  R_TPS+=("$tps") R_SPS+=("$sps") R_CEIL+=("$ceil_tx") R_CEIL1+=("$ceil_one") R_RATIO+=("$ratio")
  CEIL_TX_K=$ceil_tx_k CEIL_ONE_K=$ceil_one_k
done

m_tps=$(median "${R_TPS[@]}") m_sps=$(median "${R_SPS[@]}")
m_ceil=$(median "${R_CEIL[@]}") m_ceil1=$(median "${R_CEIL1[@]}") m_ratio=$(median "${R_RATIO[@]}")
m_ratio1=$(awk -v a="$m_sps" -v b="$m_ceil1" 'BEGIN { printf "%.3f", a / b }')
met=$(awk -v a="$m_ratio" -v b="$target" 'BEGIN { print (a >= b) ? "met" : "NOT met" }')

echo
echo "== diamond workflow, noop handlers, 1 taskerd + 1 tasker-worker (concurrency $concurrency), $tasks tasks$( ((rounds > 1)) && echo ", median of $rounds rounds")"
printf '%-44s %10s tasks/s %10s steps/s\n' "engine" "$m_tps" "$m_sps"
printf '%-44s %10s %18s steps/s\n' "ceiling: claim + complete, 1 tx of 4 trips" "(best K=$CEIL_TX_K)" "$m_ceil"
printf '%-44s %10s %18s steps/s\n' "ceiling: claim + complete, 1 statement" "(best K=$CEIL_ONE_K)" "$m_ceil1"
printf 'ratio engine/ceiling: %s (target >= %s: %s); against the 1-statement loop: %s\n' \
  "$m_ratio" "$target" "$met" "$m_ratio1"
printf 'PostgreSQL CPU per step (last round): engine %s ms, ceiling %s ms; engine CPU: taskerd %s%%, worker %s%%, postgres %s%%, other %s%%\n' \
  "$E_PG_MS_STEP" "$ceil_tx_ms" "$E_TASKERD" "$E_WORKER" "$E_PG" "$E_OTHER"
if ((rounds > 1)); then
  echo "per round: engine steps/s ${R_SPS[*]}; ceiling ${R_CEIL[*]}; ratio ${R_RATIO[*]}"
fi

# ------------------------------------------------------------------ perf (optional)
if ((perf_secs > 0)); then
  echo
  echo "== perf: whole machine, ${perf_secs}s inside an unlogged batch of $tasks tasks (call graphs: dwarf)"
  "$SQLBENCH" tasks "$CONNINFO" --run perf --tasks "$tasks" --namespace bench \
    --name noop_diamond --interval-ms 150 --timeout "$timeout" >"$TMP/perf-batch.txt" &
  pb=$!
  PIDS+=("$pb")
  sleep 1
  timeout $((perf_secs + 60)) perf record -a --call-graph dwarf,32768 -F 149 -o "$TMP/perf.data" \
    -- sleep "$perf_secs" >/dev/null 2>"$TMP/perf-record.log" ||
    log "perf record failed: $(tail -n 3 "$TMP/perf-record.log")"
  wait "$pb" || log "the perf batch did not complete: $(cat "$TMP/perf-batch.txt")"
  forget_pid "$pb"
  if [[ -s $TMP/perf.data ]]; then
    echo "-- CPU samples by process"
    timeout 300 perf report -i "$TMP/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null |
      grep -E '^ +[0-9]' | head -n 6
    echo "-- postgres: share of its samples under these functions (inclusive)"
    timeout 300 perf report -i "$TMP/perf.data" --children --comm postgres --sort sym --stdio -g none 2>/dev/null |
      grep -E '^ +[0-9]' | awk '!seen[$4]++' | grep -E '\] (PortalRun|plpgsql_exec_function|fmgr_sql|SPI_execute_plan_with_paramlist|SPI_execute_extended|pg_plan_query|standard_planner|parse_analyze_withcb|pg_analyze_and_rewrite_withcb|raw_parser|stringToNode|standard_ExecutorRun|ExecScan|AfterTriggerEndQuery|CommitTransactionCommand|ExecInitNode|heap_getnextslot|index_getnext_slot|RevalidateCachedQuery|GetCachedPlan)$' |
      awk '{ printf "   %7s  %s\n", $1, $4 }'
  fi
fi

# ------------------------------------------------------------------ analysis
if [[ $analyze == yes || ($analyze == auto && $met != met) ]]; then
  echo
  echo "== where the time goes: $analyze_tasks tasks"
  # 1. Creation alone: no worker, so only taskerd works (create + enqueue step_a).
  stop_worker
  run_batch split "$analyze_tasks" --until created
  printf '%-34s %8s tasks/s  %s\n' "taskerd creating tasks (no worker)" "$(kv tasks_per_s "$BATCH_LINE")" "$(cpu_line)"
  # 2. Execution alone: the worker starts on the tasks created above.
  start_worker
  run_batch split "$analyze_tasks" --no-send
  check_batch split "$analyze_tasks" || die "batch split failed its checks"
  printf '%-34s %8s tasks/s  %s\n' "then running them (worker started)" "$(kv tasks_per_s "$BATCH_LINE")" "$(cpu_line)"

  # 3. Every statement logged: round trips and server time per statement.
  echo
  echo "-- every statement logged (log_min_duration_statement=0, track_functions=all); durations"
  echo "   are wall time inside the server, inflated by the logging and by CPU contention"
  psql_q "ALTER SYSTEM SET log_min_duration_statement = 0" \
    "ALTER SYSTEM SET log_line_prefix = '%m [%p] %a: '" \
    "ALTER SYSTEM SET track_functions = 'all'" \
    "ALTER SYSTEM SET log_parameter_max_length = 0" \
    "SELECT pg_reload_conf()" >/dev/null
  sleep 1
  psql_q "SELECT pg_stat_reset()" >/dev/null
  offset=$(stat -c %s "$PGDIR/postgres.log")
  run_batch analysis "$analyze_tasks"
  check_batch analysis "$analyze_tasks" || die "batch analysis failed its checks"
  # Ending the sessions flushes their statistics.
  stop_worker
  stop_taskerd
  sleep 1.5
  psql_q "ALTER SYSTEM RESET log_min_duration_statement" "ALTER SYSTEM RESET track_functions" \
    "SELECT pg_reload_conf()" >/dev/null
  tail -c +$((offset + 1)) "$PGDIR/postgres.log" >"$TMP/analysis.log"
  psql_q "SELECT funcid::regprocedure, calls, round(total_time::numeric, 1), round(self_time::numeric, 1)
          FROM pg_stat_user_functions ORDER BY self_time DESC" >"$TMP/functions.txt"
  "$SYS_PYTHON" "$ENGINE_DIR/statements.py" --steps $((4 * analyze_tasks)) \
    --tasks "$analyze_tasks" --functions "$TMP/functions.txt" "$TMP/analysis.log"
  echo
  echo "-- table scans per step (pg_stat_user_tables)"
  psql_q "SELECT format('%10s %12s %14s %10s  %s', 'seq scans', 'per step', 'rows read/step',
                        'idx scans/st', 'table')
          UNION ALL
          SELECT * FROM (SELECT format('%10s %12s %14s %10s  %s', seq_scan,
                        round(seq_scan::numeric / (4 * $analyze_tasks), 2),
                        round(seq_tup_read::numeric / (4 * $analyze_tasks), 0),
                        round(COALESCE(idx_scan, 0)::numeric / (4 * $analyze_tasks), 2),
                        schemaname || '.' || relname)
                 FROM pg_stat_user_tables WHERE schemaname <> 'bench' AND seq_scan + COALESCE(idx_scan, 0) > 0
                 ORDER BY seq_tup_read DESC, idx_scan DESC LIMIT 12) x"
fi

# ------------------------------------------------------------------ floor
# The rows the schema makes every step write, alone (README, "The floor"),
# last, as it changes the schema: floor-run.sql writes them set-based for
# all the diamonds of a run at once (floor.sql makes the keys first,
# unmeasured); taskerd and the worker are stopped (the floor takes every
# message of its queues). Its PostgreSQL CPU per step bounds any engine on
# the schema: at best NCPU / that many steps/s.
# One floor measurement over the --floor-sizes, each twice: sets F_BEST
# (us of PostgreSQL CPU per step, the cheapest) and F_N (its size).
floor_once() {
  local fn t0 t1 p1 done_f f_us
  F_BEST=0 F_N=0
  for fn in $floor_sizes $floor_sizes; do
    [[ $fn =~ ^[1-9][0-9]*$ ]] || die "--floor-sizes: not a number: $fn"
    timeout 120 psql "$CONNINFO" -X -q -v ON_ERROR_STOP=1 -v N="$fn" -f "$ENGINE_DIR/floor.sql" \
      >"$TMP/floor.out" 2>&1 || die "floor.sql failed: $(tail -n 5 "$TMP/floor.out")"
    psql_q "CHECKPOINT" >/dev/null
    t0=$(date +%s.%N)
    timeout "$timeout" psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 -f "$ENGINE_DIR/floor-run.sql" \
      >"$TMP/floor.out" 2>&1 || die "floor-run.sql failed: $(tail -n 5 "$TMP/floor.out")"
    t1=$(date +%s.%N)
    p1=$(kv floor_cpu_ticks "$(cat "$TMP/floor.out")")
    [[ $p1 =~ ^[0-9]+$ ]] || die "floor: no CPU reading: $(tail -n 5 "$TMP/floor.out")"
    done_f=$(psql_q "SELECT count(*) FROM bench.floor_k k JOIN tasker.tasks t ON t.task_uuid = k.t
                     JOIN tasker.task_transitions tt ON tt.task_uuid = k.t AND tt.most_recent
                     WHERE t.complete AND tt.to_state = 'complete'")
    [[ $done_f == "$fn" ]] || die "floor: $done_f of $fn diamonds complete"
    f_us=$(awk -v t="$p1" -v hz="$CLK_TCK" -v n=$((4 * fn)) 'BEGIN { printf "%.0f", 1e6 * t / hz / n }')
    log "  floor, $fn diamonds: $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')s, PostgreSQL CPU ${f_us} us per step"
    if ((F_BEST == 0 || f_us < F_BEST)); then F_BEST=$f_us F_N=$fn; fi
    # Its rows go again, so that every floor run finds tables of the same size.
    timeout 300 psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 -f "$ENGINE_DIR/floor-clean.sql" \
      >"$TMP/floor.out" 2>&1 || die "floor-clean.sql failed: $(tail -n 5 "$TMP/floor.out")"
    [[ $(kv left "$(cat "$TMP/floor.out")") == 0 ]] || die "floor-clean.sql left rows: $(cat "$TMP/floor.out")"
  done
}

if ((floor)); then
  [[ -z $WORKER_PID ]] || stop_worker
  [[ -z $TASKERD_PID ]] || stop_taskerd
  echo
  echo "== the floor: the schema's rows per step alone, set-based, no engine (sizes: $floor_sizes, each twice)"
  floor_once
  FB=("$F_BEST") FN=("$F_N")
  # The same on the brief's schema alone: without the indexes and the
  # triggers the engine added (floor-contract.sql; the scratch database only).
  timeout 120 psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 -f "$ENGINE_DIR/floor-contract.sql" \
    >"$TMP/floor.out" 2>&1 || die "floor-contract.sql failed: $(tail -n 5 "$TMP/floor.out")"
  log "  the brief's schema only ($(kv indexes_left "$(cat "$TMP/floor.out")") indexes left in schema tasker):"
  floor_once
  FB+=("$F_BEST") FN+=("$F_N")
  ncpu=$(nproc)
  for i in 0 1; do
    f_sps=$(awk -v u="${FB[i]}" -v c="$ncpu" 'BEGIN { printf "%.0f", c * 1e6 / u }')
    f_ratio=$(awk -v a="$f_sps" -v b="$m_ceil" 'BEGIN { printf "%.3f", a / b }')
    if ((i == 0)); then
      echo "floor, the schema as the engine has it (best with ${FN[i]} diamonds per statement): ${FB[i]} us of PostgreSQL CPU per step"
    else
      echo "floor, the brief's indexes and triggers only (best with ${FN[i]} diamonds per statement): ${FB[i]} us of PostgreSQL CPU per step"
    fi
    echo "       -> at most $f_sps steps/s on $ncpu CPUs for any engine: ratio <= $f_ratio (engine: $m_ratio)"
  done
fi

((!require_target)) || [[ $met == met ]]
