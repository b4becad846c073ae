#!/usr/bin/python3
"""The service-manager notifications of taskerd and tasker-worker
(sd_notify(3)), received the way systemd receives them: on a Unix datagram
socket named by NOTIFY_SOCKET, with the sender's credentials.

For each daemon: STATUS= while starting, READY=1 (with a STATUS= line) once
it serves, WATCHDOG=1 repeated at half of WATCHDOG_USEC, then on SIGTERM
STOPPING=1 and no keep-alive after it, and exit status 0; every datagram
comes from the daemon's own pid (the units use NotifyAccess=main). Without
WATCHDOG_USEC, or with WATCHDOG_PID naming another process, no keep-alive.

Skipped when the build has no libsystemd (configure --with-systemd=no, or
libsystemd-dev missing): the programs then send nothing by design.
"""
import os
import re
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402
import pg  # noqa: E402
import tasker_env  # noqa: E402

tap = harness.Tap()


def built_with_systemd():
    try:
        with open(os.path.join(harness.TOP_BUILDDIR, "config.h")) as f:
            return re.search(r"^#define HAVE_SYSTEMD 1$", f.read(), re.M) is not None
    except OSError:
        return False


if not built_with_systemd():
    tap.skip_all("built without libsystemd: sd_notify is a no-op")
if not pg.available():
    tap.skip_all("PostgreSQL server programs not installed")
if not tasker_env.worker_available():
    tap.skip_all("tasker-worker not built")

WATCHDOG_USEC = 200000  # keep-alives every 100 ms
SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)
SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)


class NotifySocket:
    """A bound datagram socket; .messages are (pid, {key: value}, raw text)."""

    def __init__(self, path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        self.sock.bind(path)
        self.messages = []

    def drain(self, seconds):
        """Reads datagrams for `seconds`."""
        deadline = time.time() + seconds
        while True:
            left = deadline - time.time()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
            except socket.timeout:
                return
            pid = None
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                    pid = struct.unpack("iII", payload[:12])[0]
            text = data.decode("utf-8", "replace")
            fields = dict(line.split("=", 1) for line in text.split("\n") if "=" in line)
            self.messages.append((pid, fields, text))

    def wait_for(self, key, value, seconds):
        """Reads until a message with key=value arrives; returns its index or None."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            for i, (_, fields, _) in enumerate(self.messages):
                if fields.get(key) == value:
                    return i
            self.drain(min(0.2, max(0.0, deadline - time.time())))
        for i, (_, fields, _) in enumerate(self.messages):
            if fields.get(key) == value:
                return i
        return None

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def dump(self):
        return "\n".join("pid %s: %r" % (pid, text) for pid, _, text in self.messages)


def index_of(msgs, key, value=None):
    for i, (_, fields, _) in enumerate(msgs):
        if key in fields and (value is None or fields[key] == value):
            return i
    return None


def check_daemon(env, label, start, stop_status):
    """Starts a daemon with start(extra_env), checks its notifications."""
    ns = NotifySocket(os.path.join(env.tmp, "%s.sock" % label))
    try:
        proc = start({"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": str(WATCHDOG_USEC)})
        ready = ns.wait_for("READY", "1", 20)
        tap.ok(ready is not None, "%s: READY=1" % label, ns.dump())
        if ready is None:
            return
        tap.ok("STATUS" in ns.messages[ready][1],
               "%s: READY=1 comes with a STATUS= line (%s)" % (
                   label, ns.messages[ready][1].get("STATUS")), ns.dump())
        ns.drain(1.2)
        pings = [i for i, (_, f, _) in enumerate(ns.messages) if f.get("WATCHDOG") == "1"]
        tap.ok(len(pings) >= 5, "%s: WATCHDOG=1 repeats (%d in 1.2 s at 100 ms)" % (
            label, len(pings)), ns.dump())
        tap.ok(not pings or pings[0] > ready, "%s: keep-alives start after READY=1" % label,
               ns.dump())
        pids = {pid for pid, _, _ in ns.messages}
        tap.ok(pids == {proc.pid}, "%s: every notification comes from its main pid %d" % (
            label, proc.pid), "senders: %s" % sorted(pids, key=str))
        n = len(ns.messages)
        proc.signal(signal.SIGTERM)
        stopping = ns.wait_for("STOPPING", "1", 20)
        tap.ok(stopping is not None and stopping >= n, "%s: STOPPING=1 on SIGTERM" % label,
               ns.dump())
        rc = proc.wait(30)
        ns.drain(0.2)
        tap.ok(rc == 0, "%s exits 0 after SIGTERM (%s)" % (label, rc), proc.log(20))
        if stopping is not None:
            after = [f for _, f, _ in ns.messages[stopping + 1:] if "WATCHDOG" in f]
            tap.ok(not after, "%s: no keep-alive after STOPPING=1" % label, ns.dump())
            tap.ok(stop_status.search(ns.messages[stopping][1].get("STATUS", "")) is not None,
                   "%s: STOPPING=1 comes with a STATUS= line" % label, ns.dump())
        return ns.messages
    finally:
        ns.close()


def check_no_watchdog(env, label, start, extra, why):
    """With `extra` in the environment the daemon must not send keep-alives."""
    ns = NotifySocket(os.path.join(env.tmp, "%s-nowd.sock" % label))
    try:
        proc = start(dict(extra, NOTIFY_SOCKET=ns.path))
        ready = ns.wait_for("READY", "1", 20)
        ns.drain(0.6)
        pings = index_of(ns.messages, "WATCHDOG")
        tap.ok(ready is not None and pings is None, "%s: READY=1, no WATCHDOG=1 %s" % (
            label, why), ns.dump())
        proc.stop()
    finally:
        ns.close()


env = tasker_env.Env("97-sdnotify", deadline=150, tap=tap)
try:
    env.start()
except (tasker_env.EnvError, pg.ClusterError) as e:
    tap.ok(False, "database and migrations", e)
    tap.done()


def start_taskerd(extra):
    return env.taskerd(env=extra)


def start_worker(extra):
    return env.worker(env=extra)


msgs = check_daemon(env, "taskerd", start_taskerd, re.compile(r"shut"))
if msgs:
    tap.ok(index_of(msgs, "STATUS") is not None and
           index_of(msgs, "STATUS") < index_of(msgs, "READY"),
           "taskerd: a STATUS= line while it starts, before READY=1",
           "\n".join(repr(t) for _, _, t in msgs[:5]))
    status = msgs[index_of(msgs, "READY")][1]["STATUS"]
    m = re.search(r"127\.0\.0\.1:0 \(port (\d+)\)", status)
    tap.ok(m is not None and int(m.group(1)) > 0,
           "taskerd: READY's STATUS= names the listener and its port", status)
check_daemon(env, "tasker-worker", start_worker, re.compile(r"stopping"))
check_no_watchdog(env, "taskerd", start_taskerd, {}, "without WATCHDOG_USEC")
check_no_watchdog(env, "tasker-worker", start_worker,
                  {"WATCHDOG_USEC": str(WATCHDOG_USEC), "WATCHDOG_PID": "1"},
                  "when WATCHDOG_PID names another process")

env.close()
tap.done()
