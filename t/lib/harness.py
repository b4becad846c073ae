"""Shared helpers for the integration tests: TAP output, starting the
project's programs on 127.0.0.1 with ephemeral ports, and cleaning up.

Every program started here logs "listening h2c HOST:PORT" (and "listening
tls HOST:PORT") on stderr at start-up; start_server() waits for those lines
instead of guessing ports, so there is no race for a free port.
"""
import atexit
import os
import re
import signal
import subprocess
import sys
import threading
import time

TOP_SRCDIR = os.environ.get("TOP_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TOP_BUILDDIR = os.environ.get("TOP_BUILDDIR") or TOP_SRCDIR


class Tap:
    """Minimal TAP producer: plan at the end, 'not ok' with diagnostics."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        if cond:
            print("ok %d - %s" % (self.n, name), flush=True)
        else:
            self.failed += 1
            print("not ok %d - %s" % (self.n, name), flush=True)
            if diag is not None:
                for line in str(diag).splitlines():
                    print("#   " + line, flush=True)
        return cond

    def check(self, name, fn):
        """Runs fn(); passes if it returns without raising (or returns True)."""
        try:
            r = fn()
            return self.ok(r is None or r is True, name, None if r in (None, True) else r)
        except Exception as e:  # noqa: BLE001 - report every failure as a TAP line
            import traceback
            return self.ok(False, name, "%s: %s\n%s" % (type(e).__name__, e,
                                                        traceback.format_exc()))

    def case(self, title):
        """A decorator that runs a test case at once; an exception is one
        failed TAP line ("TITLE: ran to the end"), not the end of the test."""
        def wrap(fn):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - report and go on with the next case
                import traceback
                self.ok(False, "%s: ran to the end" % title,
                        "%s: %s\n%s" % (type(e).__name__, e, traceback.format_exc()))
            return fn
        return wrap

    def skip_all(self, why):
        print("1..0 # SKIP %s" % why, flush=True)
        sys.exit(0)

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)


def grpc_test():
    """The start of a test that drives python3-grpcio: returns (Tap, the
    grpc module); the whole test is skipped when grpcio is not installed."""
    tap = Tap()
    try:
        import grpc
    except ImportError:
        tap.skip_all("python3-grpcio is not installed")
    return tap, grpc


# ------------------------------------------------------------------ protobuf
# Hand-written encoding for the few grpc.testing messages the tests build.

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num, wire, payload):
    """One protobuf field: wire 0 (varint payload) or 2 (bytes payload)."""
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    return key + varint(len(payload)) + payload


def status_request(code, message=b"on request"):
    """SimpleRequest asking the interop server to end with (code, message)."""
    return field(7, 2, field(1, 0, code) + field(2, 2, message))


def program(name):
    """Path of a program built in the build tree."""
    for cand in (os.path.join(TOP_BUILDDIR, name),
                 os.path.join(TOP_BUILDDIR, "src", "cmd", name),
                 os.path.join(TOP_BUILDDIR, "contrib", "bench", name)):
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    raise FileNotFoundError("program %s not built under %s" % (name, TOP_BUILDDIR))


_procs = []


def _cleanup():
    for p in _procs:
        if p.poll() is None:
            p.kill()
            p.wait()


atexit.register(_cleanup)


class Server:
    """A started server: .port (h2c), .tls_port, .proc, .stderr_lines."""

    def __init__(self, proc):
        self.proc = proc
        self.port = None
        self.tls_port = None
        self.lines = []
        self._cv = threading.Condition()

    def _pump(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._cv:
                self.lines.append(line)
                m = re.search(r"listening (h2c|tls) \S+:(\d+)", line)
                if m:
                    if m.group(1) == "h2c" and self.port is None:
                        self.port = int(m.group(2))
                    elif m.group(1) == "tls" and self.tls_port is None:
                        self.tls_port = int(m.group(2))
                self._cv.notify_all()
            if os.environ.get("TASKER_TEST_VERBOSE"):
                sys.stderr.write("[server] " + line + "\n")
        with self._cv:
            self._cv.notify_all()

    def log(self):
        with self._cv:
            return "\n".join(self.lines)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stops the server; returns its exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return None
        return self.proc.returncode

    def alive(self):
        return self.proc.poll() is None


def spawn(path, args, env=None):
    """Starts the program at path (killed at exit) without waiting for it;
    its stderr is collected in the returned Server."""
    e = dict(os.environ)
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    if env:
        e.update(env)
    proc = subprocess.Popen([path] + list(args), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=e)
    _procs.append(proc)
    srv = Server(proc)
    threading.Thread(target=srv._pump, daemon=True).start()
    return srv


def start_server(name, args, want_tls=False, timeout=20, env=None):
    """Starts a program from the build tree and waits for its h2c listener
    (or, with want_tls, its TLS listener)."""
    srv = spawn(program(name), args, env)
    proc = srv.proc
    deadline = time.time() + timeout
    with srv._cv:
        while True:
            ready = srv.tls_port is not None if want_tls else srv.port is not None
            if ready:
                break
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("%s did not start:\n%s" % (name, "\n".join(srv.lines)))
            srv._cv.wait(0.2)
    return srv


def wait_for(fn, timeout=10, interval=0.05):
    """Polls fn() until it returns something true; returns that (or the
    last value after timeout seconds)."""
    deadline = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > deadline:
            return v
        time.sleep(interval)


def certs_dir():
    return os.path.join(TOP_SRCDIR, "t", "certs")


def grpc_go_peer(tap):
    """Builds (or finds cached) grpc-go's interop client and server with
    t/peers/build-grpc-go-interop.sh. Returns (bindir, testdata); on failure
    reports a failed TAP line and ends the test."""
    script = os.path.join(TOP_SRCDIR, "t", "peers", "build-grpc-go-interop.sh")
    build = subprocess.run(["bash", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=900)
    if build.returncode != 0:
        tap.ok(False, "grpc-go interop peers are built",
               build.stderr.decode("utf-8", "replace")[-2000:])
        tap.done()
    bindir = build.stdout.decode().strip().splitlines()[-1]
    return bindir, os.path.join(os.path.dirname(bindir), "testdata")
