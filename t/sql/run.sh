#!/bin/bash
# t/sql/run.sh -- test the engine's SQL migrations on a throw-away
# PostgreSQL 15 cluster and print TAP.
#
#   t/sql/run.sh [test.sql ...]      (default: every t/sql/[0-9]*.sql)
#
# Starts a private cluster (initdb + pg_ctl, Unix socket only, in a
# temporary directory), applies src/store/migrations/0001, 0002, 0003, 0005
# and 0006 the way the migration runner does (schema tasker and
# tasker.schema_migrations first, each file in its own transaction, without
# 0004), then runs every test file against a fresh copy of that database
# (a file whose first line is "-- migrations: all": of a database with every
# migration of the directory), then the multi-session tests in concurrent.sh.
# Every migration file in the directory (other modules' included) is also
# applied once, in order, to a separate database. The cluster and its
# directory are removed on exit.
#
# Environment: PG_BINDIR (default /usr/lib/postgresql/15/bin),
# TASKER_MIGRATIONS_DIR (default <source tree>/src/store/migrations),
# KEEP_CLUSTER=1 to leave the cluster running and its directory in place.
# When run as root the server runs as the "postgres" user.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
migrations=${TASKER_MIGRATIONS_DIR:-$top/src/store/migrations}
pgbin=${PG_BINDIR:-/usr/lib/postgresql/15/bin}
own_migrations="0001 0002 0003 0005 0006"

# ---------------------------------------------------------------- TAP output
tap_n=0
tap_failed=0

tap_ok() {     # tap_ok NAME
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - $1"
}

tap_not_ok() { # tap_not_ok NAME [DIAGNOSTIC-TEXT]
	tap_n=$((tap_n + 1))
	tap_failed=$((tap_failed + 1))
	echo "not ok $tap_n - $1"
	if [ $# -gt 1 ] && [ -n "$2" ]; then
		printf '%s\n' "$2" | sed 's/^/# /'
	fi
}

tap_check() {  # tap_check NAME COMMAND...  (ok when the command succeeds)
	local name=$1 out
	shift
	if out=$("$@" 2>&1); then tap_ok "$name"; else tap_not_ok "$name" "$out"; fi
}

tap_done() {
	echo "1..$tap_n"
	[ "$tap_failed" -eq 0 ]
}

# Renumbers the "ok - x" / "not ok - x" lines a test file prints.
tap_relay() {
	local line
	while IFS= read -r line; do
		case $line in
		"ok - "*) tap_ok "${line#ok - }" ;;
		"not ok - "*) tap_not_ok "${line#not ok - }" ;;
		"#"*) echo "$line" ;;
		"") ;;
		*) echo "# $line" ;;
		esac
	done
}

# ------------------------------------------------------------------ cluster
if [ ! -x "$pgbin/initdb" ] || [ ! -x "$pgbin/pg_ctl" ]; then
	echo "1..0 # SKIP PostgreSQL 15 server binaries not found in $pgbin"
	exit 0
fi

as_pg() {
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/tasker-sql.XXXXXX") || exit 1
chmod 700 "$work"
if [ "$(id -u)" -eq 0 ]; then chown postgres: "$work"; fi
pgdata=$work/data
sock=$work
port=5432

cleanup() {
	if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
		echo "# cluster left running: psql -h $sock -p $port -U postgres (data $pgdata)"
		return
	fi
	as_pg "$pgbin/pg_ctl" -D "$pgdata" -m immediate stop >/dev/null 2>&1
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 129' HUP INT TERM

if ! out=$(as_pg "$pgbin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --no-locale 2>&1); then
	echo "1..0 # SKIP initdb failed"
	printf '%s\n' "$out" | sed 's/^/# /'
	exit 0
fi
if ! out=$(as_pg "$pgbin/pg_ctl" -D "$pgdata" -l "$work/server.log" -w -t 60 \
	-o "-c listen_addresses='' -k $sock -p $port -c fsync=off -c full_page_writes=off -c max_connections=50" \
	start 2>&1); then
	echo "1..0 # SKIP could not start PostgreSQL"
	printf '%s\n' "$out" | sed 's/^/# /'
	sed 's/^/# /' "$work/server.log" 2>/dev/null
	exit 0
fi

# migration_file NNNN: path of the migration file with that number.
migration_file() {
	local f
	for f in "$migrations/$1"_*.sql; do
		[ -e "$f" ] && { echo "$f"; return 0; }
	done
	return 1
}

# psql against database $1 with the remaining arguments.
pg() {
	local db=$1
	shift
	PGTZ=UTC PGOPTIONS='--client-min-messages=warning' \
		"$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h "$sock" -p "$port" -U postgres -d "$db" "$@"
}

# Applies migration files (numbers) to database $1 like the runner does.
apply_migrations() {
	local db=$1 m f
	shift
	pg "$db" -c "CREATE SCHEMA IF NOT EXISTS tasker;
	             CREATE TABLE IF NOT EXISTS tasker.schema_migrations (
	                 version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())" || return 1
	for m in "$@"; do
		f=$(migration_file "$m") || { echo "missing migration $m in $migrations"; return 1; }
		pg "$db" --single-transaction -f "$f" \
			-c "INSERT INTO tasker.schema_migrations (version) VALUES ('$(basename "$f" .sql)')" || return 1
	done
}

# ---------------------------------------------------------- migration checks
pg postgres -c "CREATE DATABASE tasker_template" >/dev/null
# shellcheck disable=SC2086
tap_check "migrations $own_migrations apply in order on an empty database (without 0004)" \
	apply_migrations tasker_template $own_migrations

# The C runner is expected to send each file as one multi-statement query
# (PQexec) inside its own transaction; do the same.
apply_as_single_query() {
	local m f
	pg postgres -c "CREATE DATABASE tasker_pqexec" >/dev/null || return 1
	pg tasker_pqexec -c "CREATE SCHEMA IF NOT EXISTS tasker" || return 1
	for m in $own_migrations; do
		f=$(migration_file "$m") || return 1
		pg tasker_pqexec -c "BEGIN" -c "$(cat "$f")" -c "COMMIT" || return 1
	done
	pg postgres -c "DROP DATABASE tasker_pqexec" >/dev/null
}
tap_check "each migration also applies as a single multi-statement query" apply_as_single_query

no_txn_control() {
	local m f bad=""
	for m in $own_migrations; do
		f=$(migration_file "$m") || return 1
		if grep -Eiq '^[[:space:]]*(BEGIN|COMMIT|ROLLBACK|START[[:space:]]+TRANSACTION)[[:space:]]*;' "$f" ||
			grep -Eq '^[[:space:]]*[\\]' "$f"; then
			bad="$bad $(basename "$f")"
		fi
	done
	[ -z "$bad" ] || { echo "transaction control or psql meta-commands in:$bad"; return 1; }
}
tap_check "migration files contain no transaction control or psql meta-commands" no_txn_control

no_extensions() {
	local n
	n=$(pg tasker_template -At -c "SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'") || return 1
	[ "$n" = 0 ] || { echo "$n extension(s) installed"; return 1; }
	local m
	for m in $own_migrations; do
		! grep -iq 'create[[:space:]]\+extension' "$(migration_file "$m")" || { echo "CREATE EXTENSION in $m"; return 1; }
	done
}
tap_check "no extensions are created or needed" no_extensions

# Integration: every migration in the directory (other people's included).
all_migrations=""
for f in "$migrations"/[0-9][0-9][0-9][0-9]_*.sql; do
	[ -e "$f" ] && all_migrations="$all_migrations $(basename "$f" | cut -c1-4)"
done
if [ "$all_migrations" != " $own_migrations" ]; then
	pg postgres -c "CREATE DATABASE tasker_all" >/dev/null
	# shellcheck disable=SC2086
	tap_check "all migrations in the directory apply in order:$all_migrations" \
		apply_migrations tasker_all $all_migrations
else
	tap_n=$((tap_n + 1))
	echo "ok $tap_n - all migrations in the directory apply in order # SKIP no other migrations present"
fi

if [ "$tap_failed" -ne 0 ]; then
	echo "Bail out! migrations do not apply"
	sed 's/^/# /' "$work/server.log"
	exit 1
fi

pg tasker_template -f "$here/lib/tap.sql" >/dev/null || { echo "Bail out! tap.sql failed"; exit 1; }
# Test files whose first line says "-- migrations: all" run on a copy of
# the database with every migration of the directory (the engine's batch
# functions of 0010 need the queues of 0004 and the worker functions of 0007).
if ! pg postgres -At -c "SELECT 1 FROM pg_database WHERE datname = 'tasker_all'" | grep -q 1; then
	pg postgres -c "CREATE DATABASE tasker_all" >/dev/null
	# shellcheck disable=SC2086
	apply_migrations tasker_all $all_migrations >/dev/null || { echo "Bail out! migrations do not apply"; exit 1; }
fi
pg tasker_all -f "$here/lib/tap.sql" >/dev/null || { echo "Bail out! tap.sql failed"; exit 1; }

# --------------------------------------------------------------- test files
if [ $# -gt 0 ]; then files=("$@"); else files=("$here"/[0-9]*.sql); fi
db_n=0
for f in "${files[@]}"; do
	db_n=$((db_n + 1))
	db=tasker_test_$db_n
	name=$(basename "$f")
	template=tasker_template
	if head -n 1 "$f" | grep -q -- '-- migrations: all'; then template=tasker_all; fi
	pg postgres -c "CREATE DATABASE $db TEMPLATE $template" >/dev/null
	out=$(pg "$db" -At -f "$f" 2>"$work/stderr")
	rc=$?
	echo "# $name"
	tap_relay <<<"$out"
	if [ $rc -eq 0 ]; then
		tap_ok "$name ran to the end"
	else
		tap_not_ok "$name ran to the end" "$(cat "$work/stderr")"
	fi
	pg postgres -c "DROP DATABASE $db" >/dev/null
done

# ------------------------------------------------------ multi-session tests
if [ $# -eq 0 ]; then
	# shellcheck source=t/sql/concurrent.sh
	. "$here/concurrent.sh"
fi

tap_done
