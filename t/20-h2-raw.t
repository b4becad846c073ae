#!/usr/bin/python3
"""interop-server driven at the HTTP/2 level with python3-h2 and raw
sockets: request validation, message limits, framing edge cases, resets,
PING floods, idle and handshake timers, many streams, and a clean
shutdown. Prints TAP.

Every wait has a deadline and a watchdog ends the whole script well within
a minute, so a misbehaving server fails the test instead of hanging it.
"""
import os
import random
import signal
import socket
import struct
import sys
import time
import traceback

sys.dont_write_bytecode = True  # keep the source tree clean (distcheck: read-only)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402

tap = harness.Tap()

try:
    import h2.connection  # noqa: F401
    import h2raw
    from h2raw import SERVICE, Client, frame
except ImportError as e:
    tap.skip_all("python3-h2 is not installed (%s)" % e)

WATCHDOG = 55  # seconds for the whole script
MIB = 1024 * 1024
GRPC_OK, GRPC_RESOURCE_EXHAUSTED, GRPC_UNIMPLEMENTED, GRPC_INTERNAL = 0, 8, 12, 13
EMPTY = SERVICE + "EmptyCall"
UNARY = SERVICE + "UnaryCall"
STREAMING_OUTPUT = SERVICE + "StreamingOutputCall"
FULL_DUPLEX = SERVICE + "FullDuplexCall"


def watchdog(signum, frm):
    tap.ok(False, "the test finishes within %d s (watchdog fired)" % WATCHDOG,
           "".join(traceback.format_stack(frm)))
    harness._cleanup()
    print("1..%d" % tap.n, flush=True)
    os._exit(1)


signal.signal(signal.SIGALRM, watchdog)
signal.alarm(WATCHDOG)


def comment(text):
    for line in str(text).splitlines():
        print("# " + line, flush=True)


def section(name, fn):
    """Runs a case; an unexpected exception becomes one failing TAP line."""
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - report every failure as a TAP line
        tap.ok(False, "%s: completes without an exception" % name,
               "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))


def good_call_works(port, name, client=None):
    """A good EmptyCall on client (or on a new connection) succeeds."""
    c = client or Client(port)
    try:
        r = c.empty_call()
        return tap.ok(r.ok() and r.messages() == [(0, b"")], name, r)
    finally:
        if client is None:
            c.close()


def parse_frames(buf):
    """Raw HTTP/2 frames in buf: [(type, flags, stream_id, payload)]."""
    out = []
    i = 0
    while len(buf) - i >= 9:
        ln = int.from_bytes(buf[i:i + 3], "big")
        typ, flags = buf[i + 3], buf[i + 4]
        sid = int.from_bytes(buf[i + 5:i + 9], "big") & 0x7FFFFFFF
        out.append((typ, flags, sid, bytes(buf[i + 9:i + 9 + ln])))
        i += 9 + ln
    return out


def goaway_of(buf):
    """(error_code, debug data) of the first GOAWAY in buf, or None."""
    for typ, _flags, _sid, payload in parse_frames(buf):
        if typ == 0x7 and len(payload) >= 8:
            last, code = struct.unpack(">II", payload[:8])
            return code, payload[8:]
    return None


def raw_until_eof(sock, timeout):
    """Reads until EOF/reset or timeout: (closed, seconds, bytes read)."""
    t0 = time.monotonic()
    got = bytearray()
    deadline = t0 + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False, time.monotonic() - t0, bytes(got)
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False, time.monotonic() - t0, bytes(got)
        except OSError:
            return True, time.monotonic() - t0, bytes(got)
        if not data:
            return True, time.monotonic() - t0, bytes(got)
        got += data


def bad_log_lines(srv):
    pats = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "Assertion", "assertion",
            "double free", "corrupted")
    return [ln for ln in srv.lines if any(p in ln for p in pats)]


# ------------------------------------------------------------------ servers

servers = {}
try:
    servers["default"] = harness.start_server("interop-server", ["--port", "0"])
    servers["idle"] = harness.start_server(
        "interop-server", ["--port", "0", "--keepalive.max_connection_idle=600ms"])
    servers["handshake"] = harness.start_server(
        "interop-server", ["--port", "0", "--keepalive.handshake_timeout=500ms"])
except Exception as e:  # noqa: BLE001 - report and stop
    tap.ok(False, "interop-server starts", e)
    tap.done()
tap.ok(True, "interop-server starts (default, max_connection_idle=600ms, "
       "handshake_timeout=500ms)")
SRV = servers["default"]
PORT = SRV.port


# ------------------------------------------------------------------ 1. good call

def case_good_call():
    c = Client(PORT)
    r = c.empty_call()
    tap.ok(r.headers is not None and r.http_status == "200"
           and r.headers.get("content-type", "").startswith("application/grpc"),
           "good EmptyCall: response HEADERS :status 200, content-type application/grpc", r)
    tap.ok(r.ended and r.trailers is not None and r.grpc_status == GRPC_OK,
           "good EmptyCall: trailers with grpc-status 0 end the stream", r)
    tap.ok(r.messages() == [(0, b"")], "good EmptyCall: one empty, uncompressed response "
           "message", r)
    c.close()


section("good call", case_good_call)


# ------------------------------------------------------------------ 2, 3. bad headers

def case_bad_content_type():
    c = Client(PORT)
    r = c.call(EMPTY, frame(b""), content_type="text/plain")
    tap.ok(r.done and r.http_status == "415",
           "content-type text/plain: :status 415", r)
    tap.ok(r.grpc_status not in (None, GRPC_OK),
           "content-type text/plain: non-zero grpc-status (got %r)" % r.grpc_status, r)
    good_call_works(PORT, "content-type text/plain: the connection still serves a good call",
                    c)
    c.close()


section("bad content-type", case_bad_content_type)


def case_missing_te():
    c = Client(PORT)
    r = c.call(EMPTY, frame(b""), te=False)
    comment("without te: :status %s grpc-status %r grpc-message %r"
            % (r.http_status, r.grpc_status, r.grpc_message))
    tap.ok(r.done and (r.http_status != "200" or r.grpc_status not in (None, GRPC_OK)),
           "no te: trailers: the call fails (non-200 or non-zero grpc-status)", r)
    tap.ok(r.http_status == "400" and r.grpc_status == GRPC_INTERNAL,
           "no te: trailers: :status 400 with grpc-status 13", r)
    good_call_works(PORT, "no te: trailers: the connection still serves a good call", c)
    c.close()


section("missing te", case_missing_te)


# ------------------------------------------------------------------ 4. garbage preface

def case_garbage_preface():
    rnd = random.Random(20)
    for label, junk in (("HTTP/1.1 request", b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
                        ("random bytes", bytes(rnd.randrange(256) for _ in range(64)))):
        s = socket.create_connection(("127.0.0.1", PORT), timeout=5)
        try:
            s.sendall(junk)
            closed, secs, got = raw_until_eof(s, 5)
        finally:
            s.close()
        ga = goaway_of(got)
        comment("garbage preface (%s): closed=%s after %.2f s, GOAWAY %r"
                % (label, closed, secs, ga))
        tap.ok(closed, "garbage preface (%s): the server closes the connection" % label,
               "read %d bytes, no EOF within 5 s" % len(got))
    tap.ok(SRV.alive(), "garbage preface: the server is still running")
    good_call_works(PORT, "garbage preface: a new connection serves a good call")


section("garbage preface", case_garbage_preface)


# ------------------------------------------------------------------ 5. message size limit

def case_oversize():
    c = Client(PORT)
    # (a) The prefix announces 5 MiB; only a little of the body follows.
    sid = c.start(UNARY)
    t0 = time.monotonic()
    c.send(sid, frame(b"\0" * 1000, length=5 * MIB))
    r = c.run(sid, 5)
    secs = (r.t_end or time.monotonic()) - t0
    tap.ok(r.done and r.grpc_status == GRPC_RESOURCE_EXHAUSTED and secs < 3,
           "prefix announcing 5 MiB: grpc-status 8 without the body (%.2f s)" % secs, r)
    comment("grpc-message: %r" % r.grpc_message)
    good_call_works(PORT, "after a 5 MiB announcement: the connection serves a good call", c)

    # (b) 4 MiB + 1 of real body bytes, sent as flow control allows.
    sid = c.start(UNARY)
    body = frame(b"\x5a" * (4 * MIB + 1))
    sent = c.send(sid, body, end=True)
    r = c.run(sid, 10)
    comment("4 MiB + 1 message: %d of %d bytes sent before the stream ended" %
            (sent, len(body)))
    tap.ok(r.done and r.grpc_status == GRPC_RESOURCE_EXHAUSTED,
           "message of 4 MiB + 1 bytes sent in DATA frames: grpc-status 8", r)
    good_call_works(PORT, "after a 4 MiB + 1 message: the connection serves a good call "
                    "(no connection window leaked)", c)

    c.close()

    # (c) Exactly at the limit: a 4 MiB SimpleRequest is accepted. It is
    # larger than the stream window (http2.initial_window_size, 1 MiB), so
    # the server has to open the window while the message is still partial.
    c = Client(PORT)
    req = h2raw.simple_request(response_size=5, body=b"")
    overhead = len(h2raw.simple_request(body=b"x" * (4 * MIB))) - 4 * MIB
    req = h2raw.simple_request(response_size=5, body=b"y" * (4 * MIB - overhead - len(req)))
    sid = c.start(UNARY)
    body = frame(req)
    sent = c.send(sid, body, end=True, timeout=4)
    r = c.run(sid, 3 if sent < len(body) else 10)
    tap.ok(len(req) == 4 * MIB and r.ok() and
           [h2raw.payload_body_len(m) for _f, m in r.messages()] == [5],
           "UnaryCall with a request message of exactly 4 MiB succeeds",
           "message of %d bytes; %d of %d bytes sent (stream send window left: %d); %r"
           % (len(req), sent, len(body), c.h2.local_flow_control_window(sid)
              if not r.done else -1, r))
    c.close()
    good_call_works(PORT, "message size limit: a new connection serves a good call")


section("oversize message", case_oversize)


# ------------------------------------------------------------------ 6. header list limit

def case_big_headers():
    c = Client(PORT)
    r = c.call(EMPTY, frame(b""), extra=[("x-big", "b" * 10000)])
    comment("10000-byte header: :status %s grpc-status %r reset %r goaway %r"
            % (r.http_status, r.grpc_status, r.reset, c.goaway))
    tap.ok(not r.ok() and (r.done or c.closed or c.goaway is not None),
           "x-big header of 10000 bytes (limit 8 KiB): the call does not succeed", r)
    tap.ok(r.http_status == "431" and r.grpc_status == GRPC_RESOURCE_EXHAUSTED
           or r.reset is not None,
           "x-big header of 10000 bytes: :status 431 with grpc-status 8, or RST_STREAM", r)
    if c.closed or c.goaway is not None:
        c.close()
        good_call_works(PORT, "after an oversize header list: a new connection works")
    else:
        good_call_works(PORT, "after an oversize header list: the same connection works", c)
        c.close()


section("header list limit", case_big_headers)


# ------------------------------------------------------------------ 7. resets mid-call

def case_reset_mid_call():
    c = Client(PORT)
    sid = c.start(FULL_DUPLEX)
    c.send(sid, frame(h2raw.streaming_output_request([(10, 0)])))
    s = c.streams[sid]
    try:
        c.wait(lambda: len(s.data) >= 15 or s.done, 10, "the first FullDuplexCall response")
    except (TimeoutError, h2raw.ConnectionGone) as e:
        comment(str(e))
    msgs = h2raw.unframe(s.data) if len(s.data) >= 15 else []
    tap.ok(not s.done and len(msgs) == 1 and h2raw.payload_body_len(msgs[0][1]) == 10,
           "FullDuplexCall: the first response (10 bytes of payload) arrives", s)
    c.h2.reset_stream(sid, h2raw.CANCEL)
    c.flush()
    good_call_works(PORT, "FullDuplexCall reset with CANCEL: the same connection serves a "
                    "good call", c)

    sid = c.start(STREAMING_OUTPUT)
    c.send(sid, frame(h2raw.streaming_output_request([(10, 500000)] * 10)), end=True)
    s = c.streams[sid]
    t0 = time.monotonic()
    try:
        c.wait(lambda: len(s.data) >= 15 or s.done, 10, "the first StreamingOutputCall response")
    except (TimeoutError, h2raw.ConnectionGone) as e:
        comment(str(e))
    first = time.monotonic() - t0
    tap.ok(not s.done and len(s.data) >= 15,
           "StreamingOutputCall (10 x 500 ms): the first response arrives (%.2f s)" % first, s)
    c.h2.reset_stream(sid, h2raw.CANCEL)
    c.flush()
    # Let the handler wake from its pause and find the call cancelled.
    deadline = time.monotonic() + 1.2
    while time.monotonic() < deadline and not c.closed:
        c.pump(deadline - time.monotonic())
    tap.ok(SRV.alive(), "StreamingOutputCall reset while the handler sleeps: the server "
           "is still running", SRV.log()[-2000:])
    good_call_works(PORT, "after the StreamingOutputCall reset: the same connection serves "
                    "a good call", c)
    c.close()
    good_call_works(PORT, "after the resets: a new connection serves a good call")


section("reset mid-call", case_reset_mid_call)


# ------------------------------------------------------------------ 8. PING flood

def case_ping_flood():
    c = Client(PORT)
    for i in range(10):
        c.h2.ping(struct.pack(">Q", i + 1))
    c.flush()
    try:
        c.wait(lambda: c.goaway is not None, 5, "GOAWAY")
    except (TimeoutError, h2raw.ConnectionGone) as e:
        comment(str(e))
    ga = c.goaway
    tap.ok(ga is not None and ga.error_code == h2raw.ENHANCE_YOUR_CALM,
           "10 PINGs back to back: GOAWAY ENHANCE_YOUR_CALM (0xb)",
           "goaway %r; ping acks %d; closed %r" % (ga, c.ping_acks, c.close_reason))
    tap.ok(ga is not None and ga.additional_data == b"too_many_pings",
           "10 PINGs back to back: GOAWAY debug data \"too_many_pings\"", ga)
    tap.ok(c.wait_closed(5), "10 PINGs back to back: the server then closes the connection",
           c.frames[-5:])
    c.close()
    good_call_works(PORT, "after a PING flood: a new connection serves a good call")


section("ping flood", case_ping_flood)


# ------------------------------------------------------------------ 11. many streams

def case_many_streams():
    c = Client(PORT)
    sids = []
    for _ in range(100):
        sid = c.h2.get_next_available_stream_id()
        c._stream(sid)
        c.h2.send_headers(sid, h2raw.request_headers(EMPTY))
        c.h2.send_data(sid, frame(b""), end_stream=True)
        sids.append(sid)
    c.flush()
    res = c.run(sids, 15)
    good = [r for r in res if r.ok() and r.messages() == [(0, b"")]]
    tap.ok(len(good) == 100, "100 concurrent EmptyCall streams on one connection: all "
           "grpc-status 0 (%d/100)" % len(good),
           "\n".join(repr(r) for r in res if r not in good)[:3000])
    c.close()


section("many streams", case_many_streams)


# ------------------------------------------------------------------ 12-14. gRPC headers

def case_grpc_headers():
    c = Client(PORT)
    r = c.call(EMPTY, frame(b"abc", compressed=True))
    tap.ok(r.done and r.grpc_status == GRPC_INTERNAL,
           "compressed flag without grpc-encoding: grpc-status 13", r)
    comment("grpc-message: %r" % r.grpc_message)

    r = c.call(EMPTY, frame(b""), extra=[("grpc-encoding", "snappy")])
    tap.ok(r.done and r.grpc_status == GRPC_UNIMPLEMENTED,
           "grpc-encoding snappy: grpc-status 12", r)
    tap.ok("gzip" in (r.grpc_message or ""),
           "grpc-encoding snappy: grpc-message lists the accepted encodings", r.grpc_message)
    comment("grpc-message: %r; grpc-accept-encoding: %r"
            % (r.grpc_message, (r.headers or {}).get("grpc-accept-encoding")))

    r = c.call(EMPTY, frame(b""), extra=[("grpc-timeout", "123456789S")])
    tap.ok(r.done and r.grpc_status not in (None, GRPC_OK),
           "grpc-timeout 123456789S (9 digits): non-zero grpc-status (got %r)"
           % r.grpc_status, r)
    tap.ok(r.grpc_status == GRPC_INTERNAL, "grpc-timeout 123456789S: grpc-status 13", r)

    r = c.call(EMPTY, frame(b""), extra=[("grpc-timeout", "99999999S")])
    tap.ok(r.ok(), "grpc-timeout 99999999S (8 digits) is accepted", r)
    good_call_works(PORT, "after the bad gRPC headers: the same connection serves a good call",
                    c)
    c.close()


section("grpc headers", case_grpc_headers)


# ------------------------------------------------------------------ 15. framing

def case_framing():
    c = Client(PORT)
    req = frame(h2raw.simple_request(response_size=7, body=b"x" * 20))
    sid = c.start(UNARY)
    for i in range(len(req)):
        c.h2.send_data(sid, req[i:i + 1], end_stream=(i == len(req) - 1))
    c.flush()
    r = c.run(sid, 10)
    tap.ok(r.ok() and [h2raw.payload_body_len(m) for _f, m in r.messages()] == [7],
           "UnaryCall split into %d one-byte DATA frames: OK with a 7-byte payload"
           % len(req), r)

    one = frame(h2raw.simple_request(response_size=3, body=b"z"))
    sid = c.start(UNARY)
    c.h2.send_data(sid, one + one, end_stream=True)
    c.flush()
    r = c.run(sid, 10)
    tap.ok(r.done and r.grpc_status == GRPC_INTERNAL,
           "two messages in one DATA frame for a unary method: grpc-status 13", r)
    comment("grpc-message: %r" % r.grpc_message)
    good_call_works(PORT, "after the framing cases: the same connection serves a good call", c)
    c.close()


section("framing", case_framing)


# ------------------------------------------------------------------ 9. idle connection

def case_idle():
    srv = servers["idle"]
    c = Client(srv.port)
    r = c.empty_call()
    tap.ok(r.ok(), "max_connection_idle=600ms: a call succeeds", r)
    t0 = r.t_end or time.monotonic()
    try:
        c.wait(lambda: c.goaway is not None, 4, "GOAWAY")
    except (TimeoutError, h2raw.ConnectionGone) as e:
        comment(str(e))
    ga = c.goaway
    secs = (c.t_goaway or time.monotonic()) - t0
    tap.ok(ga is not None and ga.error_code == h2raw.NO_ERROR and 0.45 <= secs <= 3,
           "max_connection_idle=600ms: GOAWAY NO_ERROR %.2f s after the call" % secs,
           "goaway %r; closed %r" % (ga, c.close_reason))
    comment("idle GOAWAY: %r" % ga)
    tap.ok(c.wait_closed(3), "max_connection_idle=600ms: the connection is then closed",
           c.frames[-5:])
    c.close()
    good_call_works(srv.port, "max_connection_idle=600ms: a new connection serves a call")


section("idle connection", case_idle)


# ------------------------------------------------------------------ 10. slowloris

def case_slowloris():
    srv = servers["handshake"]
    for label, sent in (("nothing", b""), ("half a preface", b"PRI * HTTP/2.0\r\n")):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        try:
            if sent:
                s.sendall(sent)
            closed, secs, got = raw_until_eof(s, 5)
        finally:
            s.close()
        comment("handshake_timeout=500ms, client sent %s: closed=%s after %.2f s, GOAWAY %r"
                % (label, closed, secs, goaway_of(got)))
        tap.ok(closed and 0.4 <= secs <= 3,
               "handshake_timeout=500ms, client sends %s: closed after %.2f s" % (label, secs))
    # A connection that did its handshake is not subject to the timer.
    c = Client(srv.port)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not c.closed:
        c.pump(deadline - time.monotonic())
    good_call_works(srv.port, "handshake_timeout=500ms: a connection open for 1 s after its "
                    "handshake still serves a call", c)
    c.close()


section("slowloris", case_slowloris)


# ------------------------------------------------------------------ 16. shutdown

for name, srv in servers.items():
    tap.ok(srv.alive(), "%s server: still running at the end" % name, srv.log()[-3000:])
    rc = srv.stop(signal.SIGTERM, timeout=15)
    tap.ok(rc == 0, "%s server: SIGTERM -> exit status 0 (got %r)" % (name, rc),
           srv.log()[-3000:])
    bad = bad_log_lines(srv)
    tap.ok(not bad, "%s server: no sanitizer or assertion reports in its log" % name,
           "\n".join(bad[:20]))

signal.alarm(0)
tap.done()
