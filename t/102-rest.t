#!/usr/bin/python3
"""The REST twin and the worker's API (tasker-api.md §1.11, §2.1, §2.2, §6, §7).

Against a private PostgreSQL cluster (t/lib/tasker_env.py):

  tasker-worker   its three services over gRPC (a grpcio client on modules
                  protoc generates here from proto/), grpc.health.v1 and
                  reflection; every REST route of §2.2 against its RPC:
                  the same message, field by field, as
                  json_format.MessageToDict(..., preserving_proto_field_name=
                  True, including_default_value_fields=True), and a JSON
                  that json_format.ParseDict takes back unchanged; template
                  validation; error JSON and statuses (404, 405, 400
                  BAD_REQUEST / JSON_ERROR, 413, 503 not_ready with its
                  checks, 408 after web.request_timeout_ms while the
                  database is frozen); request ids; CORS preflight;
                  keep-alive; /metrics; /config off by default.
  auth            a worker with API keys: 401 with x-auth-failure-reason /
                  -severity without or with a bad credential, 403 without the
                  permission, 200 with it, over REST and gRPC; the check
                  happens before the body is read; public routes stay open.
  taskerd         every route of §2.1 against its RPC on the same data
                  (tasks made over REST and gRPC and run by the worker): the
                  same fields, plus the REST-only TaskResponse `status` /
                  `steps` and the list `pagination`; step resolution (the
                  result and the metadata stored together, the transition
                  recording who and why), task cancellation (with and
                  without a reason, recorded on the task's and the steps'
                  transitions), and the REST error cases.
  command channel /health/detailed evaluates channel_saturation from the
                  RPC work queue (healthy when idle, with its figures); a
                  taskerd with one handler thread and watermarks 10/2 whose
                  calls wait for a table lock held here: degraded at 80 %,
                  unhealthy while reading is paused, CreateTask refused
                  (REST 503 BACKPRESSURE with Retry-After, gRPC UNAVAILABLE
                  with retry-after) naming the RPC work queue, and healthy
                  and admitting again once the queue drains.

TASKER_TEST_KEEP=1 keeps the temporary directory; TASKER_TEST_VERBOSE=1
copies the process logs to stderr.
"""
import glob
import http.client
import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid as uuidlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import tasker_env  # noqa: E402

tap = harness.Tap()
try:
    import grpc
    from google.protobuf import json_format
except ImportError as e:
    tap.skip_all("python3-grpcio / python3-protobuf missing: %s" % e)
PROTOC = tasker_env.require(tap, protoc=True)

# ------------------------------------------------------------------ protos

PYDIR, PROTOS = tasker_env.generate_protos(
    PROTOC, "t102-py-",
    extra=["grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto"])
pb = {name: importlib.import_module("tasker.v1.%s_pb2" % name)
      for name in ("common", "tasks", "steps", "templates", "analytics", "dlq", "health",
                   "config", "worker")}


def load_by_path(rel, name):
    """grpc/... modules by file: the name "grpc" is grpcio's package."""
    spec = importlib.util.spec_from_file_location(name, os.path.join(PYDIR, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


health_pb = load_by_path("grpc/health/v1/health_pb2.py", "_t102_health_pb2")
refl_pb = load_by_path("grpc/reflection/v1/reflection_pb2.py", "_t102_reflection_pb2")
W = pb["worker"]

env = tasker_env.Env("102-rest", deadline=290, tap=tap)
try:
    env.start()
except Exception as e:  # noqa: BLE001 - report and stop
    print("Bail out! %s" % str(e).replace("\n", " "), flush=True)
    sys.exit(1)

# ------------------------------------------------------------------ templates

TPL_DIR = os.path.join(env.tmp, "templates")
os.makedirs(TPL_DIR)
TEMPLATES = {
    "mixed.yaml": """
name: mixed
namespace_name: rest_tests
version: 1.0.0
description: One step runs here, one is for a worker in another language
steps:
  - name: here
    description: a no-op
    handler: {callable: noop}
  - name: elsewhere
    dependencies: [here]
    handler: {callable: "Acme::Ruby::Handler"}
    retry: {retryable: false, max_attempts: 1}
""",
    "foreign.yaml": """
name: foreign
namespace_name: rest_tests
version: 1.0.0
steps:
  - name: only_elsewhere
    handler: {callable: "Acme::Other"}
""",
    "editable.yaml": """
name: editable
namespace_name: rest_tests
version: 2.1.0
steps:
  - name: one
    handler: {callable: echo}
""",
}
for fname, text in TEMPLATES.items():
    with open(os.path.join(TPL_DIR, fname), "w") as f:
        f.write(text)
TEMPLATE_PATH = tasker_env.TEST_TEMPLATES + ":" + TPL_DIR


def templates_in(namespace):
    n = 0
    for d in (tasker_env.TEST_TEMPLATES, TPL_DIR):
        for f in glob.glob(os.path.join(d, "*.yaml")):
            with open(f) as fh:
                if re.search(r"^namespace_name:\s*%s\s*$" % namespace, fh.read(), re.M):
                    n += 1
    return n


# ------------------------------------------------------------------ clients

def rest(port, method, path, body=None, headers=None, raw=None, conn=None):
    """One request; returns (status, headers with lower-case names, parsed JSON or text)."""
    c = conn or http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    h = dict(headers or {})
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    if data is not None:
        h.setdefault("Content-Type", "application/json")
    c.request(method, path, body=data, headers=h)
    r = c.getresponse()
    text = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    if conn is None:
        c.close()
    if hdrs.get("content-type", "").startswith("application/json") and text:
        return r.status, hdrs, json.loads(text)
    return r.status, hdrs, text.decode("utf-8", "replace")


def rpc(channel, service, method, req, resp_cls, metadata=None):
    """A unary call; returns (response or None, code, details, trailing metadata dict)."""
    f = channel.unary_unary("/%s/%s" % (service, method),
                            request_serializer=type(req).SerializeToString,
                            response_deserializer=resp_cls.FromString)
    try:
        resp, call = f.with_call(req, metadata=metadata, timeout=20)
        return resp, grpc.StatusCode.OK, "", dict(call.trailing_metadata() or ())
    except grpc.RpcError as e:
        return None, e.code(), e.details(), dict(e.trailing_metadata() or ())


def as_dict(msg):
    return json_format.MessageToDict(msg, including_default_value_fields=True,
                                     preserving_proto_field_name=True)


VOLATILE = {"timestamp", "last_checked", "duration_ms", "uptime_seconds", "pool_utilization",
            "calculated_at", "analysis_period_start", "cache_age_seconds",
            "oldest_entry_age_seconds", "minutes_in_dlq", "time_in_state_minutes",
            "task_age_minutes", "priority_score", "database_pool_utilization"}


def masked(v, keys=VOLATILE):
    if isinstance(v, dict):
        return {k: ("*" if k in keys else masked(x, keys)) for k, x in v.items()}
    if isinstance(v, list):
        return [masked(x, keys) for x in v]
    return v


def diff(a, b, path=""):
    """The first difference between two JSON values, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return "%s.%s: only in %s" % (path, k, "REST" if k in a else "gRPC")
            d = diff(a[k], b[k], path + "." + k)
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return "%s: %d vs %d elements" % (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b)):
            d = diff(x, y, "%s[%d]" % (path, i))
            if d:
                return d
        return None
    if a != b or type(a) is str and type(b) is not str or type(b) is str and type(a) is not str:
        return "%s: REST %r, gRPC %r" % (path, a, b)
    return None


def same(name, rest_json, msg, mask=VOLATILE):
    """REST JSON == MessageToDict(gRPC message), volatile fields masked."""
    if msg is None:
        return tap.ok(False, name, "no gRPC answer")
    return tap.ok(diff(masked(rest_json, mask), masked(as_dict(msg), mask)) is None, name,
                  diff(masked(rest_json, mask), masked(as_dict(msg), mask)))


def round_trips(name, rest_json, cls):
    """json_format takes the REST JSON (no unknown field) and gives it back."""
    try:
        back = as_dict(json_format.ParseDict(rest_json, cls()))
    except json_format.ParseError as e:
        return tap.ok(False, name, "ParseDict: %s" % e)
    return tap.ok(diff(rest_json, back) is None, name, diff(rest_json, back))


def is_error(body, code):
    return (isinstance(body, dict) and set(body) == {"error"} and
            set(body["error"]) == {"code", "message"} and body["error"]["code"] == code and
            isinstance(body["error"]["message"], str) and body["error"]["message"] != "")


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def ports_of(p):
    m1 = p.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
    m2 = p.wait_line(r"listening h2c 127\.0\.0\.1:(\d+)", 15)
    m3 = p.wait_line(r"worker (\S+) serving namespace", 15)
    return (int(m1.group(1)) if m1 else None, int(m2.group(1)) if m2 else None,
            m3.group(1) if m3 else None)


def wait_ready(port, timeout):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if rest(port, "GET", "/health/ready")[0] == 200:
                return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def pg_pids():
    """The cluster's postmaster and its children (processes this test started)."""
    with open(os.path.join(env.cluster.dir, "data", "postmaster.pid")) as f:
        pm = int(f.readline())
    pids = [pm]
    for st in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(st) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pm:
                pids.append(int(st.split("/")[2]))
        except (OSError, IndexError, ValueError):
            pass
    return pids


# ================================================================== worker

NS = "engine_tests,rest_tests"
w1 = env.worker("--worker.web_bind_address=127.0.0.1:0", "--web.max_body_bytes=4096",
                "--web.request_timeout_ms=3000", "--worker.health_check_timeout_ms=20000",
                namespaces=NS, template_path=TEMPLATE_PATH)
RPORT, GPORT, WID = ports_of(w1)
tap.ok(RPORT and GPORT and WID, "tasker-worker logs its REST and gRPC ports and its id",
       w1.log(20))
ch = grpc.insecure_channel("127.0.0.1:%d" % GPORT)
WH, WT, WC = ("tasker.v1.WorkerHealthService", "tasker.v1.WorkerTemplateService",
              "tasker.v1.WorkerConfigService")

# ------------------------------------------------------------------ gRPC

r, code, _, _ = rpc(ch, WH, "CheckHealth", W.WorkerHealthRequest(), W.WorkerBasicHealthResponse)
tap.ok(code == grpc.StatusCode.OK and r.status == "healthy" and r.worker_id == WID and
       r.timestamp.seconds > 0, "gRPC CheckHealth: healthy, the worker's id", (code, r))
r, code, _, _ = rpc(ch, WH, "CheckLiveness", W.WorkerLivenessRequest(),
                    W.WorkerBasicHealthResponse)
tap.ok(code == grpc.StatusCode.OK and r.status == "alive", "gRPC CheckLiveness: alive", r)
r, code, _, _ = rpc(ch, WH, "CheckReadiness", W.WorkerReadinessRequest(),
                    W.WorkerReadinessResponse)
tap.ok(code == grpc.StatusCode.OK and r.status == "ready" and
       [c.status for c in (r.checks.database, r.checks.command_processor,
                           r.checks.queue_processing)] == ["healthy"] * 3 and
       list(r.system_info.supported_namespaces) == NS.split(",") and
       r.system_info.worker_type == "c" and r.system_info.command_processor_active and
       r.system_info.pool_utilization.tasker_pool.max_connections > 0,
       "gRPC CheckReadiness: ready, three healthy checks, system info", r)
r, code, _, _ = rpc(ch, WH, "CheckDetailedHealth", W.WorkerDetailedHealthRequest(),
                    W.WorkerDetailedHealthResponse)
checks = r.checks if r else None
tap.ok(code == grpc.StatusCode.OK and r.status == "healthy" and
       all(getattr(checks, n).status == "healthy" and getattr(checks, n).last_checked.seconds
           for n in ("database", "command_processor", "queue_processing", "event_system",
                     "step_processing", "circuit_breakers")) and
       "LISTEN/NOTIFY" in checks.event_system.message and not r.HasField("distributed_cache"),
       "gRPC CheckDetailedHealth: healthy, six real checks, no cache claimed", r)
r, code, _, _ = rpc(ch, WC, "GetConfig", W.WorkerGetConfigRequest(), W.WorkerGetConfigResponse)
tap.ok(code == grpc.StatusCode.OK and r.worker_id == WID and r.worker_type == "c" and
       r.messaging.backend == "pgmq" and
       list(r.messaging.queues) == ["worker_engine_tests_queue", "worker_rest_tests_queue",
                                    "orchestration_step_results"] and
       not r.auth.enabled and r.auth.api_key_header.lower() == "x-api-key" and
       r.metadata.version != "", "gRPC GetConfig: id, type, real queue names, auth off", r)
r, code, _, _ = rpc(ch, WT, "ListTemplates", W.WorkerListTemplatesRequest(include_cache_stats=True),
                    W.WorkerTemplateListResponse)
want_count = templates_in("engine_tests") + templates_in("rest_tests")
tap.ok(code == grpc.StatusCode.OK and list(r.supported_namespaces) == NS.split(",") and
       r.template_count == want_count and r.HasField("cache_stats") and
       r.cache_stats.total_cached == want_count and "handler:noop" in r.worker_capabilities and
       "handler:echo" in r.worker_capabilities,
       "gRPC ListTemplates: namespaces, %d templates, capabilities, cache stats" % want_count, r)
r, code, _, _ = rpc(ch, WT, "ListTemplates", W.WorkerListTemplatesRequest(namespace="rest_tests"),
                    W.WorkerTemplateListResponse)
tap.ok(code == grpc.StatusCode.OK and list(r.supported_namespaces) == ["rest_tests"] and
       r.template_count == 3 and not r.HasField("cache_stats"),
       "gRPC ListTemplates of one namespace", r)
MIXED = W.WorkerGetTemplateRequest(namespace="rest_tests", name="mixed", version="1.0.0")
r, code, _, _ = rpc(ch, WT, "GetTemplate", MIXED, W.WorkerTemplateResponse)
tap.ok(code == grpc.StatusCode.OK and r.template.name == "mixed" and
       r.template.description.startswith("One step") and
       [(s.name, s.retryable, s.max_attempts, s.description) for s in r.template.steps] ==
       [("here", True, 3, "a no-op"), ("elsewhere", False, 1, "")] and
       list(r.handler_metadata.step_names) == ["here", "elsewhere"] and r.cached and
       r.access_count == 1, "gRPC GetTemplate: the loaded template, counted", r)
r2, code, _, _ = rpc(ch, WT, "GetTemplate", MIXED, W.WorkerTemplateResponse)
tap.ok(r2 is not None and r2.access_count == 2, "gRPC GetTemplate: the count goes up", r2)
r, code, details, _ = rpc(ch, WT, "GetTemplate",
                          W.WorkerGetTemplateRequest(namespace="rest_tests", name="nope",
                                                     version="1.0.0"),
                          W.WorkerTemplateResponse)
tap.ok(code == grpc.StatusCode.NOT_FOUND and "rest_tests/nope@1.0.0" in details,
       "gRPC GetTemplate of an unknown template: NOT_FOUND", (code, details))
statuses = {}
for svc in ("", WH, WT, WC):
    r, code, _, _ = rpc(ch, "grpc.health.v1.Health", "Check",
                        health_pb.HealthCheckRequest(service=svc), health_pb.HealthCheckResponse)
    statuses[svc] = r.status if r else code
tap.ok(all(s == health_pb.HealthCheckResponse.SERVING for s in statuses.values()),
       "grpc.health.v1: the server and the three services SERVING", statuses)
try:
    stub = ch.stream_stream("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                            request_serializer=refl_pb.ServerReflectionRequest.SerializeToString,
                            response_deserializer=refl_pb.ServerReflectionResponse.FromString)
    out = list(stub(iter([refl_pb.ServerReflectionRequest(list_services="")]), timeout=20))
    names = {s.name for s in out[0].list_services_response.service}
except grpc.RpcError as e:
    names = str(e)
tap.ok(isinstance(names, set) and {WH, WT, WC} <= names,
       "reflection lists the three worker services", names)

# ------------------------------------------------------------------ REST = gRPC

REST_VS_GRPC = [
    ("/health", WH, "CheckHealth", W.WorkerHealthRequest(), W.WorkerBasicHealthResponse),
    ("/health/live", WH, "CheckLiveness", W.WorkerLivenessRequest(),
     W.WorkerBasicHealthResponse),
    ("/health/ready", WH, "CheckReadiness", W.WorkerReadinessRequest(),
     W.WorkerReadinessResponse),
    ("/health/detailed", WH, "CheckDetailedHealth", W.WorkerDetailedHealthRequest(),
     W.WorkerDetailedHealthResponse),
    ("/v1/templates?include_cache_stats=true", WT, "ListTemplates",
     W.WorkerListTemplatesRequest(include_cache_stats=True), W.WorkerTemplateListResponse),
    ("/v1/templates?namespace=engine_tests", WT, "ListTemplates",
     W.WorkerListTemplatesRequest(namespace="engine_tests"), W.WorkerTemplateListResponse),
    ("/v1/templates/rest_tests/mixed/1.0.0", WT, "GetTemplate", MIXED, W.WorkerTemplateResponse),
]
for path, svc, method, req, cls in REST_VS_GRPC:
    g, code, _, _ = rpc(ch, svc, method, req, cls)
    st, hd, body = rest(RPORT, "GET", path)
    ok = tap.ok(st == 200 and hd.get("content-type") == "application/json",
                "GET %s: 200 application/json" % path, (st, hd, body))
    if ok:
        mask = VOLATILE | ({"access_count", "message"} if "mixed" in path or "health" in path
                           else set())
        same("GET %s = %s.%s" % (path, svc.split(".")[-1], method), body, g, mask)
        round_trips("GET %s: json_format takes it back unchanged" % path, body, cls)
st, _, body = rest(RPORT, "GET", "/v1/templates/rest_tests/mixed/1.0.0")
tap.ok(st == 200 and body["access_count"] == "5" and body["cached"] is True and
       body["template"]["steps"][1] == {"name": "elsewhere", "retryable": False,
                                        "max_attempts": 1},
       "REST GetTemplate: int64 as a string, unset optional absent, the shared counter", body)

# ------------------------------------------------------------------ errors, ids, CORS

st, hd, body = rest(RPORT, "GET", "/nope")
tap.ok(st == 404 and is_error(body, "NOT_FOUND") and UUID_RE.match(hd.get("x-request-id", "")),
       "unknown route: 404 NOT_FOUND error JSON with a request id", (st, hd, body))
st, hd, body = rest(RPORT, "GET", "/config")
tap.ok(st == 404 and is_error(body, "NOT_FOUND"), "/config is 404 unless enabled", (st, body))
st, hd, body = rest(RPORT, "GET", "/v1/templates/rest_tests/nope/1.0.0")
tap.ok(st == 404 and is_error(body, "NOT_FOUND") and "nope" in body["error"]["message"],
       "unknown template: 404 NOT_FOUND from the operation", (st, body))
st, hd, body = rest(RPORT, "POST", "/health", body={})
tap.ok(st == 405 and is_error(body, "METHOD_NOT_ALLOWED") and hd.get("allow") == "GET",
       "POST /health: 405 with Allow: GET", (st, hd, body))
st, hd, body = rest(RPORT, "GET", "/v1/templates?include_cache_stats=maybe")
tap.ok(st == 400 and is_error(body, "BAD_REQUEST") and
       "include_cache_stats" in body["error"]["message"],
       "a bad query value: 400 BAD_REQUEST naming it", (st, body))
VALIDATE = "/v1/templates/rest_tests/mixed/1.0.0/validate"
st, hd, body = rest(RPORT, "POST", VALIDATE, raw=b'{"a": ')
tap.ok(st == 400 and is_error(body, "JSON_ERROR"), "a body that is not JSON: 400 JSON_ERROR",
       (st, body))
st, hd, body = rest(RPORT, "POST", VALIDATE, raw=b"x" * 10000)
tap.ok(st == 413 and is_error(body, "PAYLOAD_TOO_LARGE") and "x-request-id" in hd,
       "a body over web.max_body_bytes: 413", (st, body))
st, hd, _ = rest(RPORT, "GET", "/health", headers={"X-Request-Id": "req-abc.123:x_y"})
tap.ok(hd.get("x-request-id") == "req-abc.123:x_y", "a valid X-Request-Id is echoed", hd)
st, hd, _ = rest(RPORT, "GET", "/health", headers={"X-Request-Id": "bad id\t!"})
tap.ok(UUID_RE.match(hd.get("x-request-id", "")), "an invalid one is replaced by a new id", hd)
ids = {rest(RPORT, "GET", "/health/live")[1].get("x-request-id") for _ in range(3)}
tap.ok(len(ids) == 3, "every response gets its own id", ids)
st, hd, body = rest(RPORT, "OPTIONS", "/v1/templates",
                    headers={"Origin": "http://example.test",
                             "Access-Control-Request-Method": "GET",
                             "Access-Control-Request-Headers": "authorization, x-api-key"})
tap.ok(st == 204 and hd.get("access-control-allow-origin") == "*" and
       "PATCH" in hd.get("access-control-allow-methods", "") and
       hd.get("access-control-allow-headers") == "authorization, x-api-key" and
       "x-request-id" in hd, "CORS preflight: 204, wide open", (st, hd))
st, hd, _ = rest(RPORT, "GET", "/health", headers={"Origin": "http://example.test"})
tap.ok(hd.get("access-control-allow-origin") == "*" and
       "x-request-id" in hd.get("access-control-expose-headers", ""),
       "CORS headers on an ordinary response", hd)
conn = http.client.HTTPConnection("127.0.0.1", RPORT, timeout=20)
socks = []
for path in ("/health", "/v1/templates", "/nope", "/health/live", "/v1/templates?namespace=x"):
    rest(RPORT, "GET", path, conn=conn)
    socks.append(conn.sock)
tap.ok(socks[0] is not None and all(s is socks[0] for s in socks),
       "keep-alive: five requests (one a 404) on one connection")
conn.close()

# ------------------------------------------------------------------ validation

st, _, body = rest(RPORT, "POST", VALIDATE)
tap.ok(st == 200 and body.get("valid") is True and body["errors"] == [] and
       [s["handler_available"] for s in body["steps"]] == [True, False] and
       body["steps"][1]["dependencies"] == ["here"] and
       any("Acme::Ruby::Handler" in x for x in body["warnings"]),
       "validate: valid, the step without a handler here is a warning", body)
st, _, body = rest(RPORT, "POST", "/v1/templates/rest_tests/foreign/1.0.0/validate")
tap.ok(st == 200 and body.get("valid") is False and
       any("no step of this template can run" in x for x in body["errors"]),
       "validate: a template no step of which can run here is not valid", body)
EDITABLE = os.path.join(TPL_DIR, "editable.yaml")
with open(EDITABLE, "a") as f:
    f.write("    description: added later\n")
st, _, body = rest(RPORT, "POST", "/v1/templates/rest_tests/editable/2.1.0/validate")
tap.ok(st == 200 and body.get("valid") is True and
       any("changed since start-up" in x for x in body["warnings"]),
       "validate: a changed file is a warning", body)
with open(EDITABLE, "w") as f:
    f.write("name: editable\nsteps: [\n")
st, _, body = rest(RPORT, "POST", "/v1/templates/rest_tests/editable/2.1.0/validate")
tap.ok(st == 200 and body.get("valid") is False and
       any("no longer loads" in x for x in body["errors"]),
       "validate: a file that no longer parses is an error", body)
with open(EDITABLE, "w") as f:  # taskerd reads this directory later
    f.write(TEMPLATES["editable.yaml"])
st, _, body = rest(RPORT, "POST", "/v1/templates/rest_tests/nope/1.0.0/validate")
tap.ok(st == 404 and is_error(body, "NOT_FOUND"), "validate: unknown template 404", (st, body))

# ------------------------------------------------------------------ metrics

st, hd, text = rest(RPORT, "GET", "/metrics")
tap.ok(st == 200 and hd.get("content-type", "").startswith("text/plain") and
       "grpc_server_handled_total" in text and "tasker_worker_messages_in_hand" in text,
       "/metrics: the gRPC server's families and the worker's", (st, hd, text[:300]))
st, hd, text = rest(RPORT, "GET", "/metrics/worker")
tap.ok(st == 200 and ('tasker_worker_info{worker_id="%s"' % WID) in text and
       "grpc_server" not in text, "/metrics/worker: the worker's families only", text[:300])

# ------------------------------------------------------------------ database trouble

pids = pg_pids()
for p in pids:
    os.kill(p, signal.SIGSTOP)
t0 = time.time()
try:
    st, hd, body = rest(RPORT, "GET", "/health/ready")
finally:
    for p in pids:
        os.kill(p, signal.SIGCONT)
took = time.time() - t0
tap.ok(st == 408 and is_error(body, "TIMEOUT") and 2.5 < took < 8,
       "a frozen database: 408 TIMEOUT after web.request_timeout_ms (%.1f s)" % took,
       (st, body))
tap.ok(wait_ready(RPORT, 30), "ready again once the database runs")

env.cluster.stop()
try:
    st, hd, body = rest(RPORT, "GET", "/health/ready")
    g, code, details, _ = rpc(ch, WH, "CheckReadiness", W.WorkerReadinessRequest(),
                              W.WorkerReadinessResponse)
    st2, _, body2 = rest(RPORT, "GET", "/health")
finally:
    env.cluster.start()
tap.ok(st == 503 and isinstance(body, dict) and body.get("status") == "not_ready" and
       body["checks"]["database"]["status"] == "unhealthy" and body["worker_id"] == WID,
       "database down: /health/ready 503 with the checks", (st, body))
tap.ok(code == grpc.StatusCode.UNAVAILABLE and details == "Service is not ready",
       "database down: gRPC CheckReadiness UNAVAILABLE", (code, details))
tap.ok(st2 == 200 and body2.get("status") == "healthy", "database down: /health still 200",
       (st2, body2))
tap.ok(wait_ready(RPORT, 40), "ready again after the database restarted")

# ================================================================== auth

READER, ADMIN = "reader-" + uuidlib.uuid4().hex, "admin-" + uuidlib.uuid4().hex
conf = os.path.join(env.tmp, "auth-worker.conf")
with open(conf, "w") as f:
    f.write("""[auth]
enabled = true
api_keys_enabled = true

[auth.api_key.reader]
key = %s
permissions = worker:templates_read
description = reads templates

[auth.api_key.admin]
key = %s
permissions = worker:*, templates:validate

[web]
config_endpoint_enabled = true
max_body_bytes = 1024
""" % (READER, ADMIN))
w2 = env.worker("--config=" + conf, "--worker.web_bind_address=127.0.0.1:0",
                namespaces="rest_tests", template_path=TPL_DIR + "/mixed.yaml")
APORT, AGPORT, AWID = ports_of(w2)
tap.ok(APORT and AGPORT, "a worker with API keys starts", w2.log(20))
R = {"X-API-Key": READER}
A = {"X-API-Key": ADMIN}

st, hd, body = rest(APORT, "GET", "/v1/templates")
tap.ok(st == 401 and is_error(body, "AUTHENTICATION_FAILED") and
       hd.get("x-auth-failure-reason") == "missing_credentials" and
       hd.get("x-auth-failure-severity") in ("low", "medium", "high"),
       "no credentials: 401 with the failure headers", (st, hd, body))
st, hd, body = rest(APORT, "GET", "/v1/templates", headers={"X-API-Key": "wrong"})
tap.ok(st == 401 and hd.get("x-auth-failure-reason") == "invalid_api_key",
       "a wrong API key: 401 invalid_api_key", (st, hd, body))
st, hd, body = rest(APORT, "GET", "/v1/templates", headers={"Authorization": "Bearer x.y.z"})
tap.ok(st == 401 and hd.get("x-auth-failure-reason") in ("invalid_token", "expired_token"),
       "a bad bearer token: 401", (st, hd, body))
st, hd, body = rest(APORT, "GET", "/v1/templates", headers=R)
tap.ok(st == 200 and body["supported_namespaces"] == ["rest_tests"],
       "worker:templates_read: 200", (st, body))
st, hd, body = rest(APORT, "POST", VALIDATE, headers=R)
tap.ok(st == 403 and is_error(body, "AUTHORIZATION_FAILED") and
       hd.get("x-auth-failure-reason") == "missing_permission" and
       "templates:validate" in body["error"]["message"],
       "validate without templates:validate: 403", (st, hd, body))
st, hd, body = rest(APORT, "POST", VALIDATE, headers=A)
tap.ok(st == 200 and body.get("valid") is True, "validate with templates:validate: 200",
       (st, body))
st, hd, body = rest(APORT, "POST", VALIDATE, raw=b"y" * 20000)
tap.ok(st == 401, "credentials are checked before the body is read (401, not 413)",
       (st, body))
st, _, _ = rest(APORT, "GET", "/health")
st2, _, _ = rest(APORT, "GET", "/metrics")
tap.ok(st == 200 and st2 == 200, "/health and /metrics stay public", (st, st2))
st, hd, body = rest(APORT, "GET", "/config", headers=R)
tap.ok(st == 403, "/config without worker:config_read: 403", (st, body))
st, hd, body = rest(APORT, "GET", "/config", headers=A)
tap.ok(st == 200 and body["worker_id"] == AWID and body["auth"]["enabled"] is True and
       body["auth"]["api_key_count"] == 2 and READER not in json.dumps(body) and
       ADMIN not in json.dumps(body) and "database" not in json.dumps(body).lower(),
       "/config (enabled): the safe worker config, no key, no URL", (st, body))
ach = grpc.insecure_channel("127.0.0.1:%d" % AGPORT)
g, code, details, trailers = rpc(ach, WT, "ListTemplates", W.WorkerListTemplatesRequest(),
                                 W.WorkerTemplateListResponse)
tap.ok(code == grpc.StatusCode.UNAUTHENTICATED and
       trailers.get("x-auth-failure-reason") == "missing_credentials",
       "gRPC without credentials: UNAUTHENTICATED with the failure trailer",
       (code, details, trailers))
g, code, _, _ = rpc(ach, WT, "ListTemplates", W.WorkerListTemplatesRequest(),
                    W.WorkerTemplateListResponse, metadata=[("x-api-key", READER)])
tap.ok(code == grpc.StatusCode.OK, "gRPC with worker:templates_read: OK", code)
g, code, _, _ = rpc(ach, WC, "GetConfig", W.WorkerGetConfigRequest(), W.WorkerGetConfigResponse,
                    metadata=[("x-api-key", READER)])
tap.ok(code == grpc.StatusCode.PERMISSION_DENIED, "gRPC GetConfig without the permission",
       code)
g, code, _, _ = rpc(ach, WC, "GetConfig", W.WorkerGetConfigRequest(), W.WorkerGetConfigResponse,
                    metadata=[("x-api-key", ADMIN)])
st, _, body = rest(APORT, "GET", "/config", headers=A)
tap.ok(code == grpc.StatusCode.OK, "gRPC GetConfig with worker:*", code)
same("GET /config = WorkerConfigService.GetConfig", body, g)
g, code, _, _ = rpc(ach, WH, "CheckHealth", W.WorkerHealthRequest(), W.WorkerBasicHealthResponse)
tap.ok(code == grpc.StatusCode.OK, "gRPC health stays public", code)
ach.close()
w2.stop(timeout=40)

# ================================================================== taskerd

d = env.taskerd("--orchestration.web_bind_address=127.0.0.1:0",
                "--web.config_endpoint_enabled=true", template_path=TEMPLATE_PATH)
m = d.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
OPORT = int(m.group(1)) if m else None
tap.ok(OPORT is not None, "taskerd logs its REST port", d.log(20))
och = grpc.insecure_channel("127.0.0.1:%d" % d.port)
T, S, TS = pb["tasks"], pb["steps"], "tasker.v1.TaskService"


def wait_task(task_uuid, states, timeout=40):
    end = time.time() + timeout
    while time.time() < end:
        st, _, body = rest(OPORT, "GET", "/v1/tasks/" + task_uuid)
        if st == 200 and body["status"] in states:
            return body
        time.sleep(0.3)
    return None


st, hd, created = rest(OPORT, "POST", "/v1/tasks",
                       body={"name": "noop_diamond", "namespace": "engine_tests",
                             "version": "1.0.0", "context": {"n": 1, "s": "x"},
                             "tags": ["rest"], "priority": 5, "options": {"x": 1},
                             "requested_at": "2024-01-01T00:00:00Z"})
tap.ok(st == 201 and created.get("status") and len(created.get("steps", [])) == 4 and
       created["initiator"] == "system" and created["source_system"] == "tasker-core" and
       created["reason"] == "Task requested" and created["context"] == {"n": 1, "s": "x"} and
       created["priority"] == 5, "POST /v1/tasks: 201, a TaskResponse with the REST defaults",
       (st, created))
REST_TASK = created.get("task_uuid") if isinstance(created, dict) else None
g, code, _, _ = rpc(och, TS, "CreateTask",
                    T.CreateTaskRequest(name="noop_diamond", namespace="engine_tests",
                                        version="1.0.0", tags=["grpc"]),
                    T.CreateTaskResponse)
tap.ok(code == grpc.StatusCode.OK and g.task.initiator == "grpc", "gRPC CreateTask", code)
GRPC_TASK = g.task.task_uuid if g else None
done = [wait_task(t, ("complete",)) for t in (REST_TASK, GRPC_TASK)]
tap.ok(all(done), "both tasks complete (the worker ran them)", done)

g, _, _, _ = rpc(och, TS, "GetTask", T.GetTaskRequest(task_uuid=REST_TASK, include_steps=True),
                 T.GetTaskResponse)
st, _, body = rest(OPORT, "GET", "/v1/tasks/" + REST_TASK)
core = {k: v for k, v in body.items() if k not in ("status", "steps")}
same("GET /v1/tasks/{uuid} = GetTask.task (+ status, steps)", core, g.task if g else None)
tap.ok(body["status"] == "complete" and g is not None and
       diff(body["steps"], as_dict(g)["steps"]) is None,
       "GET /v1/tasks/{uuid}: `steps` = GetTask.steps, `status` the state",
       diff(body["steps"], as_dict(g)["steps"]) if g else None)
round_trips("GET /v1/tasks/{uuid}: the task fields round-trip as Task", core, T.Task)

g, _, _, _ = rpc(och, TS, "ListTasks",
                 T.ListTasksRequest(pagination=pb["common"].PaginationRequest(limit=1, offset=1),
                                    namespace="engine_tests"),
                 T.ListTasksResponse)
st, _, body = rest(OPORT, "GET", "/v1/tasks?namespace=engine_tests&per_page=1&page=2")
total = int(g.pagination.total) if g else -1
tap.ok(st == 200 and len(body["tasks"]) == 1 and
       body["pagination"] == {"page": 2, "per_page": 1, "total_count": total,
                              "total_pages": total, "has_next": total > 2,
                              "has_previous": True},
       "GET /v1/tasks: page 2 of %d, the pagination object" % total, body.get("pagination"))
rest_tasks = [{k: v for k, v in t.items() if k != "status"} for t in body["tasks"]]
problem = diff(rest_tasks, as_dict(g)["tasks"]) if g else "no gRPC answer"
tap.ok(problem is None, "GET /v1/tasks: tasks = ListTasks.tasks (+ status)", problem)
st, _, body = rest(OPORT, "GET", "/v1/tasks?status=complete&per_page=100")
tap.ok(st == 200 and {t["task_uuid"] for t in body["tasks"]} >= {REST_TASK, GRPC_TASK} and
       all(t["status"] == "complete" for t in body["tasks"]),
       "GET /v1/tasks?status=complete filters by state", body.get("pagination"))

steps = as_dict(rpc(och, "tasker.v1.StepService", "ListSteps",
                    S.ListStepsRequest(task_uuid=REST_TASK), S.ListStepsResponse)[0])["steps"]
STEP = steps[0]["step_uuid"]
ROUTES = [
    ("/v1/tasks/%s/summary" % REST_TASK, TS, "GetTaskSummary",
     T.GetTaskSummaryRequest(task_uuid=REST_TASK), T.GetTaskSummaryResponse),
    ("/v1/tasks/%s/workflow_steps" % REST_TASK, "tasker.v1.StepService", "ListSteps",
     S.ListStepsRequest(task_uuid=REST_TASK), S.ListStepsResponse),
    ("/v1/tasks/%s/workflow_steps/%s" % (REST_TASK, STEP), "tasker.v1.StepService", "GetStep",
     S.GetStepRequest(task_uuid=REST_TASK, step_uuid=STEP), S.GetStepResponse),
    ("/v1/tasks/%s/workflow_steps/%s/audit" % (REST_TASK, STEP), "tasker.v1.StepService",
     "GetStepAudit", S.GetStepAuditRequest(task_uuid=REST_TASK, step_uuid=STEP),
     S.GetStepAuditResponse),
    ("/v1/templates", "tasker.v1.TemplateService", "ListTemplates",
     pb["templates"].ListTemplatesRequest(), pb["templates"].ListTemplatesResponse),
    ("/v1/templates?namespace=rest_tests", "tasker.v1.TemplateService", "ListTemplates",
     pb["templates"].ListTemplatesRequest(namespace="rest_tests"),
     pb["templates"].ListTemplatesResponse),
    ("/v1/templates/engine_tests/noop_diamond/1.0.0", "tasker.v1.TemplateService", "GetTemplate",
     pb["templates"].GetTemplateRequest(namespace="engine_tests", name="noop_diamond",
                                        version="1.0.0"),
     pb["templates"].GetTemplateResponse),
    ("/v1/analytics/performance?hours=1", "tasker.v1.AnalyticsService", "GetPerformanceMetrics",
     pb["analytics"].GetPerformanceMetricsRequest(hours=1),
     pb["analytics"].GetPerformanceMetricsResponse),
    ("/v1/analytics/bottlenecks?limit=5&min_executions=1", "tasker.v1.AnalyticsService",
     "GetBottleneckAnalysis",
     pb["analytics"].GetBottleneckAnalysisRequest(limit=5, min_executions=1),
     pb["analytics"].GetBottleneckAnalysisResponse),
    ("/v1/dlq?limit=10", "tasker.v1.DlqService", "ListEntries",
     pb["dlq"].ListDlqEntriesRequest(limit=10), pb["dlq"].ListDlqEntriesResponse),
    ("/v1/dlq?resolution_status=pending", "tasker.v1.DlqService", "ListEntries",
     pb["dlq"].ListDlqEntriesRequest(resolution_status=1), pb["dlq"].ListDlqEntriesResponse),
    ("/v1/dlq/stats", "tasker.v1.DlqService", "GetStats", pb["dlq"].GetDlqStatsRequest(),
     pb["dlq"].GetDlqStatsResponse),
    ("/v1/dlq/investigation-queue", "tasker.v1.DlqService", "GetInvestigationQueue",
     pb["dlq"].GetDlqInvestigationQueueRequest(), pb["dlq"].GetDlqInvestigationQueueResponse),
    ("/v1/dlq/staleness", "tasker.v1.DlqService", "GetStalenessMonitoring",
     pb["dlq"].GetStalenessMonitoringRequest(), pb["dlq"].GetStalenessMonitoringResponse),
    ("/health", "tasker.v1.HealthService", "CheckHealth", pb["health"].HealthRequest(),
     pb["health"].HealthResponse),
    ("/health/live", "tasker.v1.HealthService", "CheckLiveness", pb["health"].LivenessRequest(),
     pb["health"].HealthResponse),
    ("/health/ready", "tasker.v1.HealthService", "CheckReadiness",
     pb["health"].ReadinessRequest(), pb["health"].ReadinessResponse),
    ("/health/detailed", "tasker.v1.HealthService", "CheckDetailedHealth",
     pb["health"].DetailedHealthRequest(), pb["health"].DetailedHealthResponse),
    ("/config", "tasker.v1.ConfigService", "GetConfig", pb["config"].GetConfigRequest(),
     pb["config"].GetConfigResponse),
]
HEALTH_MASK = VOLATILE | {"message", "info"}
for path, svc, method, req, cls in ROUTES:
    g, code, details, _ = rpc(och, svc, method, req, cls)
    st, hd, body = rest(OPORT, "GET", path)
    shown = path.replace(REST_TASK, "{task_uuid}").replace(STEP, "{step_uuid}")
    if not tap.ok(st == 200 and code == grpc.StatusCode.OK,
                  "GET %s: 200, and %s OK" % (shown, method), (st, body, code, details)):
        continue
    same("GET %s = %s.%s" % (shown, svc.split(".")[-1], method), body, g,
         HEALTH_MASK if "health" in path else VOLATILE)
    round_trips("GET %s: json_format takes it back unchanged" % shown, body, cls)

# the command channel (the RPC work queue) of an idle taskerd: evaluated, healthy
st, _, body = rest(OPORT, "GET", "/health/detailed")
sat = body.get("checks", {}).get("channel_saturation", {}) if st == 200 else {}
m = re.fullmatch(r"normal: RPC work queue: 0 of 4096 requests waiting \(0 % of the high "
                 r"watermark\), (\d+) of (\d+) handler threads busy \(saturated from 80 %\)",
                 sat.get("message", ""))
tap.ok(st == 200 and sat.get("status") == "healthy" and m is not None and
       int(m.group(1)) <= int(m.group(2)) and int(m.group(2)) >= 1,
       "GET /health/detailed: channel_saturation healthy with the RPC work queue's figures",
       (st, sat))

# step resolution: a task whose first step always fails
st, _, failing = rest(OPORT, "POST", "/v1/tasks",
                      body={"name": "always_fails", "namespace": "engine_tests",
                            "version": "1.0.0"})
FAIL_TASK = failing.get("task_uuid") if st == 201 else None
stuck = wait_task(FAIL_TASK, ("error", "blocked_by_failures"), 60) if FAIL_TASK else None
tap.ok(stuck is not None, "always_fails ends in error", stuck and stuck["status"])
doomed = [s for s in (stuck or {}).get("steps", []) if s["name"] == "doomed_step"]
if doomed:
    path = "/v1/tasks/%s/workflow_steps/%s" % (FAIL_TASK, doomed[0]["step_uuid"])
    st, _, body = rest(OPORT, "PATCH", path, body={"action_type": "complete_manually",
                                                  "completion_data": {"result": {"done": 1},
                                                                      "metadata": {
                                                                          "ticket": "OPS-2",
                                                                          "manual": False}},
                                                  "reason": "fixed by hand",
                                                  "completed_by": "tester"})
    g, _, _, _ = rpc(och, "tasker.v1.StepService", "GetStep",
                     S.GetStepRequest(task_uuid=FAIL_TASK, step_uuid=doomed[0]["step_uuid"]),
                     S.GetStepResponse)
    tap.ok(st == 200 and body["step"]["state"] == "STEP_STATE_COMPLETE" and
           body["step"]["results"].get("result") == {"done": 1},
           "PATCH complete_manually: the step completes with the result",
           (st, body))
    tap.ok(st == 200 and body["step"]["results"].get("metadata") ==
           {"ticket": "OPS-2", "manual": True, "operator": "tester"},
           "PATCH complete_manually: the results hold the completion_data metadata too, the "
           "engine's keys winning", (st, body))
    same("PATCH step answer = GetStep afterwards", body, g)
    manual = env.json("SELECT metadata FROM tasker.workflow_step_transitions "
                      "WHERE workflow_step_uuid = '%s' AND to_state = 'complete'"
                      % doomed[0]["step_uuid"])
    tap.ok([m["metadata"] for m in manual] ==
           [{"event": "CompleteManually", "operator": "tester", "reason": "fixed by hand",
             "transport": "rest"}],
           "PATCH complete_manually: the transition records completed_by, reason and "
           "transport", manual)
    st, _, body = rest(OPORT, "PATCH", path, body={"action_type": "complete_manually",
                                                  "reason": "x", "completed_by": "t",
                                                  "surprise": 1})
    tap.ok(st == 400 and "surprise" in body["error"]["message"],
           "PATCH with a field the action does not have: 400", (st, body))
else:
    tap.ok(False, "PATCH complete_manually: no doomed step", stuck)

# cancellation


def cancel_records(task):
    """The metadata of the task's transition to cancelled, and those of its
    steps' transitions to cancelled."""
    t = env.json("SELECT metadata FROM tasker.task_transitions "
                 "WHERE task_uuid = '%s' AND to_state = 'cancelled'" % task)
    s = env.json("SELECT st.metadata FROM tasker.workflow_step_transitions st "
                 "JOIN tasker.workflow_steps ws USING (workflow_step_uuid) "
                 "WHERE ws.task_uuid = '%s' AND st.to_state = 'cancelled'" % task)
    return [r["metadata"] for r in t], [r["metadata"] for r in s]


st, _, sleepy = rest(OPORT, "POST", "/v1/tasks", body={"name": "sleepy_chain",
                                                        "namespace": "engine_tests",
                                                        "version": "1.0.0"})
SLEEPY = sleepy.get("task_uuid") if st == 201 else ""
st, _, body = rest(OPORT, "DELETE", "/v1/tasks/%s?reason=enough" % SLEEPY)
tap.ok(st == 200 and body.get("success") is True and
       body["task"]["state"] == "TASK_STATE_CANCELLED", "DELETE /v1/tasks/{uuid} cancels",
       (st, body))
round_trips("DELETE answer round-trips as CancelTaskResponse", body, T.CancelTaskResponse)
want = {"event": "Cancel", "reason": "enough", "transport": "rest"}
tmeta, smeta = cancel_records(SLEEPY)
tap.ok(tmeta == [want] and smeta and all(m == want for m in smeta),
       "DELETE ?reason=: the task's and its steps' transitions to cancelled record event, "
       "reason and transport", (tmeta, smeta))
st, _, other = rest(OPORT, "POST", "/v1/tasks", body={"name": "sleepy_chain",
                                                       "namespace": "engine_tests",
                                                       "version": "1.0.0",
                                                       "context": {"n": 2}})
OTHER = other.get("task_uuid") if st == 201 else ""
st, _, body = rest(OPORT, "DELETE", "/v1/tasks/" + OTHER)
tmeta, smeta = cancel_records(OTHER)
tap.ok(st == 200 and body.get("success") is True and
       body["task"]["state"] == "TASK_STATE_CANCELLED" and
       tmeta == [{"event": "Cancel", "transport": "rest"}] and smeta and
       all(m == {"event": "Cancel", "transport": "rest"} for m in smeta),
       "DELETE without a reason cancels; the transitions record no reason",
       (st, body, tmeta, smeta))
g, _, _, _ = rpc(och, TS, "CancelTask", T.CancelTaskRequest(task_uuid=SLEEPY),
                 T.CancelTaskResponse)
st, _, body = rest(OPORT, "DELETE", "/v1/tasks/" + SLEEPY)
tap.ok(st == 200 and body["success"] is False and g is not None and not g.success,
       "cancelling a cancelled task: success false over both", body)

# REST errors
st, _, body = rest(OPORT, "POST", "/v1/tasks", body={"name": "noop_diamond", "bogus": 1})
tap.ok(st == 400 and is_error(body, "JSON_ERROR") and "bogus" in body["error"]["message"],
       "POST /v1/tasks with an unknown field: 400 JSON_ERROR naming it", (st, body))
st, _, body = rest(OPORT, "POST", "/v1/tasks", raw=b"{nope")
tap.ok(st == 400 and is_error(body, "JSON_ERROR"), "POST /v1/tasks, not JSON: JSON_ERROR",
       (st, body))
st, _, body = rest(OPORT, "POST", "/v1/tasks", body={"name": "no_such_template"})
tap.ok(st == 400 and is_error(body, "BAD_REQUEST"),
       "POST /v1/tasks of an unknown template (default/0.1.0): 400 BAD_REQUEST", (st, body))
st, _, body = rest(OPORT, "GET", "/v1/tasks/" + str(uuidlib.uuid4()))
tap.ok(st == 404 and is_error(body, "NOT_FOUND"), "an unknown task: 404", (st, body))
st, _, body = rest(OPORT, "GET", "/v1/tasks/abc/workflow_steps")
tap.ok(st == 400 and is_error(body, "INVALID_UUID"), "a malformed uuid: 400 INVALID_UUID",
       (st, body))
st, _, body = rest(OPORT, "GET", "/v1/tasks?per_page=101")
tap.ok(st == 400 and is_error(body, "BAD_REQUEST"), "per_page over 100: 400", (st, body))
st, _, body = rest(OPORT, "PATCH", "/v1/dlq/entry/" + str(uuidlib.uuid4()),
                   body={"resolution_status": "manually_resolved", "resolution_notes": "n"})
tap.ok(st == 404 and is_error(body, "NOT_FOUND"), "PATCH an unknown DLQ entry: 404", (st, body))
st, _, body = rest(OPORT, "GET", "/v1/dlq?resolution_status=bogus")
tap.ok(st == 400 and is_error(body, "BAD_REQUEST"), "an unknown enum name: 400", (st, body))

och.close()

# ------------------------------------------------------------------ a saturated command channel
# One handler thread, high watermark 10, low 2. A psql session holds an
# ACCESS EXCLUSIVE lock on tasker.tasks_dlq: DlqService.ListEntries then
# waits for the database on the only handler thread, and the calls after it
# wait in the work queue, as deep as the test sends them. The REST side has
# threads of its own, so it can look on and be refused meanwhile.
d2 = env.taskerd("--orchestration.web_bind_address=127.0.0.1:0", "--server.workers=1",
                 "--limits.queue_high_watermark=10", "--limits.queue_low_watermark=2",
                 name="taskerd-sat", template_path=TEMPLATE_PATH)
m = d2.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
SPORT = int(m.group(1)) if m else None
sch = grpc.insecure_channel("127.0.0.1:%d" % d2.port)
DLQ_LIST = sch.unary_unary("/tasker.v1.DlqService/ListEntries",
                           request_serializer=pb["dlq"].ListDlqEntriesRequest.SerializeToString,
                           response_deserializer=pb["dlq"].ListDlqEntriesResponse.FromString)
CREATE = sch.unary_unary("/tasker.v1.TaskService/CreateTask",
                         request_serializer=T.CreateTaskRequest.SerializeToString,
                         response_deserializer=T.CreateTaskResponse.FromString)
NEW_TASK = {"name": "noop_diamond", "namespace": "engine_tests", "version": "1.0.0"}


def channel_now():
    """(overall status, channel_saturation check) of d2's REST /health/detailed."""
    st, _, body = rest(SPORT, "GET", "/health/detailed")
    if st != 200:
        return None, {"status": None, "message": "HTTP %d: %s" % (st, body)}
    return body["status"], body["checks"]["channel_saturation"]


def wait_channel(pattern, timeout=15):
    """Polls until the channel_saturation message matches pattern; returns the
    last (overall status, check)."""
    end = time.time() + timeout
    while True:
        o, c = channel_now()
        if re.search(pattern, c.get("message", "")) or time.time() >= end:
            return o, c
        time.sleep(0.1)


# the connection first, so that the calls below go out in the order made
rpc(sch, "tasker.v1.HealthService", "CheckHealth", pb["health"].HealthRequest(),
    pb["health"].HealthResponse)
holder = subprocess.Popen([os.path.join(env.cluster.bindir, "psql"), "-X", "-q", "-A", "-t",
                           "-v", "ON_ERROR_STOP=1", "-h", env.cluster.dir, "-d", "tasker"],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
holder.stdin.write("BEGIN;\nLOCK TABLE tasker.tasks_dlq IN ACCESS EXCLUSIVE MODE;\n"
                   "SELECT 'locked';\n")
holder.stdin.flush()
locked = holder.stdout.readline().strip()
tap.ok(SPORT is not None and locked == "locked",
       "taskerd with 1 handler thread and watermarks 10/2; tasker.tasks_dlq locked",
       (SPORT, locked))
pending = [DLQ_LIST.future(pb["dlq"].ListDlqEntriesRequest(limit=5), timeout=60)]
o, c = wait_channel(r": 0 of 10 requests waiting .*, 1 of 1 handler threads busy")
tap.ok(o is not None and c["status"] == "healthy",
       "one call waits for the lock on the only handler thread: the channel is still healthy",
       (o, c))
create_queued = CREATE.future(T.CreateTaskRequest(**NEW_TASK), timeout=60)
wait_channel(r": 1 of 10 requests waiting")
pending += [DLQ_LIST.future(pb["dlq"].ListDlqEntriesRequest(limit=5), timeout=60)
            for _ in range(7)]
o, c = wait_channel(r": 8 of 10 requests waiting")
tap.ok(o == "degraded" and c["status"] == "degraded" and
       c["message"] == "saturated: RPC work queue: 8 of 10 requests waiting (80 % of the high "
       "watermark), 1 of 1 handler threads busy (saturated from 80 %)",
       "8 requests waiting of a high watermark of 10: channel_saturation degraded, overall "
       "degraded", (o, c))
st, hd, body = rest(SPORT, "POST", "/v1/tasks", body=NEW_TASK)
tap.ok(st == 503 and is_error(body, "BACKPRESSURE") and hd.get("retry-after") == "5" and
       body["error"]["message"].startswith("backpressure: RPC work queue saturated: 8 of 10 "
                                           "requests waiting"),
       "POST /v1/tasks while the RPC work queue is saturated: 503 BACKPRESSURE, Retry-After, "
       "the cause and its figures", (st, hd.get("retry-after"), body))
pending += [DLQ_LIST.future(pb["dlq"].ListDlqEntriesRequest(limit=5), timeout=60)
            for _ in range(2)]
o, c = wait_channel(r": 10 of 10 requests waiting")
tap.ok(o == "degraded" and c["status"] == "unhealthy" and
       c["message"].startswith("overloaded: RPC work queue: 10 of 10 requests waiting (100 % ") and
       "reading paused" in c["message"],
       "at the high watermark reading pauses: channel_saturation unhealthy", (o, c))
st, hd, body = rest(SPORT, "POST", "/v1/tasks", body=NEW_TASK)
tap.ok(st == 503 and is_error(body, "BACKPRESSURE") and hd.get("retry-after") == "5" and
       "RPC work queue overloaded" in body["error"]["message"] and
       "reading paused" in body["error"]["message"],
       "POST /v1/tasks while reading is paused: 503 BACKPRESSURE", (st, body))
holder.stdin.write("ROLLBACK;\n")
holder.stdin.close()
holder.wait(timeout=20)
# The queued CreateTask runs next, with 9 requests still behind it and
# reading still paused (9 is not below the low watermark 2).
try:
    create_queued.result()
    refused = None
except grpc.RpcError as e:
    refused = e
trailers = dict(refused.trailing_metadata() or ()) if refused is not None else {}
tap.ok(refused is not None and refused.code() == grpc.StatusCode.UNAVAILABLE and
       refused.details().startswith("backpressure: RPC work queue overloaded: 9 of 10 requests "
                                    "waiting") and trailers.get("retry-after") == "5",
       "gRPC CreateTask queued behind the backlog: UNAVAILABLE naming the RPC work queue, "
       "retry-after 5", (refused and refused.code(), refused and refused.details(), trailers))
answered = []
for f in pending:
    try:
        f.result()
        answered.append("OK")
    except grpc.RpcError as e:
        answered.append(e.code().name)
tap.ok(answered == ["OK"] * 10, "the ten waiting calls are answered once the lock is gone",
       answered)
o, c = wait_channel(r"^normal: RPC work queue: 0 of 10 requests waiting")
tap.ok(o == "healthy" and c["status"] == "healthy", "drained: healthy again", (o, c))
st, _, body = rest(SPORT, "POST", "/v1/tasks", body=dict(NEW_TASK, context={"after": "drain"}))
tap.ok(st == 201 and UUID_RE.match(body.get("task_uuid", "")),
       "and CreateTask is admitted again", (st, body))
sch.close()
ch.close()

# ------------------------------------------------------------------ clean exits

SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer")
for p in (d, d2, w1):
    rc = p.stop(timeout=40)
    tap.ok(rc == 0 and not SANITIZER.search(p.log()),
           "%s: SIGTERM, exit 0, no sanitizer report" % p.name, "exit %s\n%s" % (rc, p.log(30)))
tap.ok(w2.proc.returncode == 0 and not SANITIZER.search(w2.log()),
       "the auth worker exited 0, no sanitizer report", w2.log(30))
env.close()
tap.done()
