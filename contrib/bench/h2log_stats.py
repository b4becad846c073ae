#!/usr/bin/python3
"""Latency percentiles from an h2load --log-file.

usage: h2log_stats.py LOGFILE

h2load writes one tab-separated row per request: start time (us since the
epoch), HTTP status (-1 for a failed stream), microseconds until the end of
the response.  Only the measurement phase is logged (not --warm-up-time).

Prints one line of key=value pairs:
  n=<rows> ok=<rows with status 200> mean_us= p50_us= p90_us= p99_us=
  p999_us= max_us=
Percentiles use the nearest-rank method over all rows with status 200.
"""
import math
import sys


def pct(sorted_vals, p):
    if not sorted_vals:
        return 0
    rank = max(1, math.ceil(p / 100.0 * len(sorted_vals)))
    return sorted_vals[rank - 1]


def main():
    if len(sys.argv) != 2:
        print("usage: h2log_stats.py LOGFILE", file=sys.stderr)
        return 2
    n = 0
    lat = []
    with open(sys.argv[1], "rb") as f:
        for line in f:
            parts = line.split(b"\t")
            if len(parts) < 3:
                continue
            n += 1
            if parts[1] == b"200":
                lat.append(int(parts[2]))
    lat.sort()
    mean = sum(lat) / len(lat) if lat else 0
    print("n=%d ok=%d mean_us=%d p50_us=%d p90_us=%d p99_us=%d p999_us=%d "
          "max_us=%d" % (n, len(lat), round(mean), pct(lat, 50), pct(lat, 90),
                         pct(lat, 99), pct(lat, 99.9), lat[-1] if lat else 0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
