# Shared helpers of the benchmarks that run taskerd on a private PostgreSQL
# cluster (engine/run.sh, api/run.sh); sourced, not executed.
# shellcheck shell=bash disable=SC2034,SC2154  # globals shared with the sourcing script
#
# The sourcing script defines log, die and $keep (1: keep the scratch
# directory), sets PGCLUSTER (t/lib/pgcluster.sh) and TASKERD, then calls
# pg_scratch PREFIX and, after building what it needs, pg_start_cluster.

# pg_scratch PREFIX: the scratch directory $TMP (with the cluster in
# $PGDIR), and the cleanup that stops every pid in PIDS and the cluster on
# exit, also on Ctrl-C / SIGTERM.
pg_scratch() {
  TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  chmod 755 "$TMP"   # the cluster runs as postgres when we are root
  PGDIR=$TMP/pg
  PIDS=()
  cluster_started=0
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

stop_pid() {   # SIGTERM, up to 15 s grace, then SIGKILL
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

forget_pid() {
  local drop=$1 p keep_pids=()
  for p in "${PIDS[@]}"; do [[ $p == "$drop" ]] || keep_pids+=("$p"); done
  PIDS=("${keep_pids[@]}")
}

# bg_run OUT CMD...: runs CMD with its stdout in OUT, in the background so
# that a signal to this script is handled at once (cleanup stops CMD too).
bg_run() {
  local out=$1 pid rc=0
  shift
  "$@" >"$out" &
  pid=$!
  PIDS+=("$pid")
  wait "$pid" || rc=$?
  forget_pid "$pid"
  return "$rc"
}

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
  PIDS=()
  if ((cluster_started)); then
    timeout 60 "$PGCLUSTER" stop "$PGDIR" || log "warning: stopping the cluster failed"
  fi
  if ((keep)); then
    log "kept $TMP"
  else
    rm -rf "$TMP"
  fi
}

CLK_TCK=$(getconf CLK_TCK)

proc_ticks() {   # utime + stime of one pid; "proc_ticks PID all" adds its reaped children
  local rest all=${2:-}
  { rest=$(<"/proc/$1/stat"); } 2>/dev/null || { echo 0; return; }
  rest=${rest##*) }   # drop "pid (comm) "; comm may hold spaces
  # shellcheck disable=SC2086
  set -- $rest        # $1 = field 3 (state); utime, stime, cutime, cstime = fields 14-17
  if [[ $all == all ]]; then echo $((${12} + ${13} + ${14} + ${15})); else echo $((${12} + ${13})); fi
}

pg_ticks() {   # the whole cluster: postmaster (with reaped children) + live children
  local pm total p
  pm=$(head -n 1 "$PGDIR/data/postmaster.pid")
  total=$(proc_ticks "$pm" all)
  for p in $(ps -o pid= --ppid "$pm"); do
    total=$((total + $(proc_ticks "$p")))
  done
  echo "$total"
}

busy_ticks() {   # all CPUs: user+nice+system+irq+softirq+steal
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}

pct() {   # pct TICKS SECONDS -> % of one CPU
  awk -v t="$1" -v s="$2" -v hz="$CLK_TCK" 'BEGIN { printf "%.0f", (s > 0 ? 100 * t / hz / s : 0) }'
}

median() {   # median of the arguments
  printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

kv() {   # kv KEY LINE: the value of KEY=value in LINE
  local k=$1 line=$2
  sed -n "s/.*\\b$k=\\([^ ]*\\).*/\\1/p" <<<"$line"
}

psql_q() {   # psql_q SQL...: tuples only, unaligned
  local a=() s
  for s in "$@"; do a+=(-c "$s"); done
  timeout 120 psql "$CONNINFO" -X -q -A -t -v ON_ERROR_STOP=1 "${a[@]}"
}

wait_line() {   # wait_line FILE REGEX SECONDS PID
  local file=$1 rx=$2 secs=$3 pid=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    grep -qE "$rx" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

clean_env() {   # the caller's tasker settings must not leak into the programs
  local v
  for v in $(env | sed -n 's/^\(TASKER_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$v"; done
  unset DATABASE_URL
}

# pg_start_cluster: starts the cluster in $PGDIR (durability off, see
# t/lib/pgcluster.sh), sets CONNINFO, PGVERSION and DATABASE_URL (for the
# programs, whose other settings are cleared) and applies the migrations.
pg_start_cluster() {
  cluster_started=1
  CONNINFO=$(timeout 90 "$PGCLUSTER" start "$PGDIR") || die "the cluster did not start"
  PGVERSION=$(psql_q "SHOW server_version")
  clean_env
  export DATABASE_URL=$CONNINFO
  timeout 120 "$TASKERD" --migrate-only >"$TMP/migrate.log" 2>&1 ||
    { cat "$TMP/migrate.log" >&2; die "taskerd --migrate-only failed"; }
}
