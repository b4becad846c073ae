#!/usr/bin/python3
"""tasker-worker against a private PostgreSQL cluster (t/lib/pg.py).

The test plays the orchestration's part with SQL: it creates tasks and
steps directly, moves a step to `enqueued` and sends its message to
worker_<namespace>_queue with tasker.pgmq_send_with_notify, then checks
what the worker did: the step's state and stored StepExecutionResult, the
notice on orchestration_step_results, the archived message. Covered: the
built-in handlers (echo with transitive dependency results, fail with
retryable / non-retryable / server-requested backoff / fail_times), exec
handlers (success, output that is not JSON, exit statuses, an envelope, a
timeout that kills the process group, leftovers killed at exit), the
example plugin (built here with cc), a cancelled step (skipped, message
archived), a step of a template the worker does not have (left alone),
visibility-timeout extension for a slow step, a reclaim after kill -9 of
the worker running a step, a database restart, SIGTERM (waits for the
running step, exits 0) and the forced end of a shutdown, plus start-up
errors (schema missing, bad settings, a missing exec program).

Migrations: taskerd --migrate-only when taskerd has it, else psql on
src/store/migrations/*.sql. TASKER_TEST_KEEP=1 keeps the temporary
directory (postgres.log, worker logs); TASKER_TEST_VERBOSE=1 prints the
worker logs of failed checks in full.
"""
import atexit
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import pg  # noqa: E402

NS = "wtest"
QUEUE = "worker_%s_queue" % NS
RESULTS = "orchestration_step_results"
VT = 3  # seconds: short, so that reclaims happen quickly
DEADLINE = 300  # seconds for the whole test

tap = harness.Tap()
try:
    WORKER = harness.program("tasker-worker")
except FileNotFoundError as e:
    tap.skip_all(str(e))
if not pg.available():
    tap.skip_all("the PostgreSQL server programs are not installed")

tmp = tempfile.mkdtemp(prefix="tasker-80-")
os.chmod(tmp, 0o711)  # the cluster lives below it and runs as another user when we are root
if not os.environ.get("TASKER_TEST_KEEP"):
    atexit.register(shutil.rmtree, tmp, True)
procs = harness._procs  # killed at exit by harness (registered before the cluster's stop)


def _watchdog():
    print("Bail out! no result after %d s" % DEADLINE, flush=True)
    harness._cleanup()
    os._exit(1)


timer = threading.Timer(DEADLINE, _watchdog)
timer.daemon = True
timer.start()

cluster = pg.Cluster(os.path.join(tmp, "pg"))
try:
    cluster.start()
except pg.ClusterError as e:
    print("Bail out! cannot start PostgreSQL: %s" % str(e).replace("\n", " "), flush=True)
    sys.exit(1)
URL = cluster.conninfo
HANDLERS = os.path.join(harness.TOP_SRCDIR, "t", "handlers")
PLUGIN_SRC = os.path.join(harness.TOP_SRCDIR, "contrib", "plugins", "example", "uppercase.c")
INCLUDE = os.path.join(harness.TOP_SRCDIR, "include")


def q(sql):
    return cluster.psql(sql)


def qjson(sql):
    out = q(sql)
    return json.loads(out) if out else None


def wait_for(fn, timeout, interval=0.1):
    """Polls fn() until it returns something true; returns that or None."""
    end = time.time() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.time() > end:
            return None
        time.sleep(interval)


# ------------------------------------------------------------------ schema


def migrate():
    """taskerd --migrate-only if this taskerd has it, else psql."""
    try:
        taskerd = harness.program("taskerd")
        help_text = subprocess.run([taskerd, "--help"], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, timeout=30).stdout.decode()
    except (FileNotFoundError, subprocess.TimeoutExpired):
        help_text = ""
    if "--migrate-only" in help_text:
        r = subprocess.run([taskerd, "--migrate-only", "--database.url=" + URL],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("taskerd --migrate-only: " + r.stdout.decode())
        return "taskerd --migrate-only"
    files = sorted(glob.glob(os.path.join(harness.TOP_SRCDIR, "src", "store", "migrations",
                                          "*.sql")))
    q("CREATE SCHEMA IF NOT EXISTS tasker; CREATE TABLE IF NOT EXISTS tasker.schema_migrations"
      " (version text PRIMARY KEY, name text NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now())")
    for f in files:
        base = os.path.basename(f)
        r = subprocess.run([os.path.join(cluster.bindir, "psql"), "-X", "-q", "-1", "-v",
                            "ON_ERROR_STOP=1", "-h", cluster.dir, "-d", "tasker", "-f", f],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("%s: %s" % (base, r.stdout.decode()))
        q("INSERT INTO tasker.schema_migrations (version, name) VALUES ('%s', '%s')"
          % (base[:4], base[5:-4]))
    return "psql"


# ------------------------------------------------------------------ templates

TEMPLATES = {
    "chain": """
name: chain
namespace_name: wtest
version: 1.0.0
steps:
  - name: w_a
    handler: {callable: noop}
  - name: w_b
    depends_on: [w_a]
    handler: {callable: noop}
  - name: w_c
    depends_on: [w_b]
    handler:
      callable: echo
      initialization: {greeting: hi}
  - name: w_d
    handler: {callable: noop}
""",
    "fails": """
name: fails
namespace_name: wtest
version: 1.0.0
steps:
  - name: f_retry
    handler:
      callable: fail
      initialization: {message: "nope", backoff_seconds: 7}
  - name: f_perm
    handler:
      callable: fail
      initialization: {retryable: false, message: "bad input"}
  - name: f_once
    handler:
      callable: fail
      initialization: {fail_times: 1}
""",
    "execs": """
name: execs
namespace_name: wtest
version: 1.0.0
steps:
  - name: e_ok
    handler: {callable: "exec:echo-input.py"}
  - name: e_notjson
    handler: {callable: "exec:not-json.sh"}
  - name: e_exit3
    handler: {callable: "exec:scripted.py"}
  - name: e_exit65
    handler: {callable: "exec:scripted.py"}
  - name: e_envelope
    handler: {callable: "exec:scripted.py"}
  - name: e_timeout
    handler: {callable: "exec:scripted.py"}
    timeout_seconds: 1
  - name: e_leftover
    handler: {callable: "exec:scripted.py"}
  - name: e_slow
    handler: {callable: "exec:scripted.py"}
    timeout_seconds: 120
""",
    "plugins": """
name: plugins
namespace_name: wtest
version: 1.0.0
steps:
  - name: p_upper
    handler: {callable: "plugin:uppercase.so:example_uppercase"}
  - name: p_upper_bad
    handler: {callable: "plugin:uppercase.so:example_uppercase"}
""",
    "sleeps": """
name: sleeps
namespace_name: wtest
version: 1.0.0
steps:
  - name: s_kill
    handler:
      callable: sleep
      initialization: {seconds: 4}
  - name: s_alive
    handler:
      callable: sleep
      initialization: {seconds: 7}
  - name: s_term
    handler:
      callable: sleep
      initialization: {ms: 2500}
  - name: s_restart
    handler: {callable: noop}
""",
    "others": """
name: others
namespace_name: wtest
version: 1.0.0
steps:
  - name: o_cancelled
    handler: {callable: noop}
  - name: o_foreign
    handler: {callable: "Billing::ChargeHandler"}
""",
}

tpl_dir = os.path.join(tmp, "templates")
os.makedirs(tpl_dir)
for name, text in TEMPLATES.items():
    with open(os.path.join(tpl_dir, name + ".yaml"), "w") as f:
        f.write(text.lstrip())
# A template the worker has not loaded: same task name, another version.
UNLOADED_VERSION = "9.9.9"


# ------------------------------------------------------------------ tasks and steps

def ensure_template_rows(task, steps, version="1.0.0"):
    q("INSERT INTO tasker.task_namespaces (name) VALUES ('%s') ON CONFLICT DO NOTHING" % NS)
    q("INSERT INTO tasker.named_tasks (task_namespace_uuid, name, version) "
      "SELECT task_namespace_uuid, '%s', '%s' FROM tasker.task_namespaces WHERE name = '%s' "
      "ON CONFLICT DO NOTHING" % (task, version, NS))
    for s in steps:
        q("INSERT INTO tasker.named_steps (name) VALUES ('%s') ON CONFLICT DO NOTHING" % s)


def sql_json(v):
    return "'%s'::jsonb" % json.dumps(v).replace("'", "''")


def create_task(task, steps, edges=(), context=None, version="1.0.0"):
    """steps: {name: inputs}. Returns (task_uuid, correlation_id, {name: step_uuid})."""
    ensure_template_rows(task, steps, version)
    row = q("INSERT INTO tasker.tasks (named_task_uuid, identity_hash, context, initiator, tags) "
            "SELECT nt.named_task_uuid, md5(random()::text), %s, 'tester', %s "
            "FROM tasker.named_tasks nt JOIN tasker.task_namespaces n USING (task_namespace_uuid)"
            " WHERE n.name = '%s' AND nt.name = '%s' AND nt.version = '%s' "
            "RETURNING task_uuid || ' ' || correlation_id"
            % (sql_json(context or {"order": 7}), sql_json(["test"]), NS, task, version))
    task_uuid, corr = row.split()
    ids = {}
    for name, inputs in steps.items():
        ids[name] = q("INSERT INTO tasker.workflow_steps (task_uuid, named_step_uuid, inputs) "
                      "SELECT '%s', named_step_uuid, %s FROM tasker.named_steps WHERE name = '%s'"
                      " RETURNING workflow_step_uuid" % (task_uuid, sql_json(inputs), name))
    for parent, child in edges:
        q("INSERT INTO tasker.workflow_step_edges (from_step_uuid, to_step_uuid) "
          "VALUES ('%s', '%s')" % (ids[parent], ids[child]))
    return task_uuid, corr, ids


def transition(step, from_states, to_state, results=None):
    return q("SELECT tasker.transition_step_state_atomic('%s', ARRAY[%s]::text[], '%s', "
             "'{\"event\": \"test\"}', %s)"
             % (step, ",".join("'%s'" % s for s in from_states), to_state,
                sql_json(results) if results is not None else "NULL")) == "t"


def send(task_uuid, corr, step):
    return int(q("SELECT tasker.pgmq_send_with_notify('%s', jsonb_build_object('task_uuid', '%s',"
                 " 'step_uuid', '%s', 'correlation_id', '%s'))" % (QUEUE, task_uuid, step, corr)))


def enqueue(task_uuid, corr, step, from_states=("pending",)):
    if not transition(step, from_states, "enqueued"):
        raise RuntimeError("cannot enqueue step %s" % step)
    return send(task_uuid, corr, step)


def state(step):
    return q("SELECT tasker.get_current_step_state('%s')" % step)


def results(step):
    return qjson("SELECT results::text FROM tasker.workflow_steps WHERE workflow_step_uuid = '%s'"
                 % step)


def attempts(step):
    return int(q("SELECT attempts FROM tasker.workflow_steps WHERE workflow_step_uuid = '%s'"
                 % step))


def transitions(step):
    rows = q("SELECT coalesce(from_state, '-') || ' ' || to_state || ' ' || metadata::text "
             "FROM tasker.workflow_step_transitions WHERE workflow_step_uuid = '%s' "
             "ORDER BY sort_key" % step)
    out = []
    for line in rows.splitlines():
        f, t, md = line.split(" ", 2)
        out.append((f, t, json.loads(md)))
    return out


def notices(step):
    return int(q("SELECT count(*) FROM pgmq.q_%s WHERE message->>'step_uuid' = '%s'"
                 % (RESULTS, step)))


def archived(msg_id):
    return q("SELECT count(*) FROM pgmq.a_%s WHERE msg_id = %d" % (QUEUE, msg_id)) == "1"


def in_queue(msg_id):
    return q("SELECT count(*) FROM pgmq.q_%s WHERE msg_id = %d" % (QUEUE, msg_id)) == "1"


def final_state(step, timeout=20):
    """Waits for the worker's report; returns the state then (or the last seen)."""
    done = ("enqueued_for_orchestration", "enqueued_as_error_for_orchestration")
    wait_for(lambda: state(step) in done, timeout)
    return state(step)


# ------------------------------------------------------------------ workers

class Worker:
    def __init__(self, name, args=(), env=None, wait=True, database=URL):
        self.name = name
        self.log_path = os.path.join(tmp, name + ".log")
        e = dict(os.environ)
        for k in list(e):
            if k.startswith("TASKER_") or k == "DATABASE_URL":
                del e[k]
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.update({"DATABASE_URL": database, "TASKER_TEMPLATE_PATH": tpl_dir})
        e.update(env or {})
        argv = [WORKER, "--worker.visibility_timeout=%d" % VT, "--worker.poll_interval=500ms",
                "--worker.exec_dir=" + HANDLERS, "--worker.concurrency=4"] + list(args)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, env=e)
        procs.append(self.proc)
        self.uuid = None
        if wait:
            m = wait_for(lambda: self.proc.poll() is not None or
                         re.search(r"worker (\S+) serving namespace", self.text()), 20)
            if not m or self.proc.poll() is not None:
                raise RuntimeError("%s did not start:\n%s" % (name, self.text()))
            self.uuid = m.group(1)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def tail(self, n=25):
        lines = self.text().splitlines()
        return "\n".join(lines if os.environ.get("TASKER_TEST_VERBOSE") else lines[-n:])

    def run_to_end(self, timeout=30):
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode


def logs(*workers):
    return "\n".join("--- %s\n%s" % (w.name, w.tail()) for w in workers)


def pid_gone(pid):
    """True when the process is gone or a zombie nobody reaped (container init)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


# ================================================================== start-up errors

# The plugin, built from the example in contrib/, beside the templates.
plugin = os.path.join(tpl_dir, "uppercase.so")
r = subprocess.run(["cc", "-shared", "-fPIC", "-fvisibility=hidden", "-I" + INCLUDE, "-o", plugin,
                    PLUGIN_SRC] + subprocess.run(["pkg-config", "--cflags", "--libs", "jansson"],
                                                 stdout=subprocess.PIPE).stdout.decode().split(),
                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
have_plugin = tap.ok(r.returncode == 0, "the example plugin builds with cc", r.stdout.decode())
if not have_plugin:  # the other checks can still run without it
    os.unlink(os.path.join(tpl_dir, "plugins.yaml"))


q("CREATE DATABASE empty")
w = Worker("no-schema", wait=False, database=cluster.conninfo_for("empty"))
rc = w.run_to_end()
tap.ok(rc not in (0, None) and "migrate-only" in w.text(),
       "a database without the schema: the worker refuses to start and says what to run",
       "exit %s\n%s" % (rc, w.text()))

how = migrate()
tap.ok(True, "schema applied with %s" % how)

w = Worker("bad-vt", ["--worker.visibility_timeout=1500ms"], wait=False)
rc = w.run_to_end()
tap.ok(rc == 2 and "whole seconds" in w.text(), "a bad setting is refused with exit status 2",
       "exit %s\n%s" % (rc, w.text()))

bad_dir = os.path.join(tmp, "bad-templates")
os.makedirs(bad_dir)
with open(os.path.join(bad_dir, "bad.yaml"), "w") as f:
    f.write("name: bad\nnamespace_name: wbad\nversion: 1.0.0\nsteps:\n"
            "  - name: b_missing\n    handler: {callable: \"exec:no-such-program\"}\n")
w = Worker("bad-exec", wait=False, env={"TASKER_TEMPLATE_PATH": bad_dir})
rc = w.run_to_end()
tap.ok(rc == 1 and "b_missing" in w.text() and "no-such-program" in w.text(),
       "an exec handler whose program is missing stops the start, naming the step",
       "exit %s\n%s" % (rc, w.text()))

q("SELECT pgmq.create('%s')" % QUEUE)
w1 = Worker("w1")
tap.ok(w1.uuid is not None and re.match(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab]", w1.uuid),
       "the worker starts and names itself with a UUIDv7", w1.text())
tap.ok(q("SELECT count(*) FROM pgmq.meta WHERE queue_name = '%s'" % RESULTS) == "1",
       "the worker created orchestration_step_results")

# ================================================================== built-in handlers

task, corr, ids = create_task("chain", {"w_a": {}, "w_b": {}, "w_c": {"greeting": "hi"}},
                              edges=[("w_a", "w_b"), ("w_b", "w_c")],
                              context={"order": 7})
transition(ids["w_a"], ["pending"], "complete", {"success": True, "result": {"value": 42}})
transition(ids["w_b"], ["pending"], "complete", {"success": True, "result": {"from_b": [1, 2]}})
msg = enqueue(task, corr, ids["w_c"])
st = final_state(ids["w_c"])
res = results(ids["w_c"]) or {}


def check_echo():
    assert st == "enqueued_for_orchestration", st
    assert res["success"] is True and res["status"] == "completed", res
    assert res["step_uuid"] == ids["w_c"], res
    assert res["result"] == {"step_inputs": {"greeting": "hi"},
                             "dependency_results": {"w_a": {"value": 42},
                                                    "w_b": {"from_b": [1, 2]}}}, res["result"]
    md = res["metadata"]
    assert md["worker_uuid"] == w1.uuid and md["attempt"] == 1 and md["retryable"] is False, md
    assert isinstance(md["execution_time_ms"], int), md
    om = res["orchestration_metadata"]
    assert om == {"headers": {}, "error_context": None, "custom": {}}, om
    assert "error" not in res, res


tap.check("echo: enqueued_for_orchestration with step_inputs and every ancestor's result",
          check_echo)


def check_bookkeeping():
    tr = transitions(ids["w_c"])
    names = [(f, t) for f, t, _ in tr]
    assert names[-2:] == [("enqueued", "in_progress"),
                          ("in_progress", "enqueued_for_orchestration")], names
    start, report = tr[-2][2], tr[-1][2]
    assert start == {"worker_uuid": w1.uuid, "correlation_id": corr, "event": "Start"}, start
    assert report["worker_uuid"] == w1.uuid and report["correlation_id"] == corr, report
    assert report["event"] == res, report
    assert attempts(ids["w_c"]) == 1
    assert q("SELECT in_process FROM tasker.workflow_steps WHERE workflow_step_uuid = '%s'"
             % ids["w_c"]) == "f"
    audit = q("SELECT worker_uuid || ' ' || success FROM tasker.workflow_step_result_audit "
              "WHERE workflow_step_uuid = '%s'" % ids["w_c"])
    assert audit == "%s true" % w1.uuid, audit
    assert archived(msg) and not in_queue(msg), "message not archived"
    n = qjson("SELECT message::text FROM pgmq.q_%s WHERE message->>'step_uuid' = '%s'"
              % (RESULTS, ids["w_c"]))
    assert n == {"task_uuid": task, "step_uuid": ids["w_c"], "correlation_id": corr}, n


tap.check("transitions carry worker_uuid/correlation_id (audit row written), the message is "
          "archived and the orchestration is notified", check_bookkeeping)

# ------------------------------------------------------------------ fail

ftask, fcorr, fids = create_task("fails", {
    "f_retry": {"message": "nope", "backoff_seconds": 7},
    "f_perm": {"retryable": False, "message": "bad input"},
    "f_once": {"fail_times": 1}})
for s in fids.values():
    enqueue(ftask, fcorr, s)
fstates = {n: final_state(s) for n, s in fids.items()}


def check_fail_retryable():
    assert fstates["f_retry"] == "enqueued_as_error_for_orchestration", fstates
    r = results(fids["f_retry"])
    assert r["success"] is False and r["status"] == "failed" and r["result"] is None, r
    e = r["error"]
    assert e["message"] == "nope" and e["retryable"] is True and e["backtrace"] == [], e
    assert e["error_type"] == "HandlerError" and isinstance(e["context"], dict), e
    assert r["metadata"]["retryable"] is True, r
    hint = r["orchestration_metadata"]["backoff_hint"]
    assert hint == {"backoff_type": "ServerRequested", "delay_seconds": 7, "context": {}}, hint
    assert notices(fids["f_retry"]) == 1


tap.check("fail: enqueued_as_error_for_orchestration, retryable, with a ServerRequested "
          "backoff hint", check_fail_retryable)


def check_fail_permanent():
    assert fstates["f_perm"] == "enqueued_as_error_for_orchestration", fstates
    r = results(fids["f_perm"])
    assert r["error"]["retryable"] is False and r["metadata"]["retryable"] is False, r
    assert r["error"]["message"] == "bad input", r
    assert "backoff_hint" not in r["orchestration_metadata"], r
    audit = q("SELECT success FROM tasker.workflow_step_result_audit "
              "WHERE workflow_step_uuid = '%s'" % fids["f_perm"])
    assert audit == "f", audit


tap.check("fail with retryable false: not retryable, no backoff hint", check_fail_permanent)


def check_fail_once():
    assert fstates["f_once"] == "enqueued_as_error_for_orchestration", fstates
    # The orchestration's part of a retry: back to enqueued with a new message.
    enqueue(ftask, fcorr, fids["f_once"], ("enqueued_as_error_for_orchestration",))
    assert final_state(fids["f_once"]) == "enqueued_for_orchestration", state(fids["f_once"])
    r = results(fids["f_once"])
    assert r["success"] is True and r["result"] == {"attempt": 2}, r
    assert r["metadata"]["attempt"] == 2 and attempts(fids["f_once"]) == 2, r


tap.check("fail with fail_times 1: fails the first attempt, succeeds on the second",
          check_fail_once)

# ================================================================== exec handlers

pidfile_timeout = os.path.join(tmp, "timeout.pid")
pidfile_leftover = os.path.join(tmp, "leftover.pid")
etask, ecorr, eids = create_task("execs", {
    "e_ok": {"numbers": [1, 2, 3.5]},
    "e_notjson": {},
    "e_exit3": {"stderr": "boom: the disk is full\n", "exit": 3},
    "e_exit65": {"stderr": "bad record 17\n", "exit": 65},
    "e_envelope": {"envelope": {"success": False, "retryable": False, "error": "card declined",
                                "error_type": "PaymentError", "backoff_seconds": 30}},
    "e_timeout": {"sleep": 30, "spawn_sleeper": True, "pidfile": pidfile_timeout,
                  "stderr": "starting a long job\n"},
    "e_leftover": {"spawn_sleeper": True, "pidfile": pidfile_leftover,
                   "envelope": {"success": True, "result": {"left": "a child behind"}}},
    "e_slow": {}})
for n, s in eids.items():
    if n != "e_slow":
        enqueue(etask, ecorr, s)
estates = {n: final_state(s) for n, s in eids.items() if n != "e_slow"}
eres = {n: results(s) for n, s in eids.items()}


def check_exec_ok():
    assert estates["e_ok"] == "enqueued_for_orchestration", estates
    r = eres["e_ok"]["result"]
    assert r["sum"] == 6.5, r
    got = r["received"]
    assert got["step_uuid"] == eids["e_ok"] and got["task_uuid"] == etask, got
    assert got["step_name"] == "e_ok" and got["attempt"] == 1 and got["correlation_id"] == ecorr
    assert got["task"] == {"namespace": NS, "name": "execs", "version": "1.0.0",
                           "context": {"order": 7}, "initiator": "tester", "tags": ["test"]}, got
    assert got["step_inputs"] == {"numbers": [1, 2, 3.5]} and got["dependency_results"] == {}
    assert r["env"] == {"TASKER_STEP_NAME": "e_ok", "TASKER_STEP_UUID": eids["e_ok"],
                        "TASKER_TASK_UUID": etask, "TASKER_ATTEMPT": "1"}, r["env"]


tap.check("exec: the program gets the handler input on stdin (and the step in its "
          "environment); its stdout JSON is the result", check_exec_ok)


def check_exec_notjson():
    assert estates["e_notjson"] == "enqueued_as_error_for_orchestration", estates
    r = eres["e_notjson"]
    assert r["status"] == "error" and r["error"]["error_type"] == "InvalidResult", r
    assert r["error"]["retryable"] is False, r
    assert "not JSON" in r["error"]["message"], r
    assert "printed garbage on purpose" in r["error"]["context"]["stderr"], r


tap.check("exec: stdout that is not JSON is a non-retryable error", check_exec_notjson)


def check_exec_exit():
    assert estates["e_exit3"] == "enqueued_as_error_for_orchestration", estates
    r = eres["e_exit3"]
    e = r["error"]
    assert r["status"] == "failed" and e["error_type"] == "ExitStatus", r
    assert e["retryable"] is True and e["context"]["exit_status"] == 3, e
    assert "status 3" in e["message"] and "boom: the disk is full" in e["message"], e
    assert e["context"]["stderr"] == "boom: the disk is full\n", e
    r = eres["e_exit65"]
    assert r["error"]["retryable"] is False and r["error"]["context"]["exit_status"] == 65, r
    assert "bad record 17" in r["error"]["message"], r


tap.check("exec: a non-zero exit is a failure with stderr in the message; retryable except "
          "exit 65 (EX_DATAERR)", check_exec_exit)


def check_exec_envelope():
    r = eres["e_envelope"]
    e = r["error"]
    assert e["message"] == "card declined" and e["error_type"] == "PaymentError", e
    assert e["retryable"] is False and r["metadata"]["retryable"] is False, r
    assert r["orchestration_metadata"]["backoff_hint"]["delay_seconds"] == 30, r


tap.check("exec: a {\"success\": false, ...} envelope on stdout sets the error, retryable and "
          "backoff", check_exec_envelope)


def check_exec_timeout():
    assert estates["e_timeout"] == "enqueued_as_error_for_orchestration", estates
    r = eres["e_timeout"]
    e = r["error"]
    assert r["status"] == "error" and e["error_type"] == "TimeoutError", r
    assert e["retryable"] is True and "starting a long job" in e["message"], e
    assert r["metadata"]["execution_time_ms"] < 5000, r["metadata"]
    pids = [int(x) for x in open(pidfile_timeout).read().split()]
    assert all(wait_for(lambda p=p: pid_gone(p), 5) for p in pids), pids


tap.check("exec: a program past the step timeout is killed with its process group; a "
          "retryable TimeoutError", check_exec_timeout)


def check_exec_leftover():
    assert estates["e_leftover"] == "enqueued_for_orchestration", estates
    assert eres["e_leftover"]["result"] == {"left": "a child behind"}, eres["e_leftover"]
    child = int(open(pidfile_leftover).read().split()[1])
    assert wait_for(lambda: pid_gone(child), 5), "child %d still running" % child


tap.check("exec: an envelope with success true gives its result; what the program left in "
          "its process group is killed", check_exec_leftover)

# ================================================================== plugin

if have_plugin:
    ptask, pcorr, pids_ = create_task("plugins", {"p_upper": {"text": "hello, world"},
                                                  "p_upper_bad": {"number": 5}})
    for s in pids_.values():
        enqueue(ptask, pcorr, s)


def check_plugin():
    assert final_state(pids_["p_upper"]) == "enqueued_for_orchestration", logs(w1)
    r = results(pids_["p_upper"])
    assert r["result"] == {"text": "HELLO, WORLD", "length": 12}, r
    assert final_state(pids_["p_upper_bad"]) == "enqueued_as_error_for_orchestration"
    r = results(pids_["p_upper_bad"])
    assert r["error"]["error_type"] == "InvalidInput" and r["error"]["retryable"] is False, r
    assert "step_inputs.text" in r["error"]["message"], r


if have_plugin:
    tap.check("plugin: the example plugin (dlopen'ed from the template's directory) runs, "
              "and reports its failures", check_plugin)

# ================================================================== skipped and foreign steps

otask, ocorr, oids = create_task("others", {"o_cancelled": {}, "o_foreign": {}})
transition(oids["o_cancelled"], ["pending"], "enqueued")
transition(oids["o_cancelled"], ["enqueued"], "cancelled")
cmsg = send(otask, ocorr, oids["o_cancelled"])


def check_cancelled():
    assert wait_for(lambda: archived(cmsg), 10), "message not archived\n" + logs(w1)
    assert state(oids["o_cancelled"]) == "cancelled"
    assert attempts(oids["o_cancelled"]) == 0
    assert notices(oids["o_cancelled"]) == 0


tap.check("a step cancelled before the claim is skipped: message archived, nothing reported",
          check_cancelled)

fmsg = enqueue(otask, ocorr, oids["o_foreign"])
ltask, lcorr, lids = create_task("others", {"o_foreign": {}}, version=UNLOADED_VERSION)
lmsg = enqueue(ltask, lcorr, lids["o_foreign"])


def check_foreign():
    wait_for(lambda: q("SELECT min(read_ct) FROM pgmq.q_%s WHERE msg_id IN (%d, %d)"
                       % (QUEUE, fmsg, lmsg)) not in ("", "0"), 10)
    wait_for(lambda: "template not loaded here" in w1.text() and
             "no handler for its callable here" in w1.text(), 5)
    assert state(oids["o_foreign"]) == "enqueued" and state(lids["o_foreign"]) == "enqueued"
    assert attempts(oids["o_foreign"]) == 0 and attempts(lids["o_foreign"]) == 0
    assert in_queue(fmsg) and in_queue(lmsg), "messages gone"
    text = w1.text()
    assert "no handler for its callable here; left for another worker" in text, text
    assert "template not loaded here; left for another worker" in text, text
    q("SELECT pgmq.delete('%s', ARRAY[%d, %d]::bigint[])" % (QUEUE, fmsg, lmsg))


tap.check("steps this worker has no handler or template for are left in the queue for others",
          check_foreign)

# ================================================================== kill -9 and reclaim

stask, scorr, sids = create_task("sleeps", {"s_kill": {"seconds": 4}, "s_alive": {"seconds": 7},
                                            "s_term": {"ms": 2500}, "s_restart": {}})
kmsg = enqueue(stask, scorr, sids["s_kill"])
running = wait_for(lambda: state(sids["s_kill"]) == "in_progress", 10)
w1.proc.kill()
w1.proc.wait()
t_killed = time.time()
w2 = Worker("w2")


def check_reclaim():
    assert running, "s_kill never ran"
    st_ = final_state(sids["s_kill"], 20)
    assert st_ == "enqueued_for_orchestration", "%s\n%s" % (st_, logs(w2))
    tr = transitions(sids["s_kill"])
    reclaim = [md for f, t, md in tr if md.get("event") == "Reclaim"]
    assert len(reclaim) == 1, tr
    md = reclaim[0]
    assert (md["worker_uuid"], md["previous_worker_uuid"]) == (w2.uuid, w1.uuid), md
    assert md["read_ct"] >= 2, md
    assert [(f, t) for f, t, _ in tr][-3:] == [
        ("enqueued", "in_progress"), ("in_progress", "in_progress"),
        ("in_progress", "enqueued_for_orchestration")], tr
    r = results(sids["s_kill"])
    assert r["metadata"]["worker_uuid"] == w2.uuid and r["metadata"]["attempt"] == 2, r
    assert attempts(sids["s_kill"]) == 2
    assert archived(kmsg), "message not archived"
    assert "reclaimed" in w2.text()


tap.check("kill -9 of the worker running a step: after the visibility timeout another worker "
          "reclaims (attempt 2) and finishes it", check_reclaim)

# ------------------------------------------------------------------ lease extension

w3 = Worker("w3")
amsg = enqueue(stask, scorr, sids["s_alive"])


def check_lease():
    st_ = final_state(sids["s_alive"], 20)
    assert st_ == "enqueued_for_orchestration", "%s\n%s" % (st_, logs(w2, w3))
    tr = transitions(sids["s_alive"])
    assert not any(md.get("event") == "Reclaim" for _, _, md in tr), tr
    assert attempts(sids["s_alive"]) == 1
    assert results(sids["s_alive"])["result"] == {"slept_ms": 7000}
    assert archived(amsg)


tap.check("a 7 s step under a %d s visibility timeout keeps its claim while another worker "
          "polls (the lease is extended)" % VT, check_lease)

# ------------------------------------------------------------------ database restart

cluster.restart()
rmsg = enqueue(stask, scorr, sids["s_restart"])


def check_restart():
    st_ = final_state(sids["s_restart"], 30)
    assert st_ == "enqueued_for_orchestration", "%s\n%s" % (st_, logs(w2, w3))
    assert w2.proc.poll() is None and w3.proc.poll() is None, logs(w2, w3)


tap.check("after a database restart both workers keep running and take new steps",
          check_restart)

# ================================================================== shutdown

w3.proc.send_signal(signal.SIGTERM)
rc3 = w3.run_to_end(20)
tap.ok(rc3 == 0, "SIGTERM to an idle worker: exit status 0", "exit %s\n%s" % (rc3, w3.tail()))

tmsg = enqueue(stask, scorr, sids["s_term"])
claimed = wait_for(lambda: state(sids["s_term"]) == "in_progress", 10)
w2.proc.send_signal(signal.SIGTERM)
t0 = time.time()
rc2 = w2.run_to_end(20)
took = time.time() - t0


def check_sigterm():
    assert claimed, "s_term never ran"
    assert rc2 == 0, "exit %s\n%s" % (rc2, w2.tail())
    assert state(sids["s_term"]) == "enqueued_for_orchestration", state(sids["s_term"])
    assert results(sids["s_term"])["result"] == {"slept_ms": 2500}
    assert archived(tmsg)
    assert took < 10, took


tap.check("SIGTERM while a step runs: the step finishes and is reported, then exit 0",
          check_sigterm)

w4 = Worker("w4", ["--worker.shutdown_timeout=500ms"])
slow_pid = os.path.join(tmp, "slow.pid")
q("UPDATE tasker.workflow_steps SET inputs = %s WHERE workflow_step_uuid = '%s'"
  % (sql_json({"sleep": 60, "pidfile": slow_pid}), eids["e_slow"]))
smsg = enqueue(etask, ecorr, eids["e_slow"])
started = wait_for(lambda: os.path.exists(slow_pid), 10)
w4.proc.send_signal(signal.SIGTERM)
t0 = time.time()
rc4 = w4.run_to_end(20)
took4 = time.time() - t0


def check_forced():
    assert started, "e_slow never ran\n" + w4.tail()
    assert rc4 == 0 and took4 < 5, "exit %s after %.1f s\n%s" % (rc4, took4, w4.tail())
    pid = int(open(slow_pid).read().split()[0])
    assert wait_for(lambda: pid_gone(pid), 5), "handler %d still running" % pid
    assert state(eids["e_slow"]) == "in_progress", state(eids["e_slow"])
    visible = q("SELECT vt <= clock_timestamp() FROM pgmq.q_%s WHERE msg_id = %d"
                % (QUEUE, smsg))
    assert visible == "t", "message not released: %r" % visible
    assert "gave up 1 running step" in w4.text(), w4.tail()
    q("SELECT pgmq.delete('%s', %d::bigint)" % (QUEUE, smsg))


tap.check("past the shutdown timeout the worker kills the running program, releases its "
          "message for a reclaim and exits 0", check_forced)

timer.cancel()
tap.done()
