#!/usr/bin/python3
"""TaskService and StepService of taskerd over gRPC (tasker-api.md §1.4,
§1.5, §1.12), as a python3-grpcio client sees them.

A private PostgreSQL cluster, two taskerd and one tasker-worker
(t/lib/tasker_env.py). taskerd A runs without authentication; taskerd B
shares the database with authentication on (an API key with tasks:read
only, one with tasks:create and tasks:read, one with tasks:cancel and
tasks:read) and tiny backpressure thresholds. Then:

  1. CreateTask with every field: stored in the table and returned;
     defaults (initiator "grpc", reason "Task created via gRPC")
  2. StreamTaskStatus to completion: snapshot first, step and task
     changes, TASK_COMPLETE last, the stream ends with OK
  3. GetTask with and without include_steps / include_context; the
     outputs are the completed steps' results; GetTaskContext
  4. ListTasks: each filter, the sort, pagination, limit 1000 / 1001
  5. CancelTask while running and on a terminal task; a stream on a
     cancelled task ends with TASK_ERROR; the task's and its steps'
     transitions to cancelled record the event, the reason, the transport
     and the authenticated subject; CancelTask without a reason
  6. GetTaskSummary
  7. GetStep, ListSteps, GetStepAudit
  8. ResolveStep COMPLETE_MANUALLY on a failed step: the result and the
     request's metadata are stored together (the engine's keys win), the
     transition records who, why and over which API; the task completes,
     its stream ends; a task moved to resolved_manually ends its stream
  9. error mapping: NOT_FOUND, INVALID_ARGUMENT (bad uuid, unknown
     template, ownership, missing fields), ALREADY_EXISTS
 10. reflection and grpc.health.v1 list the tasker.v1 services
 11. auth: PERMISSION_DENIED, OK, UNAUTHENTICATED
 12. backpressure: with no worker on a namespace its queue fills:
     warning reported, then UNAVAILABLE with a retry-after trailer

Message classes are generated at test time with protoc from proto/; calls
go through grpcio's generic unary_unary / unary_stream. Every wait is
bounded; the file gives up after 150 s. Prints TAP.
"""
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import pg  # noqa: E402
import tasker_env  # noqa: E402

tap = harness.Tap()
try:
    import grpc
    from google.protobuf import json_format, struct_pb2, timestamp_pb2
except ImportError as e:
    tap.skip_all("python3-grpcio / python3-protobuf missing: %s" % e)
PROTOC = tasker_env.require(tap, protoc=True)

TIMEOUT = 15
WKT_DIR = os.environ.get("PROTOBUF_PROTODIR") or "/usr/include"
READER_KEY = "reader-key-0c5e9a1f"
WRITER_KEY = "writer-key-7d2b4e86"
CANCEL_KEY = "cancel-key-3f81c0d5"
RETRY_AFTER = 7

# ---------------------------------------------------------------- messages
GEN = tempfile.mkdtemp(prefix="t100-pb-")
PROTOS = ["tasker/v1/%s.proto" % f for f in ("common", "tasks", "steps")] + \
    ["grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto"]
subprocess.run([PROTOC, "-I", os.path.join(harness.TOP_SRCDIR, "proto"), "-I", WKT_DIR,
                "--python_out", GEN] + PROTOS, check=True)
sys.path.insert(0, GEN)
common_pb = importlib.import_module("tasker.v1.common_pb2")
tasks_pb = importlib.import_module("tasker.v1.tasks_pb2")
steps_pb = importlib.import_module("tasker.v1.steps_pb2")


# "grpc" is grpcio's own package name: these two are loaded from their files.
def load_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


health_pb = load_file("t100_health_pb2", os.path.join(GEN, "grpc/health/v1/health_pb2.py"))
refl_pb = load_file("t100_reflection_pb2",
                    os.path.join(GEN, "grpc/reflection/v1/reflection_pb2.py"))
shutil.rmtree(GEN, ignore_errors=True)

TS = common_pb.TaskState
SS = common_pb.StepState
UT = tasks_pb.TaskStatusUpdate.UpdateType
C = grpc.StatusCode

# ---------------------------------------------------------------- the system
env = tasker_env.Env("100-api-tasks", deadline=150)


def auth_config():
    path = os.path.join(env.tmp, "taskerd-b.conf")
    with open(path, "w") as f:
        f.write("[auth]\n"
                "enabled = true\n"
                "api_keys_enabled = true\n"
                "[auth.api_key.reader]\n"
                "key = %s\n"
                "permissions = tasks:read\n"
                "description = reader\n"
                "[auth.api_key.writer]\n"
                "key = %s\n"
                "permissions = tasks:create,tasks:read\n"
                "description = writer\n"
                "[auth.api_key.canceller]\n"
                "key = %s\n"
                "permissions = tasks:cancel,tasks:read\n"
                "description = canceller\n"
                "[backpressure]\n"
                "warning_depth = 1\n"
                "critical_depth = 3\n"
                "overflow_depth = 100\n"
                "retry_after_s = %d\n" % (READER_KEY, WRITER_KEY, CANCEL_KEY, RETRY_AFTER))
    return path


try:
    env.start()
    taskerd_a = env.taskerd()
    taskerd_b = env.taskerd("--config", auth_config())
    worker = env.worker(namespaces="integration,engine_tests")
except (tasker_env.EnvError, pg.ClusterError, OSError, subprocess.CalledProcessError) as e:
    print("Bail out! cannot start the system: %s" % str(e).replace("\n", " | "), flush=True)
    env.close()
    sys.exit(1)

chan_a = grpc.insecure_channel("127.0.0.1:%d" % taskerd_a.port)
chan_b = grpc.insecure_channel("127.0.0.1:%d" % taskerd_b.port)
try:
    grpc.channel_ready_future(chan_a).result(timeout=TIMEOUT)
    grpc.channel_ready_future(chan_b).result(timeout=TIMEOUT)
except grpc.FutureTimeoutError:
    print("Bail out! no channel to taskerd", flush=True)
    env.close()
    sys.exit(1)

SERVICES = {"TaskService": tasks_pb, "StepService": steps_pb}


def response_class(service, name):
    mod = SERVICES[service]
    m = mod.DESCRIPTOR.services_by_name[service].methods_by_name[name]
    return getattr(mod, m.output_type.name)


def call(service, name, req, chan=None, key=None, timeout=TIMEOUT, with_call=False):
    """(response, None) or (None, grpc.RpcError); with_call also returns the
    grpc call (for trailers)."""
    out = response_class(service, name)
    fn = (chan or chan_a).unary_unary("/tasker.v1.%s/%s" % (service, name),
                                      request_serializer=type(req).SerializeToString,
                                      response_deserializer=out.FromString)
    md = [("x-api-key", key)] if key else []
    try:
        if with_call:
            r, c = fn.with_call(req, metadata=md, timeout=timeout)
            return r, None
        return fn(req, metadata=md, timeout=timeout), None
    except grpc.RpcError as e:
        return None, e


def stream(task_uuid, include_steps=True, chan=None, timeout=60):
    fn = (chan or chan_a).unary_stream("/tasker.v1.TaskService/StreamTaskStatus",
                                       request_serializer=tasks_pb.StreamTaskStatusRequest
                                       .SerializeToString,
                                       response_deserializer=tasks_pb.TaskStatusUpdate.FromString)
    return fn(tasks_pb.StreamTaskStatusRequest(task_uuid=task_uuid,
                                               include_steps=include_steps), timeout=timeout)


class Collector:
    """Reads a stream in a thread: .updates, .code (None while open)."""

    def __init__(self, task_uuid, include_steps=True, timeout=60):
        self.call = stream(task_uuid, include_steps, timeout=timeout)
        self.updates = []
        self.code = None
        self.details = None
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        try:
            for u in self.call:
                self.updates.append(u)
            self.code = C.OK
        except grpc.RpcError as e:
            self.code = e.code()
            self.details = e.details()

    def wait(self, timeout):
        self.t.join(timeout)
        return self.code


def code_of(e):
    return e.code() if e is not None else C.OK


def err_text(e):
    return "%s: %s" % (e.code(), e.details()) if e is not None else "OK"


case = tap.case


def struct(d):
    s = struct_pb2.Struct()
    s.update(d)
    return s


def as_dict(s):
    return json_format.MessageToDict(s)


wait_state = env.wait_task_state


def create(namespace, name, context, version="1.0.0", **kw):
    req = tasks_pb.CreateTaskRequest(name=name, namespace=namespace, version=version,
                                     context=struct(context), **kw)
    return call("TaskService", "CreateTask", req)


def ts_epoch(ts):
    return ts.seconds + ts.nanos / 1e9


def state_name(v):
    return TS.Name(v) if v in TS.values() else str(v)


def update_text(u):
    if u.update_type == UT.UPDATE_TYPE_STEP_STATE_CHANGE:
        return "step %s %s" % (u.step_update.name, SS.Name(u.step_update.state))
    return "%s %s" % (UT.Name(u.update_type), state_name(u.task_state))


# ---------------------------------------------------------------- 1, 2. create and stream
CORR = str(uuid.uuid4())
PARENT = str(uuid.uuid4())
CTX = {"case": "api", "order": {"id": 42, "items": ["a", "b"]}, "ratio": 0.5}
created = {}


@case("create")
def create_everything():
    r, e = create("integration", "diamond_workflow", CTX, correlation_id=CORR,
                  initiator="t100", source_system="test-suite", reason="api test",
                  priority=7, tags=["api", "diamond"], parent_correlation_id=PARENT)
    if not tap.ok(e is None, "CreateTask with every field succeeds", err_text(e)):
        return
    t = r.task
    created["diamond"] = t.task_uuid
    # stream from now on, to its end
    created["stream"] = Collector(t.task_uuid)
    tap.ok(t.name == "diamond_workflow" and t.namespace == "integration"
           and t.version == "1.0.0" and len(t.task_uuid) == 36,
           "CreateTask returns the task: name, namespace, version, uuid", str(t)[:400])
    got = {"correlation_id": t.correlation_id, "initiator": t.initiator,
           "source_system": t.source_system, "reason": t.reason,
           "priority": t.priority if t.HasField("priority") else None,
           "tags": list(t.tags), "parent": t.parent_correlation_id
           if t.HasField("parent_correlation_id") else None,
           "context": as_dict(t.context)}
    want = {"correlation_id": CORR, "initiator": "t100", "source_system": "test-suite",
            "reason": "api test", "priority": 7, "tags": ["api", "diamond"], "parent": PARENT,
            "context": CTX}
    tap.ok(got == want, "CreateTask returns every field as given", "%s\n!= %s" % (got, want))
    row = env.json("SELECT correlation_id::text, initiator, source_system, reason, priority, "
                   "tags, parent_correlation_id::text AS parent, context "
                   "FROM tasker.tasks WHERE task_uuid = '%s'" % t.task_uuid)[0]
    want_row = {"correlation_id": CORR, "initiator": "t100", "source_system": "test-suite",
                "reason": "api test", "priority": 7, "tags": ["api", "diamond"],
                "parent": PARENT, "context": CTX}
    tap.ok(row == want_row, "every CreateTask field is stored in tasker.tasks",
           "%s\n!= %s" % (row, want_row))
    tap.ok(t.total_steps == 4 and t.created_at.seconds > 0 and t.updated_at.seconds > 0,
           "the created task has its 4 steps and timestamps",
           "total_steps %d" % t.total_steps)

    r, e = create("integration", "diamond_workflow", {"case": "defaults"})
    ok = e is None
    if ok:
        created["defaults"] = r.task.task_uuid
    row = env.json("SELECT initiator, source_system, reason, priority, tags "
                   "FROM tasker.tasks WHERE task_uuid = '%s'" % r.task.task_uuid)[0] \
        if ok else None
    tap.ok(ok and r.task.initiator == "grpc" and r.task.reason == "Task created via gRPC"
           and r.task.source_system == "" and r.task.priority == 0 and not r.task.tags
           and row == {"initiator": "grpc", "source_system": None,
                       "reason": "Task created via gRPC", "priority": 0, "tags": []},
           "CreateTask defaults: initiator grpc, reason \"Task created via gRPC\", "
           "no source system, priority 0", err_text(e) if not ok else (str(r.task)[:300], row))


@case("stream")
def stream_to_completion():
    col = created.get("stream")
    if col is None:
        tap.ok(False, "stream: no task to follow")
        return
    code = col.wait(40)
    ups = col.updates
    text = "\n".join(update_text(u) for u in ups)
    tap.ok(code == C.OK, "StreamTaskStatus ends with OK after the task completes",
           "code %s (%s)\n%s" % (code, col.details, text))
    tap.ok(ups and ups[0].update_type == UT.UPDATE_TYPE_TASK_STATE_CHANGE
           and ups[0].HasField("task_state"),
           "the first update is the task's state (the snapshot)", text)
    tap.ok(ups and ups[-1].update_type == UT.UPDATE_TYPE_TASK_COMPLETE
           and ups[-1].task_state == TS.TASK_STATE_COMPLETE,
           "the last update is TASK_COMPLETE with state COMPLETE", text)
    task_states = [u.task_state for u in ups
                   if u.update_type == UT.UPDATE_TYPE_TASK_STATE_CHANGE]
    tap.ok(task_states and task_states[-1] == TS.TASK_STATE_COMPLETE
           and TS.TASK_STATE_STEPS_IN_PROCESS in task_states
           and len(task_states) == len(set(zip(task_states, range(len(task_states))))),
           "TASK_STATE_CHANGE updates go through steps_in_process and end at complete",
           [state_name(s) for s in task_states])
    rows = env.task_transitions(created["diamond"])
    hist = [r[1] for r in rows]
    first = TS.Name(task_states[0]).replace("TASK_STATE_", "").lower() if task_states else None
    tail = hist[hist.index(first):] if first in hist else None
    tap.ok(tail is not None and [TS.Value("TASK_STATE_" + s.upper()) for s in tail]
           == task_states,
           "after the snapshot, every task transition is reported, in order",
           "stream %s\nhistory %s" % ([state_name(s) for s in task_states], hist))
    last = {}
    for u in ups:
        if u.update_type == UT.UPDATE_TYPE_STEP_STATE_CHANGE:
            last[u.step_update.name] = u.step_update
    tap.ok(sorted(last) == ["step_a", "step_b", "step_c", "step_d"]
           and all(s.state == SS.STEP_STATE_COMPLETE and s.attempt == 1
                   and len(s.step_uuid) == 36 for s in last.values()),
           "STEP_STATE_CHANGE reaches COMPLETE (attempt 1) for each of the 4 steps",
           {n: (SS.Name(s.state), s.attempt) for n, s in last.items()})
    # A change's time is its transaction's start (the rows' created_at), so
    # a change committed later may carry an earlier time than one already
    # sent: only the task's own transitions are in time order.
    times = [ts_epoch(u.timestamp) for u in ups]
    ttimes = [ts_epoch(u.timestamp) for u in ups
              if u.update_type != UT.UPDATE_TYPE_STEP_STATE_CHANGE]
    hist_times = [r[5] for r in rows]
    tap.ok(times and all(abs(x - time.time()) < 120 for x in times)
           and all(b >= a for a, b in zip(ttimes, ttimes[1:]))
           and all(any(abs(x - h) < 0.001 for h in hist_times) for x in ttimes),
           "update times are the transitions' times; task updates in time order",
           "%s\n%s" % (ttimes, hist_times))


# ---------------------------------------------------------------- 3. GetTask
def steps_of(task):
    return env.json("SELECT ns.name, ws.workflow_step_uuid::text AS uuid, ws.results "
                    "FROM tasker.workflow_steps ws JOIN tasker.named_steps ns "
                    "ON ns.named_step_uuid = ws.named_step_uuid "
                    "WHERE ws.task_uuid = '%s'" % task)


@case("get")
def get_task():
    t = created.get("diamond")
    state = wait_state(t, tasker_env.TASK_TERMINAL, 30)
    tap.ok(state == "complete", "the diamond task completes", state)
    r, e = call("TaskService", "GetTask", tasks_pb.GetTaskRequest(task_uuid=t))
    tap.ok(e is None and r.task.state == TS.TASK_STATE_COMPLETE and not r.steps
           and not r.HasField("context") and r.task.HasField("completed_at")
           and r.task.completed_steps == 4 and r.task.completion_percentage == 100
           and r.task.execution_status == "all_complete" and r.task.health_status == "healthy"
           and r.task.recommended_action == "finalize_task",
           "GetTask: state, counts and completion; no steps or context unless asked",
           err_text(e) if e else str(r)[:600])
    r, e = call("TaskService", "GetTask",
                tasks_pb.GetTaskRequest(task_uuid=t, include_steps=True, include_context=True))
    if not tap.ok(e is None, "GetTask with include_steps and include_context", err_text(e)):
        return
    db = {s["name"]: s for s in steps_of(t)}
    got = {s.name: s for s in r.steps}
    tap.ok(sorted(got) == sorted(db)
           and all(got[n].step_uuid == db[n]["uuid"] and got[n].task_uuid == t
                   and got[n].state == SS.STEP_STATE_COMPLETE and got[n].attempts == 1
                   and got[n].max_attempts == 3 and got[n].dependencies_satisfied
                   and got[n].HasField("completed_at") and got[n].HasField("last_attempted_at")
                   for n in got),
           "include_steps: every step with its state, attempts and times",
           "\n".join(str(s)[:200] for s in r.steps))
    tap.ok(all(as_dict(got[n].results) == db[n]["results"] for n in got),
           "each step's results are the stored results",
           {n: as_dict(got[n].results) for n in got})
    parents = {s.name: (s.total_parents, s.completed_parents) for s in r.steps}
    tap.ok(parents == {"step_a": (0, 0), "step_b": (1, 1), "step_c": (1, 1),
                       "step_d": (2, 2)},
           "readiness: parents counted per step", parents)
    ctx = r.context
    outputs = {n: db[n]["results"]["result"] for n in db}
    tap.ok(as_dict(ctx.inputs) == CTX, "include_context: inputs are the task context",
           as_dict(ctx.inputs))
    tap.ok(as_dict(ctx.outputs) == outputs,
           "include_context: outputs are the completed steps' results, by step name",
           "%s\n!= %s" % (as_dict(ctx.outputs), outputs))
    merged = dict(CTX)
    merged.update(outputs)
    tap.ok(as_dict(ctx.merged) == merged, "include_context: merged = inputs + outputs",
           as_dict(ctx.merged))
    c, e = call("TaskService", "GetTaskContext", tasks_pb.GetTaskContextRequest(task_uuid=t))
    tap.ok(e is None and c.context == ctx, "GetTaskContext answers the same context",
           err_text(e))


# ---------------------------------------------------------------- 4. ListTasks
def list_tasks(**kw):
    return call("TaskService", "ListTasks", tasks_pb.ListTasksRequest(**kw))


@case("list")
def list_tasks_case():
    mine = []
    for i, (tags, init, prio) in enumerate([(["list", "red"], "lister", 5),
                                             (["list", "blue"], "lister", 1),
                                             (["list", "red", "blue"], "other", 9)]):
        r, e = create("integration", "linear_workflow", {"case": "list", "i": i},
                      tags=tags, initiator=init, priority=prio)
        if e is not None:
            tap.ok(False, "create list tasks", err_text(e))
            return
        mine.append(r.task.task_uuid)
        time.sleep(0.01)
    for t in mine:
        wait_state(t, tasker_env.TASK_TERMINAL, 30)
    all_rows = env.json("SELECT task_uuid::text AS uuid, created_at FROM tasker.tasks")
    total = len(all_rows)

    r, e = list_tasks()
    tap.ok(e is None and r.pagination.total == total and len(r.tasks) == min(total, 50)
           and r.pagination.count == len(r.tasks) and r.pagination.offset == 0,
           "ListTasks without filters: every task, total counted",
           err_text(e) if e else (r.pagination, total))
    tap.ok(e is None and [t.task_uuid for t in r.tasks][:3] == list(reversed(mine)),
           "default order: newest first", [t.task_uuid for t in r.tasks][:4] if r else None)

    r, e = list_tasks(tags=["list", "red"])
    tap.ok(e is None and sorted(t.task_uuid for t in r.tasks) == sorted([mine[0], mine[2]]),
           "filter tags: every listed tag is carried", err_text(e))
    r, e = list_tasks(initiator="lister")
    tap.ok(e is None and sorted(t.task_uuid for t in r.tasks) == sorted(mine[:2]),
           "filter initiator", err_text(e))
    r, e = list_tasks(name="linear_workflow", namespace="integration")
    tap.ok(e is None and sorted(t.task_uuid for t in r.tasks) == sorted(mine)
           and all(t.name == "linear_workflow" for t in r.tasks),
           "filter name and namespace", err_text(e))
    r, e = list_tasks(namespace="engine_tests")
    tap.ok(e is None and all(t.namespace == "engine_tests" for t in r.tasks),
           "filter namespace", err_text(e))
    r, e = list_tasks(states=[TS.TASK_STATE_COMPLETE], tags=["list"])
    tap.ok(e is None and len(r.tasks) == 3 and all(t.state == TS.TASK_STATE_COMPLETE
                                                   for t in r.tasks),
           "filter states", err_text(e))
    r, e = list_tasks(states=[TS.TASK_STATE_CANCELLED, TS.TASK_STATE_ERROR], tags=["list"])
    tap.ok(e is None and len(r.tasks) == 0 and r.pagination.total == 0,
           "filter states: none of those", err_text(e))
    first = env.json("SELECT created_at FROM tasker.tasks WHERE task_uuid = '%s'"
                     % mine[1])[0]["created_at"]
    start = timestamp_pb2.Timestamp()
    start.FromJsonString(first.replace(" ", "T") if "T" not in first else first)
    r, e = list_tasks(created_at=common_pb.TimestampRange(start=start), tags=["list"])
    tap.ok(e is None and sorted(t.task_uuid for t in r.tasks) == sorted(mine[1:]),
           "filter created_at start (inclusive)", err_text(e) if e else
           [t.task_uuid for t in r.tasks])
    r, e = list_tasks(created_at=common_pb.TimestampRange(end=start), tags=["list"])
    tap.ok(e is None and [t.task_uuid for t in r.tasks] == [mine[0]],
           "filter created_at end (exclusive)", err_text(e))
    r, e = list_tasks(created_at=common_pb.TimestampRange(
        start=timestamp_pb2.Timestamp(seconds=10 ** 15)))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "a created_at beyond year 9999: INVALID_ARGUMENT",
           err_text(e))
    r, e = list_tasks(tags=["list"], sort=common_pb.SortSpec(
        field="priority", direction=common_pb.SORT_DIRECTION_DESC))
    tap.ok(e is None and [t.priority for t in r.tasks] == [9, 5, 1],
           "sort by priority, descending", err_text(e))
    r, e = list_tasks(tags=["list"], sort=common_pb.SortSpec(
        field="created_at", direction=common_pb.SORT_DIRECTION_ASC))
    tap.ok(e is None and [t.task_uuid for t in r.tasks] == mine,
           "sort by created_at, ascending", err_text(e))
    r, e = list_tasks(tags=["list"], sort=common_pb.SortSpec(field="password"))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "sort by an unknown field: INVALID_ARGUMENT",
           err_text(e))
    r, e = list_tasks(tags=["list"], pagination=common_pb.PaginationRequest(limit=2),
                      sort=common_pb.SortSpec(field="created_at",
                                              direction=common_pb.SORT_DIRECTION_ASC))
    r2, e2 = list_tasks(tags=["list"],
                        pagination=common_pb.PaginationRequest(limit=2, offset=2),
                        sort=common_pb.SortSpec(field="created_at",
                                                direction=common_pb.SORT_DIRECTION_ASC))
    tap.ok(e is None and e2 is None and [t.task_uuid for t in r.tasks] == mine[:2]
           and r.pagination.has_more and r.pagination.total == 3
           and [t.task_uuid for t in r2.tasks] == mine[2:] and not r2.pagination.has_more
           and r2.pagination.offset == 2 and r2.pagination.count == 1,
           "pagination: limit, offset, has_more", err_text(e or e2))
    r, e = list_tasks(pagination=common_pb.PaginationRequest(limit=1000))
    tap.ok(e is None and len(r.tasks) == total, "limit 1000 is accepted", err_text(e))
    r, e = list_tasks(pagination=common_pb.PaginationRequest(limit=1001))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT and "1000" in (e.details() or ""),
           "limit 1001 is INVALID_ARGUMENT (not clamped)", err_text(e))
    r, e = list_tasks(pagination=common_pb.PaginationRequest(limit=0))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "limit 0 is INVALID_ARGUMENT", err_text(e))
    r, e = list_tasks(states=[TS.TASK_STATE_UNSPECIFIED])
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "state UNSPECIFIED is INVALID_ARGUMENT",
           err_text(e))


# ---------------------------------------------------------------- 5. CancelTask
def cancel_records(task):
    """The metadata of the task's transition to cancelled, and those of its
    steps' transitions to cancelled."""
    t = env.json("SELECT metadata FROM tasker.task_transitions "
                 "WHERE task_uuid = '%s' AND to_state = 'cancelled'" % task)
    s = env.json("SELECT st.metadata FROM tasker.workflow_step_transitions st "
                 "JOIN tasker.workflow_steps ws USING (workflow_step_uuid) "
                 "WHERE ws.task_uuid = '%s' AND st.to_state = 'cancelled'" % task)
    return [r["metadata"] for r in t], [r["metadata"] for r in s]


@case("cancel")
def cancel():
    r, e = create("engine_tests", "sleepy_chain", {"case": "cancel"})
    if not tap.ok(e is None, "create a sleepy chain", err_text(e)):
        return
    t = r.task.task_uuid
    col = Collector(t, include_steps=False)
    env.wait_for(lambda: env.steps(t)["sleepy_1"]["state"] == "in_progress", 15)
    r, e = call("TaskService", "CancelTask",
                tasks_pb.CancelTaskRequest(task_uuid=t, reason="test cancel"))
    tap.ok(e is None and r.success and r.task.state == TS.TASK_STATE_CANCELLED
           and env.task_state(t) == "cancelled",
           "CancelTask of a running task: success, state CANCELLED",
           err_text(e) if e else str(r)[:300])
    r, e = call("TaskService", "CancelTask", tasks_pb.CancelTaskRequest(task_uuid=t))
    tap.ok(e is None and not r.success and r.HasField("message") and "cancelled" in r.message
           and r.task.state == TS.TASK_STATE_CANCELLED,
           "CancelTask of a terminal task: success=false with a message, not an error",
           err_text(e) if e else str(r)[:300])
    # who and why, on the task and on every step the cancel settled (no
    # authentication on taskerd A: no subject)
    want = {"event": "Cancel", "reason": "test cancel", "transport": "grpc"}
    tmeta, smeta = cancel_records(t)
    tap.ok(tmeta == [want], "the task's transition to cancelled records event, reason and "
           "transport", tmeta)
    tap.ok(smeta and all(m == want for m in smeta),
           "each step's transition to cancelled records the same", smeta)
    code = col.wait(15)
    last = col.updates[-1] if col.updates else None
    tap.ok(code == C.OK and last is not None and last.update_type == UT.UPDATE_TYPE_TASK_ERROR
           and last.task_state == TS.TASK_STATE_CANCELLED and "cancelled" in last.error_message
           and not any(u.update_type == UT.UPDATE_TYPE_STEP_STATE_CHANGE for u in col.updates),
           "a stream on a cancelled task ends with TASK_ERROR (CANCELLED); no step updates "
           "without include_steps",
           "code %s; %s" % (code, [update_text(u) for u in col.updates]))

    # without a reason, by an authenticated caller (taskerd B, an API key)
    r, e = create("engine_tests", "sleepy_chain", {"case": "cancel-no-reason"})
    if not tap.ok(e is None, "create another sleepy chain", err_text(e)):
        return
    t = r.task.task_uuid
    r, e = call("TaskService", "CancelTask", tasks_pb.CancelTaskRequest(task_uuid=t),
                chan=chan_b, key=CANCEL_KEY)
    tap.ok(e is None and r.success and r.task.state == TS.TASK_STATE_CANCELLED
           and env.task_state(t) == "cancelled",
           "CancelTask without a reason: success, state CANCELLED",
           err_text(e) if e else str(r)[:300])
    want = {"event": "Cancel", "subject": "api-key:canceller", "transport": "grpc"}
    tmeta, smeta = cancel_records(t)
    tap.ok(tmeta == [want] and smeta and all(m == want for m in smeta),
           "without a reason: the transitions record event, subject and transport, and no "
           "reason", (tmeta, smeta))


# ---------------------------------------------------------------- 6. summary
@case("summary")
def summary():
    t = created.get("diamond")
    r, e = call("TaskService", "GetTaskSummary", tasks_pb.GetTaskSummaryRequest(task_uuid=t))
    if not tap.ok(e is None, "GetTaskSummary", err_text(e)):
        return
    m = r.task
    tap.ok(m.task_uuid == t and m.status == "complete" and m.name == "diamond_workflow"
           and m.initiator == "t100" and m.source_system == "test-suite"
           and m.correlation_id == CORR and m.total_steps == 4 and m.completed_steps == 4
           and m.completion_percentage == 100 and m.HasField("completed_at")
           and m.created_at.endswith("Z") and m.recommended_action == "finalize_task",
           "summary: task metadata (ISO-8601 times)", str(m)[:500])
    tpl = {s.name: (s.step_type, s.handler, sorted(s.dependencies), s.retryable,
                    s.max_attempts) for s in r.template.steps}
    tap.ok(tpl == {"step_a": ("standard", "echo", [], True, 3),
                   "step_b": ("standard", "echo", ["step_a"], True, 3),
                   "step_c": ("standard", "echo", ["step_a"], True, 3),
                   "step_d": ("standard", "echo", ["step_b", "step_c"], True, 3)},
           "summary: the template's steps", tpl)
    tap.ok(len(r.steps) == 4 and all(s.current_state == "complete" and s.attempts == 1
                                     and s.HasField("completed_at") and not s.HasField("error")
                                     for s in r.steps),
           "summary: the steps", "\n".join(str(s)[:200] for s in r.steps))
    tap.ok(not r.dlq.in_dlq and not r.dlq.HasField("dlq_reason"), "summary: not in the DLQ",
           str(r.dlq))
    tap.ok(r.links.task == "/v1/tasks/" + t and r.links.steps.endswith("/workflow_steps")
           and r.links.dlq == "/v1/dlq/task/" + t, "summary: links", str(r.links))


# ---------------------------------------------------------------- 7. steps
@case("steps")
def steps():
    t = created.get("diamond")
    db = {s["name"]: s for s in steps_of(t)}
    r, e = call("StepService", "ListSteps", steps_pb.ListStepsRequest(task_uuid=t))
    tap.ok(e is None and sorted(s.name for s in r.steps) == sorted(db)
           and r.pagination.total == 4 and r.pagination.count == 4,
           "ListSteps: every step of the task", err_text(e))
    a = db["step_a"]["uuid"]
    r, e = call("StepService", "GetStep", steps_pb.GetStepRequest(task_uuid=t, step_uuid=a))
    tap.ok(e is None and r.step.step_uuid == a and r.step.name == "step_a"
           and as_dict(r.step.results) == db["step_a"]["results"],
           "GetStep: the step with its results", err_text(e))
    r, e = call("StepService", "GetStepAudit", steps_pb.GetStepAuditRequest(task_uuid=t,
                                                                           step_uuid=a))
    if not tap.ok(e is None and len(r.audit_records) == 1, "GetStepAudit: one record",
                  err_text(e) if e else str(r)[:500]):
        return
    rec = r.audit_records[0]
    audit = env.json("SELECT workflow_step_result_audit_uuid::text AS id, worker_uuid::text "
                     "AS worker, execution_time_ms AS ms FROM tasker.workflow_step_result_audit "
                     "WHERE workflow_step_uuid = '%s'" % a)[0]
    tap.ok(rec.audit_uuid == audit["id"] and rec.step_uuid == a and rec.task_uuid == t
           and rec.step_name == "step_a" and rec.success
           and rec.to_state == SS.STEP_STATE_ENQUEUED_FOR_ORCHESTRATION
           and rec.from_state == SS.STEP_STATE_IN_PROGRESS
           and rec.worker_uuid == audit["worker"]
           and (rec.execution_time_ms if rec.HasField("execution_time_ms") else None)
           == audit["ms"] and rec.correlation_id == CORR
           and as_dict(rec.result).get("success") is True,
           "audit record: ids, worker, states, success, time and the reported result",
           "%s\n%s" % (str(rec)[:600], audit))


# ---------------------------------------------------------------- 8. ResolveStep
@case("resolve")
def resolve():
    r, e = create("engine_tests", "always_fails", {"case": "resolve"})
    if not tap.ok(e is None, "create a task whose step always fails", err_text(e)):
        return
    t = r.task.task_uuid
    col = Collector(t, include_steps=False)
    state = wait_state(t, ("error",), 30)
    tap.ok(state == "error", "the task ends in error", state)
    code = col.wait(15)
    last = col.updates[-1] if col.updates else None
    tap.ok(code == C.OK and last is not None and last.update_type == UT.UPDATE_TYPE_TASK_ERROR
           and last.task_state == TS.TASK_STATE_ERROR
           and "doomed_step" in last.error_message
           and "this step never succeeds" in last.error_message,
           "its stream ends with TASK_ERROR naming the failed step and its message",
           "code %s; %s; %s" % (code, [update_text(u) for u in col.updates],
                                last.error_message if last else None))
    doomed = env.steps(t)["doomed_step"]["uuid"]
    r, e = call("StepService", "ResolveStep", steps_pb.ResolveStepRequest(
        task_uuid=t, step_uuid=doomed,
        action_type=steps_pb.STEP_MANUAL_ACTION_TYPE_COMPLETE_MANUALLY,
        performed_by="operator-1", reason="fixed by hand",
        result=struct({"fixed": True}),
        metadata=struct({"ticket": "OPS-1", "manual": False, "operator": "someone else"})))
    tap.ok(e is None and r.step.state == SS.STEP_STATE_COMPLETE
           and as_dict(r.step.results).get("result") == {"fixed": True},
           "ResolveStep COMPLETE_MANUALLY: the step is complete with the given result",
           err_text(e) if e else str(r)[:400])
    want_meta = {"ticket": "OPS-1", "manual": True, "operator": "operator-1"}
    shown = as_dict(r.step.results) if e is None else {}
    tap.ok(shown.get("result") == {"fixed": True} and shown.get("metadata") == want_meta,
           "the answer's step shows the result and the request's metadata together, the "
           "engine's keys winning", shown)
    res = env.steps(t)["doomed_step"]["results"] or {}
    tap.ok(res.get("result") == {"fixed": True} and res.get("metadata") == want_meta
           and res.get("success") is True and res.get("status") == "completed",
           "the result and the request's metadata are stored", res)
    r, e = call("StepService", "GetStep", steps_pb.GetStepRequest(task_uuid=t,
                                                                 step_uuid=doomed))
    tap.ok(e is None and as_dict(r.step.results) == shown,
           "GetStep afterwards shows the same results", err_text(e) if e else str(r)[:400])
    manual = env.json("SELECT metadata FROM tasker.workflow_step_transitions "
                      "WHERE workflow_step_uuid = '%s' AND to_state = 'complete'" % doomed)
    tap.ok([m["metadata"] for m in manual]
           == [{"event": "CompleteManually", "operator": "operator-1",
                "reason": "fixed by hand", "transport": "grpc"}],
           "the manual completion's transition records performed_by, reason and transport",
           manual)
    state = wait_state(t, ("complete",), 30)
    tap.ok(state == "complete", "the task is driven on and completes", state)
    col = Collector(t, include_steps=True)
    code = col.wait(20)
    ups = col.updates
    tap.ok(code == C.OK and [u.update_type for u in ups]
           == [UT.UPDATE_TYPE_TASK_STATE_CHANGE] + [UT.UPDATE_TYPE_STEP_STATE_CHANGE] * 3
           + [UT.UPDATE_TYPE_TASK_COMPLETE]
           and all(u.step_update.state == SS.STEP_STATE_COMPLETE for u in ups[1:4]),
           "a stream opened on the completed task: the snapshot, then TASK_COMPLETE",
           "code %s; %s" % (code, [update_text(u) for u in ups]))

    # ResolveStep: bad requests
    r, e = call("StepService", "ResolveStep", steps_pb.ResolveStepRequest(
        task_uuid=t, step_uuid=doomed,
        action_type=steps_pb.STEP_MANUAL_ACTION_TYPE_RESET_FOR_RETRY, reason="x"))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT and "performed_by" in e.details(),
           "ResolveStep without performed_by: INVALID_ARGUMENT", err_text(e))
    r, e = call("StepService", "ResolveStep", steps_pb.ResolveStepRequest(
        task_uuid=t, step_uuid=doomed, performed_by="x", reason="x"))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "ResolveStep without action: INVALID_ARGUMENT",
           err_text(e))
    r, e = call("StepService", "ResolveStep", steps_pb.ResolveStepRequest(
        task_uuid=t, step_uuid=doomed, performed_by="x", reason="x",
        action_type=steps_pb.STEP_MANUAL_ACTION_TYPE_RESET_FOR_RETRY))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT,
           "ResolveStep RESET_FOR_RETRY of a complete step: INVALID_ARGUMENT (transition "
           "not allowed)", err_text(e))

    # a task that reaches resolved_manually: its stream ends too
    u, e = create("engine_unserved", "unserved_task", {"case": "resolved"})
    if e is not None:
        tap.ok(False, "create an unserved task", err_text(e))
        return
    t2 = u.task.task_uuid
    wait_state(t2, ("steps_in_process",), 15)
    col = Collector(t2, include_steps=False)
    time.sleep(0.5)
    env.sql("SELECT tasker.transition_task_state_from_any('%s', ARRAY['steps_in_process'], "
            "'resolved_manually', NULL, '{\"event\":\"ResolveManually\"}')" % t2)
    code = col.wait(15)
    ups = col.updates
    tap.ok(code == C.OK and ups and ups[-1].update_type == UT.UPDATE_TYPE_TASK_COMPLETE
           and ups[-1].task_state == TS.TASK_STATE_RESOLVED_MANUALLY
           and [u.task_state for u in ups][-2:] == [TS.TASK_STATE_RESOLVED_MANUALLY] * 2,
           "a stream ends when its task is resolved manually (TASK_COMPLETE, "
           "RESOLVED_MANUALLY)", "code %s; %s" % (code, [update_text(u) for u in ups]))


# ---------------------------------------------------------------- 9. errors
@case("errors")
def errors():
    unknown = str(uuid.uuid4())
    r, e = call("TaskService", "GetTask", tasks_pb.GetTaskRequest(task_uuid=unknown))
    tap.ok(code_of(e) == C.NOT_FOUND, "GetTask of an unknown task: NOT_FOUND", err_text(e))
    r, e = call("TaskService", "GetTask", tasks_pb.GetTaskRequest(task_uuid="not-a-uuid"))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT and "invalid task uuid" in e.details(),
           "GetTask of a bad uuid: INVALID_ARGUMENT \"invalid task uuid\"", err_text(e))
    for name, req in (("CancelTask", tasks_pb.CancelTaskRequest(task_uuid=unknown)),
                      ("GetTaskContext", tasks_pb.GetTaskContextRequest(task_uuid=unknown)),
                      ("GetTaskSummary", tasks_pb.GetTaskSummaryRequest(task_uuid=unknown))):
        r, e = call("TaskService", name, req)
        tap.ok(code_of(e) == C.NOT_FOUND, "%s of an unknown task: NOT_FOUND" % name,
               err_text(e))
    r, e = call("StepService", "ListSteps", steps_pb.ListStepsRequest(task_uuid="xyz"))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "ListSteps of a bad uuid: INVALID_ARGUMENT",
           err_text(e))
    t = created.get("diamond")
    other = created.get("defaults")
    a_other = env.steps(other)["step_a"]["uuid"] if other else unknown
    r, e = call("StepService", "GetStep", steps_pb.GetStepRequest(task_uuid=t,
                                                                 step_uuid=a_other))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT and "does not belong" in e.details(),
           "GetStep of another task's step: INVALID_ARGUMENT", err_text(e))
    r, e = call("StepService", "GetStep", steps_pb.GetStepRequest(task_uuid=t,
                                                                 step_uuid=unknown))
    tap.ok(code_of(e) == C.NOT_FOUND, "GetStep of an unknown step: NOT_FOUND", err_text(e))
    r, e = call("StepService", "GetStepAudit", steps_pb.GetStepAuditRequest(
        task_uuid=unknown, step_uuid=a_other))
    tap.ok(code_of(e) == C.NOT_FOUND, "GetStepAudit of an unknown task: NOT_FOUND",
           err_text(e))

    before = env.counts()
    r, e = create("integration", "diamond_workflow", CTX)
    tap.ok(code_of(e) == C.ALREADY_EXISTS,
           "CreateTask with a duplicate identity (same template and context): ALREADY_EXISTS",
           err_text(e))
    r, e = create("integration", "no_such_workflow", {"case": "x"})
    tap.ok(code_of(e) == C.INVALID_ARGUMENT and "no_such_workflow" in e.details(),
           "CreateTask of an unknown template: INVALID_ARGUMENT", err_text(e))
    r, e = call("TaskService", "CreateTask", tasks_pb.CreateTaskRequest(name="diamond_workflow",
                                                                        namespace="integration"))
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "CreateTask without a version: INVALID_ARGUMENT",
           err_text(e))
    r, e = create("integration", "diamond_workflow", {"case": "bad-corr"},
                  correlation_id="nope")
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "CreateTask with a bad correlation_id: "
           "INVALID_ARGUMENT", err_text(e))
    r, e = create("integration", "diamond_workflow", {"case": "prio"}, priority=1000)
    tap.ok(code_of(e) == C.INVALID_ARGUMENT, "CreateTask with priority 1000: INVALID_ARGUMENT",
           err_text(e))
    tap.ok(env.counts() == before, "the refused creations left no rows behind",
           (before, env.counts()))

    s = stream(unknown)
    try:
        list(s)
        got = C.OK
    except grpc.RpcError as ex:
        got = ex.code()
    tap.ok(got == C.NOT_FOUND, "StreamTaskStatus of an unknown task: NOT_FOUND", got)
    s = stream("bad")
    try:
        list(s)
        got = C.OK
    except grpc.RpcError as ex:
        got = ex.code()
    tap.ok(got == C.INVALID_ARGUMENT, "StreamTaskStatus of a bad uuid: INVALID_ARGUMENT", got)


# ---------------------------------------------------------------- 10. reflection, health
@case("standard services")
def standard():
    fn = chan_a.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=health_pb.HealthCheckRequest.SerializeToString,
                            response_deserializer=health_pb.HealthCheckResponse.FromString)
    bad = []
    for svc in ("TaskService", "StepService"):
        try:
            r = fn(health_pb.HealthCheckRequest(service="tasker.v1." + svc), timeout=TIMEOUT)
            if r.status != health_pb.HealthCheckResponse.SERVING:
                bad.append("%s: %s" % (svc, r.status))
        except grpc.RpcError as ex:
            bad.append("%s: %s" % (svc, ex.code()))
    tap.ok(not bad, "grpc.health.v1: the tasker.v1 services are SERVING", bad)
    fn = chan_a.stream_stream(
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        request_serializer=refl_pb.ServerReflectionRequest.SerializeToString,
        response_deserializer=refl_pb.ServerReflectionResponse.FromString)
    reqs = [refl_pb.ServerReflectionRequest(list_services=""),
            refl_pb.ServerReflectionRequest(file_containing_symbol="tasker.v1.TaskService")]
    try:
        out = list(fn(iter(reqs), timeout=TIMEOUT))
        names = [s.name for s in out[0].list_services_response.service]
        found = bool(out[1].file_descriptor_response.file_descriptor_proto)
    except grpc.RpcError as ex:
        names, found = [str(ex.code())], False
    tap.ok("tasker.v1.TaskService" in names and "tasker.v1.StepService" in names and found,
           "reflection lists the tasker.v1 services and serves their files", names)


# ---------------------------------------------------------------- 11. auth
@case("auth")
def auth():
    r, e = call("TaskService", "CreateTask", tasks_pb.CreateTaskRequest(
        name="diamond_workflow", namespace="integration", version="1.0.0",
        context=struct({"case": "auth"})), chan=chan_b, key=READER_KEY)
    tap.ok(code_of(e) == C.PERMISSION_DENIED and "tasks:create" in (e.details() or ""),
           "a key with tasks:read only: CreateTask is PERMISSION_DENIED", err_text(e))
    r, e = call("TaskService", "GetTask", tasks_pb.GetTaskRequest(task_uuid=created["diamond"]),
                chan=chan_b, key=READER_KEY)
    tap.ok(e is None and r.task.task_uuid == created["diamond"],
           "the same key: GetTask is allowed", err_text(e))
    r, e = call("TaskService", "GetTask", tasks_pb.GetTaskRequest(task_uuid=created["diamond"]),
                chan=chan_b)
    tap.ok(code_of(e) == C.UNAUTHENTICATED, "no key: UNAUTHENTICATED", err_text(e))
    r, e = call("TaskService", "GetTask", tasks_pb.GetTaskRequest(task_uuid=created["diamond"]),
                chan=chan_b, key="wrong-key")
    tap.ok(code_of(e) == C.UNAUTHENTICATED, "a wrong key: UNAUTHENTICATED", err_text(e))
    s = stream(created["diamond"], chan=chan_b)
    try:
        list(s)
        got = C.OK
    except grpc.RpcError as ex:
        got = ex.code()
    tap.ok(got == C.UNAUTHENTICATED, "StreamTaskStatus without a key: UNAUTHENTICATED", got)


# ---------------------------------------------------------------- 12. backpressure
@case("backpressure")
def backpressure():
    # engine_unserved has no worker: each task leaves one message in its queue
    warned = refused = None
    for i in range(40):
        r, e = call("TaskService", "CreateTask", tasks_pb.CreateTaskRequest(
            name="unserved_task", namespace="engine_unserved", version="1.0.0",
            context=struct({"case": "bp", "i": i})), chan=chan_b, key=WRITER_KEY)
        if e is None and r.HasField("backpressure") and warned is None:
            warned = r.backpressure
        if e is not None:
            refused = e
            break
        time.sleep(0.15)
    depth = int(env.sql("SELECT count(*) FROM pgmq.q_worker_engine_unserved_queue"))
    tap.ok(warned is not None and not warned.active and warned.queue_depth >= 1
           and warned.max_queue_depth == 3 and "queue worker_" in warned.reason,
           "the warning tier is reported in CreateTaskResponse.backpressure", warned)
    tap.ok(refused is not None and refused.code() == C.UNAVAILABLE
           and "backpressure" in refused.details(),
           "past the critical depth CreateTask is UNAVAILABLE",
           "%s (queue depth %d)" % (err_text(refused), depth))
    trailers = dict(refused.trailing_metadata() or ()) if refused is not None else {}
    tap.ok(trailers.get("retry-after") == str(RETRY_AFTER),
           "with a retry-after trailer (%d s, as configured)" % RETRY_AFTER, trailers)
    tap.ok(depth >= 3, "the queue is at least at the critical depth", depth)
    r, e = call("TaskService", "GetTask", tasks_pb.GetTaskRequest(task_uuid=created["diamond"]),
                chan=chan_b, key=WRITER_KEY)
    tap.ok(e is None, "reads are not refused", err_text(e))


# ---------------------------------------------------------------- 13. stream lifecycle
def unserved(case_name):
    r, e = create("engine_unserved", "unserved_task", {"case": case_name})
    if e is not None:
        raise RuntimeError("create: %s" % err_text(e))
    wait_state(r.task.task_uuid, ("steps_in_process",), 15)
    return r.task.task_uuid


def first_update(col, timeout=10):
    deadline = time.time() + timeout
    while not col.updates and col.code is None and time.time() < deadline:
        time.sleep(0.05)
    return bool(col.updates)


@case("stream lifecycle")
def lifecycle():
    t = unserved("client-cancel")
    col = Collector(t)
    got = first_update(col)
    col.call.cancel()
    code = col.wait(10)
    tap.ok(got and code == C.CANCELLED, "a client cancels its stream after the snapshot",
           "snapshot %s, code %s" % (got, code))

    t = unserved("db-restart")
    col = Collector(t, include_steps=False)
    got = first_update(col)
    env.cluster.restart()
    # the listener reconnects (and re-reads every stream); then the task ends
    taskerd_a.wait_line(r"listener: reconnected", 30)
    ok = env.wait_for(lambda: env.sql(
        "SELECT tasker.transition_task_state_from_any('%s', ARRAY['steps_in_process'], "
        "'resolved_manually', NULL, '{\"event\":\"ResolveManually\"}')" % t) != "",
        20, interval=0.5)
    code = col.wait(20)
    last = col.updates[-1] if col.updates else None
    tap.ok(got and ok and code == C.OK and last is not None
           and last.update_type == UT.UPDATE_TYPE_TASK_COMPLETE
           and last.task_state == TS.TASK_STATE_RESOLVED_MANUALLY,
           "a stream outlives a database restart and still sees its task end",
           "code %s (%s); %s" % (code, col.details, [update_text(u) for u in col.updates]))

    t = unserved("shutdown")
    col = Collector(t)
    got = first_update(col)
    t0 = time.time()
    rc = taskerd_a.stop(timeout=20)
    took = time.time() - t0
    code = col.wait(10)
    tap.ok(got and code == C.UNAVAILABLE,
           "server shutdown ends an open stream with UNAVAILABLE", "code %s" % code)
    tap.ok(rc == 0 and took < 8, "taskerd with an open stream stops at once and cleanly",
           "exit %s after %.1f s\n%s" % (rc, took, taskerd_a.log(20)))


for p in (taskerd_a, taskerd_b):
    rc = p.stop(timeout=20)
    tap.ok(rc == 0 and "never finished" not in p.log(),
           "%s stops cleanly on SIGTERM, every call finished" % p.name,
           "exit %s\n%s" % (rc, p.log(20)))
env.close()
tap.done()
