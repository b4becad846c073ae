#!/usr/bin/python3
"""grpc.health.v1.Health and server reflection (v1 and v1alpha) as a
python3-grpcio client sees them on interop-server.

The message classes are generated at test time from the project's own
protos. They are loaded by file path under private module names because
their package, "grpc", is also the name of the grpcio module.
"""
import importlib.util
import os
import signal
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from harness import TOP_SRCDIR, Tap, start_server  # noqa: E402

TIMEOUT = 10
REFLECTION_VERSIONS = ("v1", "v1alpha")
PROTOS = ["grpc/health/v1/health.proto"] + [
    "grpc/reflection/%s/reflection.proto" % v for v in REFLECTION_VERSIONS]

tap = Tap()
try:
    import grpc
    from google.protobuf import descriptor_pb2, descriptor_pool
except ImportError as e:
    tap.skip_all("python3-grpcio / python3-protobuf missing: %s" % e)
PROTOC = os.environ.get("PROTOC") or shutil.which("protoc")
if not PROTOC:
    tap.skip_all("protoc not found")


def generate(tmp):
    """Runs protoc --python_out and returns the modules by proto path."""
    subprocess.run([PROTOC, "-I", os.path.join(TOP_SRCDIR, "proto"), "--python_out", tmp]
                   + PROTOS, check=True)
    mods = {}
    for i, proto in enumerate(PROTOS):
        path = os.path.join(tmp, proto[:-len(".proto")] + "_pb2.py")
        spec = importlib.util.spec_from_file_location("_t40_pb2_%d" % i, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        mods[proto] = mod
    return mods


tmpdir = tempfile.mkdtemp(prefix="t40-")
try:
    pb = generate(tmpdir)
finally:
    shutil.rmtree(tmpdir, ignore_errors=True)
health_pb = pb["grpc/health/v1/health.proto"]
Status = health_pb.HealthCheckResponse

try:
    server = start_server("interop-server", ["--port", "0"])
except Exception as e:  # noqa: BLE001 - report and stop
    tap.ok(False, "interop-server starts", e)
    tap.done()
channel = grpc.insecure_channel("127.0.0.1:%d" % server.port)
try:
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
except grpc.FutureTimeoutError:
    tap.ok(False, "a channel to interop-server becomes ready", server.log())
    tap.done()

# ------------------------------------------------------------------ health

check = channel.unary_unary(
    "/grpc.health.v1.Health/Check",
    request_serializer=health_pb.HealthCheckRequest.SerializeToString,
    response_deserializer=health_pb.HealthCheckResponse.FromString)
watch = channel.unary_stream(
    "/grpc.health.v1.Health/Watch",
    request_serializer=health_pb.HealthCheckRequest.SerializeToString,
    response_deserializer=health_pb.HealthCheckResponse.FromString)


def expect_status(service, want):
    got = check(health_pb.HealthCheckRequest(service=service), timeout=TIMEOUT).status
    if got != want:
        return "got %s, want %s" % (Status.ServingStatus.Name(got), Status.ServingStatus.Name(want))
    return None


def check_unknown():
    try:
        r = check(health_pb.HealthCheckRequest(service="no.such.Service"), timeout=TIMEOUT)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.NOT_FOUND:
            return "status %s (%s), want NOT_FOUND" % (e.code(), e.details())
        if not e.details():
            return "NOT_FOUND without a message"
        return None
    return "answered %s instead of failing" % r


def watch_first(service, want):
    """The first Watch message arrives at once; cancelling ends the call."""
    call = watch(health_pb.HealthCheckRequest(service=service), timeout=TIMEOUT)
    first = next(call)
    call.cancel()
    try:
        for extra in call:
            return "unexpected message after cancel: %s" % extra
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            return "ended with %s, want CANCELLED" % e.code()
    if first.status != want:
        return "first status %s, want %s" % (Status.ServingStatus.Name(first.status),
                                            Status.ServingStatus.Name(want))
    return None


tap.check("health Check \"\" is SERVING", lambda: expect_status("", Status.SERVING))
tap.check("health Check grpc.testing.TestService is SERVING",
          lambda: expect_status("grpc.testing.TestService", Status.SERVING))
tap.check("health Check of an unknown service is NOT_FOUND", check_unknown)
tap.check("health Watch \"\" sends SERVING at once",
          lambda: watch_first("", Status.SERVING))
tap.check("health Watch of an unknown service sends SERVICE_UNKNOWN",
          lambda: watch_first("no.such.Service", Status.SERVICE_UNKNOWN))
tap.check("health Check still answers after cancelled Watch calls",
          lambda: expect_status("", Status.SERVING))

# ------------------------------------------------------------------ reflection

WANT_SERVICES = {"grpc.testing.TestService", "grpc.health.v1.Health",
                 "grpc.reflection.v1.ServerReflection",
                 "grpc.reflection.v1alpha.ServerReflection"}
HOST = "reflection.test"


def reflect(ver, requests):
    """Sends the requests on one stream; returns the responses."""
    mod = pb["grpc/reflection/%s/reflection.proto" % ver]
    info = channel.stream_stream(
        "/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % ver,
        request_serializer=mod.ServerReflectionRequest.SerializeToString,
        response_deserializer=mod.ServerReflectionResponse.FromString)
    return list(info(iter(requests), timeout=TIMEOUT))


def parse_files(resp):
    """The FileDescriptorProtos of a file_descriptor_response."""
    if resp.WhichOneof("message_response") != "file_descriptor_response":
        raise AssertionError("not a file_descriptor_response: %s" % resp)
    return [descriptor_pb2.FileDescriptorProto.FromString(b)
            for b in resp.file_descriptor_response.file_descriptor_proto]


def pool_of(files):
    """A descriptor pool built from the files (all imports must be there)."""
    pool, added, pending = descriptor_pool.DescriptorPool(), set(), list(files)
    while pending:
        ready = [f for f in pending if all(d in added for d in f.dependency)]
        if not ready:
            raise AssertionError("imports missing: %s" % sorted(
                {d for f in pending for d in f.dependency} - added))
        for f in ready:
            pool.Add(f)
            added.add(f.name)
            pending.remove(f)
    return pool


def reflection_checks(ver):
    mod = pb["grpc/reflection/%s/reflection.proto" % ver]
    Req = mod.ServerReflectionRequest
    reqs = [
        Req(host=HOST, list_services=""),
        Req(host=HOST, file_containing_symbol="grpc.testing.TestService"),
        Req(host=HOST, file_by_filename="grpc/testing/messages.proto"),
        Req(host=HOST, file_containing_symbol="grpc.testing.TestService.UnaryCall"),
        Req(host=HOST, file_containing_symbol="no.such.Symbol"),
        Req(host=HOST, file_by_filename="no/such/file.proto"),
    ]
    state = {}

    def exchange():
        state["resps"] = reflect(ver, reqs)
        resps = state["resps"]
        if len(resps) != len(reqs):
            return "%d responses to %d requests" % (len(resps), len(reqs))
        for i, (q, r) in enumerate(zip(reqs, resps)):
            if r.original_request != q:
                return "response %d echoes %s, want %s" % (i, r.original_request, q)
            if r.valid_host != HOST:
                return "response %d valid_host %r, want %r" % (i, r.valid_host, HOST)
        return None

    def list_services():
        r = state["resps"][0]
        names = {s.name for s in r.list_services_response.service}
        missing = WANT_SERVICES - names
        return "missing %s in %s" % (sorted(missing), sorted(names)) if missing else None

    def symbol_service():
        files = parse_files(state["resps"][1])
        names = [f.name for f in files]
        if not names or names[0] != "grpc/testing/test.proto":
            return "files %s do not start with grpc/testing/test.proto" % names
        if len(set(names)) != len(names):
            return "a file is repeated: %s" % names
        for want in ("grpc/testing/messages.proto", "grpc/testing/empty.proto"):
            if want not in names:
                return "%s missing from %s" % (want, names)
        svc = pool_of(files).FindServiceByName("grpc.testing.TestService")
        if svc.FindMethodByName("UnaryCall").input_type.full_name != "grpc.testing.SimpleRequest":
            return "UnaryCall does not take grpc.testing.SimpleRequest"
        return None

    def by_filename():
        files = parse_files(state["resps"][2])
        names = [f.name for f in files]
        if not names or names[0] != "grpc/testing/messages.proto":
            return "files %s do not start with grpc/testing/messages.proto" % names
        pool_of(files).FindMessageTypeByName("grpc.testing.SimpleRequest")
        return None

    def symbol_method():
        names = [f.name for f in parse_files(state["resps"][3])]
        if not names or names[0] != "grpc/testing/test.proto":
            return "files %s do not start with grpc/testing/test.proto" % names
        return None

    def not_found(i):
        def fn():
            r = state["resps"][i]
            if r.WhichOneof("message_response") != "error_response":
                return "not an error_response: %s" % r
            if r.error_response.error_code != grpc.StatusCode.NOT_FOUND.value[0]:
                return "error_code %d, want 5" % r.error_response.error_code
            if not r.error_response.error_message:
                return "no error_message"
            return None
        return fn

    tap.check("reflection %s: one response per request, in order, host echoed" % ver, exchange)
    if "resps" not in state or len(state["resps"]) != len(reqs):
        return
    tap.check("reflection %s: list_services names every service" % ver, list_services)
    tap.check("reflection %s: file_containing_symbol grpc.testing.TestService "
              "returns test.proto and its imports" % ver, symbol_service)
    tap.check("reflection %s: file_by_filename grpc/testing/messages.proto" % ver, by_filename)
    tap.check("reflection %s: file_containing_symbol of a method" % ver, symbol_method)
    tap.check("reflection %s: unknown symbol is error_response NOT_FOUND" % ver, not_found(4))
    tap.check("reflection %s: unknown file is error_response NOT_FOUND" % ver, not_found(5))


for v in REFLECTION_VERSIONS:
    reflection_checks(v)

# A watcher hears NOT_SERVING when the server starts shutting down, before
# the connection goes away.
watcher = watch(health_pb.HealthCheckRequest(service=""), timeout=30)
seen = [next(watcher).status]
tap.ok(server.alive(), "interop-server still running", server.log())
server.proc.send_signal(signal.SIGTERM)


def watch_sees_not_serving():
    try:
        for r in watcher:
            seen.append(r.status)
            if r.status == Status.NOT_SERVING:
                return None
    except grpc.RpcError as e:
        return "stream ended (%s) after %s without NOT_SERVING" % (e.code(), seen)
    return "stream ended after %s without NOT_SERVING" % seen


tap.check("health Watch sees NOT_SERVING when the server shuts down", watch_sees_not_serving)
channel.close()
rc = server.stop()
tap.ok(rc == 0, "interop-server exits 0 on SIGTERM", "exit status %s\n%s" % (rc, server.log()))
tap.done()
