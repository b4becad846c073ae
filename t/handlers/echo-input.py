#!/usr/bin/python3
"""An exec step handler for t/80-worker.t: reads the handler input (JSON) on
stdin and prints a result built from it: the sum of step_inputs.numbers,
what it received, and the step facts the worker puts in the environment."""
import json
import os
import sys

data = json.load(sys.stdin)
numbers = data.get("step_inputs", {}).get("numbers", [])
json.dump({
    "sum": sum(numbers),
    "received": data,
    "env": {k: os.environ.get(k) for k in ("TASKER_STEP_NAME", "TASKER_STEP_UUID",
                                           "TASKER_TASK_UUID", "TASKER_ATTEMPT")},
}, sys.stdout)
