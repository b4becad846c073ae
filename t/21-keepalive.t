#!/usr/bin/python3
"""The keepalive thread's connection timers, seen on the wire with raw
HTTP/2 frames: server keepalive PINGs, closing a peer that never answers
them, and max connection age with its grace period. Prints TAP.
"""
import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import h2raw  # noqa: E402

tap = harness.Tap()
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


class Raw:
    """Reads whole frames from a socket; answers SETTINGS, optionally PINGs."""

    def __init__(self, port, ack_pings):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.s.sendall(PREFACE + frame(SETTINGS, 0, 0))
        self.ack_pings = ack_pings
        self.buf = b""
        self.pings = 0
        self.goaway = None
        self.eof = False

    def pump(self, seconds):
        end = time.time() + seconds
        while time.time() < end and not self.eof:
            self.s.settimeout(max(0.01, end - time.time()))
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                self.eof = True
                break
            if not d:
                self.eof = True
                break
            self.buf += d
            while len(self.buf) >= 9:
                ln = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) < 9 + ln:
                    break
                ftype, flags = self.buf[3], self.buf[4]
                payload = self.buf[9:9 + ln]
                self.buf = self.buf[9 + ln:]
                if ftype == SETTINGS and not flags & 1:
                    self.s.sendall(frame(SETTINGS, 1, 0))
                elif ftype == PING and not flags & 1:
                    self.pings += 1
                    if self.ack_pings:
                        self.s.sendall(frame(PING, 1, 0, payload))
                elif ftype == GOAWAY:
                    self.goaway = (int.from_bytes(payload[4:8], "big"), payload[8:])
        return self


# Keepalive PINGs on a quiet connection, answered: the connection lives on.
srv = harness.start_server("interop-server", [
    "--port", "0", "--keepalive.time=300ms", "--keepalive.timeout=400ms"])
c = Raw(srv.port, ack_pings=True).pump(1.6)
tap.ok(c.pings >= 2, "server sends keepalive PINGs on a quiet connection",
       "pings seen: %d" % c.pings)
tap.ok(not c.eof and c.goaway is None, "a peer that answers them keeps its connection",
       "eof=%s goaway=%s" % (c.eof, c.goaway))

# Unanswered: the server gives up after keepalive.timeout.
t0 = time.time()
d = Raw(srv.port, ack_pings=False).pump(4)
tap.ok(d.pings >= 1 and d.eof, "a peer that never answers is closed",
       "pings=%d eof=%s" % (d.pings, d.eof))
tap.ok(time.time() - t0 < 3, "closed within keepalive.time + timeout (+ scan slack)",
       "took %.2fs" % (time.time() - t0))
c.s.close()
tap.ok(srv.stop() == 0, "server exits 0")

# Max connection age: GOAWAY even on a busy connection, close after grace.
srv = harness.start_server("interop-server", [
    "--port", "0", "--keepalive.max_connection_age=500ms",
    "--keepalive.max_connection_age_grace=500ms"])
conn = h2raw.Client(srv.port)
r = conn.empty_call()
tap.ok(r.grpc_status == 0, "a call succeeds on a young connection", repr(r))
try:
    conn.wait(lambda: conn.goaway is not None, 3, "GOAWAY")
except Exception:  # noqa: BLE001 - reported by the check below
    pass
tap.ok(conn.goaway is not None and conn.goaway.error_code == h2raw.NO_ERROR,
       "max_connection_age: graceful GOAWAY (NO_ERROR)", "goaway=%r" % (conn.goaway,))
tap.ok(conn.wait_closed(3), "connection closed after the grace period")
conn.close()
tap.ok(srv.stop() == 0, "server exits 0")
tap.done()
