#!/usr/bin/python3
"""The administrative services of taskerd over gRPC (tasker-api.md §4-§7):
TemplateService, AnalyticsService, DlqService, HealthService and
ConfigService, as a python3-grpcio client sees them.

A private PostgreSQL cluster, one taskerd (auth on: two API keys, a JWT
public key file and a JWKS URL, all of them secrets the config answer must
not show) and one tasker-worker run diamond tasks, a task whose step
always fails and tasks no worker serves; one of those is made stale so the
staleness detector opens a DLQ entry. Then:

  1. templates: ListTemplates / GetTemplate against the YAML files
  2. analytics: every figure against the same figure computed here with
     SQL from the tables (not through the 0006 functions)
  3. DLQ: entries, by task, stats, investigation queue, staleness
     monitoring (against the tables / views), UpdateInvestigation with
     valid and invalid status transitions
  4. health: the four probes (channel saturation evaluated from the RPC
     work queue); readiness is UNAVAILABLE while the database is stopped,
     and ready again after it restarts
  5. config: the §7 whitelist, and no configured secret anywhere in it
  6. permissions: public health, UNAUTHENTICATED without a key,
     PERMISSION_DENIED with a key that lacks the permission

The message classes are generated at test time with protoc from
proto/tasker/v1; calls go through grpcio's generic unary_unary. Every wait
is bounded; the file gives up after 115 s. Prints TAP.
"""
import datetime
import glob
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import pg  # noqa: E402
import tasker_env  # noqa: E402

tap = harness.Tap()
try:
    import grpc
    import yaml
    from google.protobuf import json_format
except ImportError as e:
    tap.skip_all("python3-grpcio / python3-protobuf / python3-yaml missing: %s" % e)
OPENSSL = shutil.which("openssl")
if not OPENSSL:
    tap.skip_all("openssl not found (makes the JWT key file)")
if not os.access(os.path.join(harness.TOP_BUILDDIR, "t", "progs", "engine-probe"), os.X_OK):
    tap.skip_all("t/progs/engine-probe is not built (make check builds it)")
PROTOC = tasker_env.require(tap, protoc=True)

TIMEOUT = 15
POOL_SIZE = 6
WKT_DIR = os.environ.get("PROTOBUF_PROTODIR") \
    or "/usr/include"

# ---------------------------------------------------------------- messages
GEN = tempfile.mkdtemp(prefix="t101-pb-")
FILES = ["common", "tasks", "steps", "templates", "analytics", "dlq", "health", "config",
         "worker"]
subprocess.run([PROTOC, "-I", os.path.join(harness.TOP_SRCDIR, "proto"), "-I", WKT_DIR,
                "--python_out", GEN] + ["tasker/v1/%s.proto" % f for f in FILES], check=True)
sys.path.insert(0, GEN)
pb = {f: importlib.import_module("tasker.v1.%s_pb2" % f) for f in FILES}
shutil.rmtree(GEN, ignore_errors=True)
tpl_pb, an_pb, dlq_pb, health_pb, cfg_pb = (pb["templates"], pb["analytics"], pb["dlq"],
                                            pb["health"], pb["config"])
SERVICE_FILE = {"TemplateService": tpl_pb, "AnalyticsService": an_pb, "DlqService": dlq_pb,
                "HealthService": health_pb, "ConfigService": cfg_pb}

# ---------------------------------------------------------------- secrets
env = tasker_env.Env("101-api-admin", deadline=115)
SECRET_DIR = os.path.join(env.tmp, "jwt-keys-s3cr3t-dir")
os.makedirs(SECRET_DIR)
JWT_KEY_PATH = os.path.join(SECRET_DIR, "signing-public-s3cr3t.pem")
JWKS_URL = "https://keys.example.invalid/jwks-s3cr3t-7f3a9c.json"
ADMIN_KEY = "admin-key-s3cr3t-5b1d0e7c2a9f4431"
READER_KEY = "reader-key-s3cr3t-9c44e1a07d3b2f58"
DB_PASSWORD = "db-passw0rd-s3cr3t-1e8b"
ADMIN_PERMS = ("templates:read,system:analytics_read,dlq:read,dlq:update,dlq:stats,"
               "system:config_read")


def make_config():
    priv = os.path.join(env.tmp, "jwt-private.pem")
    subprocess.run([OPENSSL, "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", priv], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    subprocess.run([OPENSSL, "pkey", "-in", priv, "-pubout", "-out", JWT_KEY_PATH], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
    path = os.path.join(env.tmp, "taskerd.conf")
    with open(path, "w") as f:
        f.write("[auth]\n"
                "enabled = true\n"
                "jwt_verification_method = public_key\n"
                "jwt_public_key_path = %s\n"
                "jwks_url = %s\n"
                "api_keys_enabled = true\n"
                "[auth.api_key.admin]\n"
                "key = %s\n"
                "permissions = %s\n"
                "description = test administrator\n"
                "[auth.api_key.reader]\n"
                "key = %s\n"
                "permissions = templates:read\n"
                "description = template reader\n"
                % (JWT_KEY_PATH, JWKS_URL, ADMIN_KEY, ADMIN_PERMS, READER_KEY))
    return path


try:
    env.start()
    # a password the (trust-authenticated) cluster ignores but the
    # programs carry in DATABASE_URL: the config answer must not show it
    env.url = env.url + " password=" + DB_PASSWORD
    conf = make_config()
    # staleness detection every second (section 3)
    taskerd = env.taskerd("--config", conf, "--dlq.staleness_interval_s=1",
                          "--database.pool_size=%d" % POOL_SIZE)
    worker = env.worker(namespaces="integration,engine_tests")
except (tasker_env.EnvError, pg.ClusterError, OSError, subprocess.CalledProcessError) as e:
    print("Bail out! cannot start the system: %s" % str(e).replace("\n", " | "), flush=True)
    env.close()
    sys.exit(1)

channel = grpc.insecure_channel("127.0.0.1:%d" % taskerd.port)
try:
    grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
except grpc.FutureTimeoutError:
    print("Bail out! no channel to taskerd", flush=True)
    env.close()
    sys.exit(1)


def call(service, method, req, key=ADMIN_KEY, timeout=TIMEOUT):
    """(response, None) or (None, grpc.RpcError)."""
    mod = SERVICE_FILE[service]
    out = mod.DESCRIPTOR.services_by_name[service].methods_by_name[method].output_type
    fn = channel.unary_unary("/tasker.v1.%s/%s" % (service, method),
                             request_serializer=type(req).SerializeToString,
                             response_deserializer=getattr(mod, out.name).FromString)
    md = [("x-api-key", key)] if key else []
    try:
        return fn(req, metadata=md, timeout=timeout), None
    except grpc.RpcError as e:
        return None, e


def code_of(e):
    return e.code() if e is not None else grpc.StatusCode.OK


def err_text(e):
    return "%s: %s" % (e.code(), e.details()) if e is not None else "OK"


case = tap.case


def close(a, b, tol=0.0015):
    return abs(float(a) - float(b)) <= tol


def iso_epoch(s):
    """Seconds since the epoch of an RFC 3339 string."""
    s = s.replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(s).timestamp()


def ts_epoch(ts):
    return ts.seconds + ts.nanos / 1e9


wait_state = env.wait_task_state


# ---------------------------------------------------------------- the data
diamonds = [env.create("integration", "diamond_workflow", {"case": "admin", "n": i})
            for i in range(3)]
doomed = env.create("engine_tests", "always_fails", {"case": "admin"})
# engine_unserved: no worker serves it; its tasks wait in steps_in_process
stale = env.create("engine_unserved", "unserved_task", {"case": "admin-stale"})
warned = env.create("engine_unserved", "unserved_task", {"case": "admin-warning"})
fresh = env.create("engine_unserved", "unserved_task", {"case": "admin-fresh"})
states = {t: wait_state(t, tasker_env.TASK_TERMINAL, 40) for t in diamonds + [doomed]}
tap.ok(all(states[t] == "complete" for t in diamonds) and states[doomed] == "error",
       "set-up: three diamond tasks complete, the failing task ends in error", states)
waiting = {t: wait_state(t, ("steps_in_process",), 10) for t in (stale, warned, fresh)}
tap.ok(all(s == "steps_in_process" for s in waiting.values()),
       "set-up: the unserved tasks wait in steps_in_process", waiting)
# stale: past the 30 min steps_in_process threshold; warned: at 25 min,
# past 80 % of it but not stale (the detector leaves it alone)
env.sql("UPDATE tasker.task_transitions SET created_at = now() - interval '3 hours' "
        "WHERE task_uuid = '%s' AND most_recent" % stale)
env.sql("UPDATE tasker.task_transitions SET created_at = now() - interval '25 minutes' "
        "WHERE task_uuid = '%s' AND most_recent" % warned)
dlq_rows = env.wait_for(lambda: env.json(
    "SELECT dlq_entry_uuid FROM tasker.tasks_dlq WHERE task_uuid = '%s'" % stale), 15)
tap.ok(len(dlq_rows) == 1 and wait_state(stale, ("error",), 5) == "error",
       "set-up: the stale task gets a DLQ entry and goes to error", dlq_rows)
ENTRY = dlq_rows[0]["dlq_entry_uuid"] if dlq_rows else None


# ---------------------------------------------------------------- 1. templates
def yaml_templates():
    out = {}
    for d in tasker_env.DEFAULT_TEMPLATE_PATH.split(":"):
        for path in sorted(glob.glob(os.path.join(d, "**", "*.y*ml"), recursive=True)):
            with open(path) as f:
                doc = yaml.safe_load(f)
            out[(doc["namespace_name"], doc["name"], str(doc["version"]))] = doc
    return out


@case("templates")
def templates():
    want = yaml_templates()
    r, e = call("TemplateService", "ListTemplates", tpl_pb.ListTemplatesRequest())
    tap.ok(e is None, "ListTemplates answers", err_text(e))
    got = {(t.namespace, t.name, t.version): t for t in r.templates}
    tap.ok(sorted(got) == sorted(want) and r.total_count == len(want),
           "ListTemplates: every template file, and only those (%d)" % len(want),
           "got %s\nwant %s" % (sorted(got), sorted(want)))
    bad = []
    for k, doc in want.items():
        t = got.get(k)
        if t is None:
            continue
        desc = doc.get("description")
        if t.step_count != len(doc["steps"]):
            bad.append("%s: step_count %d, want %d" % (k, t.step_count, len(doc["steps"])))
        if (t.description if t.HasField("description") else None) != desc:
            bad.append("%s: description %r, want %r" % (k, t.description, desc))
    tap.ok(not bad, "ListTemplates: step counts and descriptions match the YAML", "\n".join(bad))
    per_ns = {}
    for (ns, _, _) in want:
        per_ns[ns] = per_ns.get(ns, 0) + 1
    tap.ok({n.name: n.template_count for n in r.namespaces} == per_ns,
           "ListTemplates: one namespace summary per namespace with its template count",
           [(n.name, n.template_count) for n in r.namespaces])
    r, e = call("TemplateService", "ListTemplates",
                tpl_pb.ListTemplatesRequest(namespace="integration"))
    tap.ok(e is None and sorted(t.name for t in r.templates) ==
           sorted(k[1] for k in want if k[0] == "integration")
           and [n.name for n in r.namespaces] == ["integration"],
           "ListTemplates namespace=integration: only that namespace",
           err_text(e) if e else [t.name for t in r.templates])
    r, e = call("TemplateService", "ListTemplates",
                tpl_pb.ListTemplatesRequest(namespace="no_such_namespace"))
    tap.ok(e is None and len(r.templates) == 0 and r.total_count == 0,
           "ListTemplates of an unknown namespace: empty", err_text(e))

    doc = want[("integration", "diamond_workflow", "1.0.0")]
    r, e = call("TemplateService", "GetTemplate", tpl_pb.GetTemplateRequest(
        namespace="integration", name="diamond_workflow", version="1.0.0"))
    tap.ok(e is None, "GetTemplate integration/diamond_workflow@1.0.0 answers", err_text(e))
    t = r.template
    tap.ok(t.name == "diamond_workflow" and t.namespace == "integration"
           and t.version == "1.0.0" and t.description == doc["description"],
           "GetTemplate: name, namespace, version, description", str(t)[:400])
    steps = [(s.name, s.description if s.HasField("description") else None,
              s.default_retryable, s.default_max_attempts) for s in t.steps]
    wsteps = [(s["name"], s.get("description"), s.get("retry", {}).get("retryable", True),
               s.get("retry", {}).get("max_attempts", 3)) for s in doc["steps"]]
    tap.ok(steps == wsteps, "GetTemplate: steps in order with retry defaults",
           "got %s\nwant %s" % (steps, wsteps))
    cfg = json_format.MessageToDict(t.configuration)
    bad = []
    for ys, cs in zip(doc["steps"], cfg.get("steps", [])):
        if cs.get("name") != ys["name"]:
            bad.append("name %s != %s" % (cs.get("name"), ys["name"]))
        if sorted(cs.get("dependencies") or []) != sorted(ys.get("dependencies") or []):
            bad.append("%s dependencies %s" % (ys["name"], cs.get("dependencies")))
        if (cs.get("handler") or {}).get("callable") != ys["handler"]["callable"]:
            bad.append("%s handler %s" % (ys["name"], cs.get("handler")))
        if (cs.get("handler") or {}).get("initialization") != ys["handler"]["initialization"]:
            bad.append("%s initialization %s" % (ys["name"], cs.get("handler")))
        for k, v in ys["retry"].items():
            if (cs.get("retry") or {}).get(k) != v:
                bad.append("%s retry.%s = %s, want %s" % (ys["name"], k,
                                                          (cs.get("retry") or {}).get(k), v))
    tap.ok(len(cfg.get("steps", [])) == 4 and not bad,
           "GetTemplate: configuration holds the dependencies, handler callables and "
           "retry settings", "\n".join(bad) or json.dumps(cfg)[:600])
    r, e = call("TemplateService", "GetTemplate", tpl_pb.GetTemplateRequest(
        namespace="integration", name="diamond_workflow", version="9.9.9"))
    tap.ok(code_of(e) == grpc.StatusCode.NOT_FOUND, "GetTemplate of an unknown version: "
           "NOT_FOUND", err_text(e))
    r, e = call("TemplateService", "GetTemplate", tpl_pb.GetTemplateRequest(
        namespace="integration", name="diamond_workflow"))
    tap.ok(code_of(e) == grpc.StatusCode.INVALID_ARGUMENT,
           "GetTemplate without a version: INVALID_ARGUMENT", err_text(e))


# ---------------------------------------------------------------- 2. analytics
STATE_SQL = ("COALESCE((SELECT tt.to_state FROM tasker.task_transitions tt "
             "WHERE tt.task_uuid = t.task_uuid AND tt.most_recent), 'pending')")
STEP_STATE_SQL = ("COALESCE((SELECT st.to_state FROM tasker.workflow_step_transitions st "
                  "WHERE st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent), "
                  "'pending')")


@case("analytics")
def analytics():
    r, e = call("AnalyticsService", "GetPerformanceMetrics",
                an_pb.GetPerformanceMetricsRequest(hours=24))
    tap.ok(e is None, "GetPerformanceMetrics answers", err_text(e))
    x = env.json(
        "WITH ts AS (SELECT t.task_uuid, t.created_at, t.completed_at, %s AS state "
        "FROM tasker.tasks t), "
        "ss AS (SELECT ws.workflow_step_uuid, ws.created_at, %s AS state, "
        "(SELECT st.created_at FROM tasker.workflow_step_transitions st "
        " WHERE st.workflow_step_uuid = ws.workflow_step_uuid AND st.most_recent) AS fin "
        "FROM tasker.workflow_steps ws) "
        "SELECT (SELECT count(*) FROM ts) AS total, "
        "(SELECT count(*) FROM ts WHERE state NOT IN "
        " ('complete','error','cancelled','resolved_manually')) AS active, "
        "(SELECT count(*) FROM ts WHERE state = 'complete') AS completed, "
        "(SELECT count(*) FROM ts WHERE state = 'error') AS failed, "
        "(SELECT count(*) FROM ss) AS steps, "
        "(SELECT avg(extract(epoch FROM completed_at - created_at)) FROM ts "
        " WHERE state = 'complete') AS avg_task, "
        "(SELECT avg(extract(epoch FROM fin - created_at)) FROM ss "
        " WHERE state = 'complete') AS avg_step" % (STATE_SQL, STEP_STATE_SQL))[0]
    total = x["total"]
    tap.ok(r.total_tasks == total and r.tasks_per_hour == total,
           "GetPerformanceMetrics: total_tasks and tasks_per_hour (the window's count) = "
           "%d tasks" % total, (r.total_tasks, r.tasks_per_hour))
    tap.ok(r.active_tasks == x["active"], "GetPerformanceMetrics: active_tasks = %d non-terminal"
           % x["active"], r.active_tasks)
    tap.ok(r.completed_tasks == x["completed"] and r.failed_tasks == x["failed"],
           "GetPerformanceMetrics: completed %d and failed %d tasks"
           % (x["completed"], x["failed"]), (r.completed_tasks, r.failed_tasks))
    tap.ok(close(r.completion_rate, round(x["completed"] * 100.0 / total, 2), 0.006)
           and close(r.error_rate, round(x["failed"] * 100.0 / total, 2), 0.006),
           "GetPerformanceMetrics: completion_rate and error_rate are percentages",
           (r.completion_rate, r.error_rate, x))
    tap.ok(r.steps_per_hour == x["steps"], "GetPerformanceMetrics: steps_per_hour = %d steps "
           "created in the window" % x["steps"], r.steps_per_hour)
    tap.ok(close(r.average_task_duration_seconds, x["avg_task"])
           and close(r.average_step_duration_seconds, x["avg_step"]),
           "GetPerformanceMetrics: average task and step durations in seconds",
           (r.average_task_duration_seconds, r.average_step_duration_seconds, x))
    # every task was created within the hour
    want_score = round(x["completed"] / float(x["completed"] + x["failed"]), 3)
    tap.ok(close(r.system_health_score, want_score, 0.0006),
           "GetPerformanceMetrics: system_health_score = complete / (complete + error) = %.3f"
           % want_score, r.system_health_score)
    now = time.time()
    start = iso_epoch(r.analysis_period_start)
    tap.ok(abs(iso_epoch(r.calculated_at) - now) < 30 and abs(now - start - 86400) < 30,
           "GetPerformanceMetrics: the window is the last 24 hours (RFC 3339 strings)",
           (r.analysis_period_start, r.calculated_at))
    r, e = call("AnalyticsService", "GetPerformanceMetrics",
                an_pb.GetPerformanceMetricsRequest(hours=0))
    tap.ok(code_of(e) == grpc.StatusCode.INVALID_ARGUMENT,
           "GetPerformanceMetrics hours=0: INVALID_ARGUMENT", err_text(e))

    r, e = call("AnalyticsService", "GetBottleneckAnalysis",
                an_pb.GetBottleneckAnalysisRequest(limit=10, min_executions=1))
    tap.ok(e is None, "GetBottleneckAnalysis answers", err_text(e))
    rows = env.json(
        "WITH runs AS (SELECT tns.name AS ns, nt.name AS task, nt.version AS ver, "
        "nst.name AS step, extract(epoch FROM st.created_at - ws.created_at) AS secs, "
        "st.to_state AS fin FROM tasker.workflow_steps ws "
        "JOIN tasker.workflow_step_transitions st ON st.workflow_step_uuid = "
        "ws.workflow_step_uuid AND st.most_recent "
        "JOIN tasker.named_steps nst ON nst.named_step_uuid = ws.named_step_uuid "
        "JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid "
        "JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid "
        "JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid "
        "WHERE st.to_state IN ('complete', 'error')) "
        "SELECT ns, task, ver, step, avg(secs) AS avg, max(secs) AS max, count(*) AS n, "
        "count(*) FILTER (WHERE fin = 'error') AS errors FROM runs "
        "GROUP BY ns, task, ver, step")
    want = {(w["ns"], w["task"], w["ver"], w["step"]): w for w in rows}
    got = {(s.namespace_name, s.task_name, s.version, s.step_name): s for s in r.slow_steps}
    tap.ok(sorted(got) == sorted(want), "GetBottleneckAnalysis: one slow-step row per step "
           "that finished (%d)" % len(want), "got %s\nwant %s" % (sorted(got), sorted(want)))
    bad = []
    for k, w in want.items():
        s = got.get(k)
        if s is None:
            continue
        if not (s.execution_count == w["n"] and s.error_count == w["errors"]
                and close(s.average_duration_seconds, w["avg"])
                and close(s.max_duration_seconds, w["max"])
                and close(s.error_rate, round(w["errors"] / float(w["n"]), 4), 0.00006)):
            bad.append("%s: %s vs %s" % (k, str(s).replace("\n", " "), w))
    tap.ok(not bad, "GetBottleneckAnalysis: counts, errors, durations (s) and error rates "
           "(0-1) of the slow steps match", "\n".join(bad))
    avgs = [s.average_duration_seconds for s in r.slow_steps]
    tap.ok(avgs == sorted(avgs, reverse=True), "GetBottleneckAnalysis: slowest step first", avgs)
    trows = env.json(
        "WITH fin AS (SELECT t.task_uuid, tns.name AS ns, nt.name AS task, nt.version AS ver, "
        "t.created_at, max(st.created_at) FILTER (WHERE st.to_state IN ('complete','error')) "
        "AS finished, count(*) AS steps, count(*) FILTER (WHERE st.to_state = 'error') "
        "AS errors FROM tasker.tasks t "
        "JOIN tasker.named_tasks nt ON nt.named_task_uuid = t.named_task_uuid "
        "JOIN tasker.task_namespaces tns ON tns.task_namespace_uuid = nt.task_namespace_uuid "
        "JOIN tasker.workflow_steps ws ON ws.task_uuid = t.task_uuid "
        "LEFT JOIN tasker.workflow_step_transitions st ON st.workflow_step_uuid = "
        "ws.workflow_step_uuid AND st.most_recent "
        "GROUP BY t.task_uuid, tns.name, nt.name, nt.version, t.created_at) "
        "SELECT ns, task, ver, count(*) AS n, avg(extract(epoch FROM finished - created_at)) "
        "AS avg, avg(steps) AS avg_steps, sum(errors) AS errors, "
        "count(*) FILTER (WHERE errors > 0) AS failed FROM fin WHERE finished IS NOT NULL "
        "GROUP BY ns, task, ver")
    want = {(w["ns"], w["task"], w["ver"]): w for w in trows}
    got = {(s.namespace_name, s.task_name, s.version): s for s in r.slow_tasks}
    bad = [] if sorted(got) == sorted(want) else ["templates %s, want %s"
                                                  % (sorted(got), sorted(want))]
    for k, w in want.items():
        s = got.get(k)
        if s is not None and not (
                s.execution_count == w["n"] and s.error_count == w["errors"]
                and close(s.average_duration_seconds, w["avg"])
                and close(s.average_step_count, w["avg_steps"], 0.006)
                and close(s.error_rate, round(w["failed"] / float(w["n"]), 4), 0.00006)):
            bad.append("%s: %s vs %s" % (k, str(s).replace("\n", " "), w))
    tap.ok(not bad, "GetBottleneckAnalysis: slow tasks per template (count, duration, steps, "
           "errors, error rate) match", "\n".join(bad))
    counts = env.json(
        "SELECT s, count(*) AS n FROM (SELECT %s AS s FROM tasker.tasks t) x GROUP BY s"
        % STATE_SQL)
    scounts = env.json(
        "SELECT s, count(*) AS n FROM (SELECT %s AS s FROM tasker.workflow_steps ws) x "
        "GROUP BY s" % STEP_STATE_SQL)
    h = r.resource_utilization.system_health
    bad = []
    for states_, rows_, suffix in ((tasker_env.TASK_STATES, counts, "_tasks"),
                                   (tasker_env.STEP_STATES, scounts, "_steps")):
        by = {c["s"]: c["n"] for c in rows_}
        for s in states_:
            if getattr(h, s + suffix) != by.get(s, 0):
                bad.append("%s%s = %d, want %d" % (s, suffix, getattr(h, s + suffix),
                                                   by.get(s, 0)))
        if getattr(h, "total" + suffix) != sum(by.values()):
            bad.append("total%s" % suffix)
    tap.ok(not bad, "GetBottleneckAnalysis: the 24 state counts match the tables",
           "\n".join(bad))
    u = r.resource_utilization.database_pool_utilization
    tap.ok(0.0 <= u <= 1.0, "GetBottleneckAnalysis: pool utilization is a ratio", u)
    worst = max(r.slow_steps, key=lambda s: s.error_rate) if r.slow_steps else None
    tap.ok(worst is not None and worst.error_rate > 0.2 and any(
        "%s::%s" % (worst.task_name + "@" + worst.version, worst.step_name) in rec
        for rec in r.recommendations),
        "GetBottleneckAnalysis: the failing step's error rate gives a recommendation "
        "naming it", list(r.recommendations))
    r, e = call("AnalyticsService", "GetBottleneckAnalysis",
                an_pb.GetBottleneckAnalysisRequest())
    tap.ok(e is None and all(s.execution_count >= 5 for s in r.slow_steps),
           "GetBottleneckAnalysis defaults: rows with at least 5 executions only",
           err_text(e) if e else [(s.step_name, s.execution_count) for s in r.slow_steps])


# ---------------------------------------------------------------- 3. DLQ
Status = dlq_pb.DlqResolutionStatus


@case("dlq")
def dlq():
    row = env.json("SELECT dlq_entry_uuid, task_uuid, original_state, dlq_reason, "
                   "resolution_status, extract(epoch FROM dlq_timestamp) AS ts, "
                   "task_snapshot, metadata FROM tasker.tasks_dlq "
                   "WHERE dlq_entry_uuid = '%s'" % ENTRY)[0]
    r, e = call("DlqService", "ListEntries", dlq_pb.ListDlqEntriesRequest())
    tap.ok(e is None and [x.dlq_entry_uuid for x in r.entries] == [ENTRY],
           "ListEntries: the one entry", err_text(e) if e else str(r)[:400])
    r, e = call("DlqService", "ListEntries", dlq_pb.ListDlqEntriesRequest(
        resolution_status=Status.Value("DLQ_RESOLUTION_STATUS_PENDING")))
    tap.ok(e is None and len(r.entries) == 1, "ListEntries pending: 1", err_text(e))
    r, e = call("DlqService", "ListEntries", dlq_pb.ListDlqEntriesRequest(
        resolution_status=Status.Value("DLQ_RESOLUTION_STATUS_MANUALLY_RESOLVED")))
    tap.ok(e is None and len(r.entries) == 0, "ListEntries manually_resolved: none",
           err_text(e))
    r, e = call("DlqService", "ListEntries", dlq_pb.ListDlqEntriesRequest(offset=1))
    tap.ok(e is None and len(r.entries) == 0, "ListEntries offset 1: none", err_text(e))
    r, e = call("DlqService", "ListEntries", dlq_pb.ListDlqEntriesRequest(limit=0))
    tap.ok(code_of(e) == grpc.StatusCode.INVALID_ARGUMENT, "ListEntries limit 0: "
           "INVALID_ARGUMENT", err_text(e))

    r, e = call("DlqService", "GetEntryByTask", dlq_pb.GetDlqEntryByTaskRequest(task_uuid=stale))
    tap.ok(e is None, "GetEntryByTask answers", err_text(e))
    x = r.entry
    snap = json_format.MessageToDict(x.task_snapshot)
    tap.ok(x.dlq_entry_uuid == ENTRY and x.task_uuid == stale
           and x.original_state == row["original_state"] == "steps_in_process"
           and x.dlq_reason == dlq_pb.DLQ_REASON_STALENESS_TIMEOUT
           and x.resolution_status == Status.Value("DLQ_RESOLUTION_STATUS_PENDING")
           and not x.HasField("resolution_timestamp")
           and close(ts_epoch(x.dlq_timestamp), row["ts"], 0.000002),
           "GetEntryByTask: uuid, task, original state, reason, status and timestamp as "
           "stored", str(x)[:600])
    tap.ok(snap == row["task_snapshot"] and snap.get("namespace") == "engine_unserved"
           and json_format.MessageToDict(x.metadata) == row["metadata"],
           "GetEntryByTask: task snapshot and metadata as stored", (snap, row["task_snapshot"]))
    r, e = call("DlqService", "GetEntryByTask", dlq_pb.GetDlqEntryByTaskRequest(
        task_uuid=diamonds[0]))
    tap.ok(code_of(e) == grpc.StatusCode.NOT_FOUND, "GetEntryByTask of a task without an "
           "entry: NOT_FOUND", err_text(e))
    r, e = call("DlqService", "GetEntryByTask", dlq_pb.GetDlqEntryByTaskRequest(
        task_uuid="not-a-uuid"))
    tap.ok(code_of(e) == grpc.StatusCode.INVALID_ARGUMENT, "GetEntryByTask of a malformed "
           "uuid: INVALID_ARGUMENT", err_text(e))

    r, e = call("DlqService", "GetStats", dlq_pb.GetDlqStatsRequest())
    tap.ok(e is None and len(r.stats) == 1 and r.stats[0].dlq_reason ==
           dlq_pb.DLQ_REASON_STALENESS_TIMEOUT and r.stats[0].total_entries == 1
           and r.stats[0].pending == 1 and r.stats[0].manually_resolved == 0
           and close(ts_epoch(r.stats[0].oldest_entry), row["ts"], 0.000002),
           "GetStats: one staleness_timeout entry, pending", err_text(e) if e else str(r))

    q = env.json("SELECT dlq_entry_uuid, priority_score, minutes_in_dlq, namespace_name, "
                 "task_name, current_state, time_in_state_minutes "
                 "FROM tasker.v_dlq_investigation_queue")
    r, e = call("DlqService", "GetInvestigationQueue", dlq_pb.GetDlqInvestigationQueueRequest())
    tap.ok(e is None and len(r.entries) == 1 and len(q) == 1, "GetInvestigationQueue: the "
           "pending entry", err_text(e) if e else str(r))
    if e is None and r.entries and q:
        g, w = r.entries[0], q[0]
        tap.ok(g.dlq_entry_uuid == w["dlq_entry_uuid"] and g.namespace_name == w["namespace_name"]
               and g.task_name == w["task_name"] and g.current_state == w["current_state"]
               and g.time_in_state_minutes == w["time_in_state_minutes"] >= 180
               and 100 <= g.priority_score < 100 + g.minutes_in_dlq + 1
               and close(g.priority_score - g.minutes_in_dlq, 100, 0.0001),
               "GetInvestigationQueue: priority 100 (staleness) + minutes in the DLQ, names "
               "and time in state from the snapshot", (str(g), w))

    # the view before and after the call: whole minutes may tick in between
    view = "SELECT * FROM tasker.v_task_staleness_monitoring"
    mon = {m["task_uuid"]: m for m in env.json(view)}
    r, e = call("DlqService", "GetStalenessMonitoring", dlq_pb.GetStalenessMonitoringRequest())
    mon_after = {m["task_uuid"]: m for m in env.json(view)}
    tap.ok(e is None, "GetStalenessMonitoring answers", err_text(e))
    got = {m.task_uuid: m for m in r.entries}
    H = dlq_pb.StalenessHealthStatus

    def same(g, w):
        return (w is not None and g.current_state == w["current_state"]
                and g.time_in_state_minutes == w["time_in_state_minutes"]
                and g.task_age_minutes == w["task_age_minutes"]
                and g.staleness_threshold_minutes == w["staleness_threshold_minutes"]
                and H.Name(g.health_status) == "STALENESS_HEALTH_STATUS_" +
                w["health_status"].upper() and g.priority == w["priority"])
    bad = [] if sorted(got) == sorted(mon) else ["tasks %s, want %s" % (sorted(got),
                                                                         sorted(mon))]
    for t, w in mon.items():
        g = got.get(t)
        if g is not None and not (same(g, w) or same(g, mon_after.get(t))):
            bad.append("%s: %s vs %s" % (t, str(g).replace("\n", " "), w))
    tap.ok(not bad and warned in got and fresh in got,
           "GetStalenessMonitoring: the waiting tasks as the view shows them", "\n".join(bad))
    tap.ok(warned in got and got[warned].health_status == H.Value(
        "STALENESS_HEALTH_STATUS_WARNING") and got[warned].staleness_threshold_minutes == 30
        and fresh in got and got[fresh].health_status == H.Value(
            "STALENESS_HEALTH_STATUS_HEALTHY"),
        "GetStalenessMonitoring: 25 of 30 minutes is WARNING, a fresh task HEALTHY",
        {t: str(g).replace("\n", " ") for t, g in got.items()})
    order = [m.time_in_state_minutes for m in r.entries]
    tap.ok(order == sorted(order, reverse=True), "GetStalenessMonitoring: longest in state "
           "first", order)

    upd = dlq_pb.UpdateDlqInvestigationRequest

    def db_entry():
        return env.json("SELECT resolution_status, resolution_notes, resolved_by, metadata, "
                        "resolution_timestamp IS NOT NULL AS resolved_at FROM tasker.tasks_dlq "
                        "WHERE dlq_entry_uuid = '%s'" % ENTRY)[0]

    r, e = call("DlqService", "UpdateInvestigation", upd(
        dlq_entry_uuid=ENTRY, resolution_notes="looking at the unserved namespace"))
    d = db_entry()
    tap.ok(e is None and r.success and r.dlq_entry_uuid == ENTRY
           and d["resolution_notes"] == "looking at the unserved namespace"
           and d["resolution_status"] == "pending" and not d["resolved_at"],
           "UpdateInvestigation notes only: stored, still pending", (err_text(e), d))
    for status, why in (("DLQ_RESOLUTION_STATUS_UNSPECIFIED", "UNSPECIFIED"),
                        ("DLQ_RESOLUTION_STATUS_PENDING", "pending -> pending")):
        r, e = call("DlqService", "UpdateInvestigation", upd(
            dlq_entry_uuid=ENTRY, resolution_status=Status.Value(status)))
        tap.ok(code_of(e) == grpc.StatusCode.INVALID_ARGUMENT,
               "UpdateInvestigation %s: INVALID_ARGUMENT" % why, err_text(e))
    r, e = call("DlqService", "UpdateInvestigation", upd(dlq_entry_uuid=ENTRY))
    tap.ok(code_of(e) == grpc.StatusCode.INVALID_ARGUMENT,
           "UpdateInvestigation with nothing to change: INVALID_ARGUMENT", err_text(e))
    r, e = call("DlqService", "UpdateInvestigation", upd(
        dlq_entry_uuid="00000000-0000-4000-8000-000000000000", resolution_notes="x"))
    tap.ok(code_of(e) == grpc.StatusCode.NOT_FOUND, "UpdateInvestigation of an unknown "
           "entry: NOT_FOUND", err_text(e))
    req = upd(dlq_entry_uuid=ENTRY,
              resolution_status=Status.Value("DLQ_RESOLUTION_STATUS_MANUALLY_RESOLVED"),
              resolved_by="operator-7")
    req.metadata.update({"ticket": "OPS-42", "checked": True})
    r, e = call("DlqService", "UpdateInvestigation", req)
    d = db_entry()
    tap.ok(e is None and r.success and d["resolution_status"] == "manually_resolved"
           and d["resolved_by"] == "operator-7" and d["resolved_at"]
           and d["metadata"] == {"ticket": "OPS-42", "checked": True}
           and d["resolution_notes"] == "looking at the unserved namespace",
           "UpdateInvestigation pending -> manually_resolved with resolved_by and metadata",
           (err_text(e), d))
    for status in ("DLQ_RESOLUTION_STATUS_CANCELLED", "DLQ_RESOLUTION_STATUS_PENDING",
                   "DLQ_RESOLUTION_STATUS_PERMANENTLY_FAILED"):
        r, e = call("DlqService", "UpdateInvestigation", upd(
            dlq_entry_uuid=ENTRY, resolution_status=Status.Value(status)))
        tap.ok(code_of(e) == grpc.StatusCode.INVALID_ARGUMENT and
               "manually_resolved" in (e.details() if e else ""),
               "UpdateInvestigation manually_resolved -> %s: INVALID_ARGUMENT naming the "
               "transition" % status[len("DLQ_RESOLUTION_STATUS_"):].lower(), err_text(e))
    tap.ok(db_entry()["resolution_status"] == "manually_resolved",
           "the refused transitions changed nothing")
    r, e = call("DlqService", "UpdateInvestigation", upd(
        dlq_entry_uuid=ENTRY, resolution_notes="closed: namespace has no worker"))
    tap.ok(e is None and db_entry()["resolution_notes"] == "closed: namespace has no worker",
           "UpdateInvestigation notes on a closed entry", err_text(e))
    r, e = call("DlqService", "GetStats", dlq_pb.GetDlqStatsRequest())
    s = r.stats[0] if e is None and r.stats else None
    avg = env.sql("SELECT avg_resolution_time_minutes FROM tasker.v_dlq_dashboard")
    tap.ok(s is not None and s.pending == 0 and s.manually_resolved == 1
           and s.HasField("avg_resolution_time_minutes")
           and close(s.avg_resolution_time_minutes, float(avg), 0.001),
           "GetStats after the resolution: manually_resolved 1, average resolution minutes",
           (err_text(e), str(r), avg))
    r, e = call("DlqService", "GetInvestigationQueue", dlq_pb.GetDlqInvestigationQueueRequest())
    tap.ok(e is None and len(r.entries) == 0, "GetInvestigationQueue: empty once resolved",
           err_text(e))
    r, e = call("DlqService", "ListEntries", dlq_pb.ListDlqEntriesRequest(
        resolution_status=Status.Value("DLQ_RESOLUTION_STATUS_MANUALLY_RESOLVED")))
    tap.ok(e is None and [x.dlq_entry_uuid for x in r.entries] == [ENTRY]
           and r.entries[0].resolved_by == "operator-7"
           and r.entries[0].HasField("resolution_timestamp"),
           "ListEntries manually_resolved: the entry, with resolved_by and its timestamp",
           err_text(e))


# ---------------------------------------------------------------- 6. permissions
@case("permissions")
def permissions():
    r, e = call("HealthService", "CheckHealth", health_pb.HealthRequest(), key=None)
    tap.ok(e is None and r.status == "healthy", "CheckHealth needs no credentials",
           err_text(e))
    r, e = call("TemplateService", "ListTemplates", tpl_pb.ListTemplatesRequest(), key=None)
    tap.ok(code_of(e) == grpc.StatusCode.UNAUTHENTICATED, "ListTemplates without a key: "
           "UNAUTHENTICATED", err_text(e))
    r, e = call("TemplateService", "ListTemplates", tpl_pb.ListTemplatesRequest(),
                key=READER_KEY)
    tap.ok(e is None, "ListTemplates with the reader key", err_text(e))
    for svc, m, req in (("DlqService", "UpdateInvestigation",
                         dlq_pb.UpdateDlqInvestigationRequest(dlq_entry_uuid=ENTRY,
                                                              resolution_notes="x")),
                        ("DlqService", "GetStats", dlq_pb.GetDlqStatsRequest()),
                        ("AnalyticsService", "GetPerformanceMetrics",
                         an_pb.GetPerformanceMetricsRequest()),
                        ("ConfigService", "GetConfig", cfg_pb.GetConfigRequest())):
        r, e = call(svc, m, req, key=READER_KEY)
        tap.ok(code_of(e) == grpc.StatusCode.PERMISSION_DENIED,
               "%s with the reader key: PERMISSION_DENIED" % m, err_text(e))


# ---------------------------------------------------------------- 5. config
@case("config")
def config():
    r, e = call("ConfigService", "GetConfig", cfg_pb.GetConfigRequest())
    tap.ok(e is None, "GetConfig answers", err_text(e))
    version = subprocess.run([harness.program("taskerd"), "--version"], stdout=subprocess.PIPE,
                             timeout=10).stdout.decode().split()[-1]
    tap.ok(r.metadata.version == version and abs(ts_epoch(r.metadata.timestamp) - time.time())
           < 30, "GetConfig: metadata version %s and timestamp" % version, str(r.metadata))
    a = r.auth
    tap.ok(a.enabled and a.verification_method == "public_key" and a.jwt_issuer ==
           "tasker-core" and a.jwt_audience == "tasker-api" and a.api_key_header ==
           "x-api-key" and a.api_key_count == 2 and a.strict_validation
           and list(a.allowed_algorithms) == ["RS256"],
           "GetConfig: auth summary (method, issuer, audience, header, 2 keys counted, "
           "algorithms)", str(a))
    cb = r.circuit_breakers
    tap.ok(cb.enabled and (cb.failure_threshold, cb.timeout_seconds, cb.success_threshold)
           == (5, 30, 2), "GetConfig: circuit breaker defaults 5 / 30 s / 2", str(cb))
    tap.ok(r.database_pools.web_api_pool_size == POOL_SIZE and
           r.database_pools.web_api_max_connections == POOL_SIZE,
           "GetConfig: the pool figures are the configured pool (%d)" % POOL_SIZE,
           str(r.database_pools))
    tap.ok(r.deployment_mode == "Hybrid", "GetConfig: deployment mode Hybrid",
           r.deployment_mode)
    queues = set(env.sql("SELECT string_agg(queue_name, ' ') FROM pgmq.meta").split())
    tap.ok(r.messaging.backend == "pgmq" and set(r.messaging.queues) ==
           {"orchestration_task_requests", "orchestration_step_results"}
           and set(r.messaging.queues) <= queues,
           "GetConfig: messaging pgmq with the orchestration queues that exist",
           (str(r.messaging), queues))
    wire = r.SerializeToString()
    text = str(r) + json.dumps(json_format.MessageToDict(r))
    secrets = {"database password": DB_PASSWORD, "DATABASE_URL": env.url,
               "database socket directory": env.cluster.dir,
               "admin API key": ADMIN_KEY, "reader API key": READER_KEY,
               "JWT key path": JWT_KEY_PATH, "JWT key directory": SECRET_DIR,
               "JWT key file name": os.path.basename(JWT_KEY_PATH),
               "JWKS URL": JWKS_URL, "JWKS host": "keys.example.invalid",
               "API key permission list": ADMIN_PERMS, "a permission": "dlq:update"}
    found = [name for name, s in secrets.items()
             if s.encode() in wire or s in text]
    tap.ok(not found and b"s3cr3t" not in wire and "s3cr3t" not in text,
           "GetConfig: no configured secret in the answer (%d checked)" % len(secrets),
           "found: %s" % found)


# ---------------------------------------------------------------- 4. health
def check_all(checks, names):
    return {n: (getattr(checks, n).status, getattr(checks, n).message) for n in names}


READY = ("web_database", "orchestration_database", "circuit_breaker", "orchestration_system",
         "command_processor")


@case("health")
def health():
    r, e = call("HealthService", "CheckHealth", health_pb.HealthRequest(), key=None)
    tap.ok(e is None and r.status == "healthy" and abs(iso_epoch(r.timestamp) - time.time())
           < 30, "CheckHealth: healthy with an RFC 3339 timestamp", err_text(e))
    r, e = call("HealthService", "CheckLiveness", health_pb.LivenessRequest(), key=None)
    tap.ok(e is None and r.status == "alive", "CheckLiveness: alive", err_text(e))
    r, e = call("HealthService", "CheckReadiness", health_pb.ReadinessRequest(), key=None)
    tap.ok(e is None and r.status == "ready", "CheckReadiness: ready", err_text(e))
    if e is None:
        c = check_all(r.checks, READY)
        tap.ok(all(s == "healthy" for s, _ in c.values()),
               "CheckReadiness: the five checks are healthy", c)
        tap.ok("SELECT 1" in c["web_database"][1] and "orchestration threads running" in
               c["orchestration_system"][1] and "no circuit breaker" in c["circuit_breaker"][1],
               "CheckReadiness: the checks say what they looked at", c)
        i = r.info
        tap.ok(i.web_database_pool_size == POOL_SIZE and i.orchestration_database_pool_size
               == POOL_SIZE and i.operational_state == "Normal"
               and i.circuit_breaker_state == ""
               and i.pool_utilization.tasker_pool.max_connections == POOL_SIZE,
               "CheckReadiness: info (pool %d, Normal, no breaker state invented)" % POOL_SIZE,
               str(i))
    r, e = call("HealthService", "CheckDetailedHealth", health_pb.DetailedHealthRequest(),
                key=None)
    tap.ok(e is None and r.status == "healthy", "CheckDetailedHealth: healthy",
           err_text(e) if e else str(r.checks))
    if e is None:
        c = check_all(r.checks, READY + ("pool_utilization", "queue_depth",
                                         "channel_saturation"))
        depth = env.sql("SELECT max(queue_length) FROM pgmq.metrics_all()")
        tap.ok(c["pool_utilization"][0] == "healthy" and c["queue_depth"][0] == "healthy"
               and ("holds %s messages" % depth) in c["queue_depth"][1],
               "CheckDetailedHealth: pool healthy, queue depth normal (%s messages)" % depth, c)
        # the RPC work queue: this call runs on one of its threads, none waits
        m = re.fullmatch(r"normal: RPC work queue: 0 of 4096 requests waiting \(0 % of the "
                         r"high watermark\), (\d+) of (\d+) handler threads busy "
                         r"\(saturated from 80 %\)", c["channel_saturation"][1])
        tap.ok(c["channel_saturation"][0] == "healthy" and m is not None
               and 1 <= int(m.group(1)) <= int(m.group(2)),
               "CheckDetailedHealth: channel saturation healthy, with the RPC work queue's "
               "figures (depth 0 of the default high watermark 4096, busy/threads)",
               c["channel_saturation"])
        p = r.info.pool_utilization.tasker_pool
        tap.ok(p.max_connections == POOL_SIZE and p.total_acquires > 0
               and 0 <= p.utilization_percent <= 100
               and p.active_connections + p.idle_connections <= POOL_SIZE,
               "CheckDetailedHealth: pool figures from the pool's counters", str(p))

    # the database goes away
    env.cluster.stop()
    t0 = time.time()
    r, e = call("HealthService", "CheckReadiness", health_pb.ReadinessRequest(), key=None)
    took = time.time() - t0
    tap.ok(code_of(e) == grpc.StatusCode.UNAVAILABLE and e.details() == "Service is not ready",
           "CheckReadiness with the database stopped: UNAVAILABLE \"Service is not ready\"",
           err_text(e))
    tap.ok(took < 10, "and it answers within seconds (%.2f s)" % took)
    r, e = call("HealthService", "CheckLiveness", health_pb.LivenessRequest(), key=None)
    tap.ok(e is None and r.status == "alive", "CheckLiveness with the database stopped: alive",
           err_text(e))
    r, e = call("HealthService", "CheckDetailedHealth", health_pb.DetailedHealthRequest(),
                key=None)
    tap.ok(e is None and r.status == "degraded" and r.checks.web_database.status == "unhealthy"
           and r.checks.command_processor.status == "unhealthy",
           "CheckDetailedHealth with the database stopped: degraded, database unhealthy",
           err_text(e) if e else str(r.checks))
    text = str(r)
    tap.ok(e is None and "cannot connect to the database" in r.checks.web_database.message
           and env.cluster.dir not in text and "dbname" not in text
           and DB_PASSWORD not in text,
           "CheckDetailedHealth (public) says why without naming the database's socket, "
           "name or password", text)
    env.cluster.start()
    ok = env.wait_for(lambda: code_of(call("HealthService", "CheckReadiness",
                                           health_pb.ReadinessRequest(), key=None)[1])
                      == grpc.StatusCode.OK, 20, interval=0.5)
    tap.ok(ok, "CheckReadiness is ready again after the database restarts")


# ---------------------------------------------------------------- the end
tap.ok(taskerd.alive() and worker.alive(), "taskerd and the worker are still running")
channel.close()
rc_d = taskerd.stop(20)
rc_w = worker.stop(30)
tap.ok(rc_d == 0 and rc_w == 0, "taskerd and the worker stop cleanly",
       "taskerd %s, worker %s" % (rc_d, rc_w))
if tap.failed:
    env.dump_logs(25)
env.close()
tap.done()
