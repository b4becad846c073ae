#!/usr/bin/python3
"""The orchestration engine under load, with several processes on one
database (t/lib/tasker_env.py): two taskerd and two tasker-worker.

  8. 1,000 tasks (500 integration/linear_workflow, 500 engine_tests/
     noop_diamond, all `noop` steps) sent as TaskRequestMessages to queue
     orchestration_task_requests run to completion: no task lost, no step
     completed (or run) twice, every task and step transition chain valid.
  9. PostgreSQL restarted (fast shutdown) in the middle of 300 more tasks:
     taskerd and the workers reconnect and every task completes.

Bounded: the load of (8) fails after 240 s, the one of (9) after 150 s
(generous: sanitizer builds run several times slower, beside other tests)
counted from the restart (a step result read just before the restart
comes back after the 30 s visibility timeout). Prints TAP.
"""
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import pg  # noqa: E402
import tasker_env  # noqa: E402

LOAD_TASKS = 1000
RESTART_TASKS = 300
LOAD_LIMIT = 240     # seconds for (8)
RESTART_LIMIT = 150  # seconds for (9) after the restart

tap = harness.Tap()
for prog in ("taskerd", "tasker-worker"):
    try:
        harness.program(prog)
    except FileNotFoundError:
        tap.skip_all("%s is not built" % prog)
if not pg.available():
    tap.skip_all("the PostgreSQL server programs are not installed")

env = tasker_env.Env("91-engine-scale", deadline=480)
try:
    env.start()
    daemons = [env.taskerd(), env.taskerd()]
    workers = [env.worker(namespaces="integration,engine_tests"),
               env.worker(namespaces="integration,engine_tests")]
except (tasker_env.EnvError, pg.ClusterError, OSError) as e:
    print("Bail out! cannot start the system: %s" % str(e).replace("\n", " | "), flush=True)
    env.close()
    sys.exit(1)


def send_requests(phase, n):
    """n TaskRequestMessages, half linear_workflow and half noop_diamond."""
    env.sql(
        "SELECT count(tasker.pgmq_send_with_notify('orchestration_task_requests', "
        "jsonb_build_object('namespace', CASE WHEN g %% 2 = 0 THEN 'integration' "
        "ELSE 'engine_tests' END, 'name', CASE WHEN g %% 2 = 0 THEN 'linear_workflow' "
        "ELSE 'noop_diamond' END, 'context', jsonb_build_object('phase', '%s', 'i', g)), 0)) "
        "FROM generate_series(1, %d) g" % (phase, n))


def progress(phase):
    r = env.rows(
        "SELECT count(*), count(*) FILTER (WHERE t.complete), "
        "count(*) FILTER (WHERE tt.to_state IN ('error', 'blocked_by_failures', 'cancelled')) "
        "FROM tasker.tasks t LEFT JOIN tasker.task_transitions tt "
        "ON tt.task_uuid = t.task_uuid AND tt.most_recent WHERE t.context->>'phase' = '%s'"
        % phase)[0]
    return tuple(int(x) for x in r)


def wait_done(phase, n, limit):
    """Waits until n tasks of the phase are complete (or one failed, or the
    limit). Returns (created, complete, failed, seconds)."""
    t0 = time.time()
    last_report = t0
    while True:
        created, done, failed = progress(phase)
        now = time.time()
        if done >= n or failed or now - t0 >= limit:
            return created, done, failed, now - t0
        if now - last_report >= 10:
            print("# %s: %d s, %d created, %d complete" % (phase, now - t0, created, done),
                  flush=True)
            last_report = now
        time.sleep(0.5)


def check_phase(phase, n, seconds_taken, strict_starts=True):
    created, done, failed = progress(phase)
    tap.ok(created == n, "%s: all %d requests became tasks (no task lost)" % (phase, n),
           "%d tasks" % created)
    tap.ok(done == n and failed == 0,
           "%s: every task is complete" % phase,
           "%d complete, %d in error/blocked/cancelled of %d" % (done, failed, created))
    states = env.rows(
        "SELECT COALESCE(tt.to_state, 'none'), count(*) FROM tasker.tasks t "
        "LEFT JOIN tasker.task_transitions tt ON tt.task_uuid = t.task_uuid AND tt.most_recent "
        "WHERE t.context->>'phase' = '%s' GROUP BY 1 ORDER BY 1" % phase)
    tap.ok(states == [["complete", str(n)]], "%s: and in state complete" % phase, states)
    steps = env.rows(
        "SELECT count(*), count(*) FILTER (WHERE tasker.get_current_step_state("
        "ws.workflow_step_uuid) = 'complete') FROM tasker.workflow_steps ws "
        "JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid WHERE t.context->>'phase' = '%s'"
        % phase)[0]
    tap.ok(steps == [str(4 * n), str(4 * n)],
           "%s: all %d steps exist and are complete" % (phase, 4 * n), steps)
    twice = env.rows(
        "SELECT ws.workflow_step_uuid, "
        "count(*) FILTER (WHERE st.to_state = 'complete') AS completes, "
        "count(*) FILTER (WHERE st.to_state = 'in_progress') AS starts "
        "FROM tasker.workflow_steps ws JOIN tasker.tasks t ON t.task_uuid = ws.task_uuid "
        "LEFT JOIN tasker.workflow_step_transitions st "
        "ON st.workflow_step_uuid = ws.workflow_step_uuid "
        "WHERE t.context->>'phase' = '%s' GROUP BY 1 "
        "HAVING count(*) FILTER (WHERE st.to_state = 'complete') <> 1 "
        "OR count(*) FILTER (WHERE st.to_state = 'in_progress') <> 1" % phase)
    tap.ok(not any(r[1] != "1" for r in twice),
           "%s: exactly one transition into complete per step" % phase, twice[:20])
    if strict_starts:
        tap.ok(not twice, "%s: and each step started once (no handler ran twice)" % phase,
               twice[:20])
    else:
        # after a database restart a step may legitimately be reclaimed
        # (its message came back after the visibility timeout)
        again = [r for r in twice if r[2] != "1"]
        print("# %s: %d step(s) started more than once" % (phase, len(again)), flush=True)
    print("# %s: %d tasks in %.1f s" % (phase, n, seconds_taken), flush=True)


# ---------------------------------------------------------------- 8. load
t0 = time.time()
send_requests("load", LOAD_TASKS)
created, done, failed, took = wait_done("load", LOAD_TASKS, LOAD_LIMIT)
tap.ok(done == LOAD_TASKS and not failed,
       "load: %d tasks on 2 taskerd + 2 workers complete within %d s"
       % (LOAD_TASKS, LOAD_LIMIT),
       "after %.1f s: %d created, %d complete, %d failed" % (took, created, done, failed))
check_phase("load", LOAD_TASKS, took)
left = env.sql("SELECT count(*) FROM pgmq.q_orchestration_task_requests")
tap.ok(left == "0", "load: the request queue is drained", "%s messages left" % left)
procs = env.rows("SELECT processor_uuid, count(*) FROM tasker.task_transitions "
                 "WHERE processor_uuid IS NOT NULL GROUP BY 1")
tap.ok(len(procs) == 2, "load: both taskerd drove tasks", procs)
wks = env.rows("SELECT metadata->>'worker_uuid', count(*) FROM tasker.workflow_step_transitions "
               "WHERE to_state = 'in_progress' GROUP BY 1")
tap.ok(len(wks) == 2, "load: both workers ran steps", wks)
problems, ntasks, nsteps = env.check_all_chains()
tap.ok(not problems and ntasks == LOAD_TASKS and nsteps == 4 * LOAD_TASKS,
       "load: every task (%d) and step (%d) transition chain is valid" % (ntasks, nsteps),
       "\n".join(problems[:40]))
dlq = env.sql("SELECT count(*) FROM tasker.tasks_dlq")
tap.ok(dlq == "0", "load: no DLQ entries", dlq)
tap.ok(all(p.alive() for p in daemons + workers), "load: every process is still running")

# ---------------------------------------------------------------- 9. restart
send_requests("restart", RESTART_TASKS)
# restart once a part of the load is through, while the rest is in flight
partial = env.wait_for(lambda: progress("restart")[1] >= RESTART_TASKS // 4, 30, 0.1)
before = progress("restart")
tap.ok(before[1] < RESTART_TASKS, "restart: the database restarts with tasks in flight",
       "%d created, %d complete" % before[:2])
restart_error = None
try:
    env.cluster.restart()
except pg.ClusterError as e:
    restart_error = e
tap.ok(restart_error is None, "restart: PostgreSQL restarted (fast shutdown)", restart_error)
print("# restarted with %d created, %d complete" % before[:2], flush=True)
created, done, failed, took = wait_done("restart", RESTART_TASKS, RESTART_LIMIT)
tap.ok(done == RESTART_TASKS and not failed,
       "restart: all %d tasks complete within %d s of the restart"
       % (RESTART_TASKS, RESTART_LIMIT),
       "after %.1f s: %d created, %d complete, %d failed" % (took, created, done, failed))
check_phase("restart", RESTART_TASKS, took, strict_starts=False)
tap.ok(all(p.alive() for p in daemons + workers),
       "restart: taskerd and the workers survived the restart",
       ["%s: %s" % (p.name, "running" if p.alive() else p.proc.returncode)
        for p in daemons + workers])
problems, ntasks, nsteps = env.check_all_chains()
tap.ok(not problems, "restart: every task (%d) and step (%d) transition chain is valid"
       % (ntasks, nsteps), "\n".join(problems[:40]))
left = env.sql("SELECT count(*) FROM pgmq.q_orchestration_task_requests")
tap.ok(left == "0", "restart: the request queue is drained", "%s messages left" % left)

rcs = [p.stop(40) for p in daemons + workers]
tap.ok(all(rc == 0 for rc in rcs), "every process stops cleanly on SIGTERM", rcs)
if tap.failed:
    env.dump_logs(25)
env.close()
tap.done()
