#!/usr/bin/python3
"""tasker-cli (src/cli): the command line, profiles, both transports.

Part A needs no tasker server:
  1. --help for every command and group; the exit codes are documented
  2. usage errors exit 2 before any request is made
  3. profiles: file search order, [profile.default] + the selected profile,
     environment and option precedence, credentials, masking, errors that
     name the file, the line and the key
  4. an unreachable server exits 6 on both transports
  5. auth generate-keys / generate-token / validate-token round trip
  6. the REST transport against a recording HTTP server in this script:
     routes, bodies (§2.1 TaskRequest, step PATCH, DLQ PATCH), headers,
     error mapping, Retry-After, table and JSON output
  7. the gRPC transport against a python3-grpcio server in this script:
     request messages, credentials metadata, status mapping, proto3 JSON
     output, the StreamTaskStatus watch
Part B runs taskerd and tasker-worker on a private PostgreSQL cluster
(auth on, keys made by tasker-cli) and drives them with tasker-cli over
gRPC and over REST: a diamond task created, watched to completion and
inspected, a cancel, a failing task completed by hand, DLQ, templates,
health, config and analytics, with --format json parsed throughout.

Every wait is bounded; the file gives up after 170 s. Prints TAP.
"""
import atexit
import base64
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(HERE, "lib"))
import harness  # noqa: E402
import pg  # noqa: E402
import tasker_env  # noqa: E402

tap = harness.Tap()
try:
    CLI = harness.program("tasker-cli")
except FileNotFoundError:
    tap.skip_all("tasker-cli is not built")

TMP = tempfile.mkdtemp(prefix="tasker-cli-")
atexit.register(lambda: os.environ.get("TASKER_TEST_KEEP") or shutil.rmtree(TMP, True))
HOME = os.path.join(TMP, "home")
CWD = os.path.join(TMP, "cwd")
os.makedirs(HOME)
os.makedirs(CWD)
UUID = "0190f1a2-7b3c-7d4e-8f90-123456789abc"
STEP = "0190f1a2-7b3c-7d4e-8f90-cba987654321"

WATCHDOG = threading.Timer(170, lambda: (print("Bail out! 103-cli: timed out after 170 s",
                                               flush=True), os._exit(1)))
WATCHDOG.daemon = True
WATCHDOG.start()


def base_env(extra=None):
    """The environment of a run: nothing of the caller's TASKER_* settings,
    HOME at an empty directory, no XDG_CONFIG_HOME."""
    e = {k: v for k, v in os.environ.items()
         if not (k.startswith("TASKER_") and not k.startswith("TASKER_TEST_"))
         and k != "XDG_CONFIG_HOME"}
    e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    e["HOME"] = HOME
    for k, v in (extra or {}).items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


class Run:
    def __init__(self, argv, rc, out, err, secs):
        self.argv, self.rc, self.out, self.err, self.secs = argv, rc, out, err, secs

    def json(self):
        return json.loads(self.out)

    def lines(self):
        return [json.loads(x) for x in self.out.splitlines() if x.strip()]

    def diag(self):
        return "argv: %s\nexit %s after %.1f s\nstdout: %s\nstderr: %s" % (
            " ".join(self.argv), self.rc, self.secs, self.out[-3000:], self.err[-3000:])


def cli(*args, env=None, cwd=CWD, stdin=None, timeout=60):
    argv = [CLI] + [str(a) for a in args]
    t0 = time.time()
    try:
        r = subprocess.run(argv, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           env=base_env(env), cwd=cwd, timeout=timeout, text=True)
    except subprocess.TimeoutExpired as e:
        return Run(argv, None, (e.stdout or b"").decode() if isinstance(e.stdout, bytes)
                   else (e.stdout or ""), "timed out", time.time() - t0)
    return Run(argv, r.returncode, r.stdout, r.stderr, time.time() - t0)


case = tap.case


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def free_port():
    """A port nothing listens on (bound, then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def json_ok(r):
    try:
        return r.rc == 0 and r.json() is not None
    except ValueError:
        return False


COMMANDS = {
    "task": ["create", "get", "list", "cancel", "steps", "step", "reset-step", "resolve-step",
             "complete-step", "step-audit", "watch"],
    "dlq": ["list", "get", "update", "stats"],
    "template": ["list", "get"],
    "system": ["health", "config"],
    "analytics": ["performance", "bottlenecks"],
    "auth": ["generate-keys", "generate-token", "validate-token"],
    "profile": ["list", "show"],
}
DEAD_URL = "http://127.0.0.1:%d" % free_port()


# ================================================================ part A
# ---------------------------------------------------------------- 1. help
@case("help")
def help_():
    r = cli("--help")
    tap.ok(r.rc == 0 and r.out.startswith("Usage: tasker-cli"), "--help exits 0 with usage",
           r.diag())
    listed = set(re.findall(r"^  ([a-z]+) ([a-z-]+)  ", r.out, re.M))
    want = {(g, c) for g, cmds in COMMANDS.items() for c in cmds}
    tap.ok(want <= listed, "--help lists every command", sorted(want - listed))
    codes = re.findall(r"^  ([0-7])  ", r.out, re.M)
    tap.ok(codes == [str(i) for i in range(8)], "--help documents exit codes 0 to 7", r.out)
    bad = []
    for g, cmds in COMMANDS.items():
        gr = cli(g, "--help")
        if gr.rc != 0 or any(not re.search(r"^  %s  " % re.escape(c), gr.out, re.M)
                             for c in cmds):
            bad.append(gr.diag())
        for c in cmds:
            cr = cli(g, c, "--help")
            if cr.rc != 0 or not cr.out.startswith("Usage: tasker-cli [GLOBAL OPTIONS] %s %s"
                                                   % (g, c)) \
                    or "Exit status" not in cr.out or "--format" not in cr.out:
                bad.append(cr.diag())
    tap.ok(not bad, "GROUP --help and GROUP COMMAND --help for all %d commands"
           % len(want), "\n".join(bad))
    r = cli("task", "watch", "--help")
    tap.ok(r.rc == 0 and "GET /v1/tasks/<uuid>" in r.out and "--interval" in r.out
           and "StreamTaskStatus" in r.out,
           "task watch --help explains the REST polling", r.diag())
    r = cli("-h", "task", "get")
    tap.ok(r.rc == 0 and "task get" in r.out, "-h before the command", r.diag())
    r = cli("task", "get", "x", "--url", DEAD_URL, "-h")
    tap.ok(r.rc == 0 and "task get" in r.out, "--help after arguments wins (no request)",
           r.diag())
    r = cli("--version")
    tap.ok(r.rc == 0 and r.out.startswith("tasker-cli "), "--version", r.diag())


# ---------------------------------------------------------------- 2. usage
@case("usage")
def usage():
    cases = [
        [], ["nogroup"], ["task"], ["task", "nocmd"], ["task", "get"],
        ["task", "get", "a", "b"], ["task", "create"],
        ["task", "create", "--name", "x", "--priority", "high"],
        ["task", "create", "--name", "x", "--priority", "1000"],
        ["task", "create", "--name", "x", "--input", "{bad"],
        ["task", "create", "--name", "x", "--input", "[1, 2]"],
        ["task", "create", "--name", "x", "--input", "@/nonexistent/file.json"],
        ["task", "list", "--status", "bogus"], ["task", "list", "--bogus"],
        ["task", "list", "--limit"], ["task", "list", "--limit", "0"],
        ["--format", "xml", "task", "list"], ["task", "list", "--transport", "carrier"],
        ["task", "complete-step", UUID, STEP, "--reason", "r"],
        ["task", "complete-step", UUID, STEP, "--reason", "r", "--result", "3"],
        ["task", "reset-step", UUID, STEP], ["task", "resolve-step", UUID, STEP],
        ["task", "watch", UUID, "--interval", "5"], ["task", "get", UUID, "--steps=yes"],
        ["dlq", "list", "--status", "bogus"], ["dlq", "update", UUID, "--metadata", "x"],
        ["system", "health", "--ready", "--live"],
        ["template", "get", "ns", "name"],
        ["auth", "generate-token"], ["auth", "generate-keys", "--key-size", "1024"],
        ["auth", "validate-token"],
        ["--timeout", "soon", "task", "list"],
    ]
    bad = []
    for argv in cases:
        r = cli("--url", DEAD_URL, *argv)
        if r.rc != 2 or "tasker-cli" not in r.err:
            bad.append(r.diag())
    tap.ok(not bad, "%d bad command lines exit 2 (no request made)" % len(cases),
           "\n\n".join(bad))
    r = cli("task", "create", "--name", "x", "--input", "{bad", "--url", DEAD_URL)
    tap.ok("--input" in r.err and "JSON" in r.err, "a bad --input says what is wrong", r.diag())
    r = cli("task", "list", "--bogus", "--url", DEAD_URL)
    tap.ok("unknown option '--bogus'" in r.err and "task list --help" in r.err,
           "an unknown option is named, with a hint at --help", r.diag())


# ---------------------------------------------------------------- 3. profiles
def show(*args, env=None, cwd=CWD):
    r = cli("--format", "json", "profile", "show", *args, env=env, cwd=cwd)
    return r, (r.json() if r.rc == 0 else None)


def setting(j, key):
    s = j["settings"][key]
    return s["value"], s["source"]


PROFILES = """\
# a comment
[profile.default]
transport = grpc
orchestration_url = http://default.example:9090
timeout_ms = 1500
api_key = default-api-key-0123456789

[profile.staging]
transport = rest
orchestration_url = http://staging.example:8080
worker_url = http://staging-worker.example:8081
max_retries = 1
token = staging-token-abcdefghijklmnopqrstuvwxyz
  -continued-0123
description = the staging
  cluster

[profile.empty]
"""


@case("profiles")
def profiles():
    conf = write(os.path.join(TMP, "client.conf"), PROFILES)
    r, j = show("--config", conf)
    tap.ok(j is not None and j["name"] == "default" and j["file"] == conf
           and setting(j, "transport") == ("grpc", conf + ":3")
           and setting(j, "timeout_ms") == ("1500", conf + ":5")
           and setting(j, "max_retries") == ("3", "default")
           and setting(j, "api_key_header") == ("X-API-Key", "default"),
           "[profile.default] over the built-in defaults, sources named FILE:LINE", r.diag())
    r, j = show("-c", conf, "-p", "staging")
    tap.ok(j is not None and j["name"] == "staging"
           and setting(j, "transport") == ("rest", conf + ":9")
           and setting(j, "orchestration_url") == ("http://staging.example:8080",
                                                   conf + ":10")
           and setting(j, "timeout_ms") == ("1500", conf + ":5")
           and setting(j, "description")[0] == "the staging cluster",
           "the selected profile over [profile.default]; continued lines joined", r.diag())
    tap.ok(j is not None and j["auth"]["orchestration"]["method"] == "bearer token"
           and j["auth"]["orchestration"]["source"] == conf + ":13",
           "the selected profile's token replaces the default's api key", r.diag())
    r2, j2 = show("-c", conf, env={"TASKER_CLIENT_PROFILE": "staging"})
    r3, j3 = show("-c", conf, "-p", "default", env={"TASKER_CLIENT_PROFILE": "staging"})
    tap.ok(j2 is not None and j2["name"] == "staging" and j3 is not None
           and j3["name"] == "default",
           "TASKER_CLIENT_PROFILE selects, -p wins over it", r2.diag() + "\n" + r3.diag())
    r, j = show("staging", "-c", conf)
    tap.ok(j is not None and j["name"] == "staging", "profile show NAME", r.diag())
    r, j = show("-c", conf, "-p", "empty")
    tap.ok(j is not None and j["name"] == "empty"
           and setting(j, "transport") == ("grpc", conf + ":3"),
           "an empty profile section is a profile", r.diag())

    # secrets are masked, in both formats
    r = cli("-c", conf, "-p", "staging", "profile", "show")
    rj = cli("-c", conf, "-p", "staging", "--format", "json", "profile", "show")
    lst = cli("-c", conf, "--format", "json", "profile", "list")
    secrets = ("staging-token-abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnop",
               "default-api-key-0123456789", "api-key-0123")
    leaked = [s for s in secrets for x in (r.out, rj.out, lst.out, r.err) if s in x]
    tap.ok(r.rc == 0 and not leaked and "****0123" in r.out and "****6789" in r.out,
           "profile show masks api_key and token (last four characters kept)",
           "%s\nleaked: %s" % (r.diag(), leaked))
    tap.ok(lst.rc == 0 and [p["name"] for p in lst.json()["profiles"]]
           == ["default", "staging", "empty"]
           and [p["selected"] for p in lst.json()["profiles"]] == [True, False, False],
           "profile list --format json", lst.diag())
    r = cli("-c", conf, "-p", "staging", "profile", "list")
    tap.ok(r.rc == 0 and re.search(r"^\*\s+staging\s+rest\s+http://staging.example:8080\s+"
                                   r"the staging cluster$", r.out, re.M),
           "profile list marks the selected profile", r.diag())

    # environment over the file, options over the environment
    env = {"TASKER_CLIENT_TRANSPORT": "rest",
           "TASKER_ORCHESTRATION_URL": "http://env.example:8080",
           "TASKER_ORCHESTRATION_GRPC_URL": "http://env-grpc.example:9090",
           "TASKER_WORKER_URL": "http://env-worker.example:8081",
           "TASKER_ORCHESTRATION_TIMEOUT_MS": "2500",
           "TASKER_WORKER_TIMEOUT_MS": "3500"}
    r, j = show("-c", conf, env=env)
    tap.ok(j is not None
           and setting(j, "transport") == ("rest", "env TASKER_CLIENT_TRANSPORT")
           and setting(j, "orchestration_url") == ("http://env.example:8080",
                                                   "env TASKER_ORCHESTRATION_URL")
           and setting(j, "worker_url") == ("http://env-worker.example:8081",
                                            "env TASKER_WORKER_URL")
           and setting(j, "timeout_ms") == ("2500", "env TASKER_ORCHESTRATION_TIMEOUT_MS")
           and setting(j, "worker_timeout_ms") == ("3500", "env TASKER_WORKER_TIMEOUT_MS"),
           "the environment overrides the file (REST: TASKER_ORCHESTRATION_URL)", r.diag())
    r, j = show("-c", conf, "--transport", "grpc", env=env)
    tap.ok(j is not None and setting(j, "transport") == ("grpc", "--transport")
           and setting(j, "orchestration_url") == ("http://env-grpc.example:9090",
                                                   "env TASKER_ORCHESTRATION_GRPC_URL"),
           "--transport over the environment; gRPC takes TASKER_ORCHESTRATION_GRPC_URL",
           r.diag())
    r, j = show("-c", conf, "--url", "https://flag.example", "--timeout", "700", env=env)
    tap.ok(j is not None and setting(j, "orchestration_url") == ("https://flag.example", "--url")
           and setting(j, "timeout_ms") == ("700", "--timeout")
           and setting(j, "worker_timeout_ms") == ("700", "--timeout"),
           "--url and --timeout over everything", r.diag())
    r, j = show(cwd=CWD)
    tap.ok(j is not None and j["file"] is None
           and setting(j, "orchestration_url") == ("http://localhost:9090", "default")
           and setting(j, "worker_url") == ("http://localhost:9100", "default"),
           "no file: gRPC defaults 9090 / 9100", r.diag())
    r, j = show("--transport", "rest")
    tap.ok(j is not None and setting(j, "orchestration_url")[0] == "http://localhost:8080"
           and setting(j, "worker_url")[0] == "http://localhost:8081",
           "no file, REST: defaults 8080 / 8081", r.diag())

    # credentials: first found of the environment, then the profile
    key_file = os.path.join(TMP, "jwt-key.pem")
    chain = [
        ({"TASKER_ORCHESTRATION_AUTH_TOKEN": "orch-token-0123456789abcdef",
          "TASKER_AUTH_TOKEN": "any-token", "TASKER_API_KEY": "k",
          "TASKER_JWT_PRIVATE_KEY_PATH": key_file},
         "bearer token", "env TASKER_ORCHESTRATION_AUTH_TOKEN"),
        ({"TASKER_AUTH_TOKEN": "general-token-0123456789", "TASKER_API_KEY": "k",
          "TASKER_JWT_PRIVATE_KEY_PATH": key_file},
         "bearer token", "env TASKER_AUTH_TOKEN"),
        ({"TASKER_API_KEY": "env-api-key-0123456789", "TASKER_JWT_PRIVATE_KEY_PATH": key_file},
         "api key", "env TASKER_API_KEY"),
        ({"TASKER_JWT_PRIVATE_KEY_PATH": key_file},
         "token signed with jwt_private_key_path", "env TASKER_JWT_PRIVATE_KEY_PATH"),
        ({}, "api key", conf + ":6"),
    ]
    bad = []
    for env, method, source in chain:
        r, j = show("-c", conf, env=env)
        got = j and j["auth"]["orchestration"]
        if not got or got["method"] != method or got["source"] != source:
            bad.append("want %s from %s\n%s" % (method, source, r.diag()))
    tap.ok(not bad, "credentials: TASKER_ORCHESTRATION_AUTH_TOKEN > TASKER_AUTH_TOKEN > "
           "TASKER_API_KEY > TASKER_JWT_PRIVATE_KEY_PATH > profile", "\n".join(bad))
    r, j = show("-c", conf, env={"TASKER_ORCHESTRATION_AUTH_TOKEN": "o-token-0123456789",
                                 "TASKER_WORKER_AUTH_TOKEN": "w-token-0123456789"})
    tap.ok(j is not None and j["auth"]["worker"]["source"] == "env TASKER_WORKER_AUTH_TOKEN"
           and j["auth"]["orchestration"]["source"] == "env TASKER_ORCHESTRATION_AUTH_TOKEN",
           "the worker has its own token variable", r.diag())
    r, j = show("-c", conf, env={"TASKER_API_KEY_HEADER": "X-Tasker-Key"})
    tap.ok(j is not None and setting(j, "api_key_header") == ("X-Tasker-Key",
                                                              "env TASKER_API_KEY_HEADER"),
           "TASKER_API_KEY_HEADER", r.diag())

    # where the file is found
    xdg = os.path.join(TMP, "xdg")
    os.makedirs(os.path.join(xdg, "tasker"))
    write(os.path.join(xdg, "tasker", "client.conf"),
          "[profile.default]\ndescription = from xdg\n")
    os.makedirs(os.path.join(HOME, ".config", "tasker"))
    write(os.path.join(HOME, ".config", "tasker", "client.conf"),
          "[profile.default]\ndescription = from home\n")
    local = os.path.join(TMP, "local")
    os.makedirs(local)
    write(os.path.join(local, "tasker-client.conf"),
          "[profile.default]\ndescription = from cwd\n")
    seen = []
    for args, env, cwd in ((["-c", conf], {"XDG_CONFIG_HOME": xdg}, local),
                           ([], {"XDG_CONFIG_HOME": xdg}, local),
                           ([], {}, local),
                           ([], {"HOME": os.path.join(TMP, "nohome")}, local)):
        r, j = show(*args, env=env, cwd=cwd)
        seen.append(setting(j, "description")[0] if j else r.diag())
    tap.ok(seen == [None, "from xdg", "from home", "from cwd"],
           "search order: --config, $XDG_CONFIG_HOME, ~/.config, ./tasker-client.conf", seen)
    shutil.rmtree(os.path.join(HOME, ".config"))

    # errors: exit 2, naming the file, the line and the key
    errors = [
        ("[profile.x]\ntransport = grpc\nbogus_key = 1\n", r":3: unknown key 'bogus_key' "
         r"in \[profile.x\]"),
        ("[profile.x]\n\n[other]\nurl = x\n", r":3: unknown section \[other\]"),
        ("[profile.x]\ntransport = carrier\n", r":2: bad value for 'transport'"),
        ("[profile.x]\ntimeout_ms = soon\n", r":2: bad value for 'timeout_ms'"),
        ("[profile.x]\norchestration_url = ftp://x\n", r":2: bad value for 'orchestration_url'"),
        ("[profile.x]\ntoken = a\ntoken = b\n", r":3: key 'token' given twice"),
        ("key = value\n", r":1: key 'key' outside of a \[profile.<name>\] section"),
        ("[profile.x]\ntoken = %s\n" % ("t" * 300), r":2: line longer than"),
        ("[profile.x]\nthis line has no equals sign\n", r":2: syntax error"),
    ]
    bad = []
    for text, rx in errors:
        path = write(os.path.join(TMP, "bad.conf"), text)
        for argv in (["profile", "show"], ["task", "list"], ["profile", "list"]):
            r = cli("-c", path, *argv)
            if r.rc != 2 or not re.search(re.escape(path) + rx, r.err):
                bad.append("want /%s/\n%s" % (rx, r.diag()))
    tap.ok(not bad, "%d broken files: exit 2 with FILE:LINE and the problem" % len(errors),
           "\n\n".join(bad))
    r = cli("-c", os.path.join(TMP, "missing.conf"), "profile", "show")
    tap.ok(r.rc == 2 and "missing.conf" in r.err, "a missing --config file is an error",
           r.diag())
    r = cli("-c", conf, "-p", "nosuch", "task", "list")
    tap.ok(r.rc == 2 and "profile 'nosuch' is not defined in " + conf in r.err,
           "an undefined profile is an error", r.diag())
    r = cli("-p", "nosuch", "profile", "show")
    tap.ok(r.rc == 2 and "no profile file was found" in r.err,
           "a named profile without any file is an error", r.diag())
    r = cli("task", "list", env={"TASKER_CLIENT_TRANSPORT": "pigeon"})
    tap.ok(r.rc == 2 and "TASKER_CLIENT_TRANSPORT" in r.err,
           "a bad environment value is an error naming the variable", r.diag())
    long_token = "x" * 150 + "y" * 150 + "z" * 150
    path = write(os.path.join(TMP, "long.conf"), "[profile.default]\ntoken = %s\n  %s\n  %s\n"
                 % (long_token[:150], long_token[150:300], long_token[300:]))
    r = cli("-c", path, "profile", "show")
    tap.ok(r.rc == 0 and "****zzzz (450 characters)" in r.out,
           "a long token continued over indented lines", r.diag())


# ---------------------------------------------------------------- 4. unreachable
@case("unreachable")
def unreachable():
    for transport in ("grpc", "rest"):
        r = cli("--transport", transport, "--url", DEAD_URL, "--timeout", "4000",
                "task", "get", UUID)
        tap.ok(r.rc == 6 and r.secs < 20 and r.err.startswith("tasker-cli: "),
               "%s: an unreachable server exits 6" % transport, r.diag())


# ---------------------------------------------------------------- 5. auth (local)
KEYS = os.path.join(TMP, "keys")


@case("auth-local")
def auth_local():
    r = cli("auth", "generate-keys", "--output-dir", KEYS)
    tap.ok(r.rc == 0 and os.path.isfile(os.path.join(KEYS, "private.pem"))
           and os.path.isfile(os.path.join(KEYS, "public.pem"))
           and (os.stat(os.path.join(KEYS, "private.pem")).st_mode & 0o777) == 0o600,
           "auth generate-keys writes private.pem (0600) and public.pem", r.diag())
    r = cli("auth", "generate-keys", "--output-dir", KEYS)
    tap.ok(r.rc == 1 and "overwrite" in r.err, "generate-keys never overwrites", r.diag())
    r = cli("auth", "generate-token", "--private-key", os.path.join(KEYS, "private.pem"),
            "--permissions", "tasks:read,dlq:*", "--subject", "ops-bot", "--expiry-hours", "2")
    token = r.out.strip()
    tap.ok(r.rc == 0 and token.count(".") == 2, "auth generate-token prints a JWT", r.diag())
    r = cli("--format", "json", "auth", "validate-token", "--token", token,
            "--public-key", os.path.join(KEYS, "public.pem"))
    j = r.json() if r.rc == 0 else {}
    claims = j.get("claims", {})
    tap.ok(r.rc == 0 and j.get("valid") is True and claims.get("sub") == "ops-bot"
           and claims.get("iss") == "tasker-core" and claims.get("aud") in
           ("tasker-api", ["tasker-api"]) and claims.get("permissions") == ["tasks:read", "dlq:*"]
           and 7100 <= claims.get("exp", 0) - claims.get("iat", 0) <= 7300,
           "validate-token verifies it and shows the claims", r.diag())
    r = cli("auth", "validate-token", "--token", "-", "--public-key",
            os.path.join(KEYS, "public.pem"), "--issuer", "tasker-core", stdin=token + "\n")
    tap.ok(r.rc == 0 and "valid: yes" in r.out and "ops-bot" in r.out,
           "validate-token reads the token from stdin; table output", r.diag())
    head, payload, sig = token.split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged["permissions"] = ["tasks:*"]
    fp = base64.urlsafe_b64encode(json.dumps(forged).encode()).decode().rstrip("=")
    r = cli("auth", "validate-token", "--token", "%s.%s.%s" % (head, fp, sig), "--public-key",
            os.path.join(KEYS, "public.pem"))
    tap.ok(r.rc == 5 and "not valid" in r.err, "a tampered token exits 5", r.diag())
    r = cli("auth", "validate-token", "--token", token, "--public-key",
            os.path.join(KEYS, "public.pem"), "--audience", "worker-api")
    tap.ok(r.rc == 5, "a token for another audience exits 5", r.diag())
    other = os.path.join(TMP, "other-keys")
    cli("auth", "generate-keys", "--output-dir", other)
    r = cli("--format", "json", "auth", "validate-token", "--token", token, "--public-key",
            os.path.join(other, "public.pem"))
    tap.ok(r.rc == 5 and r.json().get("valid") is False,
           "another key pair's public key rejects it (JSON says valid: false)", r.diag())
    r = cli("auth", "generate-token", "--private-key", os.path.join(KEYS, "private.pem"),
            "--permissions", "tasks:fly")
    tap.ok(r.rc == 2 and "tasks:fly" in r.err, "an unknown permission is a usage error",
           r.diag())
    r = cli("auth", "generate-token", "--private-key", os.path.join(TMP, "nokey.pem"),
            "--permissions", "tasks:read")
    tap.ok(r.rc == 1 and "nokey.pem" in r.err, "a missing key file exits 1", r.diag())
    r = cli("auth", "validate-token", "--token", token, "--public-key",
            os.path.join(TMP, "nokey.pem"))
    tap.ok(r.rc == 1, "validate-token without a readable public key exits 1", r.diag())


# ---------------------------------------------------------------- 6. REST, recorded
class Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _serve(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        srv = self.server
        srv.requests.append({"method": self.command, "path": self.path,
                             "headers": {k.lower(): v for k, v in self.headers.items()},
                             "body": body})
        status, headers, reply = srv.replies.pop(0) if srv.replies else (200, {}, {})
        data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve


def recorder():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.requests, srv.replies = [], []
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


REST_TASK = {"task_uuid": UUID, "name": "diamond_workflow", "namespace": "integration",
             "version": "1.0.0", "state": "TASK_STATE_COMPLETE", "status": "complete",
             "completed_steps": "4", "total_steps": "4", "context": {"a": 1},
             "steps": [{"step_uuid": STEP, "name": "step_a", "state": "STEP_STATE_COMPLETE",
                        "attempts": 1, "max_attempts": 3}]}


@case("rest-recorded")
def rest_recorded():
    srv = recorder()
    url = "http://127.0.0.1:%d" % srv.server_address[1]
    env = {"TASKER_CLIENT_TRANSPORT": "rest", "TASKER_ORCHESTRATION_URL": url,
           "TASKER_API_KEY": "rest-key-0123456789"}

    def run(*args, replies=(), more_env=None):
        del srv.requests[:]
        srv.replies[:] = list(replies)
        e = dict(env)
        e.update(more_env or {})
        return cli(*args, env=e), list(srv.requests)

    r, reqs = run("task", "create", "--name", "diamond_workflow", "--namespace", "integration",
                  "--input", '{"a": 1, "b": [true]}', "--tags", "x, y",
                  replies=[(200, {}, REST_TASK)])
    q = reqs[0] if reqs else {}
    body = q.get("body") or {}
    tap.ok(r.rc == 0 and q.get("method") == "POST" and q.get("path") == "/v1/tasks"
           and body == {"name": "diamond_workflow", "namespace": "integration",
                        "version": "1.0.0", "context": {"a": 1, "b": [True]},
                        "initiator": "tasker-ctl", "source_system": "cli",
                        "reason": "CLI task creation", "priority": 5, "tags": ["x", "y"]}
           and q["headers"].get("x-api-key") == "rest-key-0123456789"
           and q["headers"].get("content-type") == "application/json",
           "REST task create: POST /v1/tasks with the §2.1 TaskRequest and §9 defaults",
           "%s\n%s" % (r.diag(), json.dumps(reqs)))
    tap.ok(re.search(r"^state:\s+complete$", r.out, re.M) and "step_a" in r.out
           and re.search(r"^context:\s+\{\"a\":1\}$", r.out, re.M),
           "table output: key: value, enum names shortened, steps as a table", r.out)
    r, reqs = run("--format", "json", "task", "get", UUID, replies=[(200, {}, REST_TASK)])
    tap.ok(r.rc == 0 and r.json() == REST_TASK and reqs[0]["path"] == "/v1/tasks/" + UUID,
           "REST task get --format json: the body as it came", r.diag())
    r, reqs = run("task", "list", "--namespace", "integration", "--status", "COMPLETE",
                  "--limit", "5", "--page", "2",
                  replies=[(200, {}, {"tasks": [REST_TASK], "pagination": {"total_count": 9}})])
    tap.ok(r.rc == 0 and reqs[0]["path"] == "/v1/tasks?page=2&per_page=5&namespace=integration"
           "&status=complete" and re.search(r"^TASK UUID\s+NAMESPACE", r.out, re.M)
           and "total: 9" in r.out,
           "REST task list: page, per_page, namespace, status; aligned columns", r.diag())
    routes = [
        (["task", "cancel", UUID], "DELETE", "/v1/tasks/" + UUID, None),
        (["task", "cancel", UUID, "--reason", "no longer needed"], "DELETE",
         "/v1/tasks/%s?reason=no%%20longer%%20needed" % UUID, None),
        (["task", "steps", UUID], "GET", "/v1/tasks/%s/workflow_steps" % UUID, None),
        (["task", "step", UUID, STEP], "GET", "/v1/tasks/%s/workflow_steps/%s" % (UUID, STEP),
         None),
        (["task", "step-audit", UUID, STEP], "GET",
         "/v1/tasks/%s/workflow_steps/%s/audit" % (UUID, STEP), None),
        (["task", "reset-step", UUID, STEP, "--reason", "flaky"], "PATCH",
         "/v1/tasks/%s/workflow_steps/%s" % (UUID, STEP),
         {"action_type": "reset_for_retry", "reason": "flaky", "reset_by": "cli-operator"}),
        (["task", "resolve-step", UUID, STEP, "--reason", "done", "--resolved-by", "ann"],
         "PATCH", "/v1/tasks/%s/workflow_steps/%s" % (UUID, STEP),
         {"action_type": "resolve_manually", "reason": "done", "resolved_by": "ann"}),
        (["task", "complete-step", UUID, STEP, "--reason", "by hand", "--result", '{"v": 2}',
          "--metadata", '{"m": true}'], "PATCH", "/v1/tasks/%s/workflow_steps/%s" % (UUID, STEP),
         {"action_type": "complete_manually", "reason": "by hand",
          "completed_by": "cli-operator",
          "completion_data": {"result": {"v": 2}, "metadata": {"m": True}}}),
        (["dlq", "list", "--status", "pending", "--limit", "7"], "GET",
         "/v1/dlq?resolution_status=pending&limit=7&offset=0", None),
        (["dlq", "get", UUID], "GET", "/v1/dlq/task/" + UUID, None),
        (["dlq", "update", UUID, "--status", "manually_resolved", "--notes", "fixed",
          "--resolved-by", "ann"], "PATCH", "/v1/dlq/entry/" + UUID,
         {"resolution_status": "manually_resolved", "resolution_notes": "fixed",
          "resolved_by": "ann"}),
        (["dlq", "stats"], "GET", "/v1/dlq/stats", None),
        (["template", "list", "--namespace", "a b"], "GET", "/v1/templates?namespace=a%20b",
         None),
        (["template", "get", "integration", "diamond_workflow", "1.0.0"], "GET",
         "/v1/templates/integration/diamond_workflow/1.0.0", None),
        (["system", "health"], "GET", "/health/detailed", None),
        (["system", "health", "--ready"], "GET", "/health/ready", None),
        (["system", "config"], "GET", "/config", None),
        (["analytics", "performance", "--hours", "6"], "GET",
         "/v1/analytics/performance?hours=6", None),
        (["analytics", "bottlenecks", "--limit", "3", "--min-executions", "2"], "GET",
         "/v1/analytics/bottlenecks?limit=3&min_executions=2", None),
    ]
    bad = []
    for argv, method, path, body in routes:
        r, reqs = run(*argv)
        q = reqs[0] if reqs else {}
        if r.rc != 0 or len(reqs) != 1 or q["method"] != method or q["path"] != path \
                or q["body"] != body:
            bad.append("want %s %s %s\ngot %s\n%s" % (method, path, body, json.dumps(reqs),
                                                      r.diag()))
    tap.ok(not bad, "REST routes and bodies of %d commands (§2.1)" % len(routes),
           "\n\n".join(bad))
    r, reqs = run("system", "health", "--worker",
                  more_env={"TASKER_WORKER_URL": url + "/"})
    tap.ok(r.rc == 0 and reqs and reqs[0]["path"] == "/health/detailed",
           "--worker goes to worker_url", r.diag())
    r, reqs = run("task", "get", UUID, more_env={"TASKER_AUTH_TOKEN": "bearer-0123456789"})
    tap.ok(reqs and reqs[0]["headers"].get("authorization") == "Bearer bearer-0123456789"
           and "x-api-key" not in reqs[0]["headers"],
           "a bearer token goes in Authorization (and wins over the API key)", json.dumps(reqs))
    r, reqs = run("task", "get", UUID, more_env={"TASKER_API_KEY_HEADER": "X-Tasker-Key"})
    tap.ok(reqs and reqs[0]["headers"].get("x-tasker-key") == "rest-key-0123456789",
           "the API key goes in api_key_header", json.dumps(reqs))

    # errors
    err = [(404, "NOT_FOUND", 3), (400, "BAD_REQUEST", 4), (409, "CONFLICT", 4),
           (401, "UNAUTHORIZED", 5), (403, "FORBIDDEN", 5), (408, "TIMEOUT", 6),
           (500, "INTERNAL_ERROR", 1)]
    bad = []
    for status, code, want in err:
        r, _ = run("task", "get", UUID, replies=[(status, {}, {"error": {
            "code": code, "message": "the %s message" % code}})])
        if r.rc != want or "the %s message" % code not in r.err or str(status) not in r.err:
            bad.append(r.diag())
    tap.ok(not bad, "REST {\"error\": {code, message}}: message shown, HTTP status mapped "
           "(404->3, 400/409->4, 401/403->5, 408->6, 500->1)", "\n\n".join(bad))
    busy = (503, {"Retry-After": "1"}, {"error": {"code": "BACKPRESSURE", "message": "busy"}})
    r, reqs = run("task", "create", "--name", "n", replies=[busy, (200, {}, REST_TASK)])
    tap.ok(r.rc == 0 and len(reqs) == 2 and r.secs >= 0.9,
           "REST 503 with Retry-After: retried after the wait", r.diag())
    r, reqs = run("--timeout", "1500", "task", "get", UUID, replies=[busy] * 5)
    tap.ok(r.rc == 6 and len(reqs) <= 2 and "busy" in r.err,
           "REST 503 beyond the deadline: exit 6 without waiting past it", r.diag())
    r, reqs = run("task", "get", UUID, replies=[(200, {}, b"<html>not json</html>")])
    tap.ok(r.rc == 1 and "not JSON" in r.err, "a non-JSON answer exits 1", r.diag())
    r, reqs = run("system", "health", "--ready", replies=[(503, {}, {
        "status": "not_ready", "checks": {"web_database": {"status": "unhealthy"}}})])
    tap.ok(r.rc == 6 and "not_ready" in r.out and re.search(r"web_database\s+unhealthy", r.out),
           "REST readiness 503: the checks are shown, exit 6", r.diag())
    r, reqs = run("task", "cancel", UUID, replies=[(200, {}, {
        "success": False, "message": "task already complete"})])
    tap.ok(r.rc == 4 and "already complete" in r.err, "a declined cancel exits 4", r.diag())

    # watch: polls until the task ends
    states = ["TASK_STATE_STEPS_IN_PROCESS", "TASK_STATE_STEPS_IN_PROCESS",
              "TASK_STATE_COMPLETE", "TASK_STATE_COMPLETE"]
    polls = [(200, {}, dict(REST_TASK, state=s)) for s in states]
    r, reqs = run("task", "watch", UUID, "--interval", "100", replies=polls)
    tap.ok(r.rc == 0 and [q["path"] for q in reqs] == ["/v1/tasks/" + UUID] * 4
           and re.search(r"task\s+steps_in_process", r.out) and "complete: 4 of 4" in r.out,
           "REST task watch polls GET /v1/tasks/<uuid> and prints changes", r.diag())
    polls = [(200, {}, dict(REST_TASK, state=s)) for s in
             ("TASK_STATE_PENDING", "TASK_STATE_ERROR", "TASK_STATE_ERROR")]
    r, reqs = run("--format", "json", "task", "watch", UUID, "--interval", "100",
                  replies=polls)
    lines = r.lines() if r.rc == 7 else []
    tap.ok(r.rc == 7 and [x.get("task_state") for x in lines if "task_state" in x]
           == ["TASK_STATE_PENDING", "TASK_STATE_ERROR"],
           "REST task watch: JSON lines; a task ending in error exits 7", r.diag())
    srv.shutdown()


# ---------------------------------------------------------------- 7. gRPC, recorded
def grpc_modules():
    import importlib
    protoc = shutil.which("protoc")
    if protoc is None:
        return None
    gen = os.path.join(TMP, "pb")
    os.makedirs(gen)
    files = ["common", "tasks", "steps", "templates", "analytics", "dlq", "health", "config",
             "worker"]
    subprocess.run([protoc, "-I", os.path.join(harness.TOP_SRCDIR, "proto"), "-I",
                    os.environ.get("PROTOBUF_PROTODIR") or "/usr/include", "--python_out", gen]
                   + ["tasker/v1/%s.proto" % f for f in files], check=True)
    sys.path.insert(0, gen)
    return {f: importlib.import_module("tasker.v1.%s_pb2" % f) for f in files}


class GrpcRecorder:
    """A grpcio server answering every tasker.v1 method with a function of
    this test (or an empty response), recording requests and metadata."""

    def __init__(self, mods):
        import grpc
        from concurrent import futures
        from google.protobuf import json_format, symbol_database
        self.grpc, self.json_format = grpc, json_format
        db = symbol_database.Default()
        self.methods = {}
        for mod in mods.values():
            for svc in mod.DESCRIPTOR.services_by_name.values():
                for m in svc.methods:
                    self.methods["/%s/%s" % (svc.full_name, m.name)] = (
                        db.GetSymbol(m.input_type.full_name),
                        db.GetSymbol(m.output_type.full_name), m.server_streaming)
        self.calls, self.answers = [], {}
        outer = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details):
                ent = outer.methods.get(details.method)
                if ent is None:
                    return None
                req_cls, resp_cls, streaming = ent
                name = details.method

                def unary(req, ctx):
                    outer._record(name, req, ctx)
                    fn = outer.answers.get(name)
                    return fn(req, ctx) if fn else resp_cls()

                def stream(req, ctx):
                    outer._record(name, req, ctx)
                    fn = outer.answers.get(name)
                    for m in (fn(req, ctx) if fn else ()):
                        yield m
                if streaming:
                    return grpc.unary_stream_rpc_method_handler(
                        stream, request_deserializer=req_cls.FromString,
                        response_serializer=resp_cls.SerializeToString)
                return grpc.unary_unary_rpc_method_handler(
                    unary, request_deserializer=req_cls.FromString,
                    response_serializer=resp_cls.SerializeToString)

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self.server.add_generic_rpc_handlers((Handler(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def _record(self, name, req, ctx):
        self.calls.append({"method": name, "md": dict(ctx.invocation_metadata()),
                           "req": self.json_format.MessageToDict(
                               req, preserving_proto_field_name=True)})


@case("grpc-recorded")
def grpc_recorded():
    try:
        import grpc
        from google.protobuf import json_format  # noqa: F401
    except ImportError as e:
        tap.ok(True, "gRPC recorded # SKIP python3-grpcio missing: %s" % e)
        return
    mods = grpc_modules()
    if mods is None:
        tap.ok(True, "gRPC recorded # SKIP protoc not found")
        return
    tasks, steps, dlq, common = mods["tasks"], mods["steps"], mods["dlq"], mods["common"]
    rec = GrpcRecorder(mods)
    url = "http://127.0.0.1:%d" % rec.port
    env = {"TASKER_ORCHESTRATION_GRPC_URL": url, "TASKER_AUTH_TOKEN": "grpc-token-0123456789"}

    def task_msg(state=common.TASK_STATE_COMPLETE):
        t = tasks.Task(task_uuid=UUID, name="diamond_workflow", namespace="integration",
                       version="1.0.0", state=state, total_steps=4, completed_steps=4,
                       completion_percentage=100.0, priority=5)
        t.context.update({"a": 1})
        t.created_at.FromJsonString("2026-03-21T10:11:12.500Z")
        return t

    def run(*args, answers=None, more_env=None):
        del rec.calls[:]
        rec.answers = answers or {}
        e = dict(env)
        e.update(more_env or {})
        return cli(*args, env=e), list(rec.calls)

    create = "/tasker.v1.TaskService/CreateTask"
    r, calls = run("task", "create", "--name", "diamond_workflow", "--namespace", "integration",
                   "--input", '{"a": 1, "nested": {"b": [1, "x", null]}}', "--priority", "-3",
                   "--tags", "t1,t2", "--correlation-id", "corr-1",
                   answers={create: lambda q, c: tasks.CreateTaskResponse(task=task_msg())})
    c0 = calls[0] if calls else {}
    tap.ok(r.rc == 0 and c0.get("method") == create and c0["req"] == {
        "name": "diamond_workflow", "namespace": "integration", "version": "1.0.0",
        "context": {"a": 1.0, "nested": {"b": [1.0, "x", None]}}, "initiator": "tasker-ctl",
        "source_system": "cli", "reason": "CLI task creation", "priority": -3,
        "tags": ["t1", "t2"], "correlation_id": "corr-1"},
        "gRPC task create: CreateTaskRequest fields, context as a Struct",
        "%s\n%s" % (r.diag(), json.dumps(calls)))
    tap.ok(c0.get("md", {}).get("authorization") == "Bearer grpc-token-0123456789"
           and c0["md"].get("user-agent", "").startswith("tasker-cli/"),
           "gRPC: the bearer token in authorization metadata", json.dumps(calls))
    r, calls = run("--format", "json", "task", "get", UUID, "--steps",
                   answers={"/tasker.v1.TaskService/GetTask": lambda q, c:
                            tasks.GetTaskResponse(task=task_msg())})
    j = r.json() if r.rc == 0 else {}
    t = j.get("task", {})
    tap.ok(r.rc == 0 and calls and calls[0]["req"] == {"task_uuid": UUID, "include_steps": True}
           and t.get("state") == "TASK_STATE_COMPLETE" and t.get("total_steps") == "4"
           and t.get("context") == {"a": 1} and t.get("created_at") == "2026-03-21T10:11:12.500Z"
           and t.get("failed_steps") == "0" and t.get("priority") == 5,
           "gRPC --format json: proto3 JSON mapping, snake_case, enums by name, int64 as "
           "strings, defaults included", r.diag())
    r, calls = run("task", "list", "--status", "error", "--limit", "10", "--page", "3",
                   answers={"/tasker.v1.TaskService/ListTasks": lambda q, c:
                            tasks.ListTasksResponse(tasks=[task_msg()])})
    tap.ok(r.rc == 0 and calls and calls[0]["req"] == {
        "pagination": {"limit": 10, "offset": 20}, "states": ["TASK_STATE_ERROR"]}
        and re.search(r"^%s\s+integration\s+diamond_workflow\s+1.0.0\s+complete" % UUID,
                      r.out, re.M),
        "gRPC task list: pagination, states; table", r.diag() + json.dumps(calls))
    resolve = "/tasker.v1.StepService/ResolveStep"
    r, calls = run("task", "complete-step", UUID, STEP, "--reason", "manual", "--result",
                   '{"ok": true}', answers={resolve: lambda q, c: steps.ResolveStepResponse()})
    tap.ok(r.rc == 0 and calls and calls[0]["req"] == {
        "task_uuid": UUID, "step_uuid": STEP,
        "action_type": "STEP_MANUAL_ACTION_TYPE_COMPLETE_MANUALLY",
        "performed_by": "cli-operator", "reason": "manual", "result": {"ok": True}},
        "gRPC complete-step: ResolveStepRequest COMPLETE_MANUALLY with the result",
        r.diag() + json.dumps(calls))
    r, calls = run("dlq", "update", UUID, "--status", "permanently_failed", "--notes", "n",
                   answers={"/tasker.v1.DlqService/UpdateInvestigation": lambda q, c:
                            dlq.UpdateDlqInvestigationResponse(success=True, message="ok",
                                                               dlq_entry_uuid=UUID)})
    tap.ok(r.rc == 0 and calls and calls[0]["req"] == {
        "dlq_entry_uuid": UUID, "resolution_status": "DLQ_RESOLUTION_STATUS_PERMANENTLY_FAILED",
        "resolution_notes": "n"} and re.search(r"^success:\s+true$", r.out, re.M),
        "gRPC dlq update", r.diag() + json.dumps(calls))
    r, calls = run("system", "health", "--worker", more_env={"TASKER_WORKER_GRPC_URL": url})
    tap.ok(r.rc == 0 and calls and calls[0]["method"]
           == "/tasker.v1.WorkerHealthService/CheckDetailedHealth",
           "gRPC system health --worker: WorkerHealthService", r.diag())
    r, calls = run("task", "get", UUID, more_env={"TASKER_AUTH_TOKEN": None,
                                                   "TASKER_API_KEY": "grpc-key-0123456789"})
    tap.ok(calls and calls[0]["md"].get("x-api-key") == "grpc-key-0123456789"
           and "authorization" not in calls[0]["md"],
           "gRPC: an API key in x-api-key metadata", json.dumps(calls))

    statuses = [(grpc.StatusCode.NOT_FOUND, 3), (grpc.StatusCode.INVALID_ARGUMENT, 4),
                (grpc.StatusCode.ALREADY_EXISTS, 4), (grpc.StatusCode.FAILED_PRECONDITION, 4),
                (grpc.StatusCode.UNAUTHENTICATED, 5), (grpc.StatusCode.PERMISSION_DENIED, 5),
                (grpc.StatusCode.UNAVAILABLE, 6), (grpc.StatusCode.RESOURCE_EXHAUSTED, 6),
                (grpc.StatusCode.INTERNAL, 1), (grpc.StatusCode.UNIMPLEMENTED, 1)]
    bad = []
    for code, want in statuses:
        def abort(q, c, code=code):
            c.abort(code, "the %s message" % code.name)
        r, calls = run("task", "get", UUID, answers={"/tasker.v1.TaskService/GetTask": abort},
                       more_env={"TASKER_ORCHESTRATION_TIMEOUT_MS": "3000"})
        if r.rc != want or ("the %s message" % code.name) not in r.err \
                or code.name not in r.err:
            bad.append(r.diag())
    tap.ok(not bad, "gRPC status -> exit code (NOT_FOUND 3, INVALID_ARGUMENT/ALREADY_EXISTS/"
           "FAILED_PRECONDITION 4, UNAUTHENTICATED/PERMISSION_DENIED 5, UNAVAILABLE/"
           "RESOURCE_EXHAUSTED 6, others 1)", "\n\n".join(bad))

    # watch over the stream
    def updates(final):
        def gen(q, c):
            U = tasks.TaskStatusUpdate
            for st in (common.TASK_STATE_STEPS_IN_PROCESS, final):
                u = U(update_type=U.UPDATE_TYPE_TASK_STATE_CHANGE, task_state=st)
                u.timestamp.FromJsonString("2026-03-21T10:11:12Z")
                yield u
                time.sleep(0.05)
            u = U(update_type=U.UPDATE_TYPE_STEP_STATE_CHANGE,
                  step_update=tasks.StepUpdate(step_uuid=STEP, name="step_a",
                                               state=common.STEP_STATE_COMPLETE, attempt=1))
            u.timestamp.FromJsonString("2026-03-21T10:11:13Z")
            yield u
        return gen
    stream = "/tasker.v1.TaskService/StreamTaskStatus"
    get = "/tasker.v1.TaskService/GetTask"
    r, calls = run("task", "watch", UUID, answers={
        stream: updates(common.TASK_STATE_COMPLETE),
        get: lambda q, c: tasks.GetTaskResponse(task=task_msg())})
    tap.ok(r.rc == 0 and [c["method"] for c in calls] == [stream, get]
           and calls[0]["req"] == {"task_uuid": UUID, "include_steps": True}
           and re.search(r"^10:11:12  task  steps_in_process$", r.out, re.M)
           and re.search(r"^10:11:13  step  step_a  complete  \(attempt 1\)$", r.out, re.M)
           and "complete: 4 of 4 steps complete" in r.out,
           "gRPC task watch: StreamTaskStatus updates printed live, exit 0", r.diag())
    r, calls = run("--format", "json", "task", "watch", UUID, answers={
        stream: updates(common.TASK_STATE_ERROR),
        get: lambda q, c: tasks.GetTaskResponse(task=task_msg(common.TASK_STATE_ERROR))})
    lines = r.lines() if r.rc == 7 else []
    tap.ok(r.rc == 7 and len(lines) == 3
           and lines[1] == {"update_type": "UPDATE_TYPE_TASK_STATE_CHANGE",
                            "timestamp": "2026-03-21T10:11:12Z",
                            "task_state": "TASK_STATE_ERROR"},
           "gRPC task watch --format json: one TaskStatusUpdate per line; error exits 7",
           r.diag())

    def slow(q, c):
        time.sleep(5)
        return iter(())
    r, calls = run("task", "watch", UUID, "--max-wait", "1", answers={stream: slow})
    tap.ok(r.rc == 6 and r.secs < 5, "gRPC task watch --max-wait ends the wait (exit 6)",
           r.diag())
    rec.server.stop(0)


# ================================================================ part B
def skip(name, why):
    tap.ok(True, "%s # SKIP %s" % (name, why))


def end_to_end():
    for prog in ("taskerd", "tasker-worker"):
        try:
            harness.program(prog)
        except FileNotFoundError:
            skip("end to end", "%s is not built" % prog)
            return
    if not pg.available():
        skip("end to end", "the PostgreSQL server programs are not installed")
        return
    env = tasker_env.Env("103-cli", deadline=150)
    keys = os.path.join(env.tmp, "cli-keys")
    r = cli("auth", "generate-keys", "--output-dir", keys)
    if r.rc != 0:
        tap.ok(False, "end to end: keys for the servers", r.diag())
        return
    api_key = "cli-e2e-key-8f2a61d0c4b97e35"
    conf = write(os.path.join(env.tmp, "taskerd.conf"),
                 "[auth]\nenabled = true\njwt_verification_method = public_key\n"
                 "jwt_public_key_path = %s\napi_keys_enabled = true\n"
                 "[auth.api_key.cli]\nkey = %s\n"
                 "permissions = tasks:*,steps:*,dlq:*,templates:*,system:*\n"
                 "description = tasker-cli tests\n" % (os.path.join(keys, "public.pem"), api_key))
    try:
        env.start()
        taskerd = env.taskerd("--config", conf, "--orchestration.web_bind_address=127.0.0.1:0",
                              "--web.config_endpoint_enabled=1", "--dlq.staleness_interval_s=1")
        env.worker(namespaces="integration,engine_tests")
    except (tasker_env.EnvError, pg.ClusterError, OSError) as e:
        tap.ok(False, "end to end: taskerd and tasker-worker start", str(e))
        env.close()
        return
    m = taskerd.wait_line(r"REST listening on \S+:(\d+)", 5)
    grpc_url = "http://127.0.0.1:%d" % taskerd.port
    rest_url = "http://127.0.0.1:%s" % m.group(1) if m else None
    tap.ok(rest_url is not None, "end to end: taskerd serves REST", taskerd.log(20))
    profiles = write(os.path.join(env.tmp, "client.conf"),
                     "[profile.default]\njwt_private_key_path = %s\ntimeout_ms = 15000\n"
                     "[profile.grpc]\ntransport = grpc\norchestration_url = %s\n"
                     "[profile.rest]\ntransport = rest\norchestration_url = %s\n"
                     % (os.path.join(keys, "private.pem"), grpc_url,
                        rest_url or "http://127.0.0.1:1"))
    try:
        for transport in ("grpc", "rest"):
            if transport == "rest" and rest_url is None:
                tap.ok(False, "rest: end to end (taskerd has no REST listener)")
                continue
            e2e(env, transport, profiles, api_key)
    finally:
        env.close()


def e2e(env, transport, profiles, api_key):
    T = transport

    def run(*args, env_=None, timeout=60):
        return cli("-c", profiles, "-p", T, *args, env=env_, timeout=timeout)

    def jrun(*args, **kw):
        r = run("--format", "json", *args, **kw)
        try:
            return r, r.json()
        except ValueError:
            return r, None

    def task_of(j):
        return (j or {}).get("task", j or {})

    r, j = jrun("system", "health")
    tap.ok(r.rc == 0 and j and j.get("status") in ("healthy", "degraded"),
           "%s: system health" % T, r.diag())
    r = run("system", "health", "--basic")
    tap.ok(r.rc == 0 and re.search(r"^status:\s+healthy", r.out, re.M),
           "%s: system health --basic (table)" % T, r.diag())
    r, j = jrun("template", "list")
    names = {(t.get("namespace"), t.get("name")) for t in (j or {}).get("templates", [])}
    tap.ok(r.rc == 0 and ("integration", "diamond_workflow") in names,
           "%s: template list" % T, r.diag())
    r, j = jrun("template", "get", "integration", "diamond_workflow", "1.0.0")
    st = [s.get("name") for s in ((j or {}).get("template", j or {})).get("steps", [])]
    tap.ok(r.rc == 0 and st == ["step_a", "step_b", "step_c", "step_d"],
           "%s: template get" % T, r.diag())
    r = run("template", "get", "integration", "no_such_template", "9.9.9")
    tap.ok(r.rc == 3, "%s: template get of an unknown template exits 3" % T, r.diag())

    # a diamond from create to complete
    r, j = jrun("task", "create", "--namespace", "integration", "--name", "diamond_workflow",
                "--input", '{"case": "cli-%s"}' % T, "--tags", "cli,%s" % T)
    uuid = task_of(j).get("task_uuid")
    tap.ok(r.rc == 0 and uuid and re.fullmatch(r"[0-9a-f-]{36}", uuid),
           "%s: task create (diamond)" % T, r.diag())
    if not uuid:
        return
    r = run("task", "create", "--namespace", "integration", "--name", "diamond_workflow",
            "--input", '{"case": "cli-%s"}' % T)
    tap.ok(r.rc == 4 and "exists" in r.err,
           "%s: the same task again (same identity) exits 4" % T, r.diag())
    r = run("task", "watch", uuid, "--interval", "250", "--max-wait", "40", timeout=60)
    tap.ok(r.rc == 0 and "complete: 4 of 4 steps complete" in r.out,
           "%s: task watch follows it to completion" % T, r.diag())
    tap.ok(env.task_state(uuid) == "complete", "%s: the database agrees" % T,
           env.task_state(uuid))
    r, j = jrun("task", "get", uuid)
    t = task_of(j)
    tap.ok(r.rc == 0 and (t.get("state") == "TASK_STATE_COMPLETE"
                          or t.get("status") == "complete")
           and t.get("context") == {"case": "cli-%s" % T}
           and t.get("initiator") == "tasker-ctl",
           "%s: task get --format json" % T, r.diag())
    r = run("task", "get", uuid)
    tap.ok(r.rc == 0 and re.search(r"^state:\s+complete$", r.out, re.M),
           "%s: task get (table)" % T, r.diag())
    r, j = jrun("task", "list", "--namespace", "integration", "--status", "complete")
    tap.ok(r.rc == 0 and uuid in [x.get("task_uuid") for x in (j or {}).get("tasks", [])],
           "%s: task list --status complete finds it" % T, r.diag())
    r, j = jrun("task", "steps", uuid)
    rows = (j or {}).get("steps", j if isinstance(j, list) else [])
    by_name = {s.get("name"): s for s in rows}
    tap.ok(r.rc == 0 and sorted(by_name) == ["step_a", "step_b", "step_c", "step_d"],
           "%s: task steps" % T, r.diag())
    step = (by_name.get("step_d") or {}).get("step_uuid")
    r, j = jrun("task", "step", uuid, step or "x")
    s = (j or {}).get("step", j or {})
    tap.ok(r.rc == 0 and s.get("name") == "step_d", "%s: task step" % T, r.diag())
    r, j = jrun("task", "step-audit", uuid, step or "x")
    recs = (j or {}).get("audit_records", j if isinstance(j, list) else [])
    tap.ok(r.rc == 0 and len(recs) >= 1, "%s: task step-audit" % T, r.diag())
    r = run("task", "step-audit", uuid, step or "x")
    tap.ok(r.rc == 0 and re.search(r"^RECORDED AT\s+FROM\s+TO", r.out, re.M),
           "%s: task step-audit (table)" % T, r.diag())
    r = run("task", "get", "00000000-0000-7000-8000-000000000000")
    tap.ok(r.rc == 3, "%s: task get of an unknown task exits 3" % T, r.diag())
    r = run("task", "get", "not-a-uuid")
    tap.ok(r.rc == 4, "%s: a malformed uuid exits 4" % T, r.diag())
    r = run("task", "cancel", uuid)
    tap.ok(r.rc == 4, "%s: cancelling a finished task exits 4" % T, r.diag())

    # cancel while it waits (no worker serves engine_unserved)
    # (contexts differ per transport: the same context is the same task)
    r, j = jrun("task", "create", "--namespace", "engine_unserved", "--name", "unserved_task",
                "--input", '{"case": "cli-cancel-%s"}' % T)
    waiting = task_of(j).get("task_uuid")
    tap.ok(r.rc == 0 and waiting, "%s: task create (a task no worker serves)" % T, r.diag())
    r = run("task", "cancel", waiting or "x", "--reason", "cli cancel over %s" % T)
    tap.ok(r.rc == 0 and env.wait_for(lambda: env.task_state(waiting) == "cancelled", 10),
           "%s: task cancel" % T, r.diag())
    nil = "00000000-0000-0000-0000-000000000000"
    why = env.sql("SELECT metadata ->> 'reason' FROM tasker.task_transitions "
                  "WHERE task_uuid = '%s' AND to_state = 'cancelled'" % (waiting or nil))
    tap.ok(why == "cli cancel over %s" % T, "%s: task cancel --reason is recorded" % T, repr(why))
    r = run("--format", "json", "task", "watch", waiting or "x", "--interval", "200",
            "--max-wait", "20")
    tap.ok(r.rc == 7, "%s: watching a cancelled task exits 7" % T, r.diag())

    # a failing task, completed by hand
    r, j = jrun("task", "create", "--namespace", "engine_tests", "--name", "always_fails",
                "--input", '{"case": "cli-fails-%s"}' % T)
    doomed = task_of(j).get("task_uuid")
    tap.ok(r.rc == 0 and doomed, "%s: task create (a step that always fails)" % T, r.diag())
    r = run("task", "watch", doomed or "x", "--interval", "250", "--max-wait", "40",
            timeout=60)
    tap.ok(r.rc == 7, "%s: watch of a failing task exits 7" % T, r.diag())
    r, j = jrun("task", "steps", doomed or "x")
    rows = (j or {}).get("steps", j if isinstance(j, list) else [])
    failed = [s.get("step_uuid") for s in rows if s.get("name") == "doomed_step"]
    r = run("task", "complete-step", doomed or "x", failed[0] if failed else "x",
            "--reason", "fixed by hand", "--result", '{"fixed": true}', "--completed-by", "test")
    tap.ok(r.rc == 0, "%s: task complete-step" % T, r.diag())
    r = run("task", "watch", doomed or "x", "--interval", "250", "--max-wait", "40",
            timeout=60)
    tap.ok(r.rc == 0, "%s: the task then runs to completion" % T, r.diag())

    # DLQ, config, analytics
    r, j = jrun("dlq", "stats")
    tap.ok(r.rc == 0 and j is not None, "%s: dlq stats" % T, r.diag())
    r, j = jrun("dlq", "list")
    tap.ok(r.rc == 0 and j is not None, "%s: dlq list" % T, r.diag())
    r, j = jrun("system", "config")
    text = json.dumps(j)
    tap.ok(r.rc == 0 and j is not None and api_key not in text and "private" not in text,
           "%s: system config (no secrets)" % T, r.diag())
    r, j = jrun("analytics", "performance", "--hours", "1")
    tap.ok(r.rc == 0 and j is not None and "total_tasks" in j,
           "%s: analytics performance" % T, r.diag())
    r = run("analytics", "bottlenecks")
    tap.ok(r.rc == 0 and "Slow steps:" in r.out, "%s: analytics bottlenecks" % T, r.diag())

    # credentials: API key, none, wrong token
    r = run("task", "get", uuid, env_={"TASKER_API_KEY": api_key})
    tap.ok(r.rc == 0, "%s: an API key from TASKER_API_KEY" % T, r.diag())
    r = cli("--transport", T, "--url", run_url(profiles, T), "task", "get", uuid)
    tap.ok(r.rc == 5, "%s: no credentials exits 5" % T, r.diag())
    r = run("task", "get", uuid, env_={"TASKER_AUTH_TOKEN": "not.a.token"})
    tap.ok(r.rc == 5, "%s: a bad token exits 5" % T, r.diag())
    # a token made by `auth generate-token` with one permission
    r = cli("auth", "generate-token", "--private-key", keys_private(profiles),
            "--permissions", "templates:read", "--expiry-hours", "1")
    token = r.out.strip()
    tap.ok(r.rc == 0, "%s: auth generate-token for the server" % T, r.diag())
    r = run("template", "list", env_={"TASKER_AUTH_TOKEN": token})
    tap.ok(r.rc == 0, "%s: the generated token is accepted (templates:read)" % T, r.diag())
    r = run("task", "list", env_={"TASKER_AUTH_TOKEN": token})
    tap.ok(r.rc == 5 and re.search(r"PERMISSION_DENIED|403", r.err),
           "%s: ... and refused where it lacks the permission (exit 5)" % T, r.diag())


def keys_private(profiles):
    with open(profiles) as f:
        return re.search(r"jwt_private_key_path = (\S+)", f.read()).group(1)


def run_url(profiles, transport):
    with open(profiles) as f:
        text = f.read()
    m = re.search(r"\[profile.%s\][^\[]*orchestration_url = (\S+)" % transport, text)
    return m.group(1)


@case("end to end")
def e2e_case():
    end_to_end()


WATCHDOG.cancel()
tap.done()
