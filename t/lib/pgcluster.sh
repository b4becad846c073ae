#!/bin/sh
# pgcluster.sh COMMAND DIR: a private, throw-away PostgreSQL cluster for tests.
#
#   start DIR     initdb (first time) and start; prints the conninfo of the
#                 database "tasker" (created if missing), e.g.
#                 "host=DIR dbname=tasker"
#   stop DIR      fast shutdown (sessions are terminated); no-op if not running
#   restart DIR   stop, then start (for "database restarted under load" tests)
#   status DIR    exit 0 if running
#   bindir        print the directory of the PostgreSQL programs used
#
# Layout: DIR/data (the cluster), DIR/postgres.log, and the Unix socket
# DIR/.s.PGSQL.5432; no TCP listener, so tests never fight over ports. Trust
# authentication; the superuser is named after the invoking user, so the
# conninfo needs no user=. PostgreSQL refuses to run as root: as root the
# server runs as the "postgres" user, which owns DIR (root still connects
# through the socket). Programs come from $PG_BINDIR, `pg_config --bindir`
# or the newest /usr/lib/postgresql/*/bin. Every wait is bounded (30 s).
set -eu

die() {
	echo "pgcluster.sh: $*" >&2
	exit 1
}

find_bindir() {
	if [ -n "${PG_BINDIR:-}" ] && [ -x "$PG_BINDIR/initdb" ]; then
		echo "$PG_BINDIR"
		return
	fi
	if command -v pg_config >/dev/null 2>&1; then
		b=$(pg_config --bindir 2>/dev/null || true)
		if [ -n "$b" ] && [ -x "$b/initdb" ]; then
			echo "$b"
			return
		fi
	fi
	newest=
	for b in /usr/lib/postgresql/*/bin; do
		[ -x "$b/initdb" ] || continue
		v=${b#/usr/lib/postgresql/}
		v=${v%/bin}
		if [ -z "$newest" ] || [ "$v" -gt "${newest_v:-0}" ] 2>/dev/null; then
			newest=$b
			newest_v=$v
		fi
	done
	if [ -n "$newest" ]; then
		echo "$newest"
		return
	fi
	die "PostgreSQL server programs not found (install the postgresql package, or set PG_BINDIR)"
}

# Runs a command as the user that owns the cluster.
as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

cmd=${1:-}
[ -n "$cmd" ] || die "usage: pgcluster.sh start|stop|restart|status DIR | bindir"
BIN=$(find_bindir)
if [ "$cmd" = bindir ]; then
	echo "$BIN"
	exit 0
fi
[ $# -eq 2 ] || die "usage: pgcluster.sh $cmd DIR"
mkdir -p "$2"
DIR=$(cd "$2" && pwd)
DATA=$DIR/data
LOG=$DIR/postgres.log
case $DIR in
*[!A-Za-z0-9_./-]*) die "$DIR: use a directory path without spaces or quotes" ;;
esac
# sun_path holds 107 bytes; the socket is DIR/.s.PGSQL.5432.
[ ${#DIR} -le 90 ] || die "$DIR: path too long for a Unix socket"

running() {
	[ -f "$DATA/postmaster.pid" ] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

do_start() {
	if [ "$(id -u)" -eq 0 ]; then
		id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (install postgresql)"
		chown postgres: "$DIR"
		[ ! -e "$DATA" ] || chown -R postgres: "$DATA"
		runuser -u postgres -- test -w "$DIR" ||
			die "$DIR: the postgres user cannot write here (are the parent directories traversable?)"
	fi
	if [ ! -f "$DATA/PG_VERSION" ]; then
		if ! as_owner "$BIN/initdb" -D "$DATA" -U "$(id -un)" -A trust -E UTF8 --no-locale \
			--no-sync >"$DIR/initdb.log" 2>&1; then
			cat "$DIR/initdb.log" >&2
			die "initdb failed"
		fi
	fi
	if ! running; then
		if ! as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 30 -o "-k $DIR \
-c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
-c max_connections=200" start >/dev/null; then
			tail -n 20 "$LOG" >&2 || true
			die "the server did not start"
		fi
	fi
	psql="$BIN/psql -X -q -v ON_ERROR_STOP=1 -h $DIR -d postgres"
	if [ "$($psql -tAc "SELECT 1 FROM pg_database WHERE datname = 'tasker'")" != 1 ]; then
		$psql -c "CREATE DATABASE tasker" >/dev/null
	fi
	echo "host=$DIR dbname=tasker"
}

do_stop() {
	if running; then
		as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 30 stop >/dev/null
	fi
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
restart)
	do_stop
	do_start
	;;
status) running ;;
*) die "unknown command $cmd" ;;
esac
