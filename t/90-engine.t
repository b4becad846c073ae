#!/usr/bin/python3
"""The orchestration engine end to end: a private PostgreSQL cluster, one
taskerd, tasker-worker processes and t/progs/engine-probe (t/lib/tasker_env.py).

  1. the diamond workflow completes, results and transition chains are right
  2. a flaky step is retried with exponential backoff and then succeeds
  3. a step that always fails blocks the task (error); completing it by hand
     re-drives the task to the end; the same for a step parked in
     waiting_for_retry
  4. cancelling a task while its first step runs
  5. the staleness detector moves a stale task to error with one DLQ entry
  6. a worker killed with SIGKILL mid-step: another worker reclaims the step
  7. bad input: unknown template, bad context, duplicate identity, a bad
     template file at start-up; none leaves rows behind

Templates: etc/templates/integration and t/templates/engine. Each case has
bounded waits; the whole file gives up after 115 s. Prints TAP.
"""
import json
import os
import re
import signal
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import pg  # noqa: E402
import tasker_env  # noqa: E402
from tasker_env import ALLOWED_STEP, ALLOWED_TASK, check_chain, chain_text  # noqa: E402

tap = harness.Tap()
for prog in ("taskerd", "tasker-worker"):
    try:
        harness.program(prog)
    except FileNotFoundError:
        tap.skip_all("%s is not built" % prog)
if not os.access(os.path.join(harness.TOP_BUILDDIR, "t", "progs", "engine-probe"), os.X_OK):
    tap.skip_all("t/progs/engine-probe is not built (make check builds it)")
if not pg.available():
    tap.skip_all("the PostgreSQL server programs are not installed")

env = tasker_env.Env("90-engine", deadline=115)
try:
    env.start()
    # Staleness detection every second (case 5); nothing else in this file
    # stays long enough in a state to be stale.
    taskerd = env.taskerd("--dlq.staleness_interval_s=1")
    worker = env.worker(namespaces="integration,engine_tests")
except (tasker_env.EnvError, pg.ClusterError, OSError) as e:
    print("Bail out! cannot start the system: %s" % str(e).replace("\n", " | "), flush=True)
    env.close()
    sys.exit(1)


wait_state = env.wait_task_state


def step_state_is(task, step, states, timeout):
    states = (states,) if isinstance(states, str) else states
    return env.wait_for(lambda: env.steps(task)[step]["state"] in states, timeout)


def chain_ok(name, rows, allowed=ALLOWED_TASK, **kw):
    problems = check_chain(rows, allowed, **kw)
    return tap.ok(not problems, name, "\n".join(problems + ["chain: " + chain_text(rows)]))


case = tap.case


# ---------------------------------------------------------------- 1. diamond
@case("diamond")
def diamond():
    t = env.create("integration", "diamond_workflow", {"case": "diamond"})
    state = wait_state(t, tasker_env.TASK_TERMINAL, 30)
    tap.ok(state == "complete", "diamond: the task completes", "state %s" % state)
    steps = env.steps(t)
    tap.ok(sorted(steps) == ["step_a", "step_b", "step_c", "step_d"]
           and all(s["state"] == "complete" for s in steps.values()),
           "diamond: every step is complete",
           {n: s["state"] for n, s in steps.items()})
    row = env.json("SELECT complete, completed_at IS NOT NULL AS stamped FROM tasker.tasks "
                   "WHERE task_uuid = '%s'" % t)[0]
    tap.ok(row["complete"] and row["stamped"], "diamond: tasks.complete and completed_at are set",
           row)

    ops = {"step_a": "start", "step_b": "left", "step_c": "right", "step_d": "join"}
    parents = {"step_a": [], "step_b": ["step_a"], "step_c": ["step_a"],
               "step_d": ["step_a", "step_b", "step_c"]}
    bad = []
    for name, s in sorted(steps.items()):
        res = s["results"] or {}
        r = res.get("result") if isinstance(res, dict) else None
        if not (isinstance(res, dict) and res.get("success") is True and isinstance(r, dict)):
            bad.append("%s: results %s" % (name, json.dumps(res)[:300]))
            continue
        if not isinstance(r.get("step_inputs"), dict) or \
                r["step_inputs"].get("operation") != ops[name]:
            bad.append("%s: step_inputs %s" % (name, r.get("step_inputs")))
        deps = r.get("dependency_results")
        if not isinstance(deps, dict) or sorted(deps) != parents[name]:
            bad.append("%s: dependency_results keys %s, want %s"
                       % (name, sorted(deps) if isinstance(deps, dict) else deps, parents[name]))
    tap.ok(not bad, "diamond: each echo result holds step_inputs and dependency_results",
           "\n".join(bad))
    d = ((steps["step_d"]["results"] or {}).get("result") or {}).get("dependency_results") or {}
    a_result = (steps["step_a"]["results"] or {}).get("result")
    tap.ok(all(k in d for k in ("step_a", "step_b", "step_c"))
           and d.get("step_a") == a_result
           and (d.get("step_b") or {}).get("step_inputs", {}).get("operation") == "left"
           and (d.get("step_c") or {}).get("step_inputs", {}).get("operation") == "right",
           "diamond: step_d sees the results of step_a, step_b and step_c",
           json.dumps(d)[:600])

    rows = env.task_transitions(t)
    states = [r[1] for r in rows]
    tap.ok(states[:4] == ["pending", "initializing", "enqueuing_steps", "steps_in_process"]
           and states[-1] == "complete",
           "diamond: pending -> initializing -> enqueuing_steps -> steps_in_process -> ... "
           "-> complete", chain_text(rows))
    chain_ok("diamond: every task transition is allowed by the state machine", rows)
    bad = []
    for name, s in sorted(steps.items()):
        srows = env.step_transitions(s["uuid"])
        bad += ["%s: %s" % (name, p) for p in check_chain(srows, ALLOWED_STEP)]
        if [r[1] for r in srows] != ["pending", "enqueued", "in_progress",
                                     "enqueued_for_orchestration", "complete"]:
            bad.append("%s: %s" % (name, chain_text(srows)))
    tap.ok(not bad, "diamond: each step goes pending -> enqueued -> in_progress -> "
           "enqueued_for_orchestration -> complete", "\n".join(bad))


# ---------------------------------------------------------------- 2. retry
@case("retry")
def retry():
    t = env.create("engine_tests", "retry_workflow", {"case": "retry"})
    state = wait_state(t, tasker_env.TASK_TERMINAL, 30)
    tap.ok(state == "complete", "retry: the task with a flaky step completes", "state %s" % state)
    steps = env.steps(t)
    flaky = steps["flaky_step"]
    tap.ok(flaky["state"] == "complete" and flaky["attempts"] == 3,
           "retry: the flaky step completes on its third attempt",
           "state %s, attempts %s" % (flaky["state"], flaky["attempts"]))
    rows = env.step_transitions(flaky["uuid"])
    starts = [r[5] for r in rows if r[1] == "in_progress"]
    tap.ok(len(starts) == 3, "retry: three in_progress transitions", chain_text(rows))
    waits = [r for r in rows if r[1] == "waiting_for_retry"]
    tap.ok(len(waits) == 2, "retry: two waiting_for_retry transitions", chain_text(rows))
    if len(starts) == 3:
        g1, g2 = starts[1] - starts[0], starts[2] - starts[1]
        # exponential: 1 s then 2 s, jitter up to 15 % down; generous upper
        # bounds catch a backoff that is far too long
        tap.ok(g1 >= 0.85 and g2 >= 1.70,
               "retry: the attempts are at least the backoff apart (~1 s, ~2 s)",
               "gaps %.3f s and %.3f s" % (g1, g2))
        tap.ok(g1 < 5 and g2 < 7, "retry: and not much more", "gaps %.3f s and %.3f s"
               % (g1, g2))
        print("# retry gaps: %.3f s, %.3f s" % (g1, g2), flush=True)
    bad = check_chain(rows, ALLOWED_STEP)
    tap.ok(not bad, "retry: the flaky step's transitions are allowed",
           "\n".join(bad + [chain_text(rows)]))
    after = steps["after_flaky"]
    deps = ((after["results"] or {}).get("result") or {}).get("dependency_results") or {}
    tap.ok(after["state"] == "complete" and deps.get("flaky_step") == {"attempt": 3},
           "retry: the next step ran after it and saw its result", json.dumps(deps))
    trows = env.task_transitions(t)
    tap.ok("waiting_for_retry" in [r[1] for r in trows],
           "retry: the task waited in waiting_for_retry", chain_text(trows))
    chain_ok("retry: every task transition is allowed", trows)


# ---------------------------------------------------------------- 3. blocked
@case("blocked")
def blocked():
    t = env.create("engine_tests", "always_fails", {"case": "blocked"})
    state = wait_state(t, tasker_env.TASK_TERMINAL, 30)
    tap.ok(state == "error", "blocked: a task whose step always fails ends in error",
           "state %s" % state)
    rows = env.task_transitions(t)
    states = [r[1] for r in rows]
    tap.ok(states[-2:] == ["blocked_by_failures", "error"],
           "blocked: ... -> blocked_by_failures -> error", chain_text(rows))
    chain_ok("blocked: every task transition is allowed", rows)
    steps = env.steps(t)
    doomed = steps["doomed_step"]
    tap.ok(doomed["state"] == "error" and doomed["attempts"] == 2,
           "blocked: the failing step is in error after max_attempts (2) attempts",
           "state %s, attempts %s" % (doomed["state"], doomed["attempts"]))
    err = (doomed["results"] or {}).get("error") or {}
    tap.ok(doomed["results"] and doomed["results"].get("success") is False
           and "never succeeds" in str(err.get("message")),
           "blocked: the step's results hold the handler's error",
           json.dumps(doomed["results"])[:400])
    tap.ok(steps["after_doomed"]["state"] == "pending"
           and steps["last_after_doomed"]["state"] == "pending",
           "blocked: the steps after it never ran",
           {n: s["state"] for n, s in steps.items()})

    rc, out = env.probe("resolve", doomed["uuid"], "complete", '{"manual":true}')
    tap.ok(rc == 0 and out == "resolved", "blocked: engine-probe resolve STEP complete",
           "exit %d: %s" % (rc, out))
    state = wait_state(t, ("complete",), 30)
    tap.ok(state == "complete", "blocked: the task is re-driven and completes",
           "state %s; steps %s" % (state, {n: s["state"] for n, s in env.steps(t).items()}))
    steps = env.steps(t)
    tap.ok(all(s["state"] == "complete" for s in steps.values()),
           "blocked: every step is complete", {n: s["state"] for n, s in steps.items()})
    deps = ((steps["after_doomed"]["results"] or {}).get("result") or {}).get(
        "dependency_results") or {}
    tap.ok(deps.get("doomed_step") == {"manual": True},
           "blocked: the next step saw the operator's result", json.dumps(deps))
    rows = env.task_transitions(t)
    chain_ok("blocked: every task transition is allowed, re-drive included", rows)
    srows = env.step_transitions(doomed["uuid"])
    bad = check_chain(srows, ALLOWED_STEP)
    tap.ok(not bad and srows[-1][1] == "complete" and srows[-2][1] == "error",
           "blocked: the failed step went error -> complete",
           "\n".join(bad + [chain_text(srows)]))


# ---------------------------------------------------------------- 3b. parked retry
@case("parked")
def parked():
    # The step fails and asks for a 60 s backoff, so the task parks in
    # waiting_for_retry; an operator completes the step meanwhile. The only
    # ways out of waiting_for_retry in the state machine are RetryReady
    # (-> enqueuing_steps), Cancel and ResolveManually.
    t = env.create("engine_tests", "parked_retry", {"case": "parked"})
    state = wait_state(t, ("waiting_for_retry",) + tasker_env.TASK_TERMINAL, 15)
    tap.ok(state == "waiting_for_retry",
           "parked: a failed step with a requested backoff parks the task in "
           "waiting_for_retry", state)
    step = env.steps(t)["parked_step"]
    tap.ok(step["state"] == "waiting_for_retry" and step["attempts"] == 1,
           "parked: the step waits for its retry",
           "state %s, attempts %s" % (step["state"], step["attempts"]))
    rc, out = env.probe("resolve", step["uuid"], "complete", '{"settled":"by hand"}')
    tap.ok(rc == 0 and out == "resolved", "parked: engine-probe resolve STEP complete",
           "exit %d: %s" % (rc, out))
    state = wait_state(t, tasker_env.TASK_TERMINAL, 10)
    tap.ok(state == "complete", "parked: the task completes", state)
    chain_ok("parked: every task transition is allowed", env.task_transitions(t))


# ---------------------------------------------------------------- 4. cancel
@case("cancel")
def cancel():
    t = env.create("engine_tests", "sleepy_chain", {"case": "cancel"})
    running = step_state_is(t, "sleepy_1", "in_progress", 15)
    tap.ok(running, "cancel: the first step is running",
           {n: s["state"] for n, s in env.steps(t).items()})
    rc, out = env.probe("cancel", t)
    tap.ok(rc == 0 and out == "cancelled", "cancel: engine-probe cancel", "exit %d: %s"
           % (rc, out))
    tap.ok(env.task_state(t) == "cancelled", "cancel: the task is cancelled",
           env.task_state(t))
    steps = env.steps(t)
    tap.ok(all(s["state"] == "cancelled" for s in steps.values()),
           "cancel: every step is cancelled", {n: s["state"] for n, s in steps.items()})
    first = steps["sleepy_1"]["uuid"]
    # the running step sleeps 3 s: wait until its worker is done with it
    ended = worker.wait_line(r"step %s \(sleepy_1\): (?:result dropped|completed|failed|error)"
                             % first, 10)
    tap.ok(ended is not None, "cancel: the worker finished the running step",
           worker.log(10))
    time.sleep(1.5)  # a poll or two of taskerd and the worker
    tap.ok(env.task_state(t) == "cancelled", "cancel: the task stays cancelled",
           env.task_state(t))
    steps = env.steps(t)
    tap.ok(all(s["state"] == "cancelled" for s in steps.values()),
           "cancel: every step stays cancelled", {n: s["state"] for n, s in steps.items()})
    cancel_at = [r[5] for r in env.task_transitions(t) if r[1] == "cancelled"]
    late = env.rows(
        "SELECT ns.name, st.from_state, st.to_state, st.sort_key FROM "
        "tasker.workflow_step_transitions st "
        "JOIN tasker.workflow_steps ws ON ws.workflow_step_uuid = st.workflow_step_uuid "
        "JOIN tasker.named_steps ns ON ns.named_step_uuid = ws.named_step_uuid "
        "WHERE ws.task_uuid = '%s' AND st.to_state IN ('in_progress', 'enqueued') "
        "AND st.created_at > (SELECT created_at FROM tasker.task_transitions "
        "WHERE task_uuid = '%s' AND to_state = 'cancelled')" % (t, t))
    tap.ok(len(cancel_at) == 1 and not late,
           "cancel: no step was enqueued or started after the cancel", late)
    bad = []
    for name, s in sorted(steps.items()):
        srows = env.step_transitions(s["uuid"])
        bad += ["%s: %s" % (name, p) for p in check_chain(srows, ALLOWED_STEP)]
        if srows[-1][1] != "cancelled" or [r[1] for r in srows].count("cancelled") != 1:
            bad.append("%s: %s" % (name, chain_text(srows)))
        if "complete" in [r[1] for r in srows]:
            bad.append("%s completed: %s" % (name, chain_text(srows)))
    tap.ok(not bad, "cancel: each step's chain ends in one cancelled transition", "\n".join(bad))
    chain_ok("cancel: every task transition is allowed", env.task_transitions(t))
    before = env.task_transitions(t)
    rc, out = env.probe("cancel", t)
    tap.ok(rc != 0 and out.startswith("error STATE"), "cancel: cancelling again is error STATE",
           "exit %d: %s" % (rc, out))
    tap.ok(env.task_transitions(t) == before, "cancel: and changes nothing")


# ---------------------------------------------------------------- 5. staleness
@case("staleness")
def staleness():
    # engine_unserved: no worker serves it, so its queue exists only if
    # taskerd made it (when it registered the template)
    before = env.counts()
    rc, out = env.probe("create", "engine_unserved", "unserved_task", '{"case": "first"}')
    tap.ok(rc == 0 and re.fullmatch(r"[0-9a-f-]{36}", out),
           "staleness: a task can be created in a namespace no worker has served yet",
           "exit %d: %s" % (rc, out))
    if rc != 0:  # go on with the queue made by hand
        after = env.counts()
        tap.ok(after["tasks"] == before["tasks"] and after["steps"] == before["steps"],
               "staleness: the failed create left no rows", (before, after))
        env.sql("SELECT pgmq.create('worker_engine_unserved_queue')")
    t = env.create("engine_unserved", "unserved_task", {"case": "staleness"})
    state = wait_state(t, "steps_in_process", 10)
    tap.ok(state == "steps_in_process", "staleness: the task waits in steps_in_process", state)
    env.sql("UPDATE tasker.task_transitions SET created_at = now() - interval '3 hours' "
            "WHERE task_uuid = '%s' AND most_recent" % t)
    q = ("SELECT dlq_reason, resolution_status, original_state FROM tasker.tasks_dlq "
         "WHERE task_uuid = '%s'" % t)
    entries = env.wait_for(lambda: env.json(q), 10)
    tap.ok(len(entries) == 1 and entries[0]["dlq_reason"] == "staleness_timeout"
           and entries[0]["resolution_status"] == "pending",
           "staleness: one pending staleness_timeout DLQ entry within seconds", entries)
    state = wait_state(t, "error", 5)
    tap.ok(state == "error", "staleness: the task is in error", state)
    rows = env.task_transitions(t)
    last = env.json("SELECT metadata FROM tasker.task_transitions WHERE task_uuid = '%s' "
                    "AND most_recent" % t)
    tap.ok(rows[-1][0] == "steps_in_process" and rows[-1][1] == "error"
           and last and last[0]["metadata"].get("reason") == "staleness_timeout",
           "staleness: steps_in_process -> error, reason staleness_timeout",
           "%s %s" % (chain_text(rows), last))
    chain_ok("staleness: every task transition is allowed", rows,
             extra=tasker_env.STALENESS_TASK)
    time.sleep(3.5)  # three more runs of the detector
    entries = env.json(q)
    tap.ok(len(entries) == 1, "staleness: running longer adds no second entry", entries)
    tap.ok(env.task_state(t) == "error", "staleness: the task stays in error",
           env.task_state(t))
    stale_lines = [l for l in taskerd.log().splitlines() if "stale task %s" % t in l]
    tap.ok(len(stale_lines) == 1, "staleness: taskerd logged the stale task once",
           "\n".join(stale_lines))


# ---------------------------------------------------------------- 6. kill -9
@case("reclaim")
def reclaim():
    vt = ["--worker.visibility_timeout=2", "--worker.concurrency=2"]
    first = env.worker(*vt, namespaces="engine_reclaim", name="reclaim-worker1")
    t = env.create("engine_reclaim", "slow_step", {"case": "reclaim"})
    running = step_state_is(t, "slow_sleep", "in_progress", 15)
    tap.ok(running, "reclaim: the slow step is running in the first worker",
           {n: s["state"] for n, s in env.steps(t).items()})
    time.sleep(1.0)  # into the 4 s sleep
    step = env.steps(t)["slow_sleep"]
    first.signal(signal.SIGKILL)
    rc = first.wait(10)
    tap.ok(rc == -signal.SIGKILL and step["state"] == "in_progress",
           "reclaim: the worker is killed (SIGKILL) while the step is in_progress",
           "exit %s, step %s" % (rc, step["state"]))
    env.worker(*vt, namespaces="engine_reclaim", name="reclaim-worker2")
    state = wait_state(t, tasker_env.TASK_TERMINAL, 30)
    tap.ok(state == "complete", "reclaim: the task completes with the second worker",
           "state %s" % state)
    step = env.steps(t)["slow_sleep"]
    rows = env.step_transitions(step["uuid"])
    reclaims = [r for r in rows if r[0] == "in_progress" and r[1] == "in_progress"
                and r[4] == "Reclaim"]
    tap.ok(step["attempts"] >= 2 and len(reclaims) >= 1,
           "reclaim: the step ran again (attempts %s, a Reclaim transition)" % step["attempts"],
           chain_text(rows))
    tap.ok([r[1] for r in rows].count("complete") == 1,
           "reclaim: exactly one complete transition for the step", chain_text(rows))
    bad = check_chain(rows, ALLOWED_STEP, reclaim=True)
    tap.ok(not bad, "reclaim: the step's transitions are allowed (with the reclaim)",
           "\n".join(bad + [chain_text(rows)]))
    workers = env.json("SELECT DISTINCT metadata->>'worker_uuid' AS w FROM "
                       "tasker.workflow_step_transitions WHERE workflow_step_uuid = '%s' "
                       "AND to_state = 'in_progress'" % step["uuid"])
    tap.ok(len(workers) == 2, "reclaim: two workers claimed it", workers)
    chain_ok("reclaim: every task transition is allowed", env.task_transitions(t))


# ---------------------------------------------------------------- 7. bad input
@case("bad input")
def bad_input():
    def same(a, b):
        keys = ("tasks", "steps", "edges", "named_tasks")
        return all(a[k] == b[k] for k in keys)

    before = env.counts()
    rc, out = env.probe("create", "integration", "no_such_template", "{}")
    tap.ok(rc != 0 and out.startswith("error NOT_FOUND"),
           "bad input: an unknown template is NOT_FOUND", "exit %d: %s" % (rc, out))
    rc, out = env.probe("create", "no_such_namespace", "diamond_workflow", "{}")
    tap.ok(rc != 0 and out.startswith("error NOT_FOUND"),
           "bad input: an unknown namespace is NOT_FOUND", "exit %d: %s" % (rc, out))
    for ctx in ('[1, 2]', '"text"', '42', '{"unclosed": '):
        rc, out = env.probe("create", "integration", "linear_workflow", ctx)
        tap.ok(rc != 0 and out.startswith("error INVALID"),
               "bad input: context %s is INVALID" % ctx, "exit %d: %s" % (rc, out))
    after = env.counts()
    tap.ok(same(before, after), "bad input: no rows written by the refused creates",
           (before, after))
    for args in (("cancel", "00000000-0000-0000-0000-000000000000"),
                 ("resolve", "00000000-0000-0000-0000-000000000000", "complete")):
        rc, out = env.probe(*args)
        tap.ok(rc != 0 and out.startswith("error NOT_FOUND"),
               "bad input: %s of an unknown uuid is NOT_FOUND" % args[0],
               "exit %d: %s" % (rc, out))
    # a malformed uuid is the caller's mistake, not a database failure
    for args in (("cancel", "not-a-uuid"), ("state", "not-a-uuid"),
                 ("resolve", "not-a-uuid", "complete")):
        rc, out = env.probe(*args)
        tap.ok(rc != 0 and (out.startswith("error INVALID") or out.startswith("error NOT_FOUND")),
               "bad input: %s of a malformed uuid is INVALID or NOT_FOUND" % args[0],
               "exit %d: %s" % (rc, out))

    ctx = json.dumps({"case": "duplicate", "n": [1, 2]})
    rc, first = env.probe("create", "integration", "linear_workflow", ctx)
    tap.ok(rc == 0, "bad input: a first create with a context succeeds", first)
    before = env.counts()
    rc, out = env.probe("create", "integration", "linear_workflow", ctx)
    tap.ok(rc != 0 and out.startswith("error ALREADY_EXISTS"),
           "bad input: the same context again is ALREADY_EXISTS (strict identity)",
           "exit %d: %s" % (rc, out))
    # the same context spelled differently is the same identity
    rc, out2 = env.probe("create", "integration", "linear_workflow",
                         '{ "n": [1,2],  "case": "duplicate" }')
    tap.ok(rc != 0 and out2.startswith("error ALREADY_EXISTS"),
           "bad input: the same context with other key order and spacing is ALREADY_EXISTS",
           "exit %d: %s" % (rc, out2))
    after = env.counts()
    tap.ok(same(before, after), "bad input: the duplicates wrote no rows", (before, after))
    rc, other = env.probe("create", "integration", "linear_workflow",
                          json.dumps({"case": "duplicate", "n": [1, 3]}))
    tap.ok(rc == 0, "bad input: another context is another task", other)
    for u in (first, other):
        if re.fullmatch(r"[0-9a-f-]{36}", u):
            wait_state(u, tasker_env.TASK_TERMINAL, 20)

    # a bad template file beside a good one: taskerd refuses to start and
    # registers neither
    bad_dir = os.path.join(env.tmp, "bad-templates")
    os.makedirs(bad_dir)
    with open(os.path.join(bad_dir, "a_good.yaml"), "w") as f:
        f.write("name: half_written\nnamespace_name: engine_bad\nversion: 1.0.0\n"
                "steps:\n  - name: only_step\n    handler: {callable: noop}\n")
    bad_file = os.path.join(bad_dir, "z_broken.yaml")
    with open(bad_file, "w") as f:
        f.write("name: broken\nnamespace_name: engine_bad\nversion: 1.0.0\n"
                "steps:\n  - name: step_a\n    handler: {callable: noop}\n"
                "  - name: step_b\n    dependencies: [step_z]\n    handler: {callable: noop}\n")
    before = env.counts()
    p = env.spawn("taskerd-bad", "taskerd", ["--server.listen=127.0.0.1:0"],
                  template_path=bad_dir)
    rc = p.wait(20)
    log = p.log()
    tap.ok(rc is not None and rc != 0, "bad input: taskerd with a bad template exits non-zero",
           "exit %s\n%s" % (rc, log))
    tap.ok(bad_file in log and 'unknown step "step_z"' in log,
           "bad input: its message names the file and the problem", log)
    tap.ok("listening" not in log, "bad input: it never served", log)
    after = env.counts()
    ns = env.sql("SELECT count(*) FROM tasker.task_namespaces WHERE name = 'engine_bad'")
    tap.ok(same(before, after) and ns == "0",
           "bad input: no template of that directory was registered",
           "%s %s, engine_bad namespaces %s" % (before, after, ns))
    tap.ok(taskerd.alive(), "bad input: the running taskerd is unaffected")


# ---------------------------------------------------------------- all of it
problems, ntasks, nsteps = env.check_all_chains(reclaim=True)
# the stale task's steps_in_process -> error is in ALLOWED_TASK (legacy Fail)
tap.ok(not problems, "every task (%d) and step (%d) transition chain in the database is valid"
       % (ntasks, nsteps), "\n".join(problems[:40]))
dups = env.rows("SELECT workflow_step_uuid, count(*) FROM tasker.workflow_step_transitions "
                "WHERE to_state = 'complete' GROUP BY 1 HAVING count(*) > 1")
tap.ok(not dups, "no step completed twice", dups)
tap.ok(taskerd.alive() and worker.alive(), "taskerd and the worker are still running")
rc_d = taskerd.stop(20)
rc_w = worker.stop(40)
tap.ok(rc_d == 0 and rc_w == 0, "taskerd and the worker stop cleanly on SIGTERM",
       "taskerd %s, worker %s" % (rc_d, rc_w))
if tap.failed:
    env.dump_logs(25)
env.close()
tap.done()
