"""A whole tasker system for the engine tests: a private PostgreSQL cluster
(pg.py), taskerd processes (orchestration), tasker-worker processes, the
engine-probe program, and queries of the resulting state.

    env = tasker_env.Env("90-engine", deadline=110)
    env.start()                                   # cluster + migrations
    d = env.taskerd()                             # waits for "listening h2c"
    w = env.worker(namespaces="integration")      # waits until it runs
    rc, out = env.probe("create", "integration", "diamond_workflow", '{"a": 1}')
    env.wait_for(lambda: env.task_state(out) == "complete", 30)
    env.close()                                   # also done at exit

Every wait is bounded. Env(deadline=S) arms a watchdog: after S seconds
the test is abandoned ("Bail out!"), every process started here is killed
and the cluster stopped, so a hung engine never hangs `make check`.

Template path: etc/templates and t/templates/engine, unless a test gives
another. TASKER_TEST_KEEP=1 keeps the temporary directory (postgres.log,
the process logs); TASKER_TEST_VERBOSE=1 copies the process logs to stderr.
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

import harness
import pg

TOP_SRCDIR = harness.TOP_SRCDIR
TOP_BUILDDIR = harness.TOP_BUILDDIR
TEMPLATES = os.path.join(TOP_SRCDIR, "etc", "templates")
TEST_TEMPLATES = os.path.join(TOP_SRCDIR, "t", "templates", "engine")
DEFAULT_TEMPLATE_PATH = TEMPLATES + ":" + TEST_TEMPLATES

# ---------------------------------------------------------------- state machines
# The task state machine (design brief section 3.3). The first row of a task
# is (None -> pending), written by creation.
TASK_STATES = ("pending", "initializing", "enqueuing_steps", "steps_in_process",
               "evaluating_results", "waiting_for_dependencies", "waiting_for_retry",
               "blocked_by_failures", "complete", "error", "cancelled", "resolved_manually")
TASK_TERMINAL = ("complete", "error", "cancelled", "resolved_manually")
ALLOWED_TASK = {
    ("pending", "initializing"),                         # Start
    ("initializing", "enqueuing_steps"),                 # ReadyStepsFound
    ("initializing", "complete"),                        # NoStepsFound
    ("initializing", "waiting_for_dependencies"),        # NoDependenciesReady
    ("enqueuing_steps", "steps_in_process"),             # StepsEnqueued
    ("enqueuing_steps", "error"),                        # EnqueueFailed
    ("steps_in_process", "evaluating_results"),          # AllStepsCompleted / StepCompleted
    ("steps_in_process", "waiting_for_retry"),           # StepFailed
    ("evaluating_results", "complete"),                  # AllStepsSuccessful
    ("evaluating_results", "enqueuing_steps"),           # ReadyStepsFound
    ("evaluating_results", "waiting_for_dependencies"),  # NoDependenciesReady
    ("evaluating_results", "blocked_by_failures"),       # PermanentFailure
    ("waiting_for_dependencies", "evaluating_results"),  # DependenciesReady
    ("waiting_for_retry", "enqueuing_steps"),            # RetryReady
    ("blocked_by_failures", "error"),                    # GiveUp
    ("blocked_by_failures", "resolved_manually"),        # ManualResolution
    ("steps_in_process", "complete"),                    # legacy Complete
    ("steps_in_process", "error"),                       # legacy Fail
    ("error", "pending"),                                # legacy Reset
}
ALLOWED_TASK |= {(s, "cancelled") for s in TASK_STATES if s not in TASK_TERMINAL}
ALLOWED_TASK |= {(s, "resolved_manually") for s in TASK_STATES}
# The staleness detector (section 3.8) moves a stale waiting task to error.
STALENESS_TASK = {("waiting_for_dependencies", "error"), ("waiting_for_retry", "error"),
                  ("steps_in_process", "error")}

# The step state machine (section 3.4), plus the worker protocol's reclaim
# (in_progress -> in_progress with event Reclaim, migrations/0007_worker.sql).
STEP_STATES = ("pending", "enqueued", "in_progress", "enqueued_for_orchestration",
               "enqueued_as_error_for_orchestration", "waiting_for_retry", "complete", "error",
               "cancelled", "resolved_manually")
STEP_TERMINAL = ("complete", "cancelled", "resolved_manually")
ALLOWED_STEP = {
    ("pending", "enqueued"),                                        # Enqueue
    ("enqueued", "in_progress"), ("pending", "in_progress"),        # Start
    ("in_progress", "enqueued_for_orchestration"),                  # EnqueueForOrchestration
    ("in_progress", "enqueued_as_error_for_orchestration"),         # EnqueueAsError...
    ("enqueued_for_orchestration", "complete"),                     # Complete
    ("enqueued_for_orchestration", "error"),                        # Fail
    ("enqueued_as_error_for_orchestration", "waiting_for_retry"),   # WaitForRetry
    ("enqueued_as_error_for_orchestration", "error"),               # Fail
    ("enqueued_as_error_for_orchestration", "complete"),            # Complete
    ("in_progress", "waiting_for_retry"), ("enqueued", "waiting_for_retry"),
    ("pending", "waiting_for_retry"),                               # WaitForRetry
    ("waiting_for_retry", "pending"), ("error", "pending"),         # Retry / ResetForRetry
    ("in_progress", "error"), ("pending", "error"), ("enqueued", "error"),  # Fail
}
ALLOWED_STEP |= {(s, "cancelled") for s in STEP_STATES if s not in STEP_TERMINAL}
ALLOWED_STEP |= {(s, "resolved_manually") for s in STEP_STATES}
ALLOWED_STEP |= {(s, "complete") for s in STEP_STATES}             # CompleteManually


def check_chain(rows, allowed, extra=(), reclaim=False):
    """Checks one task's or step's transitions, rows of (from, to, sort_key,
    most_recent[, event]) in sort_key order. Returns a list of problems."""
    problems = []
    if not rows:
        return ["no transitions"]
    prev = None
    for i, r in enumerate(rows):
        frm, to, key, recent = r[0], r[1], r[2], r[3]
        event = r[4] if len(r) > 4 else None
        if i == 0:
            if frm is not None or to != "pending":
                problems.append("first transition %s -> %s (want the initial -> pending)"
                                % (frm, to))
        else:
            if frm != prev:
                problems.append("transition %d starts at %s but the state was %s"
                                % (key, frm, prev))
            pair = (frm, to)
            if not (pair in allowed or pair in extra or
                    (reclaim and pair == ("in_progress", "in_progress") and event == "Reclaim")):
                problems.append("transition %d: %s -> %s (event %s) is not allowed"
                                % (key, frm, to, event))
        if key != i + 1:
            problems.append("sort_key %s at position %d" % (key, i + 1))
        if recent != (i == len(rows) - 1):
            problems.append("most_recent=%s on transition %d of %d" % (recent, key, len(rows)))
        prev = to
    return problems


# ---------------------------------------------------------------- processes
class Proc:
    """A started program: stderr is collected (and searched) line by line."""

    def __init__(self, name, argv, env):
        self.name = name
        self.argv = argv
        self.lines = []
        self._cv = threading.Condition()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env, start_new_session=True)
        self.pid = self.proc.pid
        self._pumper = threading.Thread(target=self._pump, daemon=True)
        self._pumper.start()

    def _pump(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cv:
                self.lines.append(line)
                self._cv.notify_all()
            if os.environ.get("TASKER_TEST_VERBOSE"):
                sys.stderr.write("[%s] %s\n" % (self.name, line))
        with self._cv:
            self._cv.notify_all()

    def wait_line(self, regex, timeout):
        """Waits for a stderr line matching regex; returns the match or None
        (timeout, or the process ended first)."""
        rx = re.compile(regex)
        deadline = time.time() + timeout
        seen = 0
        with self._cv:
            while True:
                for line in self.lines[seen:]:
                    m = rx.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                if self.proc.poll() is not None or time.time() >= deadline:
                    # the last lines may still be in the pipe
                    self._cv.wait(0.2)
                    for line in self.lines[seen:]:
                        m = rx.search(line)
                        if m:
                            return m
                    return None
                self._cv.wait(0.1)

    def log(self, last=None):
        with self._cv:
            lines = self.lines if last is None else self.lines[-last:]
            return "\n".join(lines)

    def alive(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        """The exit status, or None if still running after timeout. After an
        exit, everything the process wrote to stderr is in log()."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        # the pipe drains after the exit: read it to the end first
        self._pumper.join(5)
        return rc

    def signal(self, sig):
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout=15):
        """SIGTERM, then SIGKILL after timeout. Returns the exit status
        (None if it had to be killed)."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.signal(signal.SIGTERM)
        rc = self.wait(timeout)
        if rc is None:
            self.kill()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass


# ---------------------------------------------------------------- the system
class EnvError(RuntimeError):
    pass


class Env:
    def __init__(self, name, deadline=110, tap=None):
        self.name = name
        self.tap = tap
        self.tmp = tempfile.mkdtemp(prefix="tasker-%s-" % name)
        os.chmod(self.tmp, 0o755)
        self.cluster = pg.Cluster(os.path.join(self.tmp, "pg"))
        self.procs = []
        self.url = None
        self._closed = False
        self._lock = threading.Lock()
        self.started_at = time.time()
        self._watchdog = threading.Timer(deadline, self._expire, args=(deadline,))
        self._watchdog.daemon = True
        self._watchdog.start()
        atexit.register(self.close)

    # ------------------------------------------------------------ lifecycle
    def start(self):
        """Starts the cluster and applies the migrations (taskerd --migrate-only)."""
        self.cluster.start()
        self.url = self.cluster.conninfo
        r = subprocess.run([harness.program("taskerd"), "--migrate-only"],
                           env=self.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=60)
        if r.returncode != 0:
            raise EnvError("taskerd --migrate-only failed (%d):\n%s"
                           % (r.returncode, r.stderr.decode("utf-8", "replace")))
        return self

    def environ(self, template_path=None, extra=None):
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        # the caller's settings must not leak into the programs under test
        for k in list(e):
            if (k.startswith("TASKER_") and not k.startswith("TASKER_TEST_")) or \
                    k == "DATABASE_URL":
                del e[k]
        if self.url:
            e["DATABASE_URL"] = self.url
        e["TASKER_TEMPLATE_PATH"] = template_path or DEFAULT_TEMPLATE_PATH
        if extra:
            for k, v in extra.items():
                if v is None:
                    e.pop(k, None)
                else:
                    e[k] = v
        return e

    def close(self):
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._watchdog.cancel()
        for p in reversed(self.procs):
            p.stop(timeout=10)
        try:
            self.cluster.stop()
        except pg.ClusterError as e:
            print("# stopping the cluster: %s" % e, flush=True)
        if os.environ.get("TASKER_TEST_KEEP"):
            print("# kept %s" % self.tmp, flush=True)
        else:
            shutil.rmtree(self.tmp, True)

    def _expire(self, deadline):
        print("# the test ran for more than %d s: giving up" % deadline, flush=True)
        self.dump_logs(40)
        print("Bail out! %s: timed out after %d s" % (self.name, deadline), flush=True)
        with self._lock:
            self._closed = True
        for p in self.procs:
            p.kill()
        try:
            self.cluster.stop()
        except Exception:  # noqa: BLE001 - best effort while bailing out
            pass
        if not os.environ.get("TASKER_TEST_KEEP"):
            shutil.rmtree(self.tmp, True)
        os._exit(1)

    def dump_logs(self, last=30):
        for p in self.procs:
            print("# --- last lines of %s (pid %d, %s)" % (
                p.name, p.pid, "running" if p.alive() else "exit %s" % p.proc.returncode),
                flush=True)
            for line in p.log(last).splitlines():
                print("#   " + line, flush=True)

    def elapsed(self):
        return time.time() - self.started_at

    # ------------------------------------------------------------ programs
    def spawn(self, name, program, args, template_path=None, env=None):
        argv = [harness.program(program)] + list(args)
        p = Proc(name, argv, self.environ(template_path, env))
        self.procs.append(p)
        return p

    def taskerd(self, *args, name=None, template_path=None, env=None, poll_ms=200, wait=20):
        """Starts taskerd (gRPC on 127.0.0.1, ephemeral port) and waits for its
        listener. Extra args are --section.key=value options."""
        name = name or "taskerd%d" % (1 + sum(p.name.startswith("taskerd") for p in self.procs))
        argv = ["--server.listen=127.0.0.1:0",
                "--orchestration.poll_interval_ms=%d" % poll_ms] + list(args)
        p = self.spawn(name, "taskerd", argv, template_path, env)
        m = p.wait_line(r"listening h2c \S+:(\d+)", wait)
        if m is None:
            p.kill()
            raise EnvError("%s did not start:\n%s" % (name, p.log(40)))
        p.port = int(m.group(1))
        return p

    def worker(self, *args, namespaces=None, name=None, template_path=None, env=None,
               wait=20):
        """Starts tasker-worker serving namespaces (a comma-separated string;
        None: every namespace of its templates) and waits until it runs."""
        name = name or "worker%d" % (1 + sum(p.name.startswith("worker") for p in self.procs))
        extra = dict(env or {})
        if namespaces is not None:
            extra["TASKER_WORKER_NAMESPACES"] = namespaces
        argv = ["--worker.grpc_bind_address=127.0.0.1:0",
                "--worker.poll_interval=200ms"] + list(args)
        p = self.spawn(name, "tasker-worker", argv, template_path, extra)
        m = p.wait_line(WORKER_READY, wait)
        if m is None:
            p.kill()
            raise EnvError("%s did not start:\n%s" % (name, p.log(40)))
        return p

    def probe(self, *args, timeout=30):
        """Runs t/progs/engine-probe URL ARGS...; returns (exit status, output line)."""
        prog = os.path.join(TOP_BUILDDIR, "t", "progs", "engine-probe")
        r = subprocess.run([prog, self.url] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=self.environ())
        out = r.stdout.decode("utf-8", "replace").strip()
        err = r.stderr.decode("utf-8", "replace").strip()
        return r.returncode, out + ("\n" + err if err else "")

    def create(self, namespace, name, context=None):
        """Creates a task with engine-probe; returns its uuid or raises."""
        ctx = json.dumps(context if context is not None else {"at": time.time()})
        rc, out = self.probe("create", namespace, name, ctx)
        if rc != 0 or not re.fullmatch(r"[0-9a-f-]{36}", out):
            raise EnvError("engine-probe create %s/%s: %s" % (namespace, name, out))
        return out

    # ------------------------------------------------------------ SQL
    def sql(self, q):
        """Runs q with psql; returns the unaligned, tuples-only output."""
        return self.cluster.psql(q)

    def rows(self, q):
        """Rows of a query as lists of strings (None for NULL)."""
        r = subprocess.run([os.path.join(self.cluster.bindir, "psql"), "-X", "-q", "-A", "-t",
                            "-F", "\x1f", "-P", "null=\x1e", "-v", "ON_ERROR_STOP=1",
                            "-h", self.cluster.dir, "-d", "tasker", "-c", q],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
        if r.returncode != 0:
            raise pg.ClusterError("psql: %s" % r.stderr.decode("utf-8", "replace").strip())
        out = []
        for line in r.stdout.decode("utf-8", "replace").split("\n"):
            if line == "":
                continue
            out.append([None if f == "\x1e" else f for f in line.split("\x1f")])
        return out

    def json(self, q):
        """The rows of q as a list of dicts (through json_agg)."""
        text = self.sql("SELECT COALESCE(json_agg(x), '[]') FROM (%s) x" % q)
        return json.loads(text)

    def wait_for(self, pred, timeout, interval=0.25):
        """Polls pred() until it returns a true value (returned) or timeout
        (returns the last value)."""
        deadline = time.time() + timeout
        while True:
            v = pred()
            if v or time.time() >= deadline:
                return v
            time.sleep(interval)

    # ------------------------------------------------------------ state
    def task_state(self, task):
        return self.sql("SELECT tasker.get_current_task_state('%s')" % task) or None

    def wait_task_state(self, task, states, timeout):
        """Waits until the task is in one of states (a name or a tuple of
        names); returns the last state seen."""
        states = (states,) if isinstance(states, str) else states
        last = [None]

        def pred():
            last[0] = self.task_state(task)
            return last[0] in states
        self.wait_for(pred, timeout)
        return last[0]

    def steps(self, task):
        """{step name: {uuid, state, attempts, max_attempts, results, in_process}}"""
        rows = self.json(
            "SELECT ns.name, ws.workflow_step_uuid AS uuid, "
            "tasker.get_current_step_state(ws.workflow_step_uuid) AS state, ws.attempts, "
            "ws.max_attempts, ws.results, ws.in_process, ws.processed "
            "FROM tasker.workflow_steps ws "
            "JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid "
            "WHERE ws.task_uuid = '%s'" % task)
        return {r.pop("name"): r for r in rows}

    def task_transitions(self, task):
        """[(from, to, sort_key, most_recent, event, created_at epoch)] in order"""
        return [(r[0], r[1], int(r[2]), r[3] == "t", r[4], float(r[5])) for r in self.rows(
            "SELECT from_state, to_state, sort_key, most_recent, metadata->>'event', "
            "extract(epoch FROM created_at) FROM tasker.task_transitions "
            "WHERE task_uuid = '%s' ORDER BY sort_key" % task)]

    def step_transitions(self, step):
        """[(from, to, sort_key, most_recent, event, created_at epoch)] in order"""
        return [(r[0], r[1], int(r[2]), r[3] == "t", r[4], float(r[5])) for r in self.rows(
            "SELECT from_state, to_state, sort_key, most_recent, metadata->>'event', "
            "extract(epoch FROM created_at) FROM tasker.workflow_step_transitions "
            "WHERE workflow_step_uuid = '%s' ORDER BY sort_key" % step)]

    def counts(self):
        """Row counts of the tables a failed operation must leave alone."""
        r = self.rows("SELECT (SELECT count(*) FROM tasker.tasks), "
                      "(SELECT count(*) FROM tasker.workflow_steps), "
                      "(SELECT count(*) FROM tasker.workflow_step_edges), "
                      "(SELECT count(*) FROM tasker.task_transitions), "
                      "(SELECT count(*) FROM tasker.workflow_step_transitions), "
                      "(SELECT count(*) FROM tasker.named_tasks)")[0]
        return dict(zip(("tasks", "steps", "edges", "task_transitions", "step_transitions",
                         "named_tasks"), (int(x) for x in r)))

    def check_all_chains(self, reclaim=True):
        """Checks every task's and every step's transition chain; returns
        (problems, number of tasks, number of steps)."""
        problems = []
        by_task = {}
        for r in self.rows("SELECT task_uuid, from_state, to_state, sort_key, most_recent, "
                           "metadata->>'event' FROM tasker.task_transitions "
                           "ORDER BY task_uuid, sort_key"):
            by_task.setdefault(r[0], []).append((r[1], r[2], int(r[3]), r[4] == "t", r[5]))
        for t, rows in by_task.items():
            for p in check_chain(rows, ALLOWED_TASK):
                problems.append("task %s: %s" % (t, p))
        by_step = {}
        for r in self.rows("SELECT workflow_step_uuid, from_state, to_state, sort_key, "
                           "most_recent, metadata->>'event' FROM tasker.workflow_step_transitions "
                           "ORDER BY workflow_step_uuid, sort_key"):
            by_step.setdefault(r[0], []).append((r[1], r[2], int(r[3]), r[4] == "t", r[5]))
        for s, rows in by_step.items():
            for p in check_chain(rows, ALLOWED_STEP, reclaim=reclaim):
                problems.append("step %s: %s" % (s, p))
        return problems, len(by_task), len(by_step)


def require(tap, programs=("taskerd", "tasker-worker"), protoc=False):
    """Skips the whole test (TAP) unless the programs are built and the
    PostgreSQL server programs are installed; with protoc, also unless
    protoc ($PROTOC or on PATH) is found. Returns protoc's path (or None)."""
    path = None
    if protoc:
        path = os.environ.get("PROTOC") or shutil.which("protoc")
        if not path:
            tap.skip_all("protoc not found")
    for prog in programs:
        try:
            harness.program(prog)
        except FileNotFoundError as e:
            tap.skip_all(str(e))
    if not pg.available():
        tap.skip_all("the PostgreSQL server programs are not installed")
    return path


def generate_protos(protoc, prefix, extra=()):
    """Runs protoc --python_out on every proto/tasker/v1/*.proto and the
    extra proto paths into a new temporary directory (removed at exit),
    which goes first on sys.path. Returns (directory, proto paths)."""
    out = tempfile.mkdtemp(prefix=prefix)
    atexit.register(shutil.rmtree, out, True)
    proto_dir = os.path.join(TOP_SRCDIR, "proto")
    protos = sorted(os.path.relpath(p, proto_dir)
                    for p in glob.glob(os.path.join(proto_dir, "tasker", "v1", "*.proto")))
    protos += list(extra)
    subprocess.run([protoc, "-I", proto_dir, "--python_out", out] + protos, check=True)
    sys.path.insert(0, out)
    return out, protos


# What tasker-worker prints once it serves its queues.
WORKER_READY = r"worker \S+ serving namespace"


def chain_text(rows):
    return " -> ".join([str(rows[0][0])] + [r[1] for r in rows]) if rows else "(none)"


def worker_available():
    try:
        harness.program("tasker-worker")
        return True
    except FileNotFoundError:
        return False
