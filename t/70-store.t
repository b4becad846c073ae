#!/usr/bin/python3
"""The store layer against a private PostgreSQL cluster: starts a cluster in
a temporary directory (t/lib/pg.py), runs t/unit/test_store (a cmocka
program that prints TAP) with TASKER_TEST_DATABASE_URL pointing at it, and
passes its TAP through. When test_store asks for it (a line
"# tasker-test: restart-database"), the cluster is restarted with a fast
shutdown while the program keeps its pool, its listener and a load running,
and the program is told on stdin ("restarted") to check their recovery.

TASKER_TEST_STORE overrides the path of test_store; TASKER_TEST_KEEP=1 keeps
the cluster directory (and its postgres.log) for a look afterwards.
"""
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import threading

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import pg  # noqa: E402

RESTART_REQUEST = "# tasker-test: restart-database"
TIMEOUT = 600  # seconds for the whole program

tap = harness.Tap()
binary = os.environ.get("TASKER_TEST_STORE") or os.path.join(
    harness.TOP_BUILDDIR, "t", "unit", "test_store")
if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
    tap.skip_all("%s is not built (it needs cmocka and libpq)" % binary)
if not pg.available():
    tap.skip_all("the PostgreSQL server programs are not installed")

tmp = tempfile.mkdtemp(prefix="tasker-70-")
if not os.environ.get("TASKER_TEST_KEEP"):
    atexit.register(shutil.rmtree, tmp, True)  # runs after the cluster's stop
cluster = pg.Cluster(tmp)
try:
    cluster.start()
except pg.ClusterError as e:
    print("Bail out! cannot start PostgreSQL: %s" % str(e).replace("\n", " "), flush=True)
    sys.exit(1)

env = dict(os.environ)
env.update(TASKER_TEST_DATABASE_URL=cluster.conninfo, TASKER_TEST_RESTART="stdio",
           CMOCKA_MESSAGE_OUTPUT="TAP")
env.pop("TASKER_TEST_PG_RESTART", None)
env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)

timed_out = []


def watchdog():
    timed_out.append(True)
    proc.kill()


timer = threading.Timer(TIMEOUT, watchdog)
timer.daemon = True
timer.start()

for raw in proc.stdout:
    line = raw.decode("utf-8", "replace").rstrip("\n")
    if line.strip() == RESTART_REQUEST:
        try:
            cluster.restart()
            reply = "restarted\n"
            print("# database restarted", flush=True)
        except pg.ClusterError as e:
            reply = "failed\n"
            for diag in str(e).splitlines():
                print("# " + diag, flush=True)
        try:
            proc.stdin.write(reply.encode())
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        continue
    print(line, flush=True)
rc = proc.wait()
timer.cancel()

if timed_out:
    print("# test_store killed after %d s" % TIMEOUT, flush=True)
    sys.exit(1)
if rc < 0:
    print("# test_store died with signal %d" % -rc, flush=True)
    print("# server log: %s" % cluster.log_path, flush=True)
    sys.exit(1)
sys.exit(1 if rc else 0)
