#!/usr/bin/python3
"""The generated API documentation (tasker-api.md §2.1, §2.2): /api-docs/openapi.json
and /api-docs/ui of taskerd and tasker-worker.

Against a private PostgreSQL cluster (t/lib/tasker_env.py), with auth on
(API keys under a non-default header) and the /config route enabled:

  - both documents are public JSON, "openapi": "3.0.x", and every route of
    the program's table (read from src/web/routes_*.c here, so a route added
    there and missing from the document fails) appears with its method;
  - x-required-permission is the permission of tasker-api.md §2.1 / §2.2 on
    every protected route, absent on public ones (with an empty security
    list); the security schemes are bearer JWT and the configured API-key
    header;
  - every $ref is local and resolves; path parameters are declared and
    required;
  - every message schema agrees with the proto descriptor (python protobuf
    on modules protoc generates from proto/): the same field names, arrays
    for repeated fields, objects for maps, string enums with the enum's
    value names, int64 as strings, Timestamp as date-time, Struct as a
    free-form object;
  - openapi-spec-validator, when installed, accepts both documents;
  - /api-docs/ui is a self-contained HTML page (no external resource) that
    reads openapi.json;
  - the worker's /metrics/worker has tasker_worker_* families only, and
    /metrics/events its dispatcher's event counters (LISTEN connected,
    queues read).
"""
import http.client
import importlib
import json
import os
import re
import sys
import time
import uuid as uuidlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import tasker_env  # noqa: E402

tap = harness.Tap()
try:
    from google.protobuf import descriptor as pbdesc
except ImportError as e:
    tap.skip_all("python3-protobuf missing: %s" % e)
PROTOC = tasker_env.require(tap, protoc=True)

# ------------------------------------------------------------------ protos

PYDIR, PROTOS = tasker_env.generate_protos(PROTOC, "t105-py-")
MESSAGES = {}


def walk(d):
    MESSAGES[d.full_name] = d
    for n in d.nested_types:
        walk(n)


for p in PROTOS:
    mod = importlib.import_module(p[:-len(".proto")].replace("/", ".") + "_pb2")
    for d in mod.DESCRIPTOR.message_types_by_name.values():
        walk(d)

# ------------------------------------------------------------------ the route tables

# The expected permissions (tasker-api.md §2.1, §2.2); None = public.
ORCH_PERMS = {
    ("GET", "/health"): None, ("GET", "/health/live"): None, ("GET", "/health/ready"): None,
    ("GET", "/health/detailed"): None, ("GET", "/metrics"): None,
    ("GET", "/api-docs/openapi.json"): None, ("GET", "/api-docs/ui"): None,
    ("POST", "/v1/tasks"): "tasks:create", ("GET", "/v1/tasks"): "tasks:list",
    ("GET", "/v1/tasks/{task_uuid}"): "tasks:read",
    ("DELETE", "/v1/tasks/{task_uuid}"): "tasks:cancel",
    ("GET", "/v1/tasks/{task_uuid}/summary"): "tasks:read",
    ("GET", "/v1/tasks/{task_uuid}/workflow_steps"): "steps:read",
    ("GET", "/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}"): "steps:read",
    ("PATCH", "/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}"): "steps:resolve",
    ("GET", "/v1/tasks/{task_uuid}/workflow_steps/{step_uuid}/audit"): "steps:read",
    ("GET", "/v1/templates"): "templates:read",
    ("GET", "/v1/templates/{namespace}/{name}/{version}"): "templates:read",
    ("GET", "/v1/analytics/performance"): "system:analytics_read",
    ("GET", "/v1/analytics/bottlenecks"): "system:analytics_read",
    ("GET", "/v1/dlq"): "dlq:read", ("GET", "/v1/dlq/task/{task_uuid}"): "dlq:read",
    ("PATCH", "/v1/dlq/entry/{dlq_entry_uuid}"): "dlq:update",
    ("GET", "/v1/dlq/stats"): "dlq:stats", ("GET", "/v1/dlq/investigation-queue"): "dlq:read",
    ("GET", "/v1/dlq/staleness"): "dlq:read", ("GET", "/config"): "system:config_read",
}
WORKER_PERMS = {
    ("GET", "/health"): None, ("GET", "/health/live"): None, ("GET", "/health/ready"): None,
    ("GET", "/health/detailed"): None, ("GET", "/metrics"): None,
    ("GET", "/metrics/worker"): None,
    ("GET", "/metrics/events"): None,
    ("GET", "/api-docs/openapi.json"): None, ("GET", "/api-docs/ui"): None,
    ("GET", "/v1/templates"): "worker:templates_read",
    ("GET", "/v1/templates/{namespace}/{name}/{version}"): "worker:templates_read",
    ("POST", "/v1/templates/{namespace}/{name}/{version}/validate"): "templates:validate",
    ("GET", "/config"): "worker:config_read",
}


def table_routes(fname):
    """(METHOD, pattern) of every row of a route table source file."""
    with open(os.path.join(harness.TOP_SRCDIR, "src", "web", fname)) as f:
        src = f.read()
    src = src[src.index("const struct rest_route rest_"):]
    if "REST_API_DOCS_ROUTES" in src:
        with open(os.path.join(harness.TOP_SRCDIR, "src", "web", "routes.h")) as f:
            h = f.read()
        m = re.search(r"#define REST_API_DOCS_ROUTES((?:.*\\\n)*.*)", h)
        src += m.group(1) if m else ""
    rows = re.findall(r'\.method\s*=\s*"([A-Z]+)",\s*\.pattern\s*=\s*"([^"]+)"', src)
    rows += [("GET", p) for p in re.findall(r'\bGET\("([^"]+)"', src)]
    return set(rows)


ORCH_TABLE = table_routes("routes_orch.c")
WORKER_TABLE = table_routes("routes_worker.c")
tap.ok(ORCH_TABLE == set(ORCH_PERMS),
       "routes_orch.c has the routes of §2.1 (and the api-docs ones)",
       (sorted(ORCH_TABLE - set(ORCH_PERMS)), sorted(set(ORCH_PERMS) - ORCH_TABLE)))
tap.ok(WORKER_TABLE == set(WORKER_PERMS), "routes_worker.c has the routes of §2.2",
       (sorted(WORKER_TABLE - set(WORKER_PERMS)), sorted(set(WORKER_PERMS) - WORKER_TABLE)))

# ------------------------------------------------------------------ helpers


def rest(port, method, path, headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    c.request(method, path, headers=dict(headers or {}))
    r = c.getresponse()
    text = r.read()
    hdrs = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, hdrs, text.decode("utf-8", "replace")


def refs_of(v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "$ref":
                out.append(x)
            else:
                refs_of(x, out)
    elif isinstance(v, list):
        for x in v:
            refs_of(x, out)
    return out


def resolve(doc, ref):
    if not ref.startswith("#/"):
        return None
    node = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


F = pbdesc.FieldDescriptor
INT64 = {F.TYPE_INT64, F.TYPE_UINT64, F.TYPE_SINT64, F.TYPE_FIXED64, F.TYPE_SFIXED64}
INT32 = {F.TYPE_INT32, F.TYPE_SINT32, F.TYPE_SFIXED32, F.TYPE_UINT32, F.TYPE_FIXED32}


def value_problem(doc, fd, s):
    """Why schema s does not describe one value of field fd (None when it does)."""
    if fd.type == F.TYPE_MESSAGE:
        n = fd.message_type.full_name
        if n == "google.protobuf.Timestamp":
            ok = s.get("type") == "string" and s.get("format") == "date-time"
        elif n == "google.protobuf.Struct":
            ok = s.get("type") == "object" and s.get("additionalProperties") is True
        elif n == "google.protobuf.Value":
            ok = "type" not in s and "$ref" not in s
        elif n == "google.protobuf.ListValue":
            ok = s.get("type") == "array"
        else:
            ok = s.get("$ref") == "#/components/schemas/" + n
    elif fd.type == F.TYPE_ENUM:
        e = resolve(doc, s.get("$ref", ""))
        ok = (s.get("$ref") == "#/components/schemas/" + fd.enum_type.full_name and
              e is not None and e.get("type") == "string" and
              e.get("enum") == [v.name for v in fd.enum_type.values])
    elif fd.type in INT64:
        ok = s.get("type") == "string" and s.get("format") == "int64"
    elif fd.type in INT32:
        ok = s.get("type") == "integer"
    elif fd.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        ok = s.get("type") == "number"
    elif fd.type == F.TYPE_BOOL:
        ok = s.get("type") == "boolean"
    elif fd.type == F.TYPE_BYTES:
        ok = s.get("type") == "string" and s.get("format") == "byte"
    else:
        ok = s.get("type") == "string"
    return None if ok else "%s: %r" % (fd.full_name, s)


def schema_problems(doc):
    """Every message component against its proto descriptor."""
    problems, n = [], 0
    for name, s in doc["components"]["schemas"].items():
        d = MESSAGES.get(name)
        if d is None:
            continue
        n += 1
        props = s.get("properties", {})
        if s.get("type") != "object" or set(props) != {f.name for f in d.fields}:
            problems.append("%s: fields %s, proto %s" % (name, sorted(props),
                                                         sorted(f.name for f in d.fields)))
            continue
        for fd in d.fields:
            p = props[fd.name]
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                why = (None if p.get("type") == "object" else "%s: not an object" % fd.name) \
                    or value_problem(doc, fd.message_type.fields_by_name["value"],
                                     p.get("additionalProperties", {}))
            elif fd.label == F.LABEL_REPEATED:
                why = ("%s: not an array" % fd.full_name if p.get("type") != "array"
                       else value_problem(doc, fd, p.get("items", {})))
            else:
                why = value_problem(doc, fd, p)
            if why:
                problems.append(why)
    return n, problems


def check_document(who, port, perms, key_header):
    st, hd, text = rest(port, "GET", "/api-docs/openapi.json")
    try:
        doc = json.loads(text)
    except ValueError as e:
        doc = None
        text = "%s: %s" % (e, text[:300])
    tap.ok(st == 200 and hd.get("content-type", "").startswith("application/json") and
           isinstance(doc, dict), "%s: GET /api-docs/openapi.json without credentials: 200 JSON"
           % who, (st, hd, text[:300]))
    if not isinstance(doc, dict):
        return None
    tap.ok(re.match(r"^3\.0\.\d+$", str(doc.get("openapi"))) and
           doc.get("info", {}).get("title") and doc["info"].get("version"),
           "%s: openapi 3.0.x with info.title and info.version" % who,
           (doc.get("openapi"), doc.get("info")))
    ops = {(m.upper(), p): o for p, item in doc.get("paths", {}).items() for m, o in item.items()}
    tap.ok(set(ops) == set(perms), "%s: every route of the table, with its method, and no other"
           % who, (sorted(set(perms) - set(ops)), sorted(set(ops) - set(perms))))
    wrong = [(k, o.get("x-required-permission"), perms[k]) for k, o in ops.items()
             if k in perms and o.get("x-required-permission") != perms[k]]
    tap.ok(not wrong, "%s: x-required-permission of every route" % who, wrong)
    sec = [k for k, o in ops.items()
           if (o.get("security") == []) != (perms.get(k) is None) or
           (perms.get(k) and o.get("security") != [{"bearerAuth": []}, {"apiKeyAuth": []}])]
    tap.ok(not sec, "%s: public routes have no security, protected ones bearer or API key"
           % who, sec)
    schemes = doc.get("components", {}).get("securitySchemes", {})
    tap.ok(schemes.get("bearerAuth") == {"type": "http", "scheme": "bearer",
                                         "bearerFormat": "JWT"} and
           schemes.get("apiKeyAuth", {}).get("type") == "apiKey" and
           schemes["apiKeyAuth"].get("in") == "header" and
           schemes["apiKeyAuth"].get("name", "").lower() == key_header.lower(),
           "%s: security schemes: bearer JWT, API key in header %s" % (who, key_header),
           schemes)
    refs = refs_of(doc, [])
    bad = sorted({r for r in refs if resolve(doc, r) is None})
    tap.ok(refs and not bad, "%s: all %d $refs are local and resolve" % (who, len(refs)), bad)
    params = []
    for (m, p), o in ops.items():
        declared = {x["name"] for x in o.get("parameters", []) if x.get("in") == "path"}
        if declared != set(re.findall(r"\{([^}]+)\}", p)) or not all(
                x.get("required") is True and "schema" in x for x in o.get("parameters", [])
                if x.get("in") == "path") or not o.get("responses"):
            params.append((m, p))
        for x in o.get("parameters", []):
            if set(x) - {"name", "in", "required", "schema"} or x.get("in") not in (
                    "path", "query"):
                params.append((m, p, x))
    tap.ok(not params, "%s: path parameters declared and required; responses present" % who,
           params)
    n, problems = schema_problems(doc)
    tap.ok(n > 0 and not problems, "%s: %d message schemas agree with the proto descriptors"
           % (who, n), "\n".join(problems[:20]))
    try:
        from openapi_spec_validator import validate_spec
    except ImportError:
        validate_spec = None
    if validate_spec is None:
        tap.ok(True, "%s: # SKIP openapi-spec-validator is not installed" % who)
    else:
        try:
            validate_spec(doc)
            tap.ok(True, "%s: openapi-spec-validator accepts the document" % who)
        except Exception as e:  # noqa: BLE001 - report the validator's finding
            tap.ok(False, "%s: openapi-spec-validator accepts the document" % who, e)
    st, hd, html = rest(port, "GET", "/api-docs/ui")
    tap.ok(st == 200 and hd.get("content-type", "").startswith("text/html") and
           "openapi.json" in html and "<script" in html and
           not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html) and
           not re.search(r"""fetch\(\s*["'](https?:)?//""", html),
           "%s: /api-docs/ui is a self-contained page that reads openapi.json" % who,
           (st, hd, html[:300]))
    return doc, ops


# ------------------------------------------------------------------ programs

env = tasker_env.Env("105-api-docs", deadline=120, tap=tap)
try:
    env.start()
except Exception as e:  # noqa: BLE001 - report and stop
    print("Bail out! %s" % str(e).replace("\n", " "), flush=True)
    sys.exit(1)

KEY = "k-" + uuidlib.uuid4().hex
HEADER = "X-Tasker-Key"


def conf(name):
    path = os.path.join(env.tmp, name)
    with open(path, "w") as f:
        f.write("""[auth]
enabled = true
api_keys_enabled = true
api_key_header = %s

[auth.api_key.reader]
key = %s
permissions = tasks:read

[web]
config_endpoint_enabled = true
""" % (HEADER, KEY))
    return path


d = env.taskerd("--config=" + conf("taskerd.conf"), "--orchestration.web_bind_address=127.0.0.1:0")
m = d.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
OPORT = int(m.group(1)) if m else None
tap.ok(OPORT is not None, "taskerd logs its REST port", d.log(20))
res = check_document("taskerd", OPORT, ORCH_PERMS, HEADER) if OPORT else None
if res:
    doc, ops = res
    create = ops.get(("POST", "/v1/tasks"), {})
    body = create.get("requestBody", {}).get("content", {}).get("application/json", {})
    tap.ok(body.get("schema") == {"$ref": "#/components/schemas/tasker.v1.CreateTaskRequest"}
           and "201" in create.get("responses", {}) and create.get("x-rest-adapted") is True,
           "taskerd: POST /v1/tasks takes CreateTaskRequest, answers 201, marked adapted",
           create)
    q = {x["name"] for x in ops.get(("GET", "/v1/tasks"), {}).get("parameters", [])}
    tap.ok({"page", "per_page", "namespace", "status"} <= q,
           "taskerd: GET /v1/tasks documents its query parameters", sorted(q))
    q = {x["name"]: x for x in ops.get(("GET", "/v1/dlq"), {}).get("parameters", [])}
    tap.ok("limit" in q and q.get("resolution_status", {}).get("schema", {}).get("$ref"),
           "taskerd: GET /v1/dlq: query parameters from DLQ's request fields (enum by $ref)",
           q)
    metrics = ops.get(("GET", "/metrics"), {}).get("responses", {}).get("200", {})
    tap.ok(any(t.startswith("text/plain") for t in metrics.get("content", {})),
           "taskerd: /metrics documented as Prometheus text", metrics)
st, hd, _ = rest(OPORT, "GET", "/v1/tasks")
tap.ok(st == 401, "taskerd: a protected route still needs credentials", (st, hd))
st, _, text = rest(OPORT, "GET", "/v1/tasks/%s" % uuidlib.uuid4(), {HEADER: KEY})
tap.ok(st not in (401, 403), "taskerd: the configured API-key header authenticates",
       (st, text))

w = env.worker("--config=" + conf("worker.conf"), "--worker.web_bind_address=127.0.0.1:0",
               namespaces="engine_tests")
m = w.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
WPORT = int(m.group(1)) if m else None
tap.ok(WPORT is not None, "tasker-worker logs its REST port", w.log(20))
if WPORT:
    check_document("tasker-worker", WPORT, WORKER_PERMS, HEADER)
    st, hd, text = rest(WPORT, "GET", "/metrics/worker")
    names = set(re.findall(r"^# TYPE (\S+)", text, re.M))
    tap.ok(st == 200 and hd.get("content-type", "").startswith("text/plain") and names and
           all(n.startswith("tasker_worker_") for n in names),
           "tasker-worker: /metrics/worker has the tasker_worker_* families only",
           (st, sorted(names)))
    st, hd, text = rest(WPORT, "GET", "/metrics/events")
    vals = dict((k, float(v)) for k, v in
                re.findall(r"^(tasker_worker_events_\w+) (\S+)$", text, re.M))
    tap.ok(st == 200 and hd.get("content-type", "").startswith("text/plain") and
           set(re.findall(r"^# TYPE (\S+)", text, re.M)) == set(vals),
           "tasker-worker: /metrics/events has the tasker_worker_events_* counters",
           (st, text))
    # The dispatcher connects and reads right after start-up: wait for it.
    until = time.monotonic() + 15
    while time.monotonic() < until and not (
            vals.get("tasker_worker_events_listener_connects_total", 0) >= 1 and
            vals.get("tasker_worker_events_queue_reads_total", 0) >= 1):
        time.sleep(0.2)
        _, _, text = rest(WPORT, "GET", "/metrics/events")
        vals = dict((k, float(v)) for k, v in
                    re.findall(r"^(tasker_worker_events_\w+) (\S+)$", text, re.M))
    tap.ok(vals.get("tasker_worker_events_listener_connects_total", 0) >= 1 and
           vals.get("tasker_worker_events_queue_reads_total", 0) >= 1,
           "tasker-worker: /metrics/events counts the LISTEN connection and the queue reads",
           vals)

SANITIZER = re.compile(r"AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer")
for p in (d, w):
    rc = p.stop(timeout=40)
    tap.ok(rc == 0 and not SANITIZER.search(p.log()),
           "%s: SIGTERM, exit 0, no sanitizer report" % p.name, "exit %s\n%s" % (rc, p.log(30)))
env.close()
tap.done()
