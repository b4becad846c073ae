#!/usr/bin/python3
"""Resilience of the client runtime (trpc_channel), driven through
t/progs/client-probe against interop-server and t/progs/flaky-server
instances on 127.0.0.1: load balancing (round robin, least loaded, random),
fail-over and the circuit breaker when an endpoint dies and comes back,
retries (codes, budget, deadline, server pushback), and the error text of
TLS failures (wrong CA, expired certificate, hostname, mTLS without a
certificate). Prints TAP.
"""
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402

TIME_LIMIT = 85  # seconds for the whole file
tap = harness.Tap()
TMP = tempfile.mkdtemp(prefix="tasker-61-client-")
PROBE = "t/progs/client-probe"
FLAKY = "t/progs/flaky-server"
SERVER_ARGS = ["--port", "0", "--server.io_threads=1", "--server.workers=2"]

try:
    harness.program(PROBE)
    harness.program(FLAKY)
except FileNotFoundError as e:
    tap.skip_all(str(e))


def on_alarm(signum, frame):
    print("Bail out! time limit of %d s reached" % TIME_LIMIT, flush=True)
    sys.exit(1)  # atexit in harness kills the servers


signal.signal(signal.SIGALRM, on_alarm)
signal.alarm(TIME_LIMIT)


# ------------------------------------------------------------------ probe

class ProbeError(Exception):
    pass


class Probe:
    """A running client-probe: cmd() sends one command and returns its JSON
    answer. Its stderr (runtime log) is kept for diagnostics."""

    def __init__(self, name):
        self.errpath = os.path.join(TMP, "probe-%s.log" % name)
        self.err = open(self.errpath, "wb")
        level = "debug" if os.environ.get("TASKER_TEST_VERBOSE") else "warn"
        self.proc = subprocess.Popen([harness.program(PROBE), "--log=" + level],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err)
        harness._procs.append(self.proc)
        self.lines = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def log_tail(self, n=15):
        try:
            with open(self.errpath, "rb") as f:
                return "\n".join(f.read().decode("utf-8", "replace").splitlines()[-n:])
        except OSError:
            return ""

    def cmd(self, line, timeout=20):
        try:
            self.proc.stdin.write((line + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ProbeError("probe is gone (exit %s) before %r\n%s"
                             % (self.proc.poll(), line, self.log_tail()))
        try:
            out = self.lines.get(timeout=timeout)
        except queue.Empty:
            self.proc.kill()
            raise ProbeError("no answer to %r within %d s\n%s" % (line, timeout, self.log_tail()))
        if out is None:
            raise ProbeError("probe died (exit %s) on %r\n%s"
                             % (self.proc.wait(), line, self.log_tail()))
        return json.loads(out)

    def checked(self, line, timeout=20):
        """cmd() for commands that must run ("ok":false with an error raises)."""
        r = self.cmd(line, timeout)
        if r.get("ok") is False and "error" in r:
            raise ProbeError("%s -> %s" % (line, r["error"]))
        return r

    def stats(self):
        r = self.checked("stats")
        r["by_name"] = {e["name"]: e for e in r["endpoints"]}
        return r

    def close(self):
        if self.proc.poll() is None:
            try:
                self.cmd("quit", timeout=10)
            except (ProbeError, OSError):
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.err.close()
        return self.proc.returncode


def close_probe(p):
    """Quits the probe: trpc_channel_free() with connections open must
    return, and a sanitizer build must find nothing to report."""
    rc = p.close()
    tap.ok(rc == 0, "client-probe (%s) exits 0" % os.path.basename(p.errpath),
           "exit %s\n%s" % (rc, p.log_tail()))


def group(fn):
    """Runs one scenario; an exception (a dead or stuck probe, a server
    that does not start) becomes one failed test point."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every failure as a TAP line
        import traceback
        tap.ok(False, "%s ran to the end" % fn.__name__,
               "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))


def ep(port):
    return "127.0.0.1:%d" % port


def start(name, extra=(), **kw):
    return harness.start_server(name, list(SERVER_ARGS) + list(extra), **kw)


def all_ok(r, n):
    return r.get("ok") == n and r.get("failed") == 0


# ------------------------------------------------------------------ load balancing

def test_load_balancing():
    servers = [start("interop-server") for _ in range(3)]
    names = [ep(s.port) for s in servers]
    target = ",".join(names)
    p = Probe("lb")
    try:
        # Endpoints connect lazily: a few calls and a pause first, so that
        # the count does not depend on how connecting is overlapped.
        p.checked("channel %s round_robin" % target)
        r = p.checked("calls 3 empty 5000")
        p.checked("sleep 100")
        before = p.stats()
        r = p.checked("calls 30 empty 5000")
        tap.ok(all_ok(r, 30), "round_robin: 30 EmptyCalls succeed", r)
        st = p.stats()
        counts = {n: st["by_name"][n]["calls"] - before["by_name"][n]["calls"] for n in names}
        tap.ok(all(9 <= c <= 11 for c in counts.values()),
               "round_robin: each endpoint gets 10 +- 1 of 30 calls", [counts, before, st])
        tap.ok(r["endpoints"] == counts,
               "round_robin: per-command endpoint counts agree with the stats", [r, counts])

        p.checked("channel %s least_loaded" % target)
        r = p.checked("parallel 90 6 empty 5000")
        tap.ok(all_ok(r, 90), "least_loaded: 90 parallel EmptyCalls succeed", r)
        tap.ok(all(r["endpoints"].get(n, 0) > 0 for n in names),
               "least_loaded: parallel calls reach all three endpoints", r)

        p.checked("channel %s random" % target)
        r = p.checked("calls 60 empty 5000")
        tap.ok(all_ok(r, 60), "random: 60 EmptyCalls succeed", r)
        tap.ok(all(r["endpoints"].get(n, 0) > 0 for n in names),
               "random: all three endpoints used over 60 calls", r)
    finally:
        close_probe(p)
        for s in servers:
            s.stop()

    # Calls that take 100 ms: each server should hold about one of the
    # three in flight, so least_loaded splits 30 calls about evenly.
    flaky = [start(FLAKY, ["--name", "f%d" % i]) for i in range(3)]
    p = Probe("lb-slow")
    try:
        p.checked("channel %s least_loaded" % ",".join(ep(s.port) for s in flaky))
        r = p.checked("parallel 30 3 flaky:slow:0:0:0:100 10000", timeout=30)
        tap.ok(all_ok(r, 30), "least_loaded: 30 slow calls from 3 threads succeed", r)
        tap.ok(all(r["servers"].get("f%d" % i, 0) >= 5 for i in range(3)),
               "least_loaded: slow calls spread over the three servers (>= 5 each)", r)
    finally:
        close_probe(p)
        for s in flaky:
            s.stop()


# ------------------------------------------------------------------ fail-over, circuit breaker

FAILURE_THRESHOLD = 2
OPEN_TIMEOUT_MS = 1000


def test_failover():
    servers = [start("interop-server") for _ in range(3)]
    names = [ep(s.port) for s in servers]
    dead_port = servers[0].port
    dead = names[0]
    p = Probe("failover")
    try:
        p.checked("channel %s round_robin failure_threshold=%d open_timeout_ms=%d "
                  "reconnect_initial_backoff_ms=100 reconnect_max_backoff_ms=300 "
                  "connect_timeout_ms=1000 initial_backoff_ms=20 max_backoff_ms=100"
                  % (",".join(names), FAILURE_THRESHOLD, OPEN_TIMEOUT_MS))
        r = p.checked("calls 9 empty 3000")
        tap.ok(all_ok(r, 9), "fail-over: calls succeed with three servers", r)

        before = p.stats()["by_name"][dead]["calls"]
        servers[0].stop(signal.SIGKILL)
        r = p.checked("calls 30 empty 3000")
        tap.ok(all_ok(r, 30),
               "fail-over: after SIGKILL of one server, 30 calls all succeed (retried "
               "on the others)", r)
        # Failed reconnects count as failures too; they come at the pace of
        # the reconnect backoff, so keep calling until the circuit opens.
        failures = [] if all_ok(r, 30) else [r]
        deadline = time.time() + 3
        while True:
            st = p.stats()
            if st["by_name"][dead]["circuit"] == "open" or time.time() > deadline:
                break
            p.checked("sleep 50")
            r = p.checked("calls 3 empty 3000")
            if not all_ok(r, 3):
                failures.append(r)
        tap.ok(st["by_name"][dead]["circuit"] == "open",
               "fail-over: the dead endpoint's circuit opens", st)
        tap.ok(not failures, "fail-over: no call fails while it does", failures)
        tap.ok(st["by_name"][dead]["calls"] - before <= FAILURE_THRESHOLD,
               "fail-over: the dead endpoint got at most failure_threshold calls "
               "before its circuit opened", [before, st])
        tap.ok(st["metrics"]["circuit_opened"] >= 1, "fail-over: circuit_opened counted", st)
        tap.ok(all(st["by_name"][n]["circuit"] == "closed" for n in names[1:]),
               "fail-over: the live endpoints' circuits stay closed", st)

        p.checked("sleep %d" % (OPEN_TIMEOUT_MS + 300))
        st = p.stats()
        tap.ok(st["by_name"][dead]["circuit"] == "half_open",
               "fail-over: the circuit is half_open after open_timeout_ms", st)
        r = p.checked("calls 9 empty 3000")
        tap.ok(all_ok(r, 9), "fail-over: calls succeed while the half-open probe fails", r)
        st = p.stats()
        tap.ok(st["metrics"]["circuit_half_opened"] >= 1,
               "fail-over: circuit_half_opened counted", st)
        tap.ok(st["by_name"][dead]["circuit"] in ("open", "half_open"),
               "fail-over: a failed probe does not close the circuit", st)

        servers[0] = start("interop-server", ["--port", str(dead_port)])
        before = st["by_name"][dead]["calls"]
        failures = []
        deadline = time.time() + 8
        while time.time() < deadline:
            p.checked("sleep 200")
            r = p.checked("calls 9 empty 3000")
            if not all_ok(r, 9):
                failures.append(r)
            st = p.stats()
            if st["by_name"][dead]["circuit"] == "closed" and \
                    st["by_name"][dead]["calls"] > before:
                break
        tap.ok(not failures, "recovery: calls succeed while the server comes back", failures)
        tap.ok(st["by_name"][dead]["calls"] > before,
               "recovery: the restarted server on the same port gets calls again", st)
        tap.ok(st["by_name"][dead]["circuit"] == "closed",
               "recovery: its circuit closes again", st)
        tap.ok(st["metrics"]["circuit_closed"] >= 1, "recovery: circuit_closed counted", st)
        r = p.checked("calls 30 empty 3000")
        tap.ok(all_ok(r, 30) and all(9 <= r["endpoints"].get(n, 0) <= 11 for n in names),
               "recovery: round robin spreads over all three again", r)
    finally:
        close_probe(p)
        for s in servers:
            s.stop()


# ------------------------------------------------------------------ retries

def test_retries():
    srv = start(FLAKY, ["--name", "f1"])
    target = ep(srv.port)
    p = Probe("retry")
    try:
        p.checked("channel %s round_robin max_retries=3 initial_backoff_ms=20 "
                  "max_backoff_ms=100" % target)
        r0 = p.stats()["metrics"]["retries"]
        r = p.checked("calls 1 flaky:twice:2:14 5000")
        tap.ok(all_ok(r, 1) and r["last_attempt"] == 3 and r["servers"] == {"f1": 1},
               "retry: two UNAVAILABLE attempts, then OK on attempt 3", r)
        r1 = p.stats()["metrics"]["retries"]
        tap.ok(r1 == r0 + 2, "retry: the retries metric grows by 2 (%d -> %d)" % (r0, r1))

        r = p.checked("calls 1 flaky:invalid:2:3 5000")
        tap.ok(r["failed"] == 1 and r["codes"] == {"INVALID_ARGUMENT": 1},
               "retry: INVALID_ARGUMENT is not retried and reaches the caller", r)
        tap.ok(any("planned failure 1 of 2" in m for m in r["messages"]),
               "retry: the server's status message reaches the caller", r)
        r2 = p.stats()["metrics"]["retries"]
        tap.ok(r2 == r1, "retry: retries metric unchanged by a non-retryable status")

        r = p.checked("calls 1 flaky:many:10:14 5000")
        tap.ok(r["codes"] == {"UNAVAILABLE": 1} and
               any("planned failure 4 of 10" in m for m in r["messages"]),
               "retry: max_retries=3 stops after the 4th attempt with UNAVAILABLE", r)
        r3 = p.stats()["metrics"]["retries"]
        tap.ok(r3 == r2 + 3, "retry: an exhausted budget counts 3 retries (%d -> %d)" % (r2, r3))

        # A backoff longer than the time left: the call must end at its
        # deadline, not after the backoff.
        p.checked("channel %s round_robin max_retries=4 initial_backoff_ms=500 "
                  "max_backoff_ms=2000" % target)
        r = p.checked("calls 1 flaky:deadline:5:14 150")
        tap.ok(r["failed"] == 1 and set(r["codes"]) <= {"DEADLINE_EXCEEDED", "UNAVAILABLE"},
               "retry: deadline shorter than the backoff fails with DEADLINE_EXCEEDED or "
               "UNAVAILABLE", r)
        tap.ok(r["elapsed_ms"] < 400,
               "retry: ... after %s ms, not after the 500 ms backoff" % r["elapsed_ms"], r)

        p.checked("channel %s round_robin max_retries=3 initial_backoff_ms=10 "
                  "max_backoff_ms=50" % target)
        r = p.checked("calls 1 flaky:nopush:1:14 5000")
        tap.ok(all_ok(r, 1) and r["last_attempt"] == 2 and r["elapsed_ms"] < 300,
               "pushback: without a hint the retry comes after the short backoff", r)
        r = p.checked("calls 1 flaky:push:1:14:400 5000")
        tap.ok(all_ok(r, 1) and r["last_attempt"] == 2,
               "pushback: the call succeeds on attempt 2", r)
        tap.ok(380 <= r["elapsed_ms"] < 2000,
               "pushback: grpc-retry-pushback-ms 400 delays the retry (%s ms)"
               % r["elapsed_ms"], r)
    finally:
        close_probe(p)
        srv.stop()


# ------------------------------------------------------------------ TLS errors

def make_pki(name):
    d = os.path.join(TMP, name)
    subprocess.run(["sh", os.path.join(harness.TOP_SRCDIR, "t", "lib", "mkcerts.sh"), d],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d


def make_expired(pki):
    """A server certificate from the PKI's CA whose notAfter is a day ago
    (openssl x509 -req takes a negative -days)."""
    ext = os.path.join(pki, "expired.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    csr = os.path.join(pki, "expired.csr")
    out = os.path.join(pki, "expired.pem")
    subprocess.run(["openssl", "req", "-new", "-key", os.path.join(pki, "server.key"),
                    "-subj", "/CN=localhost", "-out", csr],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", os.path.join(pki, "ca.pem"),
                    "-CAkey", os.path.join(pki, "ca.key"), "-CAcreateserial", "-days", "-1",
                    "-sha256", "-extfile", ext, "-out", out],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    chk = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(pki, "ca.pem"), out],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if b"expired" not in chk.stdout:
        raise RuntimeError("could not make an expired certificate: %r" % chk.stdout)
    return out


def tls_server(pki, cert, extra=()):
    return start("interop-server", ["--use_tls", "--tls_cert_file", cert,
                                    "--tls_key_file", os.path.join(pki, "server.key")]
                 + list(extra), want_tls=True)


def tls_call(p, port, opts):
    p.checked("channel %s round_robin use_tls=1 max_retries=0 connect_timeout_ms=3000 "
              "reconnect_initial_backoff_ms=100 %s" % (ep(port), opts))
    return p.checked("calls 1 empty 5000")


def failed_with(r, pattern):
    return r["failed"] == 1 and any(re.search(pattern, m, re.I) for m in r["messages"])


def test_tls_errors():
    good = make_pki("pki")
    other = make_pki("other-pki")
    expired = make_expired(good)
    ca = "ca_file=" + os.path.join(good, "ca.pem")
    sni = "server_name=localhost"
    servers = []
    p = Probe("tls")
    try:
        srv = tls_server(good, os.path.join(good, "server.pem"))
        servers.append(srv)
        r = tls_call(p, srv.tls_port, "%s %s" % (ca, sni))
        tap.ok(all_ok(r, 1), "TLS: the right CA verifies the server", r)
        r = tls_call(p, srv.tls_port, "ca_file=%s %s" % (os.path.join(other, "ca.pem"), sni))
        tap.ok(failed_with(r, r"verif"),
               "TLS: a wrong CA fails with a certificate verification error", r)
        r = tls_call(p, srv.tls_port, "%s server_name=not-this-host.example" % ca)
        tap.ok(failed_with(r, r"host ?name|mismatch|verif"),
               "TLS: a name not in the certificate fails verification", r)

        srv = tls_server(good, expired)
        servers.append(srv)
        r = tls_call(p, srv.tls_port, "%s %s" % (ca, sni))
        tap.ok(failed_with(r, r"expired"), "TLS: an expired server certificate is reported "
               "as expired", r)

        srv = tls_server(good, os.path.join(good, "server.pem"),
                         ["--tls.client_auth=require",
                          "--tls.client_ca_file=" + os.path.join(good, "ca.pem")])
        servers.append(srv)
        r = tls_call(p, srv.tls_port, "%s %s" % (ca, sni))
        tap.ok(failed_with(r, r"certificate required|handshake|alert"),
               "mTLS: without a client certificate the error names the handshake / "
               "missing certificate", r)
        r = tls_call(p, srv.tls_port, "%s %s client_cert_file=%s client_key_file=%s"
                     % (ca, sni, os.path.join(good, "client.pem"),
                        os.path.join(good, "client.key")))
        tap.ok(all_ok(r, 1), "mTLS: with a client certificate the call succeeds", r)
    finally:
        close_probe(p)
        for s in servers:
            s.stop()


# ------------------------------------------------------------------ GOAWAY

def test_goaway():
    """A server that retires connections (max_connection_age -> GOAWAY):
    the channel reconnects for new calls and no call fails."""
    srv = start("interop-server", ["--keepalive.max_connection_age=300ms",
                                   "--keepalive.max_connection_age_grace=2s"])
    p = Probe("goaway")
    try:
        p.checked("channel %s round_robin keepalive_time_ms=100" % ep(srv.port))
        c0 = p.stats()["metrics"]["connects"]
        ok = failed = 0
        for _ in range(8):
            r = p.checked("calls 5 empty 5000")
            ok += r["ok"]
            failed += r["failed"]
            p.checked("sleep 150")
        c1 = p.stats()["metrics"]["connects"]
        tap.ok(ok == 40 and failed == 0, "GOAWAY: every call succeeds across connection "
               "retirements (%d ok, %d failed)" % (ok, failed))
        tap.ok(c1 - c0 >= 2, "GOAWAY: the channel opened new connections (%d)" % (c1 - c0))
    finally:
        close_probe(p)
        srv.stop()


# ------------------------------------------------------------------ main

try:
    for t in (test_load_balancing, test_failover, test_retries, test_tls_errors, test_goaway):
        group(t)
finally:
    signal.alarm(0)
    shutil.rmtree(TMP, ignore_errors=True)
tap.done()
