#!/usr/bin/python3
"""Configuration reload on SIGHUP (trpc_server_reload through
interop-server --config): a new TLS certificate reaches new connections
while an open connection keeps working; a broken certificate, a key that
does not match and an unparsable file are rejected with a log line and the
old settings stay; the log level, rate limits and restart-only keys
(logged once each with old and new values, "restart to apply") are
handled.

Then taskerd and tasker-worker (private PostgreSQL, t/lib/tasker_env.py):
SIGHUP re-reads their file and swaps the [auth] API keys; a broken file
leaves them as they were. taskerd also applies new [backpressure]
thresholds (seen in the queue_depth check of CheckDetailedHealth: the
tier of a queue holding 3 messages and the thresholds in force), and
keeps them when the new ones are out of order or not numbers. In both,
each changed key that needs a restart ([database], [worker], keepalive)
is logged once with its old and new values, a database password masked,
and none that is applied; and a file whose [auth] is valid but whose
log.file the runtime refuses leaves the old [auth] in force, never
applied in between. Prints TAP.
"""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402

tap, grpc = harness.grpc_test()

TMP = tempfile.mkdtemp(prefix="tasker-99-reload-")
IDENT = dict(request_serializer=None, response_deserializer=None)
MKCERTS = os.path.join(harness.TOP_SRCDIR, "t", "lib", "mkcerts.sh")
A, B = os.path.join(TMP, "a"), os.path.join(TMP, "b")
for d in (A, B):
    subprocess.run(["sh", MKCERTS, d], check=True, timeout=60)
CUR_PEM, CUR_KEY = os.path.join(TMP, "cur.pem"), os.path.join(TMP, "cur.key")
CONF = os.path.join(TMP, "server.conf")


def read(path):
    with open(path, "rb") as f:
        return f.read()


def install(pem_dir, key_dir):
    """Replaces the served files by rename, as an operator's tooling would."""
    for src, dst in ((os.path.join(pem_dir, "server.pem"), CUR_PEM),
                     (os.path.join(key_dir, "server.key"), CUR_KEY)):
        shutil.copy(src, dst + ".new")
        os.replace(dst + ".new", dst)


def write_conf(extra="", level="info", io_threads=1):
    with open(CONF, "w") as f:
        f.write("[server]\nio_threads = %d\n\n[tls]\ncert_file = %s\nkey_file = %s\n\n"
                "[log]\nlevel = %s\n%s" % (io_threads, CUR_PEM, CUR_KEY, level, extra))


def der_of(pem_dir):
    return ssl.PEM_cert_to_DER_cert(read(os.path.join(pem_dir, "server.pem")).decode())


def peer_cert(port):
    """The certificate a brand-new TLS connection is given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            return s.getpeercert(binary_form=True)


def channel(port, ca_dir):
    creds = grpc.ssl_channel_credentials(root_certificates=read(os.path.join(ca_dir, "ca.pem")))
    return grpc.secure_channel("127.0.0.1:%d" % port, creds,
                               options=[("grpc.ssl_target_name_override", "localhost")])


def empty_call(ch):
    ch.unary_unary("/grpc.testing.TestService/EmptyCall", **IDENT)(b"", timeout=10)


def health(ch):
    return ch.unary_unary("/grpc.health.v1.Health/Check", **IDENT)(b"", timeout=10)


def count(srv, text):
    return srv.log().count(text)


def hup_and_wait(srv, text, n_before, timeout=10):
    """SIGHUP, then waits for one more log line containing text."""
    srv.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if count(srv, text) > n_before:
            return True
        time.sleep(0.05)
    return False


install(A, A)
write_conf()
srv = harness.start_server("interop-server", ["--port", "0", "--use_tls", "--config", CONF],
                           want_tls=True)
port = srv.tls_port
tap.ok(peer_cert(port) == der_of(A), "at start a new connection is given certificate A")
old = channel(port, A)
tap.check("a connection trusting A works", lambda: empty_call(old))

# ---------------------------------------------------------------- swap to B
install(B, B)
write_conf(io_threads=2, extra="\n[ratelimit]\nenabled = true\n"
           "services = grpc.health.v1.Health=1/1, grpc.testing.TestService=0\n")
n = count(srv, "reload: applied")
tap.ok(hup_and_wait(srv, "reload: applied", n), "SIGHUP applies the new configuration",
       srv.log())
tap.ok(peer_cert(port) == der_of(B), "after SIGHUP a new connection is given certificate B")
new = channel(port, B)
tap.check("a new connection trusting B works", lambda: empty_call(new))
tap.check("the connection opened before the reload still works",
          lambda: [empty_call(old) for _ in range(3)] and None)
restart_lines = [line for line in srv.log().splitlines() if "restart to apply" in line]
tap.ok(len(restart_lines) == 1 and
       'reload: server.io_threads changed from "1" to "2"; restart to apply' in restart_lines[0],
       "a restart-only key is logged once with its old and new values; the reloaded "
       "certificate and rate limits are not", restart_lines)

health(new)
try:
    health(new)
    tap.ok(False, "the reloaded rate limit applies")
except grpc.RpcError as e:
    md = dict(e.trailing_metadata() or ())
    tap.ok(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "retry-after" in md,
           "the reloaded rate limit applies", "%s %s" % (e.code(), md))

# ---------------------------------------------------------------- rejections
REJ = "reload rejected"
install(A, B)  # certificate A with key B
n = count(srv, REJ)
tap.ok(hup_and_wait(srv, REJ, n) and "mismatch" in srv.log().split(REJ)[-1],
       "a key that does not match the certificate is rejected with a reason", srv.log())
tap.ok(peer_cert(port) == der_of(B), "... and certificate B is still served")

os.unlink(CUR_PEM)
n = count(srv, REJ)
tap.ok(hup_and_wait(srv, REJ, n) and "cannot load certificate" in srv.log(),
       "an unreadable certificate is rejected with a reason", srv.log())
tap.ok(peer_cert(port) == der_of(B), "... and certificate B is still served")
install(B, B)

with open(CONF, "a") as f:
    f.write("[tls\n")
n = count(srv, REJ)
tap.ok(hup_and_wait(srv, REJ, n) and CONF + ":" in srv.log(),
       "an unparsable file is rejected naming the file and line", srv.log())
write_conf(extra="[limits]\nmax_recv_message_size = lots\n")
n = count(srv, REJ)
tap.ok(hup_and_wait(srv, REJ, n) and "max_recv_message_size" in srv.log().split(REJ)[-1],
       "a bad value is rejected naming the key", srv.log())
tap.check("the server keeps serving on old and new connections",
          lambda: [empty_call(c) for c in (old, new)] and None)

# ---------------------------------------------------------------- log level
write_conf(level="error")
n = count(srv, REJ)
# "received SIGHUP" is logged at the old level, before the new config is read.
tap.ok(hup_and_wait(srv, "received SIGHUP", count(srv, "received SIGHUP")),
       "SIGHUP with log.level = error", srv.log())
time.sleep(0.5)
tap.ok(count(srv, REJ) == n, "a valid config is not rejected", srv.log())
hups = count(srv, "received SIGHUP")
write_conf(level="error", extra="[limits]\nmax_recv_message_size = lots\n")
n = count(srv, REJ)
tap.ok(hup_and_wait(srv, REJ, n), "errors are still logged at level error", srv.log())
tap.ok(count(srv, "received SIGHUP") == hups, "info lines are gone after log.level = error",
       srv.log())

old.close()
new.close()
tap.ok(srv.stop() == 0, "the server exits cleanly", srv.log())


# ---------------------------------------------------------------- taskerd
SECRET = "s3cret-PW-7781"


def hup_lines(p, regexes, timeout=10):
    """SIGHUP to a tasker_env process, then waits until each regex matches
    a line logged since, and a little longer for any further line of the
    same reload. Returns the lines logged since the signal, or None."""
    start = len(p.log().split("\n"))
    p.signal(signal.SIGHUP)
    rxs = [re.compile(r) for r in regexes]
    deadline = time.time() + timeout
    while time.time() < deadline:
        lines = p.log().split("\n")[start:]
        if all(any(rx.search(x) for x in lines) for rx in rxs):
            time.sleep(0.5)
            return p.log().split("\n")[start:]
        time.sleep(0.05)
    return None


def restart_lines(lines):
    return [x for x in lines if "restart to apply" in x]


def taskerd_part():
    try:
        import pg
        import tasker_env
        harness.program("taskerd")
    except (ImportError, FileNotFoundError):
        return "taskerd missing"
    if not pg.available():
        return "the PostgreSQL server programs are not installed"
    env = tasker_env.Env("99-reload", deadline=100, tap=tap)
    env.start()
    conf = os.path.join(env.tmp, "taskerd-reload.conf")

    def write(key, extra="", database="pool_size = 5\n"):
        with open(conf, "w") as f:
            f.write("[database]\n%s\n[auth]\nenabled = true\napi_keys_enabled = true\n\n"
                    "[auth.api_key.ops]\nkey = %s\npermissions = templates:read\n%s"
                    % (database, key, extra))

    write("first-key-0123456789")
    d = env.taskerd("--config=" + conf)
    ch = grpc.insecure_channel("127.0.0.1:%d" % d.port)
    lt = ch.unary_unary("/tasker.v1.TemplateService/ListTemplates", **IDENT)

    def call(key):
        try:
            lt(b"", metadata=[("x-api-key", key)], timeout=10)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name

    tap.ok(call("first-key-0123456789") == "OK", "taskerd: the configured key works")

    def hup(regex):
        d.signal(signal.SIGHUP)
        return d.wait_line(regex, 10) is not None

    write("second-key-0123456789")
    tap.ok(hup(r"reload: applied"), "taskerd: SIGHUP applies the new file", d.log(10))
    tap.ok(call("second-key-0123456789") == "OK" and
           call("first-key-0123456789") == "UNAUTHENTICATED",
           "taskerd: the new API key works, the old one is refused")
    write("third-key-0123456789", "\n[limits]\nmax_recv_message_size = lots\n")
    tap.ok(hup(r"reload rejected.*max_recv_message_size"),
           "taskerd: a bad value is rejected with a log line", d.log(10))
    tap.ok(call("second-key-0123456789") == "OK" and
           call("third-key-0123456789") == "UNAUTHENTICATED",
           "taskerd: ... and the keys in force stay")

    # [backpressure]: a queue of 3 messages is the deepest; CheckDetailedHealth
    # (public) names its tier and the thresholds in force.
    env.sql("SELECT pgmq.create('reload_bp_probe'); "
            "SELECT pgmq.send('reload_bp_probe', '{}'::jsonb) FROM generate_series(1, 3)")
    detailed = ch.unary_unary("/tasker.v1.HealthService/CheckDetailedHealth", **IDENT)
    depth_rx = re.compile(rb"(normal|warning|critical|overflow): deepest queue reload_bp_probe holds 3 messages "
                          rb"\(warning (\d+), critical (\d+), overflow (\d+)\)")

    def queue_depth():
        """(tier, warning, critical, overflow) once the probe queue is read (the
        depth is cached for a second), or None."""
        deadline = time.time() + 10
        while time.time() < deadline:
            m = depth_rx.search(detailed(b"", timeout=10))
            if m:
                return (m.group(1).decode(),) + tuple(int(g) for g in m.groups()[1:])
            time.sleep(0.2)
        return None

    bp = queue_depth()
    tap.ok(bp == ("normal", 1000, 5000, 10000),
           "taskerd: at start the default thresholds are in force", bp)
    write("second-key-0123456789", "\n[backpressure]\nwarning_depth = 1\n"
          "critical_depth = 3\noverflow_depth = 4\n")
    tap.ok(hup(r"reload: backpressure warning_depth 1, critical_depth 3, overflow_depth 4"),
           "taskerd: SIGHUP applies lower backpressure thresholds", d.log(10))
    bp = queue_depth()
    tap.ok(bp == ("critical", 1, 3, 4),
           "taskerd: ... and the same queue is now at the critical tier", bp)
    write("second-key-0123456789", "\n[backpressure]\nwarning_depth = 5\n"
          "critical_depth = 3\noverflow_depth = 4\n")
    tap.ok(hup(r"reload rejected.*warning_depth < critical_depth"),
           "taskerd: thresholds out of order are rejected naming the keys", d.log(10))
    write("second-key-0123456789", "\n[backpressure]\nwarning_depth = 1\n"
          "critical_depth = lots\noverflow_depth = 4\n")
    tap.ok(hup(r"reload rejected.*critical_depth.*lots.*not an integer"),
           "taskerd: a threshold that is not a number is rejected naming the key",
           d.log(10))
    bp = queue_depth()
    tap.ok(bp == ("critical", 1, 3, 4) and call("second-key-0123456789") == "OK",
           "taskerd: ... and the thresholds and keys in force stay", bp)

    # Keys that need a restart, one of them a secret, next to reloaded ones
    # ([auth], [backpressure]) and one the command line overrides.
    write("fourth-key-0123456789",
          "\n[backpressure]\nwarning_depth = 2\ncritical_depth = 3\noverflow_depth = 4\n"
          "\n[keepalive]\ntimeout = 45s\n\n[orchestration]\npoll_interval_ms = 999\n",
          database="pool_size = 7\nurl = postgresql://tasker:%s@127.0.0.1:1/nodb\n" % SECRET)
    lines = hup_lines(d, [r'reload: keepalive\.timeout changed from "20s" to "45s"; '
                          r"restart to apply$",
                          r'reload: database\.pool_size changed from "5" to "7"; '
                          r"restart to apply$",
                          r'reload: database\.url changed from "[^"]*" to '
                          r'"postgresql://tasker:\*\*\*\*@127\.0\.0\.1:1/nodb"; restart to apply$'])
    tap.ok(lines is not None and len(restart_lines(lines)) == 3,
           "taskerd: one line per key that needs a restart, with its old and new values; "
           "none for the reloaded [auth] and [backpressure] or the overridden key",
           lines if lines is None else restart_lines(lines))
    tap.ok(SECRET not in d.log(), "taskerd: the password of the database URL is not logged")
    tap.ok(call("fourth-key-0123456789") == "OK",
           "taskerd: ... and the reloadable keys of that file are applied")

    # Valid [auth], runtime settings the runtime refuses: nothing changes.
    write("fifth-key-0123456789",
          "\n[log]\nfile = %s\n" % os.path.join(env.tmp, "no-such-dir", "taskerd.log"))
    lines = hup_lines(d, [r"reload rejected.*log\.file"])
    tap.ok(lines is not None, "taskerd: a log.file that cannot be opened is rejected",
           d.log(10))
    tap.ok(lines is not None and not [x for x in lines if "authentication reloaded" in x] and
           call("fifth-key-0123456789") == "UNAUTHENTICATED" and
           call("fourth-key-0123456789") == "OK",
           "taskerd: ... and the valid new [auth] of that file never takes effect", lines)
    ch.close()

    # tasker-worker: the same, on its WorkerTemplateService
    wconf = os.path.join(env.tmp, "worker-reload.conf")

    def wwrite(key, extra="", worker="concurrency = 2\n"):
        with open(wconf, "w") as f:
            f.write("[worker]\n%s\n[auth]\nenabled = true\napi_keys_enabled = true\n\n"
                    "[auth.api_key.ops]\nkey = %s\npermissions = worker:templates_read\n%s"
                    % (worker, key, extra))

    wwrite("w-first-key-0123456789")
    w = env.worker("--config=" + wconf, "--worker.web_bind_address=127.0.0.1:0")
    m = w.wait_line(r"listening h2c 127\.0\.0\.1:(\d+)", 15)
    wch = grpc.insecure_channel("127.0.0.1:%d" % int(m.group(1)))
    wl = wch.unary_unary("/tasker.v1.WorkerTemplateService/ListTemplates", **IDENT)

    def wcall(key):
        try:
            wl(b"", metadata=[("x-api-key", key)], timeout=10)
            return "OK"
        except grpc.RpcError as e:
            return e.code().name

    tap.ok(wcall("w-first-key-0123456789") == "OK", "worker: the configured key works")
    wwrite("w-second-key-0123456789")
    w.signal(signal.SIGHUP)
    tap.ok(w.wait_line(r"reload: applied", 10) is not None, "worker: SIGHUP applies the file",
           w.log(10))
    tap.ok(wcall("w-second-key-0123456789") == "OK" and
           wcall("w-first-key-0123456789") == "UNAUTHENTICATED",
           "worker: the new API key works, the old one is refused", w.log(30))
    wwrite("w-third-key-0123456789", "\n[worker]\nconcurrency = many\n")
    w.signal(signal.SIGHUP)
    tap.ok(w.wait_line(r"reload rejected.*concurrency", 10) is not None,
           "worker: a bad value is rejected with a log line", w.log(10))
    tap.ok(wcall("w-second-key-0123456789") == "OK", "worker: ... and the keys in force stay")

    wwrite("w-fourth-key-0123456789",
           "\n[keepalive]\ntimeout = 45s\n\n[database]\n"
           "url = postgresql://tasker:%s@127.0.0.1:1/nodb\n" % SECRET,
           worker="concurrency = 3\n")
    lines = hup_lines(w, [r'reload: keepalive\.timeout changed from "20s" to "45s"; '
                          r"restart to apply$",
                          r'reload: worker\.concurrency changed from "2" to "3"; '
                          r"restart to apply$",
                          r'reload: database\.url changed from "[^"(]*" to '
                          r'"postgresql://tasker:\*\*\*\*@127\.0\.0\.1:1/nodb"; restart to apply$'])
    tap.ok(lines is not None and len(restart_lines(lines)) == 3,
           "worker: one line per key that needs a restart, with its old and new values; "
           "none for the reloaded [auth]",
           lines if lines is None else restart_lines(lines))
    tap.ok(SECRET not in w.log() and wcall("w-fourth-key-0123456789") == "OK",
           "worker: the password is not logged, and the new API key works")
    wwrite("w-fifth-key-0123456789",
           "\n[log]\nfile = %s\n" % os.path.join(env.tmp, "no-such-dir", "worker.log"))
    lines = hup_lines(w, [r"reload rejected.*log\.file"])
    tap.ok(lines is not None and not [x for x in lines if "authentication reloaded" in x] and
           wcall("w-fifth-key-0123456789") == "UNAUTHENTICATED" and
           wcall("w-fourth-key-0123456789") == "OK",
           "worker: a refused log.file leaves the valid new [auth] of that file out", lines)
    wch.close()
    env.close()
    return None


why = taskerd_part()
if why is not None:
    tap.ok(True, "# SKIP taskerd part: %s" % why)
shutil.rmtree(TMP, ignore_errors=True)
tap.done()
