#!/usr/bin/python3
"""Structured logs and tracing of the server runtime: JSON lines that
parse, the trace id of a call (traceparent, x-trace-id or a fresh one) in
its access record and in the handler's own log lines, propagation of the
trace to outgoing client calls (t/progs/trace-relay forwarding to a grpcio
server that records the metadata it gets), the text format, level
filtering, and SIGHUP reopening log.file without losing a line and without
stopping the server. Prints TAP.
"""
import concurrent.futures
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
from harness import status_request, wait_for  # noqa: E402
from harness import spawn as start  # noqa: E402

tap, grpc = harness.grpc_test()

TMP = tempfile.mkdtemp(prefix="tasker-97-logs-")
SVC = "/grpc.testing.TestService/"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = "00-%s-%s-01" % (TRACE, PARENT)


# ------------------------------------------------------------------ helpers

def call(port, method, req=b"", metadata=None, timeout=10):
    """Makes one unary call; returns its status code name."""
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        try:
            ch.unary_unary(SVC + method)(req, metadata=metadata, timeout=timeout)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name


def listening_ports(pid):
    """TCP ports the process listens on, from /proc (for a log that does not show them)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            m = re.match(r"socket:\[(\d+)\]", os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ports = []
    for table in ("/proc/%d/net/tcp" % pid, "/proc/%d/net/tcp6" % pid):
        with open(table) as f:
            for row in f.readlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:
                    ports.append(int(cols[1].split(":")[1], 16))
    return ports


def json_lines(lines):
    """Parses every line; raises on one that is not a JSON object."""
    out = []
    for ln in lines:
        obj = json.loads(ln)
        if not isinstance(obj, dict):
            raise ValueError("not an object: %r" % ln)
        out.append(obj)
    return out


def access(records, **want):
    return [r for r in records if r.get("msg") == "access"
            and all(r.get(k) == v for k, v in want.items())]


def file_lines(path):
    try:
        with open(path, "rb") as f:
            return [ln.decode("utf-8") for ln in f.read().splitlines()]
    except FileNotFoundError:
        return []


class Recorder:
    """A grpcio server for grpc.testing.TestService/EmptyCall that keeps the
    metadata of every call it gets."""

    def __init__(self):
        self.seen = []
        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
        h = grpc.method_handlers_generic_handler("grpc.testing.TestService", {
            "EmptyCall": grpc.unary_unary_rpc_method_handler(self._empty)})
        self.server.add_generic_rpc_handlers((h,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _empty(self, req, ctx):
        self.seen.append(dict(ctx.invocation_metadata()))
        return b""


# ------------------------------------------------------------------ JSON on stderr

def test_json_stderr():
    srv = harness.start_server("interop-server", ["--port", "0", "--log.format=json",
                                                  "--log.access_log=true"])
    try:
        port = srv.port
        tap.ok(call(port, "EmptyCall", metadata=[("traceparent", TRACEPARENT)]) == "OK",
               "json: EmptyCall with a traceparent")
        tap.ok(call(port, "EmptyCall", metadata=[("x-trace-id", "req-42.a:b_c")]) == "OK",
               "json: EmptyCall with an x-trace-id")
        bad_tp = "00-%s-%s-01" % (TRACE.upper(), PARENT)
        tap.ok(call(port, "EmptyCall", metadata=[("traceparent", bad_tp)]) == "OK",
               "json: EmptyCall with an invalid traceparent")
        call(port, "EmptyCall")
        call(port, "EmptyCall")
        msg = b"nope \"quoted\" \\ back\nslash \x01 caf\xc3\xa9 \xff"
        tap.ok(call(port, "UnaryCall", status_request(5, msg)) == "NOT_FOUND",
               "json: UnaryCall ending NOT_FOUND on request")
        tap.ok(call(port, "NoSuchMethod") == "UNIMPLEMENTED", "json: unknown method")
        long_name = "Long\"" + "x\\" * 1500
        with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
            try:
                ch.unary_unary("/" + long_name + "/M")(b"", timeout=10)
            except grpc.RpcError:
                pass

        recs = wait_for(lambda: (lambda r: r if len(access(r)) >= 8 else None)(
            json_lines(srv.lines)))
        if not tap.ok(recs is not None, "json: every stderr line is a JSON object, 8 access "
                      "records", srv.log()[-3000:]):
            return
        tap.ok(all(TS.match(r.get("ts", "")) and r.get("level") in
                   ("error", "warn", "info", "debug") and isinstance(r.get("msg"), str)
                   for r in recs), "json: ts (RFC 3339, ms, UTC), level and msg on every record",
               recs)
        tap.ok(any(r["msg"].startswith("listening h2c 127.0.0.1:") for r in recs),
               "json: start-up records are JSON too")

        a = access(recs, trace_id=TRACE)
        tap.ok(len(a) == 1 and a[0]["service"] == "grpc.testing.TestService"
               and a[0]["method"] == "EmptyCall" and a[0]["code"] == "OK"
               and isinstance(a[0]["duration_ms"], (int, float)) and a[0]["duration_ms"] >= 0
               and re.match(r"^ipv4:127\.0\.0\.1:\d+$", a[0]["peer"]) and a[0]["level"] == "info",
               "json: access record of the traceparent call: its trace-id, service, method, "
               "code, duration_ms, peer", a)
        tap.ok(len(access(recs, trace_id="req-42.a:b_c")) == 1,
               "json: x-trace-id becomes the trace id", recs)
        fresh = [r["trace_id"] for r in access(recs, method="EmptyCall")
                 if r["trace_id"] not in (TRACE, "req-42.a:b_c")]
        tap.ok(len(fresh) == 3 and all(HEX32.match(t) for t in fresh) and len(set(fresh)) == 3
               and TRACE not in fresh,
               "json: calls without a valid trace header get fresh 32-hex ids, one per call",
               fresh)
        nf = access(recs, method="UnaryCall")
        want = msg.decode("utf-8", "replace")
        tap.ok(len(nf) == 1 and nf[0]["code"] == "NotFound" and nf[0].get("error") == want,
               "json: the status message is escaped (quotes, backslash, newline, control and "
               "non-UTF-8 bytes)", nf)
        lg = [r for r in access(recs, method="M") if r["service"].startswith('Long"x\\')]
        tap.ok(len(lg) == 1 and lg[0]["service"].endswith("...") and len(lg[0]["service"]) < 300
               and lg[0]["code"] == "Unimplemented" and HEX32.match(lg[0]["trace_id"]),
               "json: a 3 kB path is cut in its field, the record stays whole", lg)
        un = access(recs, method="NoSuchMethod")
        tap.ok(len(un) == 1 and un[0]["code"] == "Unimplemented"
               and un[0]["service"] == "grpc.testing.TestService",
               "json: unknown methods are logged by their path", un)
    finally:
        tap.ok(srv.stop() == 0, "json: interop-server exits 0", srv.log()[-2000:])


# ------------------------------------------------------------------ handler logs and propagation

def test_relay():
    rec = Recorder()
    relay_bin = os.path.join(harness.TOP_BUILDDIR, "t", "progs", "trace-relay")
    srv = start(relay_bin, ["--target=127.0.0.1:%d" % rec.port, "--log.format=json",
                            "--log.access_log=true"])
    try:
        if not tap.ok(wait_for(lambda: srv.port, 20), "relay: trace-relay starts", srv.log()):
            return
        tap.ok(call(srv.port, "EmptyCall", metadata=[("traceparent", TRACEPARENT)]) == "OK",
               "relay: EmptyCall with a traceparent is relayed")
        tap.ok(call(srv.port, "EmptyCall") == "OK", "relay: EmptyCall without one is relayed")
        tap.ok(call(srv.port, "UnaryCall", metadata=[("traceparent", TRACEPARENT)]) == "OK",
               "relay: UnaryCall (explicit trace options) is relayed")

        recs = wait_for(lambda: (lambda r: r if len(access(r)) >= 3 else None)(
            json_lines(srv.lines)))
        if not tap.ok(recs is not None and len(rec.seen) == 3, "relay: three access records, "
                      "three calls downstream", srv.log()[-3000:]):
            return
        logged = [r for r in recs if r["msg"].startswith("relaying ")]
        tap.ok(len(logged) == 3 and all(r.get("service") == "grpc.testing.TestService"
                                        and r.get("peer", "").startswith("ipv4:127.0.0.1:")
                                        for r in logged),
               "relay: the handler's own log lines name the call", logged)
        first = [r for r in logged if r["method"] == "EmptyCall" and r["trace_id"] == TRACE]
        tap.ok(len(first) == 1, "relay: the handler's line carries the incoming trace id", logged)

        md = rec.seen[0]
        tp = md.get("traceparent", "")
        m = re.match(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$", tp)
        tap.ok(m is not None and m.group(1) == TRACE and m.group(2) != PARENT
               and m.group(2) != "0" * 16,
               "relay: the outgoing call continues the trace with a new span id", md)
        tap.ok(md.get("x-trace-id") == TRACE, "relay: and sends x-trace-id", md)

        md = rec.seen[1]
        own = [r["trace_id"] for r in logged if r["trace_id"] != TRACE and r["method"] == "EmptyCall"]
        m = re.match(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-01$", md.get("traceparent", ""))
        tap.ok(len(own) == 1 and HEX32.match(own[0]) and m is not None and m.group(1) == own[0]
               and md.get("x-trace-id") == own[0],
               "relay: a call without trace context propagates its fresh trace id",
               {"logged": own, "downstream": md})

        md = rec.seen[2]
        tap.ok(md.get("traceparent") == "00-11111111111111111111111111111111-2222222222222222-01"
               and md.get("x-trace-id") == "explicit-trace",
               "relay: explicit trace options of a client call win over the handler's trace", md)

        os.kill(srv.proc.pid, signal.SIGHUP)
        tap.ok(wait_for(lambda: any("reload hook ran" in ln for ln in srv.lines)),
               "relay: SIGHUP runs the program's reload hook", srv.log()[-2000:])
        tap.ok(srv.alive() and call(srv.port, "EmptyCall") == "OK",
               "relay: SIGHUP does not stop the server")
    finally:
        tap.ok(srv.stop() == 0, "relay: trace-relay exits 0", srv.log()[-2000:])
        rec.server.stop(0)


# ------------------------------------------------------------------ text format and levels

def test_text_and_levels():
    srv = harness.start_server("interop-server", ["--port", "0", "--log.access_log=true",
                                                  "--log.level=debug"])
    try:
        call(srv.port, "EmptyCall", metadata=[("traceparent", TRACEPARENT)])
        line = wait_for(lambda: [ln for ln in srv.lines if " access " in ln])
        pat = (r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO access "
               r"service=grpc\.testing\.TestService method=EmptyCall code=OK "
               r"duration_ms=\d+\.\d{3} peer=ipv4:127\.0\.0\.1:\d+ trace_id=%s$" % TRACE)
        tap.ok(line and re.match(pat, line[0]), "text: the default format is one readable line",
               line)
        tap.ok(any(" DEBUG accepted ipv4:127.0.0.1:" in ln for ln in srv.lines),
               "levels: debug shows DEBUG records", srv.log()[-2000:])
    finally:
        srv.stop()

    # warn: no INFO records (so the port comes from /proc), access records all the same
    srv = start(harness.program("interop-server"),
                ["--port", "0", "--log.access_log=true", "--log.level=warn",
                 "--server.max_connections=1"])
    try:
        ports = wait_for(lambda: listening_ports(srv.proc.pid), 20)
        if not tap.ok(ports, "levels: interop-server at warn listens", srv.log()):
            return
        port = ports[0]
        with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
            ch.unary_unary(SVC + "EmptyCall")(b"", timeout=10)
            # grpcio would share its connection: a second one by hand, refused
            with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                s.recv(100)
        warned = wait_for(lambda: any(" WARN refusing a connection" in ln for ln in srv.lines))
        tap.ok(warned, "levels: warn shows WARN records", srv.log()[-2000:])
        tap.ok(not any(" INFO " in ln and " access " not in ln for ln in srv.lines)
               and not any(" DEBUG " in ln for ln in srv.lines),
               "levels: warn hides INFO and DEBUG records", srv.log()[-2000:])
        tap.ok(any(" INFO access " in ln for ln in srv.lines),
               "levels: access records are written whatever the level", srv.log()[-2000:])
    finally:
        srv.stop()


# ------------------------------------------------------------------ log.file and SIGHUP

def test_reopen():
    path = os.path.join(TMP, "server.log")
    srv = start(harness.program("interop-server"),
                ["--port", "0", "--log.format=json", "--log.access_log=true",
                 "--log.file=" + path])
    try:
        def port_from_file():
            for ln in file_lines(path):
                m = re.search(r"listening h2c \S+:(\d+)", ln)
                if m:
                    return int(m.group(1))
            return None
        port = wait_for(port_from_file, 20)
        if not tap.ok(port, "reopen: the log goes to log.file", srv.log()):
            return
        tap.ok(not [ln for ln in srv.lines if ln.strip()], "reopen: nothing on stderr",
               srv.log())

        n = [0]
        stop = threading.Event()
        lock = threading.Lock()

        def load():
            # One channel, calls back to back, across the rotation.
            with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
                f = ch.unary_unary(SVC + "EmptyCall")
                while not stop.is_set():
                    f(b"", timeout=10)
                    with lock:
                        n[0] += 1

        t = threading.Thread(target=load)
        t.start()
        wait_for(lambda: n[0] >= 50)
        os.rename(path, path + ".1")
        time.sleep(0.2)
        os.kill(srv.proc.pid, signal.SIGHUP)
        created = wait_for(lambda: os.path.exists(path))
        wait_for(lambda: len(access(json_lines(file_lines(path)))) >= 50)
        stop.set()
        t.join(30)
        total = n[0]
        old = json_lines(file_lines(path + ".1"))

        def all_there():
            new = json_lines(file_lines(path))
            return new if len(access(old)) + len(access(new)) >= total else None
        new = wait_for(all_there) or json_lines(file_lines(path))
        tap.ok(created and srv.alive(), "reopen: SIGHUP creates a new file; the server runs on")
        tap.ok(any(r["msg"] == "received SIGHUP: log reopened" for r in new),
               "reopen: the SIGHUP record is in the new file", new[:5])
        tap.ok(len(access(old)) > 0 and len(access(new)) > 0
               and len(access(old)) + len(access(new)) == total,
               "reopen: no access record lost across the rotation (%d calls)" % total,
               "old %d + new %d" % (len(access(old)), len(access(new))))
        tap.ok(call(port, "EmptyCall") == "OK" and wait_for(
            lambda: len(access(json_lines(file_lines(path)))) > len(access(new))),
            "reopen: later calls are logged to the new file")
    finally:
        tap.ok(srv.stop() == 0, "reopen: interop-server exits 0", srv.log()[-2000:])


def test_bad_file():
    r = subprocess.run([harness.program("interop-server"), "--port", "0",
                        "--log.file=" + os.path.join(TMP, "no", "such", "dir", "x.log")],
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30)
    tap.ok(r.returncode != 0 and b"log.file" in r.stderr,
           "a log.file that cannot be opened stops the start with a message", r.stderr)


tap.check("json on stderr", test_json_stderr)
tap.check("handler logs and trace propagation", test_relay)
tap.check("text format and levels", test_text_and_levels)
tap.check("log.file and SIGHUP", test_reopen)
tap.check("bad log.file", test_bad_file)
subprocess.run(["rm", "-rf", TMP])
tap.done()
