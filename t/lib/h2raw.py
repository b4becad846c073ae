"""A small raw HTTP/2 gRPC client for protocol-level tests.

It drives python3-h2 (h2 4.x) over a plain socket, so a test can send
requests that well-behaved gRPC clients never send: wrong headers, odd
framing, resets, PING floods. Everything it reads is recorded per stream
(response headers, trailers, data, RST_STREAM) and per connection
(GOAWAY, EOF), and every wait has a deadline, so a misbehaving server makes
a test fail instead of hang.

Also here: hand-written protobuf encoding for the few grpc.testing
messages the tests need, and gRPC message framing.
"""
import socket
import struct
import time
import urllib.parse

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

SERVICE = "/grpc.testing.TestService/"

# HTTP/2 error codes used by the tests.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB

# Our receive windows: large, and topped up as data arrives, so that the
# server's responses never wait on us.
RECV_WINDOW = 16 * 1024 * 1024


# ------------------------------------------------------------------ protobuf

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_varint(field, value):
    return varint(field << 3 | 0) + varint(value)


def pb_bytes(field, value):
    return varint(field << 3 | 2) + varint(len(value)) + bytes(value)


def simple_request(response_size=0, body=b""):
    """grpc.testing.SimpleRequest{response_size, payload{body}}."""
    out = b""
    if response_size:
        out += pb_varint(2, response_size)
    if body:
        out += pb_bytes(3, pb_bytes(2, body))
    return out


def streaming_output_request(params):
    """grpc.testing.StreamingOutputCallRequest with response_parameters
    given as (size, interval_us) pairs."""
    out = b""
    for size, interval_us in params:
        rp = b""
        if size:
            rp += pb_varint(1, size)
        if interval_us:
            rp += pb_varint(2, interval_us)
        out += pb_bytes(2, rp)
    return out


def pb_fields(buf):
    """Parses one protobuf message level: [(field, wiretype, value)]."""
    out = []
    i = 0
    while i < len(buf):
        key = 0
        shift = 0
        while True:
            b = buf[i]
            i += 1
            key |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        field, wt = key >> 3, key & 7
        if wt == 0:
            v = 0
            shift = 0
            while True:
                b = buf[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out.append((field, wt, v))
        elif wt == 2:
            ln = 0
            shift = 0
            while True:
                b = buf[i]
                i += 1
                ln |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            out.append((field, wt, bytes(buf[i:i + ln])))
            i += ln
        elif wt == 1:
            out.append((field, wt, bytes(buf[i:i + 8])))
            i += 8
        elif wt == 5:
            out.append((field, wt, bytes(buf[i:i + 4])))
            i += 4
        else:
            raise ValueError("unsupported wire type %d" % wt)
    return out


def payload_body_len(msg):
    """Length of payload.body (field 1 -> field 2) of a SimpleResponse or
    StreamingOutputCallResponse."""
    for f, wt, v in pb_fields(msg):
        if f == 1 and wt == 2:
            for f2, wt2, v2 in pb_fields(v):
                if f2 == 2 and wt2 == 2:
                    return len(v2)
            return 0
    return 0


# ------------------------------------------------------------------ gRPC framing

def frame(msg, compressed=False, length=None):
    """A gRPC length-prefixed message; length overrides the announced size."""
    n = len(msg) if length is None else length
    return struct.pack(">BI", 1 if compressed else 0, n) + bytes(msg)


def unframe(data):
    """Splits response DATA into messages; raises on a truncated one."""
    msgs = []
    i = 0
    while i < len(data):
        if len(data) - i < 5:
            raise ValueError("truncated message prefix")
        flag, n = struct.unpack(">BI", bytes(data[i:i + 5]))
        if len(data) - i - 5 < n:
            raise ValueError("truncated message")
        msgs.append((flag, bytes(data[i + 5:i + 5 + n])))
        i += 5 + n
    return msgs


def request_headers(path, authority="127.0.0.1", content_type="application/grpc", te=True,
                    extra=()):
    h = [(":method", "POST"), (":scheme", "http"), (":path", path),
         (":authority", authority)]
    if content_type is not None:
        h.append(("content-type", content_type))
    if te:
        h.append(("te", "trailers"))
    h.extend(extra)
    return [(k.encode(), v.encode() if isinstance(v, str) else v) for k, v in h]


# ------------------------------------------------------------------ client

class StreamResult:
    """Everything received on one stream."""

    def __init__(self, sid):
        self.sid = sid
        self.headers = None      # dict (str -> str) of the first HEADERS
        self.trailers = None     # dict of the trailers (None for Trailers-Only)
        self.data = bytearray()
        self.ended = False       # END_STREAM received
        self.reset = None        # RST_STREAM error code received (or sent by h2)
        self.t_end = None        # when it ended, reset or the connection went

    @property
    def done(self):
        return self.ended or self.reset is not None

    def _meta(self):
        """Where grpc-status lives: trailers, or the headers of a
        Trailers-Only response."""
        if self.trailers is not None:
            return self.trailers
        return self.headers or {}

    @property
    def http_status(self):
        return (self.headers or {}).get(":status")

    @property
    def grpc_status(self):
        v = self._meta().get("grpc-status")
        return int(v) if v is not None and v.isdigit() else v

    @property
    def grpc_message(self):
        v = self._meta().get("grpc-message")
        return urllib.parse.unquote(v) if v is not None else None

    def messages(self):
        return unframe(self.data)

    def ok(self):
        return (self.ended and self.http_status == "200" and self.grpc_status == 0)

    def __repr__(self):
        return ("stream %d: headers=%r trailers=%r data=%d bytes ended=%r reset=%r"
                % (self.sid, self.headers, self.trailers, len(self.data), self.ended,
                   self.reset))


class ConnectionGone(Exception):
    pass


def _hdict(headers):
    d = {}
    for k, v in headers:
        k = k.decode("latin-1") if isinstance(k, bytes) else k
        v = v.decode("latin-1") if isinstance(v, bytes) else v
        d[k] = v
    return d


class Client:
    """One HTTP/2 connection to the server at 127.0.0.1:port."""

    def __init__(self, port, host="127.0.0.1", timeout=10, handshake=True, source=None):
        """source: the local address to connect from ("127.0.0.2"), or None."""
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.h2 = h2.connection.H2Connection(config=cfg)
        self.streams = {}
        self.goaway = None       # ConnectionTerminated event
        self.t_goaway = None
        self.closed = False      # EOF or reset from the server
        self.t_closed = None
        self.close_reason = None
        self.protocol_error = None   # h2 could not make sense of the server
        self.ping_acks = 0
        self.remote_settings = False
        self.frames = []         # a log of the events, for diagnostics
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: RECV_WINDOW})
        self.h2.increment_flow_control_window(RECV_WINDOW - 65535)
        self.flush()
        if handshake:
            self.wait(lambda: self.remote_settings, timeout, "server SETTINGS")

    # -------------------------------------------------------------- I/O

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError as e:
                self._gone("send failed: %s" % e)

    def send_raw(self, data):
        """Bytes straight onto the socket, past h2."""
        self.sock.sendall(data)

    def _gone(self, why):
        if not self.closed:
            self.closed = True
            self.t_closed = time.monotonic()
            self.close_reason = why
            for s in self.streams.values():
                if s.t_end is None:
                    s.t_end = self.t_closed

    def pump(self, timeout):
        """Reads what arrives within timeout (once) and handles it. Returns
        False when nothing could be read (timeout or connection gone)."""
        if self.closed:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            return False
        except OSError as e:
            self._gone("recv failed: %s" % e)
            return False
        if not data:
            self._gone("EOF")
            return False
        if self.protocol_error is not None:
            return True   # h2 is wedged; keep draining to see EOF
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.protocol_error = e
            self.frames.append("client-side protocol error: %r" % e)
            return True
        for ev in events:
            self._event(ev)
        if self.h2.inbound_flow_control_window < RECV_WINDOW // 2:
            self.h2.increment_flow_control_window(RECV_WINDOW - self.h2.inbound_flow_control_window)
        self.flush()
        return True

    def _stream(self, sid):
        s = self.streams.get(sid)
        if s is None:
            s = self.streams[sid] = StreamResult(sid)
        return s

    def _event(self, ev):
        now = time.monotonic()
        self.frames.append(repr(ev)[:300])
        if isinstance(ev, h2.events.ResponseReceived):
            self._stream(ev.stream_id).headers = _hdict(ev.headers)
        elif isinstance(ev, h2.events.TrailersReceived):
            self._stream(ev.stream_id).trailers = _hdict(ev.headers)
        elif isinstance(ev, h2.events.DataReceived):
            self._stream(ev.stream_id).data += ev.data
            if ev.flow_controlled_length:
                try:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                except (h2.exceptions.StreamClosedError, KeyError):
                    pass
        elif isinstance(ev, h2.events.StreamEnded):
            s = self._stream(ev.stream_id)
            s.ended = True
            s.t_end = s.t_end or now
        elif isinstance(ev, h2.events.StreamReset):
            s = self._stream(ev.stream_id)
            s.reset = ev.error_code
            s.t_end = s.t_end or now
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            self.t_goaway = now
        elif isinstance(ev, h2.events.PingAckReceived):
            self.ping_acks += 1
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.remote_settings = True

    def wait(self, pred, timeout, what="condition"):
        """Pumps until pred() holds; raises TimeoutError / ConnectionGone."""
        deadline = time.monotonic() + timeout
        while not pred():
            if self.closed:
                raise ConnectionGone("connection closed (%s) while waiting for %s"
                                     % (self.close_reason, what))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out waiting for %s; last events:\n  %s"
                                   % (what, "\n  ".join(self.frames[-10:])))
            self.pump(min(left, 0.5))

    def run(self, sids, timeout=10):
        """Reads events until every stream in sids has ended (END_STREAM or
        RST_STREAM), the connection is closed, or timeout. Never raises;
        returns the StreamResults (a stream cut off by the connection going
        away is left not done)."""
        single = isinstance(sids, int)
        if single:
            sids = [sids]
        deadline = time.monotonic() + timeout
        while not all(self._stream(s).done for s in sids):
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                break
            self.pump(min(left, 0.5))
        res = [self._stream(s) for s in sids]
        return res[0] if single else res

    def wait_closed(self, timeout):
        """Pumps until EOF; True if the server closed the connection."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.pump(min(left, 0.5))
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -------------------------------------------------------------- requests

    def start(self, path, headers=None, end=False, **kw):
        """Opens a stream with HEADERS (request_headers(path, **kw) unless
        headers are given); returns its id."""
        sid = self.h2.get_next_available_stream_id()
        self._stream(sid)
        self.h2.send_headers(sid, headers if headers is not None else request_headers(path, **kw),
                             end_stream=end)
        self.flush()
        return sid

    def send(self, sid, data, end=False, flush=True, timeout=10):
        """DATA within the current windows (waits up to timeout for
        WINDOW_UPDATEs). Gives up quietly when the stream ends or the time
        is up; returns the bytes sent (END_STREAM only after all of them)."""
        sent = 0
        data = memoryview(bytes(data))
        deadline = time.monotonic() + timeout
        while True:
            s = self._stream(sid)
            if s.done or self.closed or time.monotonic() > deadline:
                return sent
            if sent == len(data):
                if end:
                    try:
                        self.h2.end_stream(sid)
                    except h2.exceptions.StreamClosedError:
                        pass
                    self.flush()
                return sent
            n = min(len(data) - sent, self.h2.local_flow_control_window(sid),
                    self.h2.max_outbound_frame_size)
            if n <= 0:
                self.pump(0.5)
                continue
            try:
                self.h2.send_data(sid, data[sent:sent + n].tobytes())
            except h2.exceptions.StreamClosedError:
                return sent
            sent += n
            if flush:
                self.flush()
            # Notice an early answer (or reset) without blocking.
            self.pump(0.001)

    def call(self, path, body, timeout=10, **kw):
        """A whole unary call: HEADERS, DATA+END_STREAM; returns the result."""
        sid = self.start(path, **kw)
        self.send(sid, body, end=True)
        return self.run(sid, timeout)

    def empty_call(self, timeout=10):
        return self.call(SERVICE + "EmptyCall", frame(b""), timeout)

    def ping(self, payload=b"\0" * 8):
        self.h2.ping(payload)
        self.flush()
