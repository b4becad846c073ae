#!/usr/bin/python3
"""The authentication matrix on every RPC and every REST route
(tasker-api.md §1.1, §2.1-§2.4).

One taskerd (the 7 orchestration services, 26 RPCs, and the §2.1 routes)
and one tasker-worker (3 services, 7 RPCs, and the §2.2 routes), both with
[auth] enabled: RS256 tokens checked against a public key file, and an
API-key registry with one key per permission. The issuer and audience are
left at their defaults, which differ: tasker-core / tasker-api for
taskerd, tasker-worker / worker-api for the worker.

For every protected RPC and route:

  no credentials, a wrong API key, a token with a bad signature, an
  `alg: none` token, an HS256 token keyed with the public key's PEM, an
  expired token, a token for the other program's audience
      -> UNAUTHENTICATED / 401 (REST: with x-auth-failure-reason)
  a valid token, or API key, with another permission only
      -> PERMISSION_DENIED / 403
  a valid token, or API key, with the permission (and a token with the
  resource wildcard `resource:*`)
      -> past authentication: OK or a business error (NOT_FOUND for the
         random uuids of the requests), never UNAUTHENTICATED /
         PERMISSION_DENIED / 401 / 403

The health RPCs (tasker.v1 and grpc.health.v1) and /health*, /metrics
answer without credentials. Requests carry random uuids and otherwise
valid fields, so a request that passes authentication reaches its
handler. TASKER_TEST_KEEP=1 keeps the temporary directory.
"""
import http.client
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import uuid

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(HERE, "auth"))
import harness  # noqa: E402
import pg  # noqa: E402
import tasker_env  # noqa: E402

tap = harness.Tap()
try:
    import grpc
    import jwt  # noqa: F401 - fixtures.Keys signs with PyJWT
    from fixtures import Keys  # noqa: E402
except ImportError as e:
    tap.skip_all("python3-grpcio / python3-jwt / python3-cryptography missing: %s" % e)
PROTOC = tasker_env.require(tap, protoc=True)

C = grpc.StatusCode
DENIED = (C.UNAUTHENTICATED, C.PERMISSION_DENIED)
# What a request that passed authentication may end with on random uuids.
PASSED = (C.OK, C.NOT_FOUND, C.INVALID_ARGUMENT, C.FAILED_PRECONDITION, C.ALREADY_EXISTS)
PERMS = ["tasks:create", "tasks:read", "tasks:list", "tasks:cancel", "tasks:context_read",
         "steps:read", "steps:resolve", "dlq:read", "dlq:update", "dlq:stats",
         "templates:read", "templates:validate", "system:config_read",
         "system:handlers_read", "system:analytics_read", "worker:config_read",
         "worker:templates_read"]

# ------------------------------------------------------------------ protos

PYDIR, PROTOS = tasker_env.generate_protos(
    PROTOC, "t104-py-", extra=["grpc/health/v1/health.proto"])
pb = {name: importlib.import_module("tasker.v1.%s_pb2" % name)
      for name in ("common", "tasks", "steps", "templates", "analytics", "dlq", "health",
                   "config", "worker")}
_spec = importlib.util.spec_from_file_location(
    "_t104_health_pb2", os.path.join(PYDIR, "grpc/health/v1/health_pb2.py"))
health_pb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(health_pb)
T, S, TP, AN, D, H, CF, W = (pb[n] for n in ("tasks", "steps", "templates", "analytics", "dlq",
                                             "health", "config", "worker"))


def u():
    return str(uuid.uuid4())


# ------------------------------------------------------------------ the matrix rows

# (service, rpc, permission or None for public, request, server-streaming)
ORCH_RPCS = [
    ("TaskService", "CreateTask", "tasks:create",
     T.CreateTaskRequest(name="noop_diamond", namespace="engine_tests", version="1.0.0"),
     False),
    ("TaskService", "GetTask", "tasks:read", T.GetTaskRequest(task_uuid=u()), False),
    ("TaskService", "ListTasks", "tasks:list",
     T.ListTasksRequest(pagination=pb["common"].PaginationRequest(limit=1)), False),
    ("TaskService", "CancelTask", "tasks:cancel",
     T.CancelTaskRequest(task_uuid=u(), reason="auth test"), False),
    ("TaskService", "GetTaskContext", "tasks:context_read",
     T.GetTaskContextRequest(task_uuid=u()), False),
    ("TaskService", "GetTaskSummary", "tasks:read", T.GetTaskSummaryRequest(task_uuid=u()),
     False),
    ("TaskService", "StreamTaskStatus", "tasks:read",
     T.StreamTaskStatusRequest(task_uuid=u()), True),
    ("StepService", "GetStep", "steps:read", S.GetStepRequest(task_uuid=u(), step_uuid=u()),
     False),
    ("StepService", "ListSteps", "steps:read", S.ListStepsRequest(task_uuid=u()), False),
    ("StepService", "ResolveStep", "steps:resolve",
     S.ResolveStepRequest(task_uuid=u(), step_uuid=u(),
                          action_type=S.STEP_MANUAL_ACTION_TYPE_RESET_FOR_RETRY,
                          performed_by="auth-test", reason="auth test"), False),
    ("StepService", "GetStepAudit", "steps:read",
     S.GetStepAuditRequest(task_uuid=u(), step_uuid=u()), False),
    ("TemplateService", "ListTemplates", "templates:read", TP.ListTemplatesRequest(), False),
    ("TemplateService", "GetTemplate", "templates:read",
     TP.GetTemplateRequest(namespace="auth_tests", name="nope", version="1.0.0"), False),
    ("AnalyticsService", "GetPerformanceMetrics", "system:analytics_read",
     AN.GetPerformanceMetricsRequest(hours=1), False),
    ("AnalyticsService", "GetBottleneckAnalysis", "system:analytics_read",
     AN.GetBottleneckAnalysisRequest(limit=1), False),
    ("DlqService", "ListEntries", "dlq:read", D.ListDlqEntriesRequest(limit=1), False),
    ("DlqService", "GetEntryByTask", "dlq:read", D.GetDlqEntryByTaskRequest(task_uuid=u()),
     False),
    ("DlqService", "UpdateInvestigation", "dlq:update",
     D.UpdateDlqInvestigationRequest(dlq_entry_uuid=u(),
                                     resolution_status=D.DLQ_RESOLUTION_STATUS_CANCELLED,
                                     resolution_notes="auth test", resolved_by="auth-test"),
     False),
    ("DlqService", "GetStats", "dlq:stats", D.GetDlqStatsRequest(), False),
    ("DlqService", "GetInvestigationQueue", "dlq:read",
     D.GetDlqInvestigationQueueRequest(limit=1), False),
    ("DlqService", "GetStalenessMonitoring", "dlq:read",
     D.GetStalenessMonitoringRequest(limit=1), False),
    ("ConfigService", "GetConfig", "system:config_read", CF.GetConfigRequest(), False),
    ("HealthService", "CheckHealth", None, H.HealthRequest(), False),
    ("HealthService", "CheckLiveness", None, H.LivenessRequest(), False),
    ("HealthService", "CheckReadiness", None, H.ReadinessRequest(), False),
    ("HealthService", "CheckDetailedHealth", None, H.DetailedHealthRequest(), False),
]
WORKER_RPCS = [
    ("WorkerConfigService", "GetConfig", "worker:config_read", W.WorkerGetConfigRequest(),
     False),
    ("WorkerTemplateService", "ListTemplates", "worker:templates_read",
     W.WorkerListTemplatesRequest(include_cache_stats=True), False),
    ("WorkerTemplateService", "GetTemplate", "worker:templates_read",
     W.WorkerGetTemplateRequest(namespace="auth_tests", name="nope", version="1.0.0"), False),
    ("WorkerHealthService", "CheckHealth", None, W.WorkerHealthRequest(), False),
    ("WorkerHealthService", "CheckLiveness", None, W.WorkerLivenessRequest(), False),
    ("WorkerHealthService", "CheckReadiness", None, W.WorkerReadinessRequest(), False),
    ("WorkerHealthService", "CheckDetailedHealth", None, W.WorkerDetailedHealthRequest(),
     False),
]

TU, SU, DU = u(), u(), u()
# (method, path, permission or None for public, JSON body or None)
ORCH_ROUTES = [
    ("POST", "/v1/tasks", "tasks:create",
     {"name": "noop_diamond", "namespace": "engine_tests", "version": "1.0.0",
      "context": {"via": "rest"}}),
    ("GET", "/v1/tasks?page=1&per_page=1", "tasks:list", None),
    ("GET", "/v1/tasks/%s" % TU, "tasks:read", None),
    ("DELETE", "/v1/tasks/%s" % TU, "tasks:cancel", None),
    ("GET", "/v1/tasks/%s/summary" % TU, "tasks:read", None),
    ("GET", "/v1/tasks/%s/workflow_steps" % TU, "steps:read", None),
    ("GET", "/v1/tasks/%s/workflow_steps/%s" % (TU, SU), "steps:read", None),
    ("PATCH", "/v1/tasks/%s/workflow_steps/%s" % (TU, SU), "steps:resolve",
     {"action_type": "reset_for_retry", "reason": "auth test", "reset_by": "auth-test"}),
    ("GET", "/v1/tasks/%s/workflow_steps/%s/audit" % (TU, SU), "steps:read", None),
    ("GET", "/v1/templates?namespace=auth_tests", "templates:read", None),
    ("GET", "/v1/templates/auth_tests/nope/1.0.0", "templates:read", None),
    ("GET", "/v1/analytics/performance?hours=1", "system:analytics_read", None),
    ("GET", "/v1/analytics/bottlenecks?limit=1&min_executions=1", "system:analytics_read",
     None),
    ("GET", "/v1/dlq?limit=1&offset=0", "dlq:read", None),
    ("GET", "/v1/dlq/task/%s" % TU, "dlq:read", None),
    ("PATCH", "/v1/dlq/entry/%s" % DU, "dlq:update",
     {"resolution_status": "DLQ_RESOLUTION_STATUS_CANCELLED", "resolution_notes": "auth test",
      "resolved_by": "auth-test"}),
    ("GET", "/v1/dlq/stats", "dlq:stats", None),
    ("GET", "/v1/dlq/investigation-queue?limit=1", "dlq:read", None),
    ("GET", "/v1/dlq/staleness?limit=1", "dlq:read", None),
    ("GET", "/config", "system:config_read", None),
    ("GET", "/health", None, None),
    ("GET", "/health/live", None, None),
    ("GET", "/health/ready", None, None),
    ("GET", "/health/detailed", None, None),
    ("GET", "/metrics", None, None),
]
WORKER_ROUTES = [
    ("GET", "/v1/templates", "worker:templates_read", None),
    ("GET", "/v1/templates/auth_tests/nope/1.0.0", "worker:templates_read", None),
    ("POST", "/v1/templates/auth_tests/nope/1.0.0/validate", "templates:validate", None),
    ("GET", "/config", "worker:config_read", None),
    ("GET", "/health", None, None),
    ("GET", "/health/live", None, None),
    ("GET", "/health/ready", None, None),
    ("GET", "/health/detailed", None, None),
    ("GET", "/metrics", None, None),
    ("GET", "/metrics/worker", None, None),
]


def other_perm(perm):
    """A real permission of another resource: authenticates, but does not grant perm."""
    res = perm.split(":")[0]
    return next(p for p in PERMS if p.split(":")[0] != res)


# ------------------------------------------------------------------ the system

env = tasker_env.Env("104-api-auth", deadline=170, tap=tap)
KEYDIR = os.path.join(env.tmp, "keys")
os.makedirs(KEYDIR)
keys = Keys(KEYDIR)
API_KEYS = {p: "k-%s-%s" % (p.replace(":", "-"), uuid.uuid4().hex[:12]) for p in PERMS}


def write_conf(name):
    path = os.path.join(env.tmp, name)
    with open(path, "w") as f:
        f.write("[auth]\nenabled = true\njwt_verification_method = public_key\n"
                "jwt_public_key_path = %s\napi_keys_enabled = true\n" % keys.path("rsa1"))
        for i, p in enumerate(PERMS):
            f.write("\n[auth.api_key.p%d]\nkey = %s\npermissions = %s\ndescription = only %s\n"
                    % (i, API_KEYS[p], p, p))
        f.write("\n[web]\nconfig_endpoint_enabled = true\n")
    return path


try:
    env.start()
    conf = write_conf("auth.conf")
    taskerd = env.taskerd("--config=" + conf, "--orchestration.web_bind_address=127.0.0.1:0")
    m = taskerd.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
    OREST = int(m.group(1)) if m else None
    worker = env.worker("--config=" + conf, "--worker.web_bind_address=127.0.0.1:0",
                        namespaces="engine_tests")
    m = worker.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
    WREST = int(m.group(1)) if m else None
    m = worker.wait_line(r"listening h2c 127\.0\.0\.1:(\d+)", 15)
    WGRPC = int(m.group(1)) if m else None
    if not (OREST and WREST and WGRPC):
        raise tasker_env.EnvError("no REST/gRPC port logged:\n%s\n%s"
                                  % (taskerd.log(20), worker.log(20)))
except (tasker_env.EnvError, pg.ClusterError, OSError, subprocess.CalledProcessError) as e:
    print("Bail out! cannot start the system: %s" % str(e).replace("\n", " | "), flush=True)
    env.close()
    sys.exit(1)

och = grpc.insecure_channel("127.0.0.1:%d" % taskerd.port)
wch = grpc.insecure_channel("127.0.0.1:%d" % WGRPC)
try:
    grpc.channel_ready_future(och).result(timeout=15)
    grpc.channel_ready_future(wch).result(timeout=15)
except grpc.FutureTimeoutError:
    print("Bail out! no channel to taskerd / tasker-worker", flush=True)
    env.close()
    sys.exit(1)

# ------------------------------------------------------------------ credentials

ORCH = {"iss": "tasker-core", "aud": "tasker-api"}
WORK = {"iss": "tasker-worker", "aud": "worker-api"}
_tokens = {}


def token(role, perms, **kw):
    k = (role["aud"], tuple(perms), tuple(sorted(kw.items())))
    if k not in _tokens:
        _tokens[k] = keys.token("rsa1", "RS256", perms=list(perms), iss=role["iss"],
                                aud=role["aud"], **kw)
    return _tokens[k]


def bearer(t):
    return ("authorization", "Bearer " + t)


def bad_credentials(role, perm):
    """(name, metadata) of credentials that must be refused with 401."""
    other = WORK if role is ORCH else ORCH
    good = token(role, [perm])
    head, payload, sig = good.split(".")
    flipped = sig[:-2] + ("AA" if sig[-2:] != "AA" else "BB")
    return [
        ("no credentials", []),
        ("a wrong API key", [("x-api-key", "not-a-key-" + uuid.uuid4().hex)]),
        ("a bad signature", [bearer(head + "." + payload + "." + flipped)]),
        ("a token signed by another key",
         [bearer(keys.token("rsa2", "RS256", perms=[perm], iss=role["iss"], aud=role["aud"]))]),
        ("alg none", [bearer(keys.unsigned(perms=[perm], iss=role["iss"], aud=role["aud"]))]),
        ("HS256 keyed with the public key PEM",
         [bearer(keys.hs256_with_public_pem("rsa1", perms=[perm], iss=role["iss"],
                                            aud=role["aud"]))]),
        ("an expired token", [bearer(token(role, [perm], exp_in=-3600))]),
        ("the other program's audience", [bearer(token(other, [perm]))]),
    ]


def good_credentials(role, perm):
    """(name, metadata, passes) of valid credentials."""
    res = perm.split(":")[0]
    return [
        ("a token without %s" % perm, [bearer(token(role, [other_perm(perm)]))], False),
        ("an API key without %s" % perm, [("x-api-key", API_KEYS[other_perm(perm)])], False),
        ("a token with %s" % perm, [bearer(token(role, [perm]))], True),
        ("a token with %s:*" % res, [bearer(token(role, ["%s:*" % res]))], True),
        ("an API key with %s" % perm, [("x-api-key", API_KEYS[perm])], True),
    ]


# ------------------------------------------------------------------ clients

def ident(b):
    return b


def rpc(ch, service, method, req, streaming, md):
    """The status code of one call and the auth failure trailer."""
    path = "/tasker.v1.%s/%s" % (service, method) if "." not in service else \
        "/%s/%s" % (service, method)
    try:
        if streaming:
            call = ch.unary_stream(path, request_serializer=ident,
                                   response_deserializer=ident)(req.SerializeToString(),
                                                                metadata=md, timeout=10)
            for _ in call:
                call.cancel()
                return C.OK, None
            return C.OK, None
        ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(
            req.SerializeToString(), metadata=md, timeout=10)
        return C.OK, None
    except grpc.RpcError as e:
        if e.code() == C.CANCELLED:
            return C.OK, None
        tr = dict(e.trailing_metadata() or ())
        return e.code(), tr.get("x-auth-failure-reason")


def rest(port, method, path, body, md):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {("Authorization" if k == "authorization" else "X-API-Key"): v for k, v in md}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        r.read()
        return r.status, r.getheader("x-auth-failure-reason")
    finally:
        c.close()


# ------------------------------------------------------------------ gRPC

def grpc_matrix(label, ch, role, rows):
    for service, method, perm, req, streaming in rows:
        name = "%s %s/%s" % (label, service, method)
        if perm is None:
            code, _ = rpc(ch, service, method, req, streaming, [])
            tap.ok(code == C.OK, "%s is public: OK without credentials" % name, code)
            continue
        bad = []
        for what, md in bad_credentials(role, perm):
            code, reason = rpc(ch, service, method, req, streaming, md)
            if code != C.UNAUTHENTICATED or not reason:
                bad.append("%s: %s (x-auth-failure-reason %r)" % (what, code, reason))
        tap.ok(not bad, "%s: UNAUTHENTICATED for 8 kinds of bad credentials" % name,
               "\n".join(bad))
        for what, md, passes in good_credentials(role, perm):
            code, _ = rpc(ch, service, method, req, streaming, md)
            if passes:
                tap.ok(code in PASSED, "%s with %s: past authentication (%s)"
                       % (name, what, code.name), code)
            else:
                tap.ok(code == C.PERMISSION_DENIED, "%s with %s: PERMISSION_DENIED"
                       % (name, what), code)


grpc_matrix("taskerd", och, ORCH, ORCH_RPCS)
grpc_matrix("worker", wch, WORK, WORKER_RPCS)
for label, ch, services in (("taskerd", och, ("", "tasker.v1.TaskService")),
                            ("worker", wch, ("", "tasker.v1.WorkerTemplateService"))):
    codes = []
    for svc in services:
        code, _ = rpc(ch, "grpc.health.v1.Health", "Check",
                      health_pb.HealthCheckRequest(service=svc), False, [])
        codes.append(code)
    tap.ok(codes == [C.OK] * len(services),
           "%s grpc.health.v1 Check is public" % label, codes)
tap.ok(len(ORCH_RPCS) == 26 and len({(s, m) for s, m, *_ in ORCH_RPCS}) == 26 and
       len(WORKER_RPCS) == 7, "every RPC is in the matrix: 26 on taskerd, 7 on the worker")

# ------------------------------------------------------------------ REST


def rest_matrix(label, port, role, rows):
    for method, path, perm, body in rows:
        shown = path.split("?")[0].replace(TU, "{task_uuid}").replace(SU, "{step_uuid}") \
            .replace(DU, "{dlq_entry_uuid}")
        name = "%s %s %s" % (label, method, shown)
        if perm is None:
            st, _ = rest(port, method, path, body, [])
            tap.ok(st not in (401, 403) and st < 500 or st == 503 and "ready" in path,
                   "%s is public: %d without credentials" % (name, st), st)
            continue
        bad = []
        for what, md in bad_credentials(role, perm):
            st, reason = rest(port, method, path, body, md)
            if st != 401 or not reason:
                bad.append("%s: %s (x-auth-failure-reason %r)" % (what, st, reason))
        tap.ok(not bad, "%s: 401 with x-auth-failure-reason for 8 kinds of bad credentials"
               % name, "\n".join(bad))
        for what, md, passes in good_credentials(role, perm):
            st, reason = rest(port, method, path, body, md)
            if passes:
                tap.ok(st not in (401, 403) and st < 500,
                       "%s with %s: past authentication (%d)" % (name, what, st), st)
            else:
                tap.ok(st == 403 and reason == "missing_permission",
                       "%s with %s: 403 missing_permission" % (name, what), (st, reason))


rest_matrix("taskerd", OREST, ORCH, ORCH_ROUTES)
rest_matrix("worker", WREST, WORK, WORKER_ROUTES)

# ------------------------------------------------------------------ the end

och.close()
wch.close()
for p in (worker, taskerd):
    rc = p.stop(timeout=30)
    tap.ok(rc == 0, "%s exits 0, no sanitizer report" % p.name, p.log(30))
print("# %.1f s" % env.elapsed(), flush=True)
env.close()
tap.done()
