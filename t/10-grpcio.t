#!/usr/bin/python3
"""interop-server against grpcio (Debian's python3-grpcio), the gRPC core
client: the interop suite's cases plus limits, concurrency, TLS and a clean
shutdown. Prints TAP.

Message classes are generated at test time with protoc --python_out; the
method stubs are written by hand (grpc_tools is not packaged in Debian).
"""
import atexit
import concurrent.futures
import importlib.util
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean (distcheck: read-only)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402

tap = harness.Tap()

try:
    import grpc
except ImportError:
    tap.skip_all("python3-grpcio is not installed")

TMP = tempfile.mkdtemp(prefix="tasker-10-grpcio-")
atexit.register(shutil.rmtree, TMP, True)

SERVICE = "/grpc.testing.TestService/"
TIMEOUT = 10  # seconds, for every call that should succeed promptly
SPECIAL_MESSAGE = "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP \U0001f608\t\n"
REQUEST_SIZES = [27182, 8, 1828, 45904]
RESPONSE_SIZES = [31415, 9, 2653, 58979]
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0)]


# ------------------------------------------------------------------ messages

def load_messages():
    """Runs protoc and imports messages_pb2 and empty_pb2 by path.

    The proto package is grpc.testing, so the generated modules cannot be
    imported by package name: "grpc" is grpcio itself. test.proto is
    compiled too, to prove it is valid, but not imported.
    """
    out = os.path.join(TMP, "py")
    os.makedirs(out)
    protos = ["grpc/testing/empty.proto", "grpc/testing/messages.proto",
              "grpc/testing/test.proto"]
    subprocess.run(["protoc", "--python_out=" + out,
                    "-I", os.path.join(harness.TOP_SRCDIR, "proto")] + protos, check=True)
    mods = {}
    for name in ("empty", "messages"):
        path = os.path.join(out, "grpc", "testing", name + "_pb2.py")
        spec = importlib.util.spec_from_file_location("tasker_test_%s_pb2" % name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[name] = mod
    return mods["empty"], mods["messages"]


empty_pb2, pb = load_messages()


class Stub:
    """grpc.testing.TestService (and UnimplementedService) multicallables."""

    def __init__(self, channel):
        def m(kind, name, req, resp, service=SERVICE):
            return getattr(channel, kind)(service + name,
                                          request_serializer=req.SerializeToString,
                                          response_deserializer=resp.FromString)

        self.empty_call = m("unary_unary", "EmptyCall", empty_pb2.Empty, empty_pb2.Empty)
        self.unary_call = m("unary_unary", "UnaryCall", pb.SimpleRequest, pb.SimpleResponse)
        self.streaming_output_call = m("unary_stream", "StreamingOutputCall",
                                       pb.StreamingOutputCallRequest,
                                       pb.StreamingOutputCallResponse)
        self.streaming_input_call = m("stream_unary", "StreamingInputCall",
                                      pb.StreamingInputCallRequest,
                                      pb.StreamingInputCallResponse)
        self.full_duplex_call = m("stream_stream", "FullDuplexCall",
                                  pb.StreamingOutputCallRequest,
                                  pb.StreamingOutputCallResponse)
        self.half_duplex_call = m("stream_stream", "HalfDuplexCall",
                                  pb.StreamingOutputCallRequest,
                                  pb.StreamingOutputCallResponse)
        self.unimplemented_call = m("unary_unary", "UnimplementedCall", empty_pb2.Empty,
                                    empty_pb2.Empty)
        self.unimplemented_service = m("unary_unary", "UnimplementedCall", empty_pb2.Empty,
                                       empty_pb2.Empty,
                                       service="/grpc.testing.UnimplementedService/")


class Pipe:
    """A request iterator fed one message at a time (for ping-pong)."""

    def __init__(self):
        self._q = queue.Queue()

    def __iter__(self):
        return self

    def __next__(self):
        item = self._q.get()
        if item is None:
            raise StopIteration
        return item

    def send(self, msg):
        self._q.put(msg)

    def close(self):
        self._q.put(None)


def payload(size):
    return pb.Payload(type=pb.COMPRESSABLE, body=b"\0" * size)


def params(sizes, interval_us=0, compressed=None):
    return [pb.ResponseParameters(size=s, interval_us=interval_us,
                                  compressed=None if compressed is None
                                  else pb.BoolValue(value=compressed))
            for s in sizes]


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def expect_code(fn, code, details=None):
    """fn() must fail with `code` (and `details`, if given)."""
    try:
        fn()
    except grpc.RpcError as e:
        expect(e.code() == code, "got %s (%r), want %s" % (e.code(), e.details(), code))
        if details is not None:
            expect(e.details() == details, "details %r, want %r" % (e.details(), details))
        return
    raise AssertionError("call succeeded, want %s" % code)


# ------------------------------------------------------------------ cases

def empty_unary(stub):
    r = stub.empty_call(empty_pb2.Empty(), timeout=TIMEOUT)
    expect(r == empty_pb2.Empty(), "response is not Empty: %r" % r)


def large_unary(stub):
    r = stub.unary_call(pb.SimpleRequest(response_type=pb.COMPRESSABLE, response_size=314159,
                                         payload=payload(271828)), timeout=TIMEOUT)
    expect(r.payload.type == pb.COMPRESSABLE, "payload type %r" % r.payload.type)
    expect(r.payload.body == b"\0" * 314159, "body of %d bytes" % len(r.payload.body))


def server_streaming(stub):
    req = pb.StreamingOutputCallRequest(response_parameters=params(RESPONSE_SIZES))
    got = [len(r.payload.body) for r in stub.streaming_output_call(req, timeout=TIMEOUT)]
    expect(got == RESPONSE_SIZES, "sizes %r" % got)


def client_streaming(stub):
    reqs = (pb.StreamingInputCallRequest(payload=payload(s)) for s in REQUEST_SIZES)
    r = stub.streaming_input_call(reqs, timeout=TIMEOUT)
    expect(r.aggregated_payload_size == 74922, "aggregated %d" % r.aggregated_payload_size)


def ping_pong(stub):
    pipe = Pipe()
    call = stub.full_duplex_call(pipe, timeout=TIMEOUT)
    try:
        for req_size, resp_size in zip(REQUEST_SIZES, RESPONSE_SIZES):
            pipe.send(pb.StreamingOutputCallRequest(response_parameters=params([resp_size]),
                                                    payload=payload(req_size)))
            r = next(call)
            expect(len(r.payload.body) == resp_size,
                   "response of %d bytes, want %d" % (len(r.payload.body), resp_size))
    finally:
        pipe.close()
    rest = list(call)
    expect(rest == [], "%d extra responses" % len(rest))
    expect(call.code() == grpc.StatusCode.OK, "status %s" % call.code())


def half_duplex(stub):
    reqs = [pb.StreamingOutputCallRequest(response_parameters=params([s])) for s in
            RESPONSE_SIZES]
    got = [len(r.payload.body) for r in stub.half_duplex_call(iter(reqs), timeout=TIMEOUT)]
    expect(got == RESPONSE_SIZES, "sizes %r" % got)


def empty_stream(stub):
    call = stub.full_duplex_call(iter([]), timeout=TIMEOUT)
    got = list(call)
    expect(got == [], "%d responses" % len(got))
    expect(call.code() == grpc.StatusCode.OK, "status %s" % call.code())


INITIAL_KEY = "x-grpc-test-echo-initial"
TRAILING_KEY = "x-grpc-test-echo-trailing-bin"


def check_echo(call, initial, trailing):
    got_initial = dict(call.initial_metadata()).get(INITIAL_KEY)
    got_trailing = dict(call.trailing_metadata()).get(TRAILING_KEY)
    expect(got_initial == initial, "initial %r, want %r" % (got_initial, initial))
    expect(got_trailing == trailing, "trailing %r, want %r" % (got_trailing, trailing))


def custom_metadata_unary(stub, trailing):
    initial = "test_initial_metadata_value"
    md = ((INITIAL_KEY, initial), (TRAILING_KEY, trailing))
    _, call = stub.unary_call.with_call(
        pb.SimpleRequest(response_size=314159, payload=payload(271828)), metadata=md,
        timeout=TIMEOUT)
    check_echo(call, initial, trailing)


def custom_metadata_duplex(stub):
    initial, trailing = "test_initial_metadata_value", b"\xab\xab\xab"
    md = ((INITIAL_KEY, initial), (TRAILING_KEY, trailing))
    req = pb.StreamingOutputCallRequest(response_parameters=params([314159]),
                                        payload=payload(271828))
    call = stub.full_duplex_call(iter([req]), metadata=md, timeout=TIMEOUT)
    got = [len(r.payload.body) for r in call]
    expect(got == [314159], "sizes %r" % got)
    check_echo(call, initial, trailing)


def compressed_request(stub):
    req = pb.SimpleRequest(response_size=314159, payload=payload(271828),
                           expect_compressed=pb.BoolValue(value=True))
    # The suite's probe: a server that checks must refuse an uncompressed
    # request that claims to be compressed.
    expect_code(lambda: stub.unary_call(req, timeout=TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT)
    r = stub.unary_call(req, compression=grpc.Compression.Gzip, timeout=TIMEOUT)
    expect(len(r.payload.body) == 314159, "body of %d bytes" % len(r.payload.body))
    req.expect_compressed.value = False
    r = stub.unary_call(req, timeout=TIMEOUT)
    expect(len(r.payload.body) == 314159, "body of %d bytes" % len(r.payload.body))


def compressed_client_streaming(stub):
    reqs = [pb.StreamingInputCallRequest(payload=payload(s),
                                         expect_compressed=pb.BoolValue(value=True))
            for s in REQUEST_SIZES]
    r = stub.streaming_input_call(iter(reqs), compression=grpc.Compression.Gzip,
                                  timeout=TIMEOUT)
    expect(r.aggregated_payload_size == 74922, "aggregated %d" % r.aggregated_payload_size)
    expect_code(lambda: stub.streaming_input_call(iter(reqs[:1]), timeout=TIMEOUT),
                grpc.StatusCode.INVALID_ARGUMENT)


def compressed_response(stub):
    for want in (True, False):
        req = pb.SimpleRequest(response_size=314159, payload=payload(271828),
                               response_compressed=pb.BoolValue(value=want))
        r = stub.unary_call(req, timeout=TIMEOUT)
        expect(r.payload.body == b"\0" * 314159,
               "compressed=%s: body of %d bytes" % (want, len(r.payload.body)))


def compressed_server_streaming(stub):
    req = pb.StreamingOutputCallRequest(
        response_parameters=params([31415], compressed=True) + params([92653],
                                                                      compressed=False))
    got = [len(r.payload.body) for r in stub.streaming_output_call(req, timeout=TIMEOUT)]
    expect(got == [31415, 92653], "sizes %r" % got)


def timeout_on_sleeping_server(stub):
    req = pb.StreamingOutputCallRequest(response_parameters=params([27182],
                                                                   interval_us=2000000))
    t0 = time.monotonic()
    expect_code(lambda: list(stub.streaming_output_call(req, timeout=0.5)),
                grpc.StatusCode.DEADLINE_EXCEEDED)
    took = time.monotonic() - t0
    expect(took < 1.9, "the deadline took %.2f s to fire" % took)


def cancel_after_begin(stub):
    pipe = Pipe()
    fut = stub.streaming_input_call.future(pipe, timeout=TIMEOUT)
    try:
        fut.cancel()
        expect(fut.cancelled(), "call is not cancelled")
        expect(fut.code() == grpc.StatusCode.CANCELLED, "status %s" % fut.code())
    finally:
        pipe.close()


def cancel_after_first_response(stub):
    pipe = Pipe()
    call = stub.full_duplex_call(pipe, timeout=TIMEOUT)
    try:
        pipe.send(pb.StreamingOutputCallRequest(response_parameters=params([31415]),
                                                payload=payload(27182)))
        r = next(call)
        expect(len(r.payload.body) == 31415, "first response of %d bytes"
               % len(r.payload.body))
        call.cancel()
        expect_code(lambda: next(call), grpc.StatusCode.CANCELLED)
    finally:
        pipe.close()
    # The server must be fine afterwards.
    large_unary(stub)


def status_unary(stub, code, message):
    req = pb.SimpleRequest(response_status=pb.EchoStatus(code=code.value[0], message=message))
    expect_code(lambda: stub.unary_call(req, timeout=TIMEOUT), code, message)


def status_duplex(stub, code, message):
    req = pb.StreamingOutputCallRequest(
        response_status=pb.EchoStatus(code=code.value[0], message=message))
    expect_code(lambda: list(stub.full_duplex_call(iter([req]), timeout=TIMEOUT)), code,
                message)


def status_server_streaming(stub):
    req = pb.StreamingOutputCallRequest(
        response_parameters=params([9, 8]),
        response_status=pb.EchoStatus(code=grpc.StatusCode.ABORTED.value[0], message="after"))
    call = stub.streaming_output_call(req, timeout=TIMEOUT)
    got = []
    try:
        for r in call:
            got.append(len(r.payload.body))
        raise AssertionError("stream ended with OK")
    except grpc.RpcError as e:
        expect(e.code() == grpc.StatusCode.ABORTED, "status %s" % e.code())
        expect(e.details() == "after", "details %r" % e.details())
    expect(got == [9, 8], "sizes %r" % got)


def request_too_large(stub):
    req = pb.SimpleRequest(response_size=10, payload=payload(5 * 1024 * 1024))
    expect_code(lambda: stub.unary_call(req, timeout=TIMEOUT),
                grpc.StatusCode.RESOURCE_EXHAUSTED)
    # The connection (or the next one) still serves calls.
    empty_unary(stub)


def many_concurrent_calls(stub):
    def one(i):
        r = stub.unary_call(pb.SimpleRequest(response_size=i, payload=payload(i)),
                            timeout=TIMEOUT * 2)
        return len(r.payload.body) == i

    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as ex:
        results = list(ex.map(one, range(1, 201)))
    expect(all(results), "%d of 200 calls got a wrong payload" % results.count(False))


# ------------------------------------------------------------------ TLS

def start_tls_server(args, timeout=20):
    """As harness.start_server, for a server with a TLS listener only."""
    proc = subprocess.Popen([harness.program("interop-server")] + args,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, ASAN_OPTIONS=os.environ.get(
                                "ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")))
    harness._procs.append(proc)  # killed at exit, like the harness's own
    srv = harness.Server(proc)
    threading.Thread(target=srv._pump, daemon=True).start()
    deadline = time.time() + timeout
    with srv._cv:
        while srv.tls_port is None:
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("interop-server --use_tls did not start:\n"
                                   + "\n".join(srv.lines))
            srv._cv.wait(0.2)
    return srv


def tls_cases():
    certs = os.path.join(TMP, "certs")
    subprocess.run(["sh", os.path.join(harness.TOP_SRCDIR, "t", "lib", "mkcerts.sh"), certs],
                   check=True)
    srv = None

    def start():
        nonlocal srv
        srv = start_tls_server(["--port", "0", "--use_tls",
                                "--tls_cert_file", os.path.join(certs, "server.pem"),
                                "--tls_key_file=" + os.path.join(certs, "server.key")])

    if not tap.check("TLS: interop-server --use_tls starts", start):
        return
    with open(os.path.join(certs, "ca.pem"), "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel("127.0.0.1:%d" % srv.tls_port, creds,
                                  CHANNEL_OPTIONS + [("grpc.ssl_target_name_override",
                                                      "localhost")])
    stub = Stub(channel)
    tap.check("TLS: large unary", lambda: large_unary(stub))
    tap.check("TLS: ping pong", lambda: ping_pong(stub))
    channel.close()
    rc = srv.stop()
    tap.ok(rc == 0, "TLS: server exits 0 on SIGTERM", "exit status %r\n%s" % (rc, srv.log()))


# ------------------------------------------------------------------ main

def main():
    try:
        srv = harness.start_server("interop-server", ["--port", "0"])
    except Exception as e:  # noqa: BLE001 - reported as a TAP failure
        tap.ok(False, "interop-server starts", e)
        tap.done()
    tap.ok(True, "interop-server starts on port %d" % srv.port)

    channel = grpc.insecure_channel("127.0.0.1:%d" % srv.port, CHANNEL_OPTIONS)
    stub = Stub(channel)
    tap.check("channel becomes ready",
              lambda: grpc.channel_ready_future(channel).result(timeout=TIMEOUT) and None)

    cases = [
        ("empty unary", lambda: empty_unary(stub)),
        ("large unary 271828 -> 314159 bytes", lambda: large_unary(stub)),
        ("server streaming", lambda: server_streaming(stub)),
        ("client streaming", lambda: client_streaming(stub)),
        ("ping pong", lambda: ping_pong(stub)),
        ("half duplex", lambda: half_duplex(stub)),
        ("empty stream", lambda: empty_stream(stub)),
        ("custom metadata: unary echo", lambda: custom_metadata_unary(stub, b"\xab\xab\xab")),
        ("custom metadata: -bin value with bytes 0..255",
         lambda: custom_metadata_unary(stub, bytes(range(256)))),
        ("custom metadata: full duplex echo", lambda: custom_metadata_duplex(stub)),
        ("compressed request (gzip, expect_compressed)", lambda: compressed_request(stub)),
        ("compressed client streaming", lambda: compressed_client_streaming(stub)),
        ("compressed response (response_compressed)", lambda: compressed_response(stub)),
        ("compressed server streaming", lambda: compressed_server_streaming(stub)),
        ("timeout on sleeping server -> DEADLINE_EXCEEDED",
         lambda: timeout_on_sleeping_server(stub)),
        ("cancel after begin", lambda: cancel_after_begin(stub)),
        ("cancel after first response; server still serves",
         lambda: cancel_after_first_response(stub)),
        ("status code and message: unary",
         lambda: status_unary(stub, grpc.StatusCode.UNKNOWN, "test status message")),
        ("status code and message: full duplex",
         lambda: status_duplex(stub, grpc.StatusCode.UNKNOWN, "test status message")),
        ("special status message (whitespace, BMP and non-BMP Unicode)",
         lambda: status_unary(stub, grpc.StatusCode.UNKNOWN, SPECIAL_MESSAGE)),
        ("status after responses: server streaming", lambda: status_server_streaming(stub)),
        ("unimplemented method -> UNIMPLEMENTED",
         lambda: expect_code(lambda: stub.unimplemented_call(empty_pb2.Empty(),
                                                             timeout=TIMEOUT),
                             grpc.StatusCode.UNIMPLEMENTED)),
        ("unimplemented service -> UNIMPLEMENTED",
         lambda: expect_code(lambda: stub.unimplemented_service(empty_pb2.Empty(),
                                                                timeout=TIMEOUT),
                             grpc.StatusCode.UNIMPLEMENTED)),
        ("5 MiB request -> RESOURCE_EXHAUSTED", lambda: request_too_large(stub)),
        ("200 concurrent unary calls from 20 threads", lambda: many_concurrent_calls(stub)),
    ]
    for name, fn in cases:
        tap.check(name, fn)
        if not srv.alive():
            tap.ok(False, "server still running after: " + name, srv.log())
            tap.done()

    tap.ok(srv.alive(), "server still running after every case", srv.log())
    channel.close()
    tls_cases()

    rc = srv.stop(signal.SIGTERM)
    tap.ok(rc == 0, "server exits 0 on SIGTERM", "exit status %r\n%s" % (rc, srv.log()))
    tap.done()


if __name__ == "__main__":
    main()
