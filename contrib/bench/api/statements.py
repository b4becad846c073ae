#!/usr/bin/python3
"""Database round trips per API request, from a PostgreSQL log written with
log_min_duration_statement=0 and log_line_prefix='%m [%p] %a: '
(contrib/bench/api/run.sh).

    statements.py --requests N [--label TEXT] [--top K] postgres.log

Per program (application_name): round trips, transactions and server time
per request, and the sessions it opened (with log_connections = on); then
that program's statements by count. A round trip is one
"execute" (extended protocol: Parse/Bind/Execute/Sync go out together and
the client waits once) or one simple-protocol "statement", plus a separate
PQprepare of a named statement; a transaction is a BEGIN or a statement
outside BEGIN ... COMMIT. Server time sums the parse, bind and execute
durations. The log also holds what the programs do on their own (pollers,
the worker running the created tasks): the statement list tells them apart.
"""
import argparse
import collections
import re
import sys

LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] (.*?): LOG:  duration: ([0-9.]+) ms  "
                  r"(parse|bind|execute|statement)(?: ([^:]+))?: (.*)$")
CONNECT = re.compile(r"LOG:  connection authorized: .*application_name=(\S+)")
SKIP = ("psql", "tasker-migrate", "[unknown]")


def key_of(name, sql):
    if name and name != "<unnamed>":
        return name
    sql = " ".join(sql.split())
    return sql if len(sql) <= 90 else sql[:87] + "..."


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--top", type=int, default=8)
    ap.add_argument("log")
    a = ap.parse_args()

    trips, xacts, ms = collections.Counter(), collections.Counter(), collections.Counter()
    stmt_n, stmt_ms = collections.Counter(), collections.Counter()
    in_tx = {}
    sessions = collections.Counter()       # app -> sessions opened (log_connections)
    with open(a.log, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = LINE.match(line.rstrip("\n"))
            if not m:
                c = CONNECT.search(line)
                if c and c.group(1) not in SKIP:
                    sessions[c.group(1)] += 1
                continue
            pid, app, dur, phase, name, sql = m.groups()
            app = app or "(none)"
            if app in SKIP:
                continue
            key = key_of(name, sql)
            d = float(dur)
            ms[app] += d
            stmt_ms[(app, key)] += d
            named = name and name != "<unnamed>"
            if phase in ("execute", "statement") or (phase == "parse" and named):
                trips[app] += 1
                if phase == "parse":
                    continue
                stmt_n[(app, key)] += 1
                word = " ".join(sql.split()).upper()
                if word in ("BEGIN", "START TRANSACTION"):
                    xacts[app] += 1
                    in_tx[pid] = True
                elif word in ("COMMIT", "ROLLBACK", "END"):
                    in_tx[pid] = False
                elif not in_tx.get(pid):
                    xacts[app] += 1

    n = max(a.requests, 1)
    print("-- %s: %d requests" % (a.label, a.requests))
    print("   %-16s %12s %12s %14s %14s" % ("program", "trips/req", "xacts/req",
                                          "server ms/req", "new sessions"))
    for app in sorted(trips, key=lambda x: -trips[x]):
        print("   %-16s %12.2f %12.2f %14.3f %14d" % (app, trips[app] / n, xacts[app] / n,
                                                     ms[app] / n, sessions[app]))
    for app in sorted(trips, key=lambda x: -trips[x]):
        rows = sorted(((k[1], c) for k, c in stmt_n.items() if k[0] == app),
                      key=lambda kc: -kc[1])
        print("   %s, statements by count (per request, server ms per request):" % app)
        for key, c in rows[:a.top]:
            print("   %8.2f %8.3f  %s" % (c / n, stmt_ms[(app, key)] / n, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
