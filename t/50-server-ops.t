#!/usr/bin/python3
"""Operational behaviour of the server runtime, driven by python3-grpcio and
raw sockets: IPv6 listeners, max_connections, mTLS (require and optional),
10,000 concurrent connections, graceful shutdown with a call in flight, and
work-queue backpressure (RESOURCE_EXHAUSTED with a retry hint). Prints TAP.
"""
import concurrent.futures
import os
import resource
import shutil
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
from harness import field  # noqa: E402

tap, grpc = harness.grpc_test()

TMP = tempfile.mkdtemp(prefix="tasker-50-ops-")
SVC = "/grpc.testing.TestService/"
IDENT = dict(request_serializer=None, response_deserializer=None)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def simple_request(size):
    return field(2, 0, size)


def streaming_output_request(sizes, interval_us):
    return b"".join(field(2, 2, field(1, 0, s) + field(2, 0, interval_us)) for s in sizes)


def empty_call(channel, timeout=10):
    return channel.unary_unary(SVC + "EmptyCall", **IDENT)(b"", timeout=timeout)


def unary_call(channel, size, timeout=10):
    return channel.unary_unary(SVC + "UnaryCall", **IDENT)(simple_request(size), timeout=timeout)


def raw_connect(port, host="127.0.0.1"):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(PREFACE)
    return s


def closed_by_server(s, wait=5):
    """True when the server closes the socket (reads until EOF)."""
    s.settimeout(wait)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


# ------------------------------------------------------------------ IPv6

def test_ipv6():
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        tap.ok(True, "IPv6 listener # SKIP no IPv6 loopback")
        return
    srv = harness.start_server("interop-server", ["--host", "::1", "--port", "0"])
    with grpc.insecure_channel("[::1]:%d" % srv.port) as ch:
        tap.check("IPv6 listener [::1] serves a unary call",
                  lambda: empty_call(ch) == b"")
    tap.ok(srv.stop() == 0, "IPv6 server exits 0 on SIGTERM")


# ------------------------------------------------------------------ max connections

def test_max_connections():
    srv = harness.start_server("interop-server",
                               ["--port", "0", "--server.max_connections=3"])
    held = [raw_connect(srv.port) for _ in range(3)]
    time.sleep(0.3)
    extra = raw_connect(srv.port)
    tap.ok(closed_by_server(extra), "a connection over max_connections is refused and closed")
    alive = all(not closed_by_server(s, wait=0.2) for s in held)
    tap.ok(alive, "connections under the limit stay open")
    for s in held:
        s.close()
    time.sleep(0.3)
    with grpc.insecure_channel("127.0.0.1:%d" % srv.port) as ch:
        tap.check("after the others closed, a new connection is served",
                  lambda: empty_call(ch) == b"")
    tap.ok(srv.stop() == 0, "max_connections server exits 0")


# ------------------------------------------------------------------ mTLS

def test_mtls():
    certs = os.path.join(TMP, "certs")
    subprocess.run(["sh", os.path.join(harness.TOP_SRCDIR, "t", "lib", "mkcerts.sh"), certs],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rd = lambda n: open(os.path.join(certs, n), "rb").read()  # noqa: E731
    ca, ckey, ccert = rd("ca.pem"), rd("client.key"), rd("client.pem")
    opts = [("grpc.ssl_target_name_override", "localhost")]
    for mode in ("require", "optional"):
        srv = harness.start_server("interop-server", [
            "--port", "0", "--use_tls",
            "--tls_cert_file", os.path.join(certs, "server.pem"),
            "--tls_key_file", os.path.join(certs, "server.key"),
            "--tls.client_ca_file=" + os.path.join(certs, "ca.pem"),
            "--tls.client_auth=" + mode], want_tls=True)
        target = "127.0.0.1:%d" % srv.tls_port
        with_cert = grpc.ssl_channel_credentials(ca, ckey, ccert)
        without = grpc.ssl_channel_credentials(ca)
        with grpc.secure_channel(target, with_cert, opts) as ch:
            tap.check("mTLS %s: client with a certificate is served" % mode,
                      lambda: empty_call(ch) == b"")
        with grpc.secure_channel(target, without, opts) as ch:
            if mode == "require":
                def refused():
                    try:
                        empty_call(ch, timeout=5)
                    except grpc.RpcError as e:
                        return e.code() == grpc.StatusCode.UNAVAILABLE or e.code()
                    return "call without a client certificate succeeded"
                tap.check("mTLS require: client without a certificate is refused", refused)
            else:
                tap.check("mTLS optional: client without a certificate is served",
                          lambda: empty_call(ch) == b"")
        tap.ok(srv.stop() == 0, "mTLS %s server exits 0" % mode)


# ------------------------------------------------------------------ 10k connections

def test_many_connections(n=10000):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 200
    if hard != resource.RLIM_INFINITY and hard < want:
        tap.ok(True, "%d connections # SKIP RLIMIT_NOFILE hard limit %d" % (n, hard))
        return
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    srv = harness.start_server("interop-server", ["--port", "0"])
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.setblocking(True)
            s.settimeout(10)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(PREFACE)
            socks.append(s)
        time.sleep(1.0)
        # Every connection got the server's SETTINGS and is still open.
        got = 0
        for s in socks:
            s.settimeout(5)
            try:
                if s.recv(9):
                    got += 1
            except OSError:
                pass
        tap.ok(got == n, "%d concurrent connections accepted and answered" % n,
               "%d of %d answered" % (got, n))
        with grpc.insecure_channel("127.0.0.1:%d" % srv.port) as ch:
            tap.check("a call is served while %d connections are open" % n,
                      lambda: empty_call(ch) == b"")
    finally:
        for s in socks:
            s.close()
    tap.ok(srv.alive(), "server alive after %d connections" % n)
    tap.ok(srv.stop() == 0, "server exits 0 after the connection storm")


# ------------------------------------------------------------------ graceful shutdown

def test_graceful_shutdown():
    srv = harness.start_server("interop-server", ["--port", "0"])
    ch = grpc.insecure_channel("127.0.0.1:%d" % srv.port)
    call = ch.unary_stream(SVC + "StreamingOutputCall", **IDENT)(
        streaming_output_request([10, 20, 30, 40], 300000), timeout=20)
    it = iter(call)
    first = next(it)
    srv.proc.send_signal(signal.SIGTERM)
    rest = list(it)
    tap.ok(len(rest) == 3 and call.code() == grpc.StatusCode.OK,
           "a call in flight at SIGTERM completes (GOAWAY, grace period)",
           "got %d more messages, status %s" % (len(rest), call.code()))
    del first
    ch.close()
    try:
        rc = srv.proc.wait(20)
    except subprocess.TimeoutExpired:
        rc = None
    tap.ok(rc == 0, "server exits 0 after draining", "exit status %r" % rc)


# ------------------------------------------------------------------ backpressure

def test_backpressure():
    srv = harness.start_server("interop-server", [
        "--port", "0", "--workers", "1", "--io_threads", "1",
        "--limits.queue_high_watermark=4", "--limits.queue_low_watermark=2",
        "--limits.retry_pushback=250ms"])
    ch = grpc.insecure_channel("127.0.0.1:%d" % srv.port)
    # Occupy the only worker for ~1.2 s so the queue fills up.
    blocker = ch.unary_stream(SVC + "StreamingOutputCall", **IDENT)(
        streaming_output_request([1, 1, 1, 1], 300000), timeout=20)
    time.sleep(0.2)
    results = []

    def one():
        try:
            call = ch.unary_unary(SVC + "EmptyCall", **IDENT).with_call(b"", timeout=20)
            results.append(("OK", None))
            return call
        except grpc.RpcError as e:
            md = dict(e.trailing_metadata() or ())
            results.append((e.code().name, md.get("grpc-retry-pushback-ms")))

    with concurrent.futures.ThreadPoolExecutor(32) as ex:
        list(ex.map(lambda _: one(), range(32)))
    list(blocker)
    codes = [r[0] for r in results]
    refused = [r for r in results if r[0] == "RESOURCE_EXHAUSTED"]
    tap.ok(len(refused) > 0, "over the high watermark new calls get RESOURCE_EXHAUSTED",
           "results: %s" % codes)
    tap.ok(all(r[1] == "250" for r in refused), "refusals carry grpc-retry-pushback-ms",
           "hints: %s" % [r[1] for r in refused])
    tap.ok(all(c in ("OK", "RESOURCE_EXHAUSTED") for c in codes),
           "every other call succeeded", "results: %s" % codes)
    tap.check("after the load drains, calls succeed again", lambda: empty_call(ch) == b"")
    ch.close()
    tap.ok(srv.stop() == 0, "backpressure server exits 0")


try:
    for t in (test_ipv6, test_max_connections, test_mtls, test_graceful_shutdown,
              test_backpressure, test_many_connections):
        tap.check(t.__name__ + " ran to the end", t)
finally:
    shutil.rmtree(TMP, True)
tap.done()
