#!/usr/bin/python3
"""Prometheus metrics of the server runtime, end to end: interop-server and
t/progs/trace-relay with [metrics] listen, a known number of calls of every
kind and several outcomes made with grpcio, the /metrics text checked
directly (HTTP details, HELP/TYPE lines, values, label escaping), then a
real Prometheus (/usr/bin/prometheus, 1 s scrape interval, private
storage) scraping both until its HTTP API returns the expected series with
the expected values. Prints TAP.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
from harness import field, status_request  # noqa: E402
from harness import spawn as start  # noqa: E402

tap, grpc = harness.grpc_test()
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"

TMP = tempfile.mkdtemp(prefix="tasker-97-prom-")
SVC = "/grpc.testing.TestService/"
ESCAPED_VALUE = 'a"b\\c\nd \u00e9'


# ------------------------------------------------------------------ messages

def output_request(sizes, interval_us=0):
    """StreamingOutputCallRequest: one response of each size."""
    return b"".join(field(2, 2, field(1, 0, s) + (field(2, 0, interval_us) if interval_us else b""))
                    for s in sizes)


def input_request(n):
    """StreamingInputCallRequest with an n-byte payload."""
    return field(1, 2, field(2, 2, b"x" * n))


# ------------------------------------------------------------------ helpers

def wait_for(fn, timeout=10):
    return harness.wait_for(fn, timeout, interval=0.1)


def metrics_port(srv, timeout=20):
    def find():
        for ln in list(srv.lines):
            m = re.search(r"metrics listening on 127\.0\.0\.1:(\d+)", ln)
            if m:
                return int(m.group(1))
        return None
    return wait_for(find, timeout)


def http(method, url, timeout=10):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')


def unescape(v):
    return re.sub(r'\\(.)', lambda m: {"n": "\n", "\\": "\\", '"': '"'}[m.group(1)], v)


def parse_exposition(text):
    """Returns (families {name: (type, help)}, samples [(name, {labels}, value)]);
    raises on a line that breaks the text format."""
    families, samples, seen_samples = {}, [], set()
    for ln in text.split("\n"):
        if ln == "":
            continue
        if ln.startswith("# HELP ") or ln.startswith("# TYPE "):
            _, kind, name, rest = ln.split(" ", 3)
            if name in seen_samples:
                raise ValueError("%s after its samples: %r" % (kind, ln))
            t, h = families.get(name, (None, None))
            families[name] = (rest, h) if kind == "TYPE" else (t, rest)
            continue
        m = SAMPLE.match(ln)
        if not m:
            raise ValueError("bad line %r" % ln)
        labels, pos = {}, 0
        body = m.group(2) or ""
        while pos < len(body):
            lm = LABEL.match(body, pos)
            if not lm:
                raise ValueError("bad labels in %r" % ln)
            labels[lm.group(1)] = unescape(lm.group(2))
            pos = lm.end()
        name = m.group(1)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        seen_samples.add(name if name in families else base)
        samples.append((name, labels, float(m.group(3))))
    return families, samples


def value(samples, name, **labels):
    vals = [v for n, l, v in samples if n == name and all(l.get(k) == w for k, w in labels.items())]
    return sum(vals) if vals else None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------ the calls

EXPECT = {}  # PromQL selector -> value, filled by make_calls


def make_calls(port):
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        empty = ch.unary_unary(SVC + "EmptyCall")
        unary = ch.unary_unary(SVC + "UnaryCall")
        for _ in range(5):
            empty(b"", timeout=10)
        for _ in range(3):
            unary(b"", timeout=10)
        codes = []
        for code in (5, 5, 3):
            try:
                unary(status_request(code), timeout=10)
            except grpc.RpcError as e:
                codes.append(e.code())
        assert codes == [grpc.StatusCode.NOT_FOUND] * 2 + [grpc.StatusCode.INVALID_ARGUMENT], codes
        out = list(ch.unary_stream(SVC + "StreamingOutputCall")(output_request([1, 2, 3]),
                                                                  timeout=10))
        assert len(out) == 3, out
        try:
            list(ch.unary_stream(SVC + "StreamingOutputCall")(
                output_request([1], interval_us=3000000), timeout=0.3))
            raise AssertionError("no deadline")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e
        ch.stream_unary(SVC + "StreamingInputCall")(iter([input_request(n) for n in (1, 2, 3, 4)]),
                                                    timeout=10)
        out = list(ch.stream_stream(SVC + "FullDuplexCall")(
            iter([output_request([5]), output_request([6])]), timeout=10))
        assert len(out) == 2, out
        for _ in range(2):
            try:
                ch.unary_unary("/no.such.Service/Method")(b"", timeout=10)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNIMPLEMENTED, e
    EXPECT.update({
        'grpc_server_started_total{grpc_method="EmptyCall"}': 5,
        'grpc_server_handled_total{grpc_method="EmptyCall",grpc_code="OK"}': 5,
        'grpc_server_handled_total{grpc_method="UnaryCall",grpc_code="OK"}': 3,
        'grpc_server_handled_total{grpc_method="UnaryCall",grpc_code="NotFound"}': 2,
        'grpc_server_handled_total{grpc_method="UnaryCall",grpc_code="InvalidArgument"}': 1,
        'grpc_server_started_total{grpc_method="UnaryCall",grpc_type="unary"}': 6,
        'grpc_server_msg_received_total{grpc_method="UnaryCall"}': 6,
        'grpc_server_msg_sent_total{grpc_method="UnaryCall"}': 3,
        'grpc_server_started_total{grpc_method="StreamingOutputCall",grpc_type="server_stream"}': 2,
        'grpc_server_handled_total{grpc_method="StreamingOutputCall",grpc_code="OK"}': 1,
        'sum(grpc_server_handled_total{grpc_method="StreamingOutputCall",'
        'grpc_code=~"DeadlineExceeded|Canceled"})': 1,
        'grpc_server_msg_sent_total{grpc_method="StreamingOutputCall"}': 3,
        'grpc_server_msg_received_total{grpc_method="StreamingInputCall",'
        'grpc_type="client_stream"}': 4,
        'grpc_server_msg_received_total{grpc_method="FullDuplexCall",grpc_type="bidi_stream"}': 2,
        'grpc_server_msg_sent_total{grpc_method="FullDuplexCall"}': 2,
        'grpc_server_handled_total{grpc_service="unknown",grpc_method="unknown",'
        'grpc_code="Unimplemented"}': 2,
        'grpc_server_handling_seconds_count{grpc_method="UnaryCall"}': 6,
        'grpc_server_handling_seconds_bucket{grpc_method="UnaryCall",le="+Inf"}': 6,
        'grpc_server_handling_seconds_count{grpc_method="Check"}': 0,
    })


# ------------------------------------------------------------------ direct scrape

def check_direct(mport, holding):
    url = "http://127.0.0.1:%d" % mport
    st, hdr, body = http("GET", url + "/metrics")
    tap.ok(st == 200 and hdr.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8",
           "direct: GET /metrics is 200 with the 0.0.4 content type", (st, hdr))
    st2, hdr2, body2 = http("HEAD", url + "/metrics")
    tap.ok(st2 == 200 and body2 == b"" and int(hdr2.get("Content-Length", "0")) > 0,
           "direct: HEAD /metrics has the headers only", (st2, hdr2))
    st3, _, _ = http("GET", url + "/metrics/x")
    st4, _, _ = http("GET", url + "/")
    tap.ok(st3 == 404 and st4 == 404, "direct: other paths are 404", (st3, st4))
    st5, hdr5, _ = http("POST", url + "/metrics")
    tap.ok(st5 == 405 and "GET" in hdr5.get("Allow", ""), "direct: POST is 405 with Allow",
           (st5, hdr5))

    families, samples = parse_exposition(body.decode("utf-8"))
    want_types = {
        "grpc_server_started_total": "counter", "grpc_server_handled_total": "counter",
        "grpc_server_msg_received_total": "counter", "grpc_server_msg_sent_total": "counter",
        "grpc_server_handling_seconds": "histogram", "tasker_connections_open": "gauge",
        "tasker_streams_active": "gauge", "tasker_pool_queue_depth": "gauge",
        "tasker_pool_busy_threads": "gauge", "tasker_backpressure_active": "gauge",
        "tasker_keepalive_goaways_total": "counter", "tasker_tls_handshakes_total": "counter",
        "tasker_tls_handshake_failures_total": "counter", "process_start_time_seconds": "gauge",
        "process_resident_memory_bytes": "gauge", "process_open_fds": "gauge",
    }
    bad = {n: families.get(n) for n, t in want_types.items()
           if families.get(n, (None, None))[0] != t or not families[n][1]}
    tap.ok(not bad, "direct: every family has HELP and the right TYPE before its samples", bad)

    direct_expect = [
        ("grpc_server_started_total", {"grpc_method": "EmptyCall",
                                       "grpc_service": "grpc.testing.TestService",
                                       "grpc_type": "unary"}, 5),
        ("grpc_server_handled_total", {"grpc_method": "UnaryCall", "grpc_code": "NotFound"}, 2),
        ("grpc_server_msg_sent_total", {"grpc_method": "StreamingOutputCall",
                                        "grpc_type": "server_stream"}, 3),
        ("grpc_server_handled_total", {"grpc_service": "unknown", "grpc_method": "unknown",
                                       "grpc_code": "Unimplemented"}, 2),
        ("grpc_server_handling_seconds_count", {"grpc_method": "UnaryCall"}, 6),
        # a method never called has its series, at zero
        ("grpc_server_handled_total", {"grpc_service": "grpc.health.v1.Health",
                                       "grpc_method": "Check", "grpc_code": "OK"}, 0),
        ("tasker_connections_open", {}, holding),
        ("tasker_keepalive_goaways_total", {"reason": "too_many_pings"}, 0),
        ("tasker_tls_handshakes_total", {}, 0),
        ("tasker_pool_threads", {}, 2),
    ]
    wrong = [(n, l, w, value(samples, n, **l)) for n, l, w in direct_expect
             if value(samples, n, **l) != w]
    tap.ok(not wrong, "direct: values of the calls made, the runtime and unused series", wrong)

    # Histogram: cumulative buckets ending in +Inf == _count, _sum plausible.
    lb = {"grpc_method": "UnaryCall"}
    buckets = sorted(((float(l["le"]), v) for n, l, v in samples
                      if n == "grpc_server_handling_seconds_bucket"
                      and l.get("grpc_method") == "UnaryCall"))
    les = [b[0] for b in buckets]
    tap.ok(les == [.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, float("inf")]
           and all(buckets[i][1] <= buckets[i + 1][1] for i in range(len(buckets) - 1))
           and buckets[-1][1] == value(samples, "grpc_server_handling_seconds_count", **lb)
           and 0 <= value(samples, "grpc_server_handling_seconds_sum", **lb) < 60,
           "direct: histogram buckets are go-grpc-prometheus's, cumulative, +Inf == _count",
           buckets)
    now = time.time()
    start = value(samples, "process_start_time_seconds")
    tap.ok(start is not None and now - 600 < start <= now + 1
           and value(samples, "process_resident_memory_bytes") > 1 << 20
           and value(samples, "process_open_fds") > 3,
           "direct: process start time, resident memory and open fds are plausible",
           (start, now))


def check_escaping(rport):
    st, _, body = http("GET", "http://127.0.0.1:%d/metrics" % rport)
    text = body.decode("utf-8")
    line = [ln for ln in text.split("\n") if ln.startswith("tasker_test_label_escaping")]
    help_ = [ln for ln in text.split("\n") if ln.startswith("# HELP tasker_test_label_escaping")]
    tap.ok(line == ['tasker_test_label_escaping{value="a\\"b\\\\c\\nd \u00e9"} 1']
           and help_ == ['# HELP tasker_test_label_escaping A label with "quotes", '
                         'a backslash \\\\ and a\\nnewline.'],
           "direct: label values and HELP text are escaped", (line, help_))
    _, samples = parse_exposition(text)
    tap.ok(value(samples, "tasker_test_label_escaping", value=ESCAPED_VALUE) == 1,
           "direct: and read back as written")


# ------------------------------------------------------------------ Prometheus

class Prometheus:
    def __init__(self, targets):
        self.dir = os.path.join(TMP, "prometheus")
        os.makedirs(self.dir)
        cfg = os.path.join(self.dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\nscrape_configs:\n")
            for job, port in targets.items():
                f.write("  - job_name: %s\n    static_configs:\n"
                        "      - targets: ['127.0.0.1:%d']\n" % (job, port))
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        for _ in range(5):  # a free port can be taken between the probe and the bind
            self.port = free_port()
            self.proc = subprocess.Popen(
                [PROMETHEUS, "--config.file=" + cfg,
                 "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                 "--web.listen-address=127.0.0.1:%d" % self.port, "--log.level=warn"],
                stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
            harness._procs.append(self.proc)
            if wait_for(lambda: self.proc.poll() is not None or self.ready(), 20) and \
                    self.proc.poll() is None:
                return
            self.stop()
        raise RuntimeError("prometheus did not start: " + self.tail())

    def ready(self):
        try:
            return http("GET", "http://127.0.0.1:%d/-/ready" % self.port, 2)[0] == 200
        except OSError:
            return False

    def query(self, q):
        url = "http://127.0.0.1:%d/api/v1/query?%s" % (self.port, urllib.parse.urlencode({"query": q}))
        st, _, body = http("GET", url)
        r = json.loads(body)
        if st != 200 or r.get("status") != "success":
            raise RuntimeError("query %s: %s" % (q, body[:500]))
        return r["data"]["result"]

    def tail(self):
        self.log.flush()
        with open(self.log.name, "rb") as f:
            return f.read()[-2000:].decode("utf-8", "replace")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def check_prometheus(mport, rport, holding):
    if not os.access(PROMETHEUS, os.X_OK):
        tap.ok(True, "# SKIP prometheus is not installed")
        return
    prom = Prometheus({"interop": mport, "relay": rport})
    try:
        def scalar(q):
            res = prom.query(q)
            return float(res[0]["value"][1]) if len(res) == 1 else None

        tap.ok(wait_for(lambda: scalar('sum(up{job=~"interop|relay"})') == 2, 30),
               "prometheus: both targets are up (the exposition parses)", prom.tail())
        checks = dict(EXPECT)
        checks['tasker_connections_open{job="interop"}'] = holding
        checks['tasker_streams_active{job="interop"}'] = 0
        checks['tasker_backpressure_active{job="interop"}'] = 0
        checks['count(grpc_server_handled_total{job="interop",grpc_method="EmptyCall"})'] = 17
        checks['tasker_test_label_escaping{job="relay"}'] = 1

        def pending():
            left = {}
            for q, want in checks.items():
                # The interop job unless named; a sum over what one selector matches.
                sel = q if "job=" in q else q.replace("{", '{job="interop",', 1)
                got = scalar(sel if sel.startswith(("sum(", "count(")) else "sum(%s)" % sel)
                if got != want:
                    left[q] = (want, got)
            return left

        left = pending()
        deadline = time.time() + 30
        while left and time.time() < deadline:
            time.sleep(0.5)
            left = pending()
        tap.ok(not left, "prometheus: every expected series has its value (%d checks)"
               % len(checks), left)
        res = prom.query('tasker_test_label_escaping{job="relay"}')
        tap.ok(len(res) == 1 and res[0]["metric"].get("value") == ESCAPED_VALUE,
               "prometheus: the escaped label value arrives intact", res)
        q = prom.query('histogram_quantile(0.5, sum by (le) '
                       '(grpc_server_handling_seconds_bucket{job="interop",grpc_method="UnaryCall"}))')
        tap.ok(len(q) == 1 and 0 <= float(q[0]["value"][1]) <= 10,
               "prometheus: histogram_quantile over the buckets works", q)
    finally:
        rc = prom.stop()
        tap.ok(rc == 0, "prometheus: stops cleanly", prom.tail())


# ------------------------------------------------------------------ TLS

def check_tls():
    """Handshakes: one that succeeds, one that fails (plaintext on the TLS
    port), one abandoned (no bytes at all: the handshake timeout ends it)."""
    certs = os.path.join(TMP, "certs")
    subprocess.run(["sh", os.path.join(harness.TOP_SRCDIR, "t", "lib", "mkcerts.sh"), certs],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    srv = harness.start_server("interop-server", [
        "--port", "0", "--use_tls", "--tls_cert_file", os.path.join(certs, "server.pem"),
        "--tls_key_file", os.path.join(certs, "server.key"), "--metrics.listen=127.0.0.1:0",
        "--keepalive.handshake_timeout=300ms"], want_tls=True)
    try:
        mport = metrics_port(srv)
        with open(os.path.join(certs, "ca.pem"), "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        with grpc.secure_channel("127.0.0.1:%d" % srv.tls_port, creds,
                                 [("grpc.ssl_target_name_override", "localhost")]) as ch:
            ch.unary_unary(SVC + "EmptyCall")(b"", timeout=10)
        for greeting in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b""):
            with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=5) as s:
                s.sendall(greeting)
                try:
                    while s.recv(4096):
                        pass
                except ConnectionResetError:
                    pass  # the server closed with our bytes unread

        def counts():
            _, _, body = http("GET", "http://127.0.0.1:%d/metrics" % mport)
            _, smp = parse_exposition(body.decode())
            got = (value(smp, "tasker_tls_handshakes_total"),
                   value(smp, "tasker_tls_handshake_failures_total"),
                   value(smp, "tasker_keepalive_goaways_total", reason="handshake_timeout"))
            return got if got == (3, 2, 1) else None
        got = wait_for(counts, 10)
        tap.ok(got, "tls: handshakes 3, failures 2 (bad and abandoned), one handshake timeout",
               srv.log()[-2000:])
    finally:
        tap.ok(srv.stop() == 0, "tls: interop-server exits 0", srv.log()[-2000:])


# ------------------------------------------------------------------ GOAWAY reasons

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
PING = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"


def check_goaways():
    """too_many_pings (pings with no call, max_ping_strikes 0) and idle
    (max_connection_idle) are counted by reason."""
    srv = harness.start_server("interop-server", [
        "--port", "0", "--metrics.listen=127.0.0.1:0", "--keepalive.max_ping_strikes=0",
        "--keepalive.max_connection_idle=300ms"])
    try:
        mport = metrics_port(srv)
        socks = []
        for pings in (3, 0):
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            s.sendall(PREFACE + PING * pings)
            socks.append(s)
        for s in socks:
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
            s.close()

        def counts():
            _, _, body = http("GET", "http://127.0.0.1:%d/metrics" % mport)
            _, smp = parse_exposition(body.decode())
            return {r: value(smp, "tasker_keepalive_goaways_total", reason=r)
                    for r in ("too_many_pings", "idle", "max_age", "ping_timeout", "shutdown")}
        want = {"too_many_pings": 1, "idle": 1, "max_age": 0, "ping_timeout": 0, "shutdown": 0}
        got = wait_for(lambda: counts() == want, 10)
        tap.ok(got, "goaways: counted by reason", counts())
    finally:
        tap.ok(srv.stop() == 0, "goaways: interop-server exits 0", srv.log()[-2000:])


# ------------------------------------------------------------------ taskerd and tasker-worker

def check_daemons():
    """The database figures of taskerd and tasker-worker on a private cluster;
    queue depths are cached between refreshes (every 5 s)."""
    import pg
    import tasker_env
    if not pg.available():
        tap.ok(True, "# SKIP the PostgreSQL server programs are not installed")
        return
    env = tasker_env.Env("97-prometheus", deadline=120, tap=tap)
    try:
        env.start()
        env.sql("SELECT pgmq.create('metrics_probe'); "
                "SELECT pgmq.send('metrics_probe', '{}'::jsonb) FROM generate_series(1, 3)")
        d = env.taskerd("--metrics.listen=127.0.0.1:0", "--database.pool_size=7")
        m = d.wait_line(r"metrics listening on 127\.0\.0\.1:(\d+)", 10)
        if not tap.ok(m, "taskerd: logs its metrics port", d.log(20)):
            return
        url = "http://127.0.0.1:%s/metrics" % m.group(1)

        def scrape():
            st, hdr, body = http("GET", url)
            return parse_exposition(body.decode())[1]
        smp = scrape()
        tap.ok(value(smp, "tasker_db_pool_connections", state="max") == 7
               and value(smp, "tasker_db_pool_connections", state="active") is not None
               and value(smp, "tasker_db_pool_connections", state="idle") is not None
               and value(smp, "tasker_db_pool_acquires_total") > 0
               and value(smp, "tasker_db_pool_errors_total") == 0
               and value(smp, "tasker_db_pool_acquire_seconds") is not None
               and value(smp, "tasker_db_pool_slow_acquires_total") is not None,
               "taskerd: database pool figures",
               [x for x in smp if x[0].startswith("tasker_db")])
        tap.ok(value(smp, "tasker_queue_depth", queue="metrics_probe") == 3,
               "taskerd: queue depth from the database",
               [x for x in smp if x[0] == "tasker_queue_depth"])
        tap.ok(value(smp, "grpc_server_started_total", grpc_service="grpc.health.v1.Health",
                     grpc_method="Check") == 0, "taskerd: the server's families too")
        env.sql("SELECT pgmq.send('metrics_probe', '{}'::jsonb) FROM generate_series(1, 2)")
        cached = value(scrape(), "tasker_queue_depth", queue="metrics_probe")
        t0 = time.time()
        fresh = wait_for(lambda: value(scrape(), "tasker_queue_depth", queue="metrics_probe") == 5,
                         15)
        tap.ok(cached == 3 and fresh and time.time() - t0 >= 2,
               "taskerd: queue depths are cached between refreshes, then refreshed",
               (cached, fresh, time.time() - t0))

        if not tasker_env.worker_available():
            tap.ok(True, "# SKIP tasker-worker is not built")
            return
        w = env.worker("--metrics.listen=127.0.0.1:0")
        m = w.wait_line(r"metrics listening on 127\.0\.0\.1:(\d+)", 10)
        if not tap.ok(m, "tasker-worker: logs its metrics port", w.log(20)):
            return
        st, hdr, body = http("GET", "http://127.0.0.1:%s/metrics" % m.group(1))
        fam, smp = parse_exposition(body.decode())
        tap.ok(st == 200 and value(smp, "tasker_db_pool_connections", state="max") > 0
               and value(smp, "process_start_time_seconds") > 0
               and value(smp, "tasker_queue_depth", queue="metrics_probe") == 5,
               "tasker-worker: process, pool and queue figures", body[:2000])
        for p in (d, w):
            p.signal(signal.SIGHUP)
        time.sleep(1)
        tap.ok(d.alive() and w.alive() and http("GET", url)[0] == 200,
               "SIGHUP stops neither taskerd nor tasker-worker")
        for p in (w, d):
            rc = p.stop(30)
            tap.ok(rc == 0, "%s exits 0" % p.name, p.log(30))
    finally:
        env.close()


# ------------------------------------------------------------------ main

def main():
    interop = harness.start_server("interop-server", ["--port", "0", "--workers", "2",
                                                      "--metrics.listen=127.0.0.1:0"])
    relay = None
    try:
        mport = metrics_port(interop)
        if not tap.ok(mport, "interop-server logs its metrics port", interop.log()):
            return
        make_calls(interop.port)
        tap.ok(True, "calls made: unary OK and errors, server/client/bidi streams, a deadline, "
               "unknown methods")
        relay = start(os.path.join(harness.TOP_BUILDDIR, "t", "progs", "trace-relay"),
                      ["--target=127.0.0.1:%d" % interop.port, "--metrics.listen=127.0.0.1:0"])
        rport = metrics_port(relay)
        if not tap.ok(rport, "trace-relay logs its metrics port", relay.log()):
            return
        # One connection held open; the others are gone once the server saw them close.
        ch = grpc.insecure_channel("127.0.0.1:%d" % interop.port)
        try:
            grpc.channel_ready_future(ch).result(timeout=10)

            def settled():
                _, _, body = http("GET", "http://127.0.0.1:%d/metrics" % mport)
                _, s = parse_exposition(body.decode())
                return value(s, "tasker_connections_open") == 1 and \
                    value(s, "tasker_streams_active") == 0
            tap.ok(wait_for(settled, 10), "tasker_connections_open settles at the one open channel")
            check_direct(mport, 1)
            check_escaping(rport)
            check_prometheus(mport, rport, 1)
        finally:
            ch.close()
    finally:
        if relay is not None:
            tap.ok(relay.stop() == 0, "trace-relay exits 0", relay.log()[-2000:])
        tap.ok(interop.stop() == 0, "interop-server exits 0", interop.log()[-2000:])


tap.check("metrics end to end", main)
tap.check("TLS handshake counters", check_tls)
tap.check("GOAWAY counters", check_goaways)
tap.check("taskerd and tasker-worker", check_daemons)
shutil.rmtree(TMP, ignore_errors=True)
tap.done()
