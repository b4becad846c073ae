#!/bin/sh
# quickstart.sh [taskerd options...]: runs tasker on this machine with a
# private PostgreSQL that it starts itself (data in ./run/pg, or
# $TASKER_QUICKSTART_DIR), no database set up by hand:
#   - starts (or reuses) the cluster on a Unix socket, no TCP port;
#   - applies the schema (taskerd --migrate-only);
#   - runs tasker-worker in the background (when built) and taskerd in the
#     foreground, with the example templates of etc/templates;
#   - on Ctrl-C or SIGTERM stops both and the database.
# taskerd listens on $TASKER_LISTEN (default 127.0.0.1:9090).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
dir=${TASKER_QUICKSTART_DIR:-$top/run}
mkdir -p "$dir"
pgctl="$top/t/lib/pgcluster.sh"
[ -x "$top/taskerd" ] || { echo "quickstart: build first (./configure && make)" >&2; exit 1; }

DATABASE_URL=$(sh "$pgctl" start "$dir/pg")
TASKER_TEMPLATE_PATH=${TASKER_TEMPLATE_PATH:-$top/etc/templates}
export DATABASE_URL TASKER_TEMPLATE_PATH
worker_pid=
taskerd_pid=
# Programs first (they finish their work), the database last.
cleanup() {
	for pid in $taskerd_pid $worker_pid; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in $taskerd_pid $worker_pid; do
		wait "$pid" 2>/dev/null || true
	done
	sh "$pgctl" stop "$dir/pg" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

echo "quickstart: database $DATABASE_URL" >&2
"$top/taskerd" --migrate-only
if [ -x "$top/tasker-worker" ]; then
	"$top/tasker-worker" &
	worker_pid=$!
fi
"$top/taskerd" --server.listen="${TASKER_LISTEN:-127.0.0.1:9090}" "$@" &
taskerd_pid=$!
# wait returns early on a signal; the trap then stops everything
wait "$taskerd_pid"
