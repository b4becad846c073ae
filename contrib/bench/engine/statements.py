#!/usr/bin/python3
"""Counts the statements of an analysis batch in a PostgreSQL log written
with log_min_duration_statement=0 and log_line_prefix='%m [%p] %a: '
(contrib/bench/engine/run.sh --analyze).

    statements.py --steps S --tasks T [--functions FILE] postgres.log

Per program (application_name): round trips, transactions and the server
time of its statements, per step; then its statements, most expensive
first. A transaction is a BEGIN, or a statement run outside BEGIN ... COMMIT
(autocommit: the batch functions of migration 0010 are one statement each). A round trip is one "execute" (extended protocol: libpq sends
Parse/Bind/Execute/Sync, or Bind/Execute/Sync for a prepared statement, in
one go and waits once) or one simple-protocol "statement", plus the
separate PQprepare of a named statement. Server time is the sum of the
parse, bind and execute durations. --functions: pg_stat_user_functions
rows (name|calls|total ms|self ms) printed as calls and time per step.
"""
import argparse
import collections
import re
import sys

LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] (.*?): LOG:  duration: ([0-9.]+) ms  "
                  r"(parse|bind|execute|statement)(?: ([^:]+))?: (.*)$")


def key_of(name, sql):
    if name and name != "<unnamed>":
        return name
    sql = " ".join(sql.split())
    return sql if len(sql) <= 72 else sql[:69] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--tasks", type=int, required=True)
    ap.add_argument("--functions")
    ap.add_argument("log")
    a = ap.parse_args()

    trips = collections.Counter()          # app -> round trips
    xacts = collections.Counter()          # app -> transactions
    in_tx = {}                             # pid -> inside BEGIN ... COMMIT
    ms = collections.Counter()             # app -> server ms
    stmt_n = collections.Counter()         # (app, key) -> executions
    stmt_ms = collections.Counter()        # (app, key) -> server ms
    with open(a.log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                continue
            pid, app, dur, phase, name, sql = m.groups()
            app = app or "(none)"
            if app in ("psql", "sqlbench", "tasker-migrate"):
                continue
            key = key_of(name, sql)
            d = float(dur)
            ms[app] += d
            stmt_ms[(app, key)] += d
            named = name and name != "<unnamed>"
            if phase in ("execute", "statement") or (phase == "parse" and named):
                trips[app] += 1
                if phase != "parse":
                    stmt_n[(app, key)] += 1
                word = " ".join(sql.split()).upper()
                if phase == "parse":
                    pass
                elif word in ("BEGIN", "START TRANSACTION"):
                    xacts[app] += 1
                    in_tx[pid] = True
                elif word in ("COMMIT", "ROLLBACK", "END"):
                    in_tx[pid] = False
                elif not in_tx.get(pid):
                    xacts[app] += 1

    steps, tasks = a.steps, a.tasks
    print("-- per program: %d steps of %d tasks" % (steps, tasks))
    print("%-16s %11s %9s %9s %13s %11s %11s" % ("program", "round trips", "per step", "per task",
                                                "transactions", "per step", "server ms/step"))
    for app in sorted(trips, key=lambda x: -trips[x]):
        print("%-16s %11d %9.2f %9.2f %13d %11.2f %11.3f" % (
            app, trips[app], trips[app] / steps, trips[app] / tasks, xacts[app],
            xacts[app] / steps, ms[app] / steps))
    total = sum(trips.values())
    print("%-16s %11d %9.2f %9.2f %13d %11.2f %11.3f" % (
        "all", total, total / steps, total / tasks, sum(xacts.values()),
        sum(xacts.values()) / steps, sum(ms.values()) / steps))

    for app in sorted(trips, key=lambda x: -ms[x]):
        print()
        print("-- %s: statements by server time (%.0f ms in all)" % (app, ms[app]))
        print("%8s %9s %9s %7s  %s" % ("calls", "per step", "ms/step", "share", "statement"))
        rows = [(k, v) for k, v in stmt_ms.items() if k[0] == app]
        rows.sort(key=lambda kv: -kv[1])
        for (a_, key), t in rows[:14]:
            n = stmt_n[(a_, key)]
            print("%8d %9.2f %9.4f %6.1f%%  %s" % (n, n / steps, t / steps,
                                                  100 * t / ms[app] if ms[app] else 0, key))

    if a.functions:
        print()
        print("-- functions (pg_stat_user_functions, track_functions=all), by self time;")
        print("   SQL functions inlined into the calling query are not counted separately")
        print("%8s %9s %12s %12s  %s" % ("calls", "per step", "total ms/st", "self ms/st", "function"))
        with open(a.functions, encoding="utf-8") as f:
            rows = [r.rstrip("\n").split("|") for r in f if r.count("|") == 3]
        for name, calls, tot, self_ in rows[:18]:
            print("%8s %9.2f %12.4f %12.4f  %s" % (calls, int(calls) / steps, float(tot) / steps,
                                                  float(self_) / steps, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
