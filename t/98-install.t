#!/usr/bin/python3
"""The operator's install path: `make install` and `make uninstall` with
DESTDIR from the build tree, and the files the packages are made of.

  - the layout: daemons in sbindir, no test peers installed, the library,
    header and pkg-config file, sample configuration in sysconfdir/tasker,
    example templates and the Grafana dashboard in datadir/tasker, manual
    pages, systemd units (with every @dir@ substituted);
  - configuration an operator changed is never overwritten by an install
    and never removed by an uninstall; `make uninstall` removes everything
    else (no file and no tasker directory left);
  - the units: Type=notify, watchdog, restart, user, sandbox, as
    systemd-analyze reads them (when it is installed);
  - contrib/grafana/tasker-dashboard.json: valid JSON whose every query
    names the Prometheus series the servers export (and no other);
  - contrib/logrotate/tasker (logrotate -d, when installed) and the
    packaging scripts (sh -n; rpmspec -P when rpm is installed).

Skipped when the build tree is not writable (make install writes the
generated files there).
"""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from harness import TOP_BUILDDIR, TOP_SRCDIR, Tap  # noqa: E402

tap = Tap()
if not os.path.isfile(os.path.join(TOP_BUILDDIR, "Makefile")):
    tap.skip_all("no Makefile in %s" % TOP_BUILDDIR)
if not os.access(TOP_BUILDDIR, os.W_OK):
    tap.skip_all("%s is not writable" % TOP_BUILDDIR)

MAKE = shutil.which(os.environ.get("MAKE") or "make") or "make"
tmp = tempfile.mkdtemp(prefix="tasker-98-install-")


def make_env():
    e = dict(os.environ)
    # Not part of an outer make's job server: the fds are not passed on.
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR"):
        e.pop(k, None)
    e["LC_ALL"] = "C"
    return e


def make(*args, timeout=900):
    r = subprocess.run([MAKE, "-C", TOP_BUILDDIR] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, env=make_env(), timeout=timeout)
    return r.returncode, r.stdout.decode("utf-8", "replace")


def make_var(name):
    """A variable of the build tree's Makefile, expanded."""
    r = subprocess.run([MAKE, "-s", "--no-print-directory", "-C", TOP_BUILDDIR, "-f", "Makefile",
                        "-f", "-", "print-tasker-var"],
                       input=("print-tasker-var:\n\t@echo '$(%s)'\n" % name).encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=make_env(),
                       timeout=60)
    return r.stdout.decode().strip()


def files_under(root):
    out = []
    for d, _, names in os.walk(root):
        out.extend(os.path.join(d, n) for n in names)
    return sorted(out)


def rel(path, root):
    return "/" + os.path.relpath(path, root)


DIRS = {v: make_var(v) for v in ("prefix", "bindir", "sbindir", "sysconfdir", "datadir",
                                 "libdir", "includedir", "mandir", "pkgdatadir",
                                 "systemdsystemunitdir", "srcdir")}
tap.ok(DIRS["sbindir"].startswith("/") and DIRS["sysconfdir"].startswith("/"),
       "installation directories from the Makefile", DIRS)
SRC_CONF = {n: os.path.join(TOP_SRCDIR, "etc", n) for n in ("taskerd.conf", "tasker-worker.conf")}
UNITS = ("taskerd.service", "tasker-worker.service")
units_installed = DIRS["systemdsystemunitdir"] not in ("", "no")


def at(root, d, *names):
    return os.path.join(root + DIRS[d], *names)


# ----------------------------------------------------------------- install
def check_layout(root):
    def exe(p):
        return os.path.isfile(p) and os.access(p, os.X_OK)

    tap.ok(exe(at(root, "sbindir", "taskerd")) and exe(at(root, "sbindir", "tasker-worker")),
           "taskerd and tasker-worker are installed in sbindir")
    peers = [p for p in ("interop-server", "interop-client")
             for d in ("bindir", "sbindir") if os.path.exists(at(root, d, p))]
    tap.ok(not peers, "the interop test peers are not installed", peers)
    if os.path.exists(os.path.join(TOP_BUILDDIR, "tasker-cli")):
        tap.ok(exe(at(root, "bindir", "tasker-cli")), "tasker-cli is installed in bindir")
    libs = glob.glob(at(root, "libdir", "libtasker-rpc.so*"))
    tap.ok(any(re.search(r"\.so\.\d+$", p) for p in libs), "libtasker-rpc is installed", libs)
    tap.ok(os.path.isfile(at(root, "libdir", "pkgconfig", "libtasker-rpc.pc")) and
           os.path.isfile(at(root, "includedir", "tasker", "rpc.h")) and
           os.path.isfile(at(root, "includedir", "tasker", "handler.h")),
           "headers and pkg-config file are installed")
    wanted = [os.path.relpath(p, os.path.join(TOP_SRCDIR, "etc", "templates"))
              for p in files_under(os.path.join(TOP_SRCDIR, "etc", "templates"))]
    missing = [w for w in wanted if not os.path.isfile(at(root, "pkgdatadir", "templates", w))]
    tap.ok(wanted and not missing, "every example template is installed under "
           "datadir/tasker/templates (%d)" % len(wanted), missing)
    tap.ok(os.path.isfile(at(root, "pkgdatadir", "grafana", "tasker-dashboard.json")),
           "the Grafana dashboard is installed")
    mans = [("man8", "taskerd.8"), ("man8", "tasker-worker.8"), ("man5", "taskerd.conf.5"),
            ("man1", "tasker-cli.1")]
    missing = [m for d, m in mans if not os.path.isfile(at(root, "mandir", d, m))]
    tap.ok(not missing, "manual pages are installed", missing)
    if units_installed:
        paths = [at(root, "systemdsystemunitdir", u) for u in UNITS]
        tap.ok(all(os.path.isfile(p) for p in paths), "systemd units are installed", paths)
        for p in paths:
            with open(p) as f:
                text = f.read()
            prog = os.path.basename(p).replace(".service", "")
            tap.ok(re.search(r"^ExecStart=%s$" % re.escape(os.path.join(DIRS["sbindir"], prog)),
                             text, re.M) and
                   re.search(r"^EnvironmentFile=-%s/default/%s$" % (
                       re.escape(DIRS["sysconfdir"]), prog), text, re.M) and
                   not re.search(r"@\w+@", text),
                   "%s: paths substituted (%s)" % (os.path.basename(p), DIRS["sbindir"]),
                   "\n".join(l for l in text.splitlines() if "/" in l and not l.startswith("#")))
    else:
        tap.ok(True, "systemd units # SKIP configured --with-systemdsystemunitdir=no")


root1 = os.path.join(tmp, "root1")
conf_dir = at(root1, "sysconfdir", "tasker")
os.makedirs(conf_dir)
operator_conf = "# the operator's own taskerd.conf\n[server]\nlisten = 127.0.0.1:9999\n"
with open(os.path.join(conf_dir, "taskerd.conf"), "w") as f:
    f.write(operator_conf)

rc, out = make("install", "DESTDIR=" + root1)
if not tap.ok(rc == 0, "make install DESTDIR=...", out[-3000:]):
    shutil.rmtree(tmp, True)
    tap.done()
check_layout(root1)
with open(os.path.join(conf_dir, "taskerd.conf")) as f:
    tap.ok(f.read() == operator_conf, "an existing taskerd.conf is not overwritten")
with open(os.path.join(conf_dir, "tasker-worker.conf")) as f, open(SRC_CONF["tasker-worker.conf"]) as g:
    tap.ok(f.read() == g.read(), "an absent tasker-worker.conf is installed from the sample")

rc, out = make("uninstall", "DESTDIR=" + root1)
tap.ok(rc == 0, "make uninstall DESTDIR=...", out[-3000:])
left = [rel(p, root1) for p in files_under(root1)]
tap.ok(left == [rel(os.path.join(conf_dir, "taskerd.conf"), root1)],
       "uninstall leaves only the operator's taskerd.conf", "\n".join(left))
# The configured directories and their parents may well be named after the
# package (distcheck's prefix is .../tasker-VERSION/_inst): not ours to remove.
bases = {os.path.normpath(root1 + DIRS[k]) for k in DIRS
         if k not in ("pkgdatadir", "srcdir") and DIRS[k].startswith("/")}
left_dirs = [rel(d, root1) for d, _, _ in os.walk(root1)
             if re.search(r"tasker", os.path.basename(d)) and d != conf_dir and
             not any(b == d or b.startswith(d + os.sep) for b in bases)]
tap.ok(not left_dirs, "uninstall removes the tasker directories", left_dirs)

# A second install over an installed, then edited, sample keeps the edit;
# uninstall removes the unedited sample and keeps the edited one.
root2 = os.path.join(tmp, "root2")
rc1, out1 = make("install", "DESTDIR=" + root2)
worker_conf = at(root2, "sysconfdir", "tasker", "tasker-worker.conf")
if os.path.isfile(worker_conf):
    with open(worker_conf, "a") as f:
        f.write("[worker]\nconcurrency = 4\n")
rc2, out2 = make("install", "DESTDIR=" + root2)
tap.ok(rc1 == 0 and rc2 == 0, "install twice", (out1 + out2)[-3000:])
with open(worker_conf) as f:
    tap.ok(f.read().endswith("concurrency = 4\n"), "a reinstall keeps an edited sample")
rc, out = make("uninstall", "DESTDIR=" + root2)
left = [rel(p, root2) for p in files_under(root2)]
tap.ok(rc == 0 and left == [rel(worker_conf, root2)],
       "uninstall keeps the edited tasker-worker.conf, removes the rest", "\n".join(left))

# ----------------------------------------------------------------- units
UNIT_MUST = [r"^Type=notify$", r"^User=tasker$", r"^Restart=on-failure$", r"^WatchdogSec=\d+",
             r"^EnvironmentFile=-/", r"^ProtectSystem=strict$", r"^ProtectHome=yes$",
             r"^PrivateTmp=yes$", r"^NoNewPrivileges=yes$", r"^PrivateDevices=yes$",
             r"^ProtectKernelTunables=yes$", r"^ProtectKernelModules=yes$",
             r"^ProtectKernelLogs=yes$", r"^ProtectControlGroups=yes$",
             r"^RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX$",
             r"^SystemCallFilter=@system-service$", r"^CapabilityBoundingSet=$",
             r"^LimitNOFILE=\d{5,}$", r"^WantedBy=multi-user.target$"]
ANALYZE = shutil.which("systemd-analyze")
for unit in UNITS:
    path = os.path.join(TOP_BUILDDIR, "contrib", "systemd", unit)
    if not tap.ok(os.path.isfile(path), "%s is generated" % unit):
        continue
    with open(path) as f:
        text = f.read()
    missing = [m for m in UNIT_MUST if not re.search(m, text, re.M)]
    tap.ok(not missing, "%s: notify, watchdog, restart, user and sandbox settings" % unit,
           missing)
    if ANALYZE is None:
        tap.ok(True, "%s: systemd-analyze verify # SKIP not installed" % unit)
        continue
    # verify checks that ExecStart= exists: point it at the built program.
    prog = unit.replace(".service", "")
    copy = os.path.join(tmp, unit)
    with open(copy, "w") as f:
        f.write(re.sub(r"^ExecStart=\S+", "ExecStart=" + os.path.join(TOP_BUILDDIR, prog), text,
                       flags=re.M))
    r = subprocess.run([ANALYZE, "verify", "--man=no", copy], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    msg = r.stdout.decode("utf-8", "replace")
    # Outside a booted systemd only the unit itself can be judged.
    noise = re.compile(r"(?i)bus|/proc|not been booted|No such file or directory.*(dbus|run)")
    real = [l for l in msg.splitlines() if l.strip() and not noise.search(l)]
    tap.ok(not real, "%s: systemd-analyze verify finds nothing" % unit, msg)
    # Exposure 0 (sandboxed) to 10 (nothing); --threshold is in tenths.
    r = subprocess.run([ANALYZE, "security", "--offline=yes", "--threshold=20", copy],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    msg = r.stdout.decode("utf-8", "replace")
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", msg)
    tap.ok(r.returncode == 0 and level is not None,
           "%s: systemd-analyze security exposure at most 2.0 (%s)" % (
               unit, level.group(1) if level else "?"), msg[-3000:])

# ----------------------------------------------------------------- dashboard
SERIES = {
    "grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total",
    "grpc_server_msg_sent_total", "grpc_server_handling_seconds_bucket",
    "grpc_server_handling_seconds_sum", "grpc_server_handling_seconds_count",
    "tasker_connections_open", "tasker_streams_active", "tasker_pool_queue_depth",
    "tasker_pool_busy_threads", "tasker_backpressure_active", "tasker_keepalive_goaways_total",
    "tasker_tls_handshakes_total", "tasker_tls_handshake_failures_total",
    "tasker_db_pool_connections", "tasker_db_pool_acquire_seconds", "tasker_queue_depth",
}
try:
    with open(os.path.join(TOP_SRCDIR, "contrib", "grafana", "tasker-dashboard.json")) as f:
        dash = json.load(f)
    tap.ok(isinstance(dash.get("panels"), list) and dash.get("title"),
           "the dashboard is valid JSON with panels")
except (OSError, ValueError) as e:
    tap.ok(False, "the dashboard is valid JSON with panels", e)
    dash = {}


def queries(node):
    """Every "expr" of a target and every variable query, recursively."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                yield v
            elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                yield v["query"]
            else:
                yield from queries(v)
    elif isinstance(node, list):
        for v in node:
            yield from queries(v)


exprs = list(queries(dash))
bad = [e for e in exprs if not any(re.search(r"\b%s\b" % s, e) for s in SERIES)]
tap.ok(len(exprs) >= 10 and not bad, "every dashboard query names a tasker series (%d)"
       % len(exprs), "\n".join(bad))
LABELS = {"grpc_type", "grpc_service", "grpc_method", "grpc_code"}
unknown = sorted({m for e in exprs for m in re.findall(r"\b(?:grpc|tasker)_[a-z_]+\b", e)}
                 - SERIES - LABELS)
tap.ok(not unknown, "the dashboard names no other series", unknown)
used = {s for s in SERIES for e in exprs if re.search(r"\b%s\b" % s, e)}
tap.ok(used == SERIES, "the dashboard shows every series", sorted(SERIES - used))
ids = [p.get("id") for p in dash.get("panels", [])]
tap.ok(len(ids) == len(set(ids)), "panel ids are unique")

# ----------------------------------------------------------------- logrotate, scripts
LOGROTATE = shutil.which("logrotate") or ("/usr/sbin/logrotate"
                                          if os.path.exists("/usr/sbin/logrotate") else None)
lr_src = os.path.join(TOP_SRCDIR, "contrib", "logrotate", "tasker")
if LOGROTATE is None:
    tap.ok(True, "logrotate -d accepts contrib/logrotate/tasker # SKIP logrotate not installed")
else:
    # The tasker user need not exist here: check the syntax as root.
    with open(lr_src) as f:
        conf = f.read().replace("tasker tasker", "root root").replace(
            "/var/log/tasker", os.path.join(tmp, "log"))
    lr = os.path.join(tmp, "logrotate.conf")
    with open(lr, "w") as f:
        f.write(conf)
    r = subprocess.run([LOGROTATE, "-d", "-s", os.path.join(tmp, "lr.state"), lr],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    text = r.stdout.decode("utf-8", "replace")
    tap.ok(r.returncode == 0 and "error" not in text.lower(),
           "logrotate -d accepts contrib/logrotate/tasker", text)

for script, shell in (("contrib/debian/build-deb.sh", "sh"), ("contrib/debian/tasker.postinst", "sh"),
                      ("contrib/debian/tasker.postrm", "sh")):
    r = subprocess.run([shell, "-n", os.path.join(TOP_SRCDIR, script)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=30)
    tap.ok(r.returncode == 0, "%s: %s -n" % (script, shell), r.stdout.decode())

RPMSPEC = shutil.which("rpmspec")
spec = os.path.join(TOP_SRCDIR, "contrib", "rpm", "tasker.spec")
if RPMSPEC is None:
    tap.ok(os.path.isfile(spec), "contrib/rpm/tasker.spec exists # SKIP rpmspec not installed")
else:
    r = subprocess.run([RPMSPEC, "-P", spec], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    tap.ok(r.returncode == 0, "rpmspec -P parses contrib/rpm/tasker.spec",
           r.stdout.decode("utf-8", "replace")[-2000:])

shutil.rmtree(tmp, True)
tap.done()
