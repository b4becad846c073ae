#!/usr/bin/python3
"""Prints the comparison table of run.sh from its results file.

usage: summarize.py RESULTS.tsv

RESULTS.tsv has a header line and one row per (round, server, shape) with
the columns named in COLUMNS.  With several rounds every figure is the
median over the rounds.  Ratios are ours/peer: above 1 means ours has more
QPS, below 1 means ours has lower latency.
"""
import statistics
import sys

COLUMNS = ["round", "server", "shape", "qps", "p50_us", "p99_us", "mean_us",
           "srv_cpu_pct", "cli_cpu_pct", "other_cpu_pct", "requests", "errors"]


def fmt_us(us):
    if us >= 10000:
        return "%.1fms" % (us / 1000.0)
    if us >= 1000:
        return "%.2fms" % (us / 1000.0)
    return "%dus" % round(us)


def ratio(a, b):
    return "%.2fx" % (a / b) if b else "n/a"


def main():
    rows = []
    with open(sys.argv[1]) as f:
        header = f.readline().rstrip("\n").split("\t")
        assert header == COLUMNS, header
        for line in f:
            rows.append(dict(zip(COLUMNS, line.rstrip("\n").split("\t"))))

    shapes = []
    for r in rows:
        if r["shape"] not in shapes:
            shapes.append(r["shape"])

    def agg(server, shape):
        sel = [r for r in rows if r["server"] == server and r["shape"] == shape]
        if not sel:
            return None
        out = {"rounds": len(sel)}
        for k in ("qps", "p50_us", "p99_us", "mean_us", "srv_cpu_pct",
                  "cli_cpu_pct", "other_cpu_pct"):
            out[k] = statistics.median(float(r[k]) for r in sel)
        # requests per second of server CPU: less sensitive to a busy
        # machine than QPS, as long as the server is the bottleneck
        out["per_cpu"] = statistics.median(
            float(r["qps"]) * 100.0 / float(r["srv_cpu_pct"])
            if float(r["srv_cpu_pct"]) > 0 else 0.0 for r in sel)
        out["requests"] = sum(int(r["requests"]) for r in sel)
        out["errors"] = sum(int(r["errors"]) for r in sel)
        return out

    line = "%-7s %-6s %9s %9s %9s %9s %10s %8s %8s %6s %10s %6s"
    print(line % ("shape", "server", "QPS", "p50", "p99", "mean", "req/cpu-s",
                  "srv-cpu", "cli-cpu", "other", "requests", "errors"))
    for shape in shapes:
        res = {}
        for server in ("ours", "peer"):
            a = agg(server, shape)
            res[server] = a
            if a is None:
                continue
            print(line % (shape, server, "%.0f" % a["qps"], fmt_us(a["p50_us"]),
                          fmt_us(a["p99_us"]), fmt_us(a["mean_us"]),
                          "%.0f" % a["per_cpu"],
                          "%.0f%%" % a["srv_cpu_pct"], "%.0f%%" % a["cli_cpu_pct"],
                          "%.0f%%" % a["other_cpu_pct"], a["requests"], a["errors"]))
        o, p = res.get("ours"), res.get("peer")
        if o and p:
            print(line % (shape, "ratio", ratio(o["qps"], p["qps"]),
                          ratio(o["p50_us"], p["p50_us"]),
                          ratio(o["p99_us"], p["p99_us"]),
                          ratio(o["mean_us"], p["mean_us"]),
                          ratio(o["per_cpu"], p["per_cpu"]), "", "", "", "", ""))
    print()
    print("ratio     = ours/peer (QPS, req/cpu-s: >1 means ours is better; latency: <1 means ours is lower)")
    print("req/cpu-s = requests per second of server CPU time (QPS / srv-cpu)")
    print("srv-cpu   = server CPU time / wall time (pinned to one CPU, so 100% = saturated)")
    print("cli-cpu   = the same for h2load: near 100% means the client, not the server, is the limit")
    print("other     = CPU time taken on those two CPUs by anything else (other processes,")
    print("            hypervisor steal), in % of one CPU: above ~10% the figures are noisy")
    noisy = [r for r in rows if float(r["other_cpu_pct"]) >= 10]
    if noisy:
        print("WARNING: %d of %d runs shared their CPUs with other work (other >= 10%%);"
              % (len(noisy), len(rows)))
        print("         QPS and latency are unreliable, req/cpu-s less so: rerun on a quiet machine")
    if any(int(r["errors"]) for r in rows):
        print("WARNING: some runs had failed/errored/non-200 requests (see above)")


if __name__ == "__main__":
    sys.exit(main())
