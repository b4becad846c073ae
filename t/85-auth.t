#!/usr/bin/python3
"""Authentication and permissions (src/auth, tasker-api.md §2.3/§2.4).

Keys, JWKS documents and tokens are made at test time (t/auth/fixtures.py:
python3-cryptography keys, PyJWT tokens). Each case runs the real checker
through t/progs/auth-probe, which loads a config file the way the programs
do and answers JSON commands; a JWKS is also served over http from this
script to check fetching, refresh on an unknown kid and stale-key handling.
"""
import base64
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(HERE, "auth"))
from harness import TOP_BUILDDIR, Tap  # noqa: E402

tap = Tap()
try:
    import jwt  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    from fixtures import Keys  # noqa: E402
except ImportError as e:
    tap.skip_all("python3-jwt / python3-cryptography missing: %s" % e)

PROBE = os.path.join(TOP_BUILDDIR, "t", "progs", "auth-probe")
if not os.access(PROBE, os.X_OK):
    tap.skip_all("t/progs/auth-probe not built")

TMP = tempfile.mkdtemp(prefix="tasker-auth-")
ALL_ALGS = "RS256,RS384,RS512,PS256,PS384,PS512,ES256,ES384"
PERMS17 = ["tasks:create", "tasks:read", "tasks:list", "tasks:cancel", "tasks:context_read",
           "steps:read", "steps:resolve", "dlq:read", "dlq:update", "dlq:stats",
           "templates:read", "templates:validate", "system:config_read",
           "system:handlers_read", "system:analytics_read", "worker:config_read",
           "worker:templates_read"]
_probes = []
_nconf = [0]


def write_conf(auth=None, sections=None, raw=None):
    """A config file with an [auth] section (dict) and extra sections
    ({name: dict}); returns its path."""
    _nconf[0] += 1
    path = os.path.join(TMP, "c%d.conf" % _nconf[0])
    lines = []
    if raw is not None:
        lines.append(raw)
    else:
        lines.append("[auth]")
        for k, v in (auth or {}).items():
            lines.append("%s = %s" % (k, v))
        for name, kv in (sections or {}).items():
            lines.append("[%s]" % name)
            for k, v in kv.items():
                lines.append("%s = %s" % (k, v))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


class Probe:
    def __init__(self, conf, role="orchestration"):
        self.err_path = os.path.join(TMP, "probe%d.err" % len(_probes))
        self.err = open(self.err_path, "w+")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = subprocess.Popen([PROBE, conf, role], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, text=True,
                                     env=env)
        _probes.append(self)
        self.start = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("auth-probe died:\n" + self.log())
        return json.loads(line)

    def cmd(self, *args):
        self.proc.stdin.write(json.dumps(list(args)) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def check(self, perm, authorization=None, api_key=None):
        return self.cmd("check", perm, authorization, api_key)

    def bearer(self, token, perm="tasks:create"):
        return self.check(perm, "Bearer " + token)

    def log(self):
        self.err.flush()
        with open(self.err_path) as f:
            return f.read()

    def close(self):
        """Ends the probe; returns its exit status (sanitizer reports fail it)."""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_error(conf, role="orchestration"):
    """Starts a probe that must fail; returns its error JSON."""
    p = Probe(conf, role)
    rc = p.close()
    if "error" not in p.start or rc != 1:
        raise AssertionError("expected a start-up error, got %r (rc %r)" % (p.start, rc))
    return p.start


def expect(r, code, reason=None, message=None, subject=None, severity=None):
    """Compares a check result; returns None or a diagnostic."""
    want = {"code": code}
    if reason is not None:
        want["reason"] = reason
    if message is not None:
        want["message"] = message
    if subject is not None:
        want["subject"] = subject
    if severity is not None:
        want["severity"] = severity
    bad = {k: (v, r.get(k)) for k, v in want.items() if r.get(k) != v}
    return None if not bad else "mismatch (want, got): %r\nfull: %r" % (bad, r)


def ok(name, r, code, **kw):
    d = expect(r, code, **kw)
    tap.ok(d is None, name, d)


INVALID = dict(code="unauthenticated", reason="invalid_token",
               message="Invalid or expired credentials")


def invalid(name, r):
    ok(name, r, **INVALID)


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def sanitizer_reports():
    bad = []
    for p in _probes:
        p.close()
        log = p.log()
        if any(m in log for m in SANITIZER_MARKS):
            bad.append(log[-3000:])
    return bad


def cleanup():
    for p in _probes:
        p.close()
    shutil.rmtree(TMP, ignore_errors=True)


# ================================================================== fixtures
keys = Keys(TMP)
K = keys


def t_public_key_algorithms():
    rsa = Probe(write_conf({"enabled": "true", "jwt_public_key_path": K.path("rsa1"),
                            "jwt_allowed_algorithms": ALL_ALGS}))
    tap.ok(rsa.start.get("ready"), "RSA public key config starts", rsa.start)
    for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"):
        ok("valid %s token accepted" % alg, rsa.bearer(K.token("rsa1", alg, sub="alice")),
           "ok", subject="alice")
    for alg in ("ES256", "ES384"):
        ec = Probe(write_conf({"enabled": "true", "jwt_public_key_path":
                               K.path("ec256" if alg == "ES256" else "ec384"),
                               "jwt_allowed_algorithms": alg}))
        key = "ec256" if alg == "ES256" else "ec384"
        ok("valid %s token accepted" % alg, ec.bearer(K.token(key, alg, sub="bob")), "ok",
           subject="bob")
        other = "ec384" if key == "ec256" else "ec256"
        invalid("%s token signed by another curve's key rejected" % alg,
                ec.bearer(K.token(other, "ES384" if alg == "ES256" else "ES256")))
        invalid("%s token with a bad signature rejected" % alg,
                ec.bearer(K.token(key, alg)[:-4] + "AAAA"))
        ok("%s token without typ (raw r||s signature)" % alg, ec.bearer(K.raw_token(
            key, alg, '{"alg":"%s"}' % alg, json.dumps(K.claims()))), "ok")
        head, body, raw = K.token(key, alg).split(".")
        r_s = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        half = len(r_s) // 2
        der_sig = encode_dss_signature(int.from_bytes(r_s[:half], "big"),
                                       int.from_bytes(r_s[half:], "big"))
        invalid("%s signature in DER form rejected" % alg, ec.bearer(
            head + "." + body + "." + base64.urlsafe_b64encode(der_sig).rstrip(b"=").decode()))
        tap.ok(ec.close() == 0, "probe (%s) exits cleanly" % alg, ec.log()[-2000:])

    ok("no credentials", rsa.check("tasks:create"), "unauthenticated",
       reason="missing_credentials", message="Missing credentials", severity="low")
    ok("empty Authorization counts as absent", rsa.check("tasks:create", "  "),
       "unauthenticated", reason="missing_credentials")
    invalid("bad signature (other RSA key)", rsa.bearer(K.token("rsa2", "RS256")))
    invalid("bad signature (PS256, other RSA key)", rsa.bearer(K.token("rsa2", "PS256")))
    tampered = K.token("rsa1", "RS256", perms=["tasks:read"]).split(".")
    tampered[1] = K.token("rsa1", "RS256", perms=["tasks:create"]).split(".")[1]
    invalid("payload swapped under a valid signature", rsa.bearer(".".join(tampered)))
    invalid("alg none rejected", rsa.bearer(K.unsigned("none")))
    invalid("alg none with a signature part rejected", rsa.bearer(K.unsigned("none", "AAAA")))
    invalid("alg NONE (case) rejected", rsa.bearer(K.unsigned("NONE")))
    r = rsa.bearer(K.hs256_with_public_pem("rsa1"))
    ok("HS256 keyed with the public key PEM (key confusion) rejected", r, **INVALID,
       severity="high")
    invalid("HS512 rejected", rsa.bearer(K.unsigned("HS512", "AAAA")))
    invalid("ES256 token against an RSA key rejected", rsa.bearer(K.token("ec256", "ES256")))
    r = rsa.bearer(K.token("rsa1", "RS256", exp_in=-3600))
    ok("expired token", r, "unauthenticated", reason="expired_token",
       message="Invalid or expired credentials", severity="low")
    ok("exp 10 s ago is inside the default 30 s leeway",
       rsa.bearer(K.token("rsa1", "RS256", exp_in=-10)), "ok")
    invalid("missing exp", rsa.bearer(K.token("rsa1", "RS256", drop=("exp",))))
    invalid("exp not a number", rsa.bearer(K.token("rsa1", "RS256", exp="tomorrow")))
    invalid("nbf in the future", rsa.bearer(K.token("rsa1", "RS256", nbf_in=3600)))
    ok("nbf in the past", rsa.bearer(K.token("rsa1", "RS256", nbf_in=-60)), "ok")
    invalid("wrong audience", rsa.bearer(K.token("rsa1", "RS256", aud="worker-api")))
    invalid("missing audience", rsa.bearer(K.token("rsa1", "RS256", drop=("aud",))))
    ok("audience array containing ours",
       rsa.bearer(K.token("rsa1", "RS256", aud=["other", "tasker-api"])), "ok")
    invalid("audience array without ours",
            rsa.bearer(K.token("rsa1", "RS256", aud=["other", "worker-api"])))
    invalid("wrong issuer", rsa.bearer(K.token("rsa1", "RS256", iss="someone-else")))
    invalid("missing issuer", rsa.bearer(K.token("rsa1", "RS256", drop=("iss",))))
    invalid("missing sub", rsa.bearer(K.token("rsa1", "RS256", drop=("sub",))))
    r = rsa.bearer(K.token("rsa1", "RS256", perms=["tasks:read"], sub="carol"))
    ok("missing permission", r, "forbidden", reason="missing_permission",
       message="Missing permission: tasks:create", subject="carol", severity="medium")
    ok("no permissions claim = no permissions",
       rsa.bearer(K.token("rsa1", "RS256", perms=None)), "forbidden",
       reason="missing_permission")
    ok("no permissions claim, public resource", rsa.check(None, "Bearer " + K.token(
        "rsa1", "RS256", perms=None)), "ok", subject="anonymous")
    invalid("permissions claim not an array",
            rsa.bearer(K.token("rsa1", "RS256", perms=None, permissions="tasks:create")))
    invalid("permissions claim with a non-string",
            rsa.bearer(K.token("rsa1", "RS256", perms=["tasks:create", 7])))
    wild = K.token("rsa1", "RS256", perms=["tasks:*"])
    ok("tasks:* grants tasks:create", rsa.bearer(wild), "ok")
    ok("tasks:* grants tasks:context_read", rsa.bearer(wild, "tasks:context_read"), "ok")
    ok("tasks:* does not grant dlq:read", rsa.bearer(wild, "dlq:read"), "forbidden",
       message="Missing permission: dlq:read")
    for res, perm in (("steps", "steps:resolve"), ("dlq", "dlq:stats"),
                      ("templates", "templates:validate"), ("system", "system:config_read"),
                      ("worker", "worker:templates_read")):
        ok("%s:* grants %s" % (res, perm),
           rsa.bearer(K.token("rsa1", "RS256", perms=[res + ":*"]), perm), "ok")
    r = rsa.bearer(K.token("rsa1", "RS256", perms=["*"]))
    ok("bare * is unknown (strict)", r, "unauthenticated", reason="unknown_permissions",
       message="Unknown permissions: *")
    r = rsa.bearer(K.token("rsa1", "RS256", perms=["tasks:create", "foo:bar", "tasks:delete"]))
    ok("unknown permissions rejected (strict)", r, "unauthenticated",
       reason="unknown_permissions", message="Unknown permissions: foo:bar, tasks:delete")
    many = ["x%03d:y" % i for i in range(60)]
    r = rsa.bearer(K.token("rsa1", "RS256", perms=many))
    tap.ok(r["code"] == "unauthenticated" and r["message"].endswith("...")
           and len(r["message"]) < 256, "long unknown list is cut with ...", r)
    tap.ok("unknown permission" in rsa.log() and "foo:bar" in rsa.log(),
           "unknown permissions are logged", rsa.log()[-2000:])
    for bad in ("abc", "a.b", "a.b.c", "a.b.c.d", "....", K.token("rsa1", "RS256") + "x",
                "eyJhbGciOiJSUzI1NiJ9.e30.", "!!!.@@@.###",
                K.b64url_json({"typ": "JWT"}) + ".e30.AAAA",
                K.b64url_json(["RS256"]) + ".e30.AAAA"):
        invalid("malformed token %r" % bad[:40], rsa.bearer(bad))
    dup = K.raw_token("rsa1", "RS256", '{"alg":"RS256","typ":"JWT"}',
                      json.dumps(K.claims())[:-1] + ', "exp": 1}')
    invalid("duplicate claim names rejected", rsa.bearer(dup))
    crit = K.raw_token("rsa1", "RS256", '{"alg":"RS256","crit":["x"],"x":1}',
                       json.dumps(K.claims()))
    invalid("crit header rejected", rsa.bearer(crit))
    ok("token signed over exact bytes accepted", rsa.bearer(K.raw_token(
        "rsa1", "RS256", '{"alg":"RS256","typ":"JWT"}', json.dumps(K.claims()))), "ok")
    ok("token without typ accepted", rsa.bearer(K.raw_token(
        "rsa1", "PS384", '{"alg":"PS384"}', json.dumps(K.claims()))), "ok")
    invalid("typ other than JWT rejected", rsa.bearer(K.raw_token(
        "rsa1", "RS256", '{"alg":"RS256","typ":"JOSE+JSON"}', json.dumps(K.claims()))))
    invalid("header alg RS256 over a PS256 signature rejected", rsa.bearer(K.raw_token(
        "rsa1", "PS256", '{"alg":"RS256"}', json.dumps(K.claims()))))
    tok = K.token("rsa1", "RS256")
    ok("scheme is case-insensitive", rsa.check("tasks:create", "bearer " + tok), "ok")
    ok("extra spaces around the token", rsa.check("tasks:create", "  BEARER   %s  " % tok),
       "ok")
    invalid("Basic scheme is invalid credentials", rsa.check("tasks:create", "Basic dXNlcg=="))
    invalid("Bearer without a token", rsa.check("tasks:create", "Bearer"))
    invalid("Bearer with two words", rsa.check("tasks:create", "Bearer a b"))
    invalid("a bare token without scheme", rsa.check("tasks:create", tok))
    ok("public resource (no permission) needs nothing", rsa.check(None), "ok",
       subject="anonymous")
    r = rsa.check("tasks:fly", "Bearer " + tok)
    tap.ok(r["code"] == "forbidden" and r["rc"] < 0,
           "a check for a permission that is not one of the 17 fails closed", r)
    big = K.token("rsa1", "RS256", pad="x" * 20000)
    invalid("token over 16 KiB refused", rsa.bearer(big))
    tap.ok(rsa.close() == 0, "probe exits cleanly", rsa.log()[-2000:])

    # The allowed list is enforced even for algorithms the key could verify.
    default = Probe(write_conf({"enabled": "true", "jwt_public_key_path": K.path("rsa1")}))
    ok("default allows RS256", default.bearer(K.token("rsa1", "RS256")), "ok")
    for alg in ("RS384", "RS512", "PS256"):
        invalid("%s not in the default allowed list" % alg,
                default.bearer(K.token("rsa1", alg)))
    tap.ok(default.close() == 0, "probe exits cleanly")


def t_settings_variants():
    lax = Probe(write_conf({"enabled": "true", "jwt_public_key_path": K.path("rsa1"),
                            "strict_validation": "false", "leeway_seconds": "0",
                            "log_unknown_permissions": "false"}))
    ok("unknown permissions ignored when not strict",
       lax.bearer(K.token("rsa1", "RS256", perms=["tasks:create", "foo:bar"])), "ok")
    ok("bare * is still not a wildcard when not strict",
       lax.bearer(K.token("rsa1", "RS256", perms=["*"])), "forbidden",
       reason="missing_permission")
    ok("leeway 0: exp 10 s ago is expired",
       lax.bearer(K.token("rsa1", "RS256", exp_in=-10)), "unauthenticated",
       reason="expired_token")
    tap.ok("foo:bar" not in lax.log(), "log_unknown_permissions = false: not logged")
    lax.close()

    custom = Probe(write_conf({"enabled": "true", "jwt_public_key_path": K.path("rsa1"),
                               "permissions_claim": "scopes", "jwt_issuer": "idp.example",
                               "jwt_audience": "tasks-prod"}))
    ok("custom claim, issuer, audience", custom.bearer(K.token(
        "rsa1", "RS256", claim="scopes", iss="idp.example", aud="tasks-prod")), "ok")
    ok("permissions under the default name are not read", custom.bearer(K.token(
        "rsa1", "RS256", iss="idp.example", aud="tasks-prod")), "forbidden")
    invalid("default issuer no longer accepted", custom.bearer(K.token(
        "rsa1", "RS256", claim="scopes", aud="tasks-prod")))
    custom.close()

    worker = Probe(write_conf({"enabled": "true", "jwt_public_key_path": K.path("rsa1")}),
                   role="worker")
    info = worker.cmd("info")
    tap.ok(info["jwt_issuer"] == "tasker-worker" and info["jwt_audience"] == "worker-api",
           "worker role defaults", info)
    ok("worker token accepted", worker.bearer(K.token(
        "rsa1", "RS256", iss="tasker-worker", aud="worker-api",
        perms=["worker:templates_read"]), "worker:templates_read"), "ok")
    invalid("orchestration token rejected by the worker",
            worker.bearer(K.token("rsa1", "RS256", perms=["worker:*"]),
                          "worker:templates_read"))
    worker.close()

    # Key formats: PKCS#1 PEM, inline PEM (one line with \n, or INI
    # continuation lines), path wins over inline.
    pkcs1 = os.path.join(TMP, "rsa1.pkcs1.pem")
    with open(pkcs1, "wb") as f:
        f.write(K.pkcs1_pem("rsa1"))
    p = Probe(write_conf({"enabled": "true", "jwt_public_key_path": pkcs1}))
    ok("PKCS#1 RSA PUBLIC KEY file", p.bearer(K.token("rsa1", "RS256")), "ok")
    p.close()
    pem = K.public_pem("rsa1").decode().strip().splitlines()
    multi = "[auth]\nenabled = true\njwt_public_key = " + pem[0] + "\n" + "\n".join(
        "    " + line for line in pem[1:]) + "\n"
    p = Probe(write_conf(raw=multi))
    tap.ok(p.start.get("ready"), "inline PEM on continuation lines loads", p.start)
    if p.start.get("ready"):
        ok("inline PEM (continuation lines)", p.bearer(K.token("rsa1", "RS256")), "ok")
    p.close()
    escaped = "\\n".join(K.public_pem("ec256").decode().strip().splitlines())
    p = Probe(write_conf({"enabled": "true", "jwt_public_key": escaped,
                          "jwt_allowed_algorithms": "ES256"}))
    tap.ok(p.start.get("ready"), "inline PEM with \\n escapes loads", p.start)
    if p.start.get("ready"):
        ok("inline PEM (\\n escapes)", p.bearer(K.token("ec256", "ES256")), "ok")
    p.close()
    p = Probe(write_conf(raw=multi + "jwt_public_key_path = %s\n" % K.path("rsa2")))
    ok("path wins over inline: its key verifies", p.bearer(K.token("rsa2", "RS256")), "ok")
    invalid("path wins over inline: the inline key does not",
            p.bearer(K.token("rsa1", "RS256")))
    p.close()


def t_jwks_file():
    jwks_path = os.path.join(TMP, "jwks.json")
    K.write_jwks(jwks_path, ["rsa1", "ec256", "ec384"],
                 extra=[K.jwk("rsa3", kid="pinned", alg="RS256"),
                        K.jwk("rsa2", kid="enc", use="enc"),
                        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
                        {"kty": "RSA", "n": "AQAB", "e": "AQAB"}])
    p = Probe(write_conf({"enabled": "true", "jwt_verification_method": "jwks",
                          "jwks_url": "file://" + jwks_path,
                          "jwt_allowed_algorithms": ALL_ALGS,
                          "jwks_min_refresh_interval_seconds": "2"}))
    tap.ok(p.start.get("ready"), "JWKS file loads", p.start)
    ok("JWKS RS256 by kid", p.bearer(K.token("rsa1", "RS256", kid="rsa1")), "ok")
    ok("JWKS PS512 by kid", p.bearer(K.token("rsa1", "PS512", kid="rsa1")), "ok")
    ok("JWKS ES256 by kid", p.bearer(K.token("ec256", "ES256", kid="ec256")), "ok")
    ok("JWKS ES384 by kid", p.bearer(K.token("ec384", "ES384", kid="ec384")), "ok")
    invalid("JWKS token without kid", p.bearer(K.token("rsa1", "RS256")))
    invalid("JWKS unknown kid", p.bearer(K.token("rsa1", "RS256", kid="nobody")))
    invalid("JWKS kid of another key", p.bearer(K.token("rsa2", "RS256", kid="rsa1")))
    invalid("JWKS ES256 token naming an RSA kid",
            p.bearer(K.token("ec256", "ES256", kid="rsa1")))
    ok("JWK with alg RS256 verifies RS256", p.bearer(K.token("rsa3", "RS256", kid="pinned")),
       "ok")
    invalid("JWK with alg RS256 refuses PS256", p.bearer(K.token("rsa3", "PS256", kid="pinned")))
    invalid("JWK with use enc is not loaded", p.bearer(K.token("rsa2", "RS256", kid="enc")))
    invalid("symmetric JWK is not loaded", p.bearer(K.hs256_with_public_pem("rsa1")))
    tap.ok("skipped" in p.log(), "unusable JWKS entries are logged", p.log()[-2000:])

    # Rotation: a new kid triggers one refresh, at most one per 2 s.
    time.sleep(2.2)
    K.write_jwks(jwks_path, ["rsa1", "rsa2"])
    ok("rotated key found after refresh on unknown kid",
       p.bearer(K.token("rsa2", "RS256", kid="rsa2")), "ok")
    K.write_jwks(jwks_path, ["rsa1", "rsa2", "rsa3"])
    invalid("a second unknown kid right away is rate limited",
            p.bearer(K.token("rsa3", "RS256", kid="rsa3")))
    time.sleep(2.2)
    ok("after the minimum interval the new kid is fetched",
       p.bearer(K.token("rsa3", "RS256", kid="rsa3")), "ok")
    invalid("keys dropped from the set are gone", p.bearer(K.token("ec256", "ES256",
                                                                   kid="ec256")))
    tap.ok(p.close() == 0, "probe exits cleanly", p.log()[-2000:])

    p = Probe(write_conf({"enabled": "true", "jwt_verification_method": "jwks",
                          "jwks_url": jwks_path}))
    ok("JWKS as a plain path", p.bearer(K.token("rsa1", "RS256", kid="rsa1")), "ok")
    p.close()


class JwksServer:
    """Serves a JWKS over http on 127.0.0.1; counts requests; can fail."""

    def __init__(self):
        self.doc = b"{}"
        self.status = 200
        self.hits = 0
        self.lock = threading.Lock()
        outer = self

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with outer.lock:
                    outer.hits += 1
                    status, body = outer.status, outer.doc
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def set(self, names=None, status=None):
        with self.lock:
            if names is not None:
                self.doc = json.dumps(K.jwks(names)).encode()
            if status is not None:
                self.status = status

    def count(self):
        with self.lock:
            return self.hits

    def url(self, path="/jwks.json"):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def t_jwks_http():
    srv = JwksServer()
    try:
        srv.set(["rsa1"])
        base = {"enabled": "true", "jwt_verification_method": "jwks",
                "jwks_url": srv.url(), "jwks_url_allow_http": "true",
                "jwks_min_refresh_interval_seconds": "0"}
        p = Probe(write_conf(base))
        tap.ok(p.start.get("ready") and srv.count() == 1, "JWKS fetched over http at start",
               (p.start, srv.count()))
        ok("http JWKS token", p.bearer(K.token("rsa1", "RS256", kid="rsa1")), "ok")
        tap.ok(srv.count() == 1, "known kid: no fetch", srv.count())
        srv.set(["rsa2"])
        ok("rotated key: refresh on unknown kid",
           p.bearer(K.token("rsa2", "RS256", kid="rsa2")), "ok")
        tap.ok(srv.count() == 2, "one fetch for the rotation", srv.count())
        invalid("old kid gone after rotation", p.bearer(K.token("rsa1", "RS256", kid="rsa1")))
        # Many threads while the set keeps falling due: one refreshes, the
        # others go on with the current keys.
        fast = write_conf(dict(base, jwks_refresh_interval_seconds="1"))
        srv.set(["rsa1", "rsa2"])
        before = srv.count()
        r = p.cmd("stress", 4, 2, "tasks:create", "Bearer " + K.token(
            "rsa2", "RS256", kid="rsa2"), None, fast, fast, 2500)
        tap.ok("error" not in r and r["ok"] > 0 and r["ok"] + r["unauthenticated"] +
               r["forbidden"] + r["other"] == r["ok"] and srv.count() - before >= 3,
               "concurrent checks across JWKS refreshes all pass", (r, srv.count() - before))
        info = json.dumps(p.cmd("info"))
        tap.ok("127.0.0.1" not in info and "jwks.json" not in info and "jwks" in info,
               "public info shows the method, not the URL", info)
        p.close()

        limited = dict(base, jwks_min_refresh_interval_seconds="30")
        srv.set(["rsa1"])
        p = Probe(write_conf(limited))
        before = srv.count()
        for i in range(5):
            p.bearer(K.token("rsa1", "RS256", kid="made-up-%d" % i))
        tap.ok(srv.count() == before, "unknown kids within the interval cause no fetch",
               srv.count() - before)
        p.close()

        # Stale keys: due after 1 s, tolerated 2 s more, then fail closed.
        stale = dict(base, jwks_refresh_interval_seconds="1", jwks_max_stale_seconds="2")
        srv.set(["rsa1"], status=200)
        p = Probe(write_conf(stale))
        tok = K.token("rsa1", "RS256", kid="rsa1")
        srv.set(status=500)
        time.sleep(1.3)
        ok("refresh fails: stale keys still accepted", p.bearer(tok), "ok")
        tap.ok("failed" in p.log(), "failed refresh logged", p.log()[-2000:])
        time.sleep(2.2)
        invalid("past max stale: fail closed", p.bearer(tok))
        tap.ok("refusing JWTs" in p.log(), "fail-closed logged", p.log()[-2000:])
        srv.set(status=200)
        ok("refresh works again: accepted", p.bearer(tok), "ok")
        srv.set(status=404)
        time.sleep(1.3)
        ok("HTTP 404 on refresh: stale keys kept", p.bearer(tok), "ok")
        srv.set(names=["rsa1"], status=200)
        srv.doc = b'{"keys": []}'
        time.sleep(1.2)
        ok("an empty key set is a failed refresh: old keys kept", p.bearer(tok), "ok")
        tap.ok(p.close() == 0, "probe exits cleanly", p.log()[-2000:])

        e = start_error(write_conf(dict(base, jwks_url_allow_http="false")))
        tap.ok("auth.jwks_url" in e["error"] and "http" in e["error"],
               "http JWKS refused without jwks_url_allow_http", e)
        srv.set(status=500)
        e = start_error(write_conf(base))
        tap.ok("auth.jwks_url" in e["error"] and "500" in e["error"],
               "first fetch failing fails start-up", e)
        e = start_error(write_conf(dict(base, jwks_url="https://127.0.0.1:%d/x" % srv.port)))
        tap.ok("auth.jwks_url" in e["error"], "https to a plain-http server fails (TLS)", e)
    finally:
        srv.stop()


def t_api_keys():
    conf = write_conf({"enabled": "true", "api_keys_enabled": "true",
                       "api_key": "legacy-key-0123456789abcdef"},
                      {"auth.api_key.reader": {"key": "reader-key-0123456789abcdef",
                                               "permissions": "tasks:read, tasks:list",
                                               "description": "dashboard"},
                       "auth.api_key.ops": {"key": "ops-key-0123456789abcdef",
                                            "permissions": "dlq:*,steps:resolve"}})
    p = Probe(conf)
    tap.ok(p.start.get("ready"), "API-key-only config starts", p.start)
    ok("API key with the permission", p.check("tasks:read", None,
                                              "reader-key-0123456789abcdef"), "ok",
       subject="api-key:dashboard")
    ok("API key without the permission", p.check("tasks:create", None,
                                                 "reader-key-0123456789abcdef"),
       "forbidden", reason="missing_permission", message="Missing permission: tasks:create")
    ok("API key wildcard dlq:*", p.check("dlq:update", None, "ops-key-0123456789abcdef"), "ok",
       subject="api-key:ops")
    ok("invalid API key", p.check("tasks:read", None, "nope"), "unauthenticated",
       reason="invalid_api_key", message="Invalid or expired credentials", severity="high")
    ok("API key prefix is not a key", p.check("tasks:read", None, "reader-key-0123456789abcde"),
       "unauthenticated", reason="invalid_api_key")
    ok("missing credentials", p.check("tasks:read"), "unauthenticated",
       reason="missing_credentials")
    ok("bearer is tried first: a bad token is not rescued by a good key",
       p.check("tasks:read", "Bearer x.y.z", "reader-key-0123456789abcdef"),
       **INVALID)
    legacy = [p.check(perm, None, "legacy-key-0123456789abcdef") for perm in PERMS17]
    tap.ok(all(r["code"] == "ok" and r["subject"] == "api-key:legacy" for r in legacy),
           "legacy api_key holds all 17 permissions",
           [r for r in legacy if r["code"] != "ok"])
    info = p.cmd("info")
    tap.ok(info["api_key_count"] == 3 and info["api_key_header"] == "x-api-key"
           and info["verification_method"] == "none" and info["enabled"],
           "public info counts keys", info)
    tap.ok("key-0123" not in json.dumps(info), "public info shows no key", info)
    tap.ok(p.close() == 0, "probe exits cleanly", p.log()[-2000:])

    p = Probe(write_conf({"enabled": "true", "api_key": "legacy-key-0123456789abcdef",
                          "api_key_header": "X-Tasker-Key"},
                         {"auth.api_key.reader": {"key": "reader-key-0123456789abcdef",
                                                  "permissions": "tasks:read"}}))
    tap.ok(p.cmd("info")["header"] == "x-tasker-key", "API-key header name lower-cased")
    ok("registry entries unused without api_keys_enabled",
       p.check("tasks:read", None, "reader-key-0123456789abcdef"), "unauthenticated",
       reason="invalid_api_key")
    tap.ok("api_keys_enabled is false" in p.log(), "ignored entries are logged")
    ok("legacy key works alone", p.check("tasks:read", None, "legacy-key-0123456789abcdef"),
       "ok")
    p.close()

    p = Probe(write_conf({"enabled": "true", "api_keys_enabled": "true",
                          "strict_validation": "false"},
                         {"auth.api_key.x": {"key": "x-key-0123456789abcdef",
                                             "permissions": "tasks:read,*,foo:bar"}}))
    ok("non-strict: unknown permissions of a key are ignored",
       p.check("tasks:read", None, "x-key-0123456789abcdef"), "ok")
    ok("non-strict: * of a key grants nothing else",
       p.check("tasks:create", None, "x-key-0123456789abcdef"), "forbidden")
    p.close()

    e = start_error(write_conf({"enabled": "true", "api_keys_enabled": "true"},
                               {"auth.api_key.x": {"key": "x-key-0123456789abcdef",
                                                   "permissions": "tasks:read,*"}}))
    tap.ok("auth.api_key.x.permissions" in e["error"] and '"*"' in e["error"],
           "strict: unknown permission in a key entry is a config error", e)
    e = start_error(write_conf({"enabled": "true", "api_keys_enabled": "true"},
                               {"auth.api_key.a": {"key": "same-0123456789abcdef"},
                                "auth.api_key.b": {"key": "same-0123456789abcdef"}}))
    tap.ok("twice" in e["error"], "duplicate key values refused", e)
    e = start_error(write_conf({"enabled": "true", "api_keys_enabled": "true"},
                               {"auth.api_key.a": {"permissions": "tasks:read"}}))
    tap.ok("auth.api_key.a.key" in e["error"], "entry without key= refused", e)
    e = start_error(write_conf({"enabled": "true"},
                               {"auth.api_key.a": {"secret": "x"}}))
    tap.ok("auth.api_key.a.secret" in e["error"] and "unknown key" in e["error"],
           "unknown key in an API-key section", e)


def t_disabled_and_errors():
    p = Probe(write_conf({"enabled": "false", "jwt_public_key_path": "/nonexistent"}))
    tap.ok(p.start.get("ready"), "disabled auth does not read key files", p.start)
    ok("disabled: no credentials pass", p.check("tasks:create"), "ok", subject="anonymous")
    ok("disabled: garbage credentials pass", p.check("dlq:update", "Basic x", "nope"), "ok",
       subject="anonymous")
    info = p.cmd("info")
    tap.ok(not info["enabled"] and info["verification_method"] == "none"
           and info["api_key_count"] == 0, "disabled: public info", info)
    tap.ok("authentication disabled" in p.log(), "disabled auth logged at start-up", p.log())
    p.close()
    p = Probe(write_conf(raw="[server]\nlog_level = info\n"))
    ok("no [auth] section: disabled", p.check("tasks:create"), "ok", subject="anonymous")
    p.close()

    cases = [
        ({"bogus": "1"}, ["auth.bogus", "unknown key"], "unknown key"),
        ({"jwt_allowed_algorithms": "RS256,HS256"}, ["auth.jwt_allowed_algorithms", "HS256"],
         "HS256 in the allowed list"),
        ({"jwt_allowed_algorithms": "none"}, ["auth.jwt_allowed_algorithms", "none"],
         "none in the allowed list"),
        ({"jwt_allowed_algorithms": "RS256,ES512"}, ["auth.jwt_allowed_algorithms", "ES512"],
         "unsupported algorithm in the list"),
        ({"jwt_allowed_algorithms": " , "}, ["auth.jwt_allowed_algorithms", "empty"],
         "empty algorithm list"),
        ({"enabled": "maybe"}, ["auth.enabled", "boolean"], "bad boolean"),
        ({"leeway_seconds": "9999"}, ["auth.leeway_seconds", "range"], "leeway out of range"),
        ({"jwks_refresh_interval_seconds": "soon"}, ["auth.jwks_refresh_interval_seconds"],
         "non-integer"),
        ({"jwt_verification_method": "hmac"}, ["auth.jwt_verification_method"], "bad method"),
        ({"jwks_url": "ftp://x/jwks"}, ["auth.jwks_url", "ftp://"], "bad URL scheme"),
        ({"api_key_header": "X API Key"}, ["auth.api_key_header"], "header with spaces"),
        ({"enabled": "true"}, ["auth.enabled", "nothing can verify"], "no key material"),
        ({"enabled": "true", "jwt_verification_method": "jwks"}, ["auth.jwks_url", "required"],
         "jwks without a URL"),
        ({"enabled": "true", "jwt_public_key_path": os.path.join(TMP, "missing.pem")},
         ["auth.jwt_public_key_path", "missing.pem"], "missing key file"),
        ({"enabled": "true", "jwt_public_key_path": K.private_path("rsa1")},
         ["auth.jwt_public_key_path", "private key"], "private key configured"),
        ({"enabled": "true", "jwt_public_key_path": K.path("rsa1024")},
         ["auth.jwt_public_key_path", "1024", "2048"], "RSA 1024 too small"),
        ({"enabled": "true", "jwt_public_key_path": K.path("rsa1"),
          "jwt_allowed_algorithms": "ES256"}, ["auth.jwt_allowed_algorithms", "RSA"],
         "algorithms that cannot use the key"),
        ({"enabled": "true", "jwt_public_key": "not a pem"}, ["auth.jwt_public_key", "PEM"],
         "inline text that is not PEM"),
        ({"enabled": "true", "jwt_verification_method": "jwks",
          "jwks_url": os.path.join(TMP, "none.json")}, ["auth.jwks_url", "none.json"],
         "missing JWKS file"),
    ]
    for auth, needles, name in cases:
        e = start_error(write_conf(auth))
        tap.ok(all(n in e["error"] for n in needles) and e["code"] == CONFIG_ERR_NAME,
               "config error: %s" % name, e)


def t_reload():
    base = {"enabled": "true", "jwt_public_key_path": K.path("rsa1")}
    c1 = write_conf(dict(base, api_keys_enabled="true"),
                    {"auth.api_key.k": {"key": "k-0123456789abcdef",
                                        "permissions": "tasks:read"}})
    c2 = write_conf({"enabled": "true", "jwt_public_key_path": K.path("rsa2"),
                     "api_keys_enabled": "true"},
                    {"auth.api_key.k": {"key": "k-0123456789abcdef",
                                        "permissions": "tasks:list"}})
    p = Probe(c1)
    t1, t2 = K.token("rsa1", "RS256"), K.token("rsa2", "RS256")
    ok("before reload: key 1 accepted", p.bearer(t1), "ok")
    tap.ok(p.cmd("reload", c2).get("ok"), "reload to key 2")
    invalid("after reload: key 1 rejected", p.bearer(t1))
    ok("after reload: key 2 accepted", p.bearer(t2), "ok")
    r = p.cmd("reload", write_conf({"enabled": "true", "jwt_public_key_path": "/nonexistent"}))
    tap.ok("error" in r and "auth.jwt_public_key_path" in r["error"],
           "reload with a broken config fails", r)
    ok("failed reload keeps the old settings", p.bearer(t2), "ok")
    tap.ok(p.cmd("reload", write_conf({"enabled": "false"})).get("ok"), "reload to disabled")
    ok("disabled after reload", p.check("tasks:create"), "ok", subject="anonymous")
    tap.ok(p.cmd("reload", c1).get("ok"), "reload back to enabled")
    # c1 grants tasks:read to the key, c2 only tasks:list: every check is
    # either allowed or forbidden, never a failure from a half-swapped state.
    r = p.cmd("stress", 4, 60, "tasks:read", None, "k-0123456789abcdef", c1, c2)
    tap.ok("error" not in r and r["other"] == 0 and r["unauthenticated"] == 0
           and r["ok"] > 0 and r["forbidden"] > 0 and r["reloads"] == 60 and r["threads"] == 4,
           "checks during reloads see old or new settings, never a mix", r)
    tap.ok(p.close() == 0, "probe exits cleanly", p.log()[-2000:])


def t_tokens_tool():
    d = os.path.join(TMP, "keys")
    p = Probe(write_conf({"enabled": "false"}))
    r = p.cmd("gen-keys", d, 2048)
    tap.ok(r.get("ok"), "generate-keys", r)
    priv, pub = os.path.join(d, "private.pem"), os.path.join(d, "public.pem")
    tap.ok(os.path.isfile(priv) and os.stat(priv).st_mode & 0o777 == 0o600,
           "private.pem has mode 0600", oct(os.stat(priv).st_mode) if os.path.exists(priv)
           else "missing")
    tap.ok(os.stat(d).st_mode & 0o777 == 0o700, "key directory created with mode 0700")
    with open(priv, "rb") as f:
        before = f.read()
    r = p.cmd("gen-keys", d, 2048)
    tap.ok("error" in r and "exists" in r["error"] and r["code"] == EXISTS_NAME,
           "generate-keys refuses to overwrite", r)
    with open(priv, "rb") as f:
        tap.ok(f.read() == before, "existing key untouched")
    r = p.cmd("gen-keys", os.path.join(TMP, "small"), 1024)
    tap.ok("error" in r and "1024" in r["error"], "generate-keys refuses 1024 bits", r)

    r = p.cmd("gen-token", priv, "ci-bot", "tasker-core", "tasker-api",
              "tasks:create, dlq:*", 2)
    tap.ok("token" in r, "generate-token", r)
    tok = r.get("token", "")
    try:
        with open(pub, "rb") as f:
            claims = jwt.decode(tok, f.read(), algorithms=["RS256"], audience="tasker-api",
                                issuer="tasker-core")
        tap.ok(claims["sub"] == "ci-bot" and claims["permissions"] == ["tasks:create", "dlq:*"]
               and claims["exp"] - claims["iat"] == 7200
               and jwt.get_unverified_header(tok)["alg"] == "RS256",
               "PyJWT verifies the generated token", claims)
    except Exception as e:  # noqa: BLE001
        tap.ok(False, "PyJWT verifies the generated token", e)
    r = p.cmd("gen-token", priv, "ci-bot", "tasker-core", "tasker-api", "tasks:create,*", 2)
    tap.ok("error" in r and '"*"' in r["error"], "generate-token refuses bare *", r)
    r = p.cmd("gen-token", priv, "ci-bot", "tasker-core", "tasker-api", "tasks:fly", 2)
    tap.ok("error" in r and "tasks:fly" in r["error"], "generate-token names an unknown "
           "permission", r)
    r = p.cmd("gen-token", priv, "ci-bot", "tasker-core", "tasker-api", "tasks:read", 0)
    tap.ok("error" in r and "expiry" in r["error"], "generate-token refuses 0 hours", r)
    r = p.cmd("gen-token", K.private_path("ec256"), "x", "tasker-core", "tasker-api",
              "tasks:read", 1)
    tap.ok("error" in r and "RSA" in r["error"], "generate-token needs an RSA key", r)
    r = p.cmd("gen-token", pub, "x", "tasker-core", "tasker-api", "tasks:read", 1)
    tap.ok("error" in r and "private key" in r["error"],
           "generate-token refuses a public key", r)

    r = p.cmd("validate", tok, pub, None, None)
    tap.ok(r.get("claims", {}).get("sub") == "ci-bot", "validate-token prints the claims", r)
    r = p.cmd("validate", tok, pub, "tasker-core", "worker-api")
    tap.ok("error" in r and "audience" in r["error"], "validate-token checks the audience", r)
    r = p.cmd("validate", tok, K.path("rsa1"), None, None)
    tap.ok("error" in r and "signature" in r["error"], "validate-token with another key", r)
    r = p.cmd("validate", K.token("ec384", "ES384"), K.path("ec384"), None, None)
    tap.ok(r.get("claims", {}).get("sub") == "svc-test", "validate-token ES384 (PyJWT token)",
           r)
    r = p.cmd("validate", K.token("rsa1", "RS256", exp_in=-60), K.path("rsa1"), None, None)
    tap.ok("error" in r and "expired" in r["error"], "validate-token on an expired token", r)
    p.close()

    srv = Probe(write_conf({"enabled": "true", "jwt_public_key_path": pub}))
    ok("taskerd-side checker accepts the generated token", srv.bearer(tok), "ok",
       subject="ci-bot")
    ok("generated dlq:* works", srv.bearer(tok, "dlq:stats"), "ok")
    srv.close()


def t_public_info():
    p = Probe(write_conf({"enabled": "true", "jwt_public_key_path": K.path("rsa1"),
                          "jwt_allowed_algorithms": "PS256, RS256", "api_key": "s3cr3t-0123456789",
                          "strict_validation": "false"}))
    info = p.cmd("info")
    tap.ok(info["verification_method"] == "public_key" and info["allowed_algorithms"] ==
           "RS256,PS256" and info["api_key_count"] == 1 and not info["strict_validation"]
           and info["jwt_issuer"] == "tasker-core" and info["jwt_audience"] == "tasker-api",
           "public info fields", info)
    text = json.dumps(info)
    tap.ok(K.path("rsa1") not in text and "s3cr3t" not in text and "BEGIN" not in text,
           "public info has no path, key or secret", text)
    p.close()


CONFIG_ERR_NAME = None
EXISTS_NAME = None


def main():
    global CONFIG_ERR_NAME, EXISTS_NAME
    # The names trpc_strerror() gives the two codes the tests look for.
    e = start_error(write_conf({"bogus": "1"}))
    CONFIG_ERR_NAME = e["code"]
    tap.ok(bool(CONFIG_ERR_NAME), "config errors carry a code", e)
    probe = Probe(write_conf({"enabled": "false"}))
    d = os.path.join(TMP, "exists")
    probe.cmd("gen-keys", d, 2048)
    EXISTS_NAME = probe.cmd("gen-keys", d, 2048).get("code")
    probe.close()
    known = Probe(write_conf({"enabled": "false"}))
    tap.ok(all(known.cmd("known", x)["known"] for x in PERMS17 + [
        "tasks:*", "steps:*", "dlq:*", "templates:*", "system:*", "worker:*"]),
        "the 17 permissions and 6 wildcards are known")
    tap.ok(not any(known.cmd("known", x)["known"] for x in [
        "*", "tasks", "tasks:", "tasks:**", "health:*", "metrics:read", "Tasks:create",
        "tasks:create ", ":*", "*:*"]), "other strings are unknown")
    known.close()
    for fn in (t_public_key_algorithms, t_settings_variants, t_jwks_file, t_jwks_http,
               t_api_keys, t_disabled_and_errors, t_reload, t_tokens_tool, t_public_info):
        tap.check(fn.__name__, fn)


try:
    main()
    bad = sanitizer_reports()
    tap.ok(not bad, "no sanitizer reports from %d probe runs" % len(_probes), "\n".join(bad))
finally:
    cleanup()
tap.done()
