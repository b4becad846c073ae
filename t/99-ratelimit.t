#!/usr/bin/python3
"""Rate limiting (ratelimit.*): per-client token buckets keyed by the peer
IP address, checked when a call is dispatched. A client over its budget
gets RESOURCE_EXHAUSTED with grpc-retry-pushback-ms and retry-after, a
client from another address is unaffected, an exempt service is not
limited, tokens refill over time, and a bad rule is refused at start-up.

Then taskerd (private PostgreSQL, t/lib/tasker_env.py) with
ratelimit.key = identity: two API keys from the same address have their
own budgets over gRPC (checked right after authentication), and the REST
API answers 429 RATE_LIMITED with Retry-After. Prints TAP.
"""
import http.client
import json
import os
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402

tap = harness.Tap()
try:
    import h2raw  # noqa: E402
except ImportError:
    tap.skip_all("python3-h2 is not installed")

EMPTY = h2raw.SERVICE + "EmptyCall"
HEALTH = "/grpc.health.v1.Health/Check"
RATE, BURST = 2, 3

srv = harness.start_server("interop-server", [
    "--port", "0", "--ratelimit.enabled=true", "--ratelimit.rate=%d" % RATE,
    "--ratelimit.burst=%d" % BURST, "--ratelimit.services=grpc.health.v1.Health=0"])


def empty(cl):
    return cl.call(EMPTY, h2raw.frame(b""), timeout=10)


a = h2raw.Client(srv.port)
first = [empty(a) for _ in range(BURST)]
tap.ok(all(r.ok() for r in first), "client A: %d calls within the burst succeed" % BURST,
       first)
over = empty(a)
tap.ok(over.grpc_status == 8, "client A: the next call gets RESOURCE_EXHAUSTED", over)
meta = over._meta()
pushback = meta.get("grpc-retry-pushback-ms", "")
tap.ok(pushback.isdigit() and 0 < int(pushback) <= 1000 // RATE + 1,
       "the refusal carries grpc-retry-pushback-ms (%s)" % pushback, meta)
tap.ok(meta.get("retry-after") == "1", "the refusal carries retry-after in seconds", meta)
tap.ok("rate limit" in (over.grpc_message or "") and "127.0.0.1" in over.grpc_message,
       "the message names the limit and the client", over.grpc_message)

b = h2raw.Client(srv.port, source="127.0.0.2")
rb = [empty(b) for _ in range(BURST)]
tap.ok(all(r.ok() for r in rb), "client B (127.0.0.2) is not affected by A's budget", rb)

a2 = h2raw.Client(srv.port)
tap.ok(empty(a2).grpc_status == 8, "a second connection of client A shares A's bucket")

hc = [a.call(HEALTH, h2raw.frame(b""), timeout=10) for _ in range(BURST + 2)]
tap.ok(all(r.ok() for r in hc), "an exempt service (rate 0) is not limited", hc)

time.sleep(int(pushback or "500") / 1000.0 + 0.1)
tap.ok(empty(a).ok(), "after the pushback a token has refilled")
tap.ok(empty(a).grpc_status == 8, "... and only one")
time.sleep(BURST / RATE + 0.2)
tap.ok(all(empty(a).ok() for _ in range(BURST)), "after burst/rate seconds the bucket is full")

for cl in (a, a2, b):
    cl.close()
tap.ok(srv.stop() == 0, "the server exits cleanly", srv.log())

bad = subprocess.run([harness.program("interop-server"), "--port", "0",
                      "--ratelimit.services=grpc.testing.TestService=fast"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=20)
err = bad.stderr.decode("utf-8", "replace")
tap.ok(bad.returncode != 0 and "[ratelimit] services" in err,
       "a malformed per-service rule is refused at start-up", err)

off = harness.start_server("interop-server", ["--port", "0"])
c = h2raw.Client(off.port)
tap.ok(all(empty(c).ok() for _ in range(50)), "disabled by default: no limit")
c.close()
off.stop()


# ---------------------------------------------------------------- taskerd
def taskerd_part():
    try:
        import grpc
        import pg
        import tasker_env
        harness.program("taskerd")
    except (ImportError, FileNotFoundError):
        return "python3-grpcio or taskerd missing"
    if not pg.available():
        return "the PostgreSQL server programs are not installed"
    env = tasker_env.Env("99-ratelimit", deadline=100, tap=tap)
    env.start()
    conf = os.path.join(env.tmp, "taskerd-rl.conf")
    with open(conf, "w") as f:
        f.write("[auth]\nenabled = true\napi_keys_enabled = true\n\n"
                "[auth.api_key.alice]\nkey = alice-key-0123456789\n"
                "permissions = templates:read\n\n"
                "[auth.api_key.bob]\nkey = bob-key-0123456789\npermissions = templates:read\n\n"
                "[ratelimit]\nenabled = true\nkey = identity\nrate = 1\nburst = 2\n"
                "services = rest=1/2\n")
    d = env.taskerd("--config=" + conf, "--orchestration.web_bind_address=127.0.0.1:0")
    m = d.wait_line(r"REST listening on 127\.0\.0\.1:(\d+)", 15)
    ch = grpc.insecure_channel("127.0.0.1:%d" % d.port)
    lt = ch.unary_unary("/tasker.v1.TemplateService/ListTemplates",
                        request_serializer=None, response_deserializer=None)

    def call(key):
        try:
            lt(b"", metadata=[("x-api-key", key)], timeout=10)
            return "OK", {}
        except grpc.RpcError as e:
            return e.code().name, dict(e.trailing_metadata() or ())

    alice = [call("alice-key-0123456789")[0] for _ in range(3)]
    tap.ok(alice == ["OK", "OK", "RESOURCE_EXHAUSTED"],
           "gRPC, key = identity: alice gets her burst, then RESOURCE_EXHAUSTED", alice)
    code, md = call("alice-key-0123456789")
    tap.ok(code == "RESOURCE_EXHAUSTED" and "grpc-retry-pushback-ms" in md and
           md.get("retry-after", "").isdigit(), "... with the retry hints", (code, md))
    bob = [call("bob-key-0123456789")[0] for _ in range(2)]
    tap.ok(bob == ["OK", "OK"], "bob, from the same address, has his own bucket", bob)
    bad = call("wrong-key")[0]
    tap.ok(bad == "UNAUTHENTICATED", "a bad credential is refused by auth, not the limiter",
           bad)

    port = int(m.group(1)) if m else None

    def rest(key):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", "/v1/templates", headers={"X-API-Key": key})
        r = c.getresponse()
        body = r.read()
        c.close()
        return r.status, r.getheader("Retry-After"), body

    got = [rest("bob-key-0123456789") for _ in range(3)]
    st, retry, body = got[-1]
    err = json.loads(body).get("error", {}) if body.startswith(b"{") else {}
    tap.ok([g[0] for g in got[:2]] == [200, 200] and st == 429,
           "REST: the burst, then 429", [g[:2] for g in got])
    tap.ok(retry is not None and retry.isdigit() and int(retry) >= 1 and
           err.get("code") == "RATE_LIMITED" and "rate limit" in err.get("message", ""),
           "429 carries Retry-After and the RATE_LIMITED error", (retry, body))
    tap.ok(rest("alice-key-0123456789")[0] == 200, "REST: another identity is unaffected")
    ch.close()
    env.close()
    return None


why = taskerd_part()
if why is not None:
    tap.ok(True, "# SKIP taskerd part: %s" % why)
tap.done()
