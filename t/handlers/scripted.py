#!/usr/bin/python3
"""An exec step handler for t/80-worker.t that does what its step_inputs say,
in this order:
  pidfile: PATH      write "<own pid> <child pid>" there (with spawn_sleeper)
  spawn_sleeper: true   start `sleep 300` in the background (same process group)
  stderr: TEXT       write TEXT to stderr
  stdout: TEXT       write TEXT to stdout as it is
  envelope: OBJECT   write OBJECT to stdout as JSON
  sleep: SECONDS     sleep
  exit: N            exit with status N (default 0)
"""
import json
import os
import subprocess
import sys
import time

inputs = json.load(sys.stdin).get("step_inputs", {})
child = None
if inputs.get("spawn_sleeper"):
    child = subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if "pidfile" in inputs:
    with open(inputs["pidfile"] + ".tmp", "w") as f:
        f.write("%d %d\n" % (os.getpid(), child.pid if child else 0))
    os.rename(inputs["pidfile"] + ".tmp", inputs["pidfile"])
if "stderr" in inputs:
    sys.stderr.write(inputs["stderr"])
    sys.stderr.flush()
if "stdout" in inputs:
    sys.stdout.write(inputs["stdout"])
if "envelope" in inputs:
    json.dump(inputs["envelope"], sys.stdout)
sys.stdout.flush()
if "sleep" in inputs:
    time.sleep(inputs["sleep"])
sys.exit(inputs.get("exit", 0))
