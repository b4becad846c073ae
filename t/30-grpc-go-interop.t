#!/usr/bin/python3
"""grpc-go's interop client (built offline from Debian's grpc-go source by
t/peers/build-grpc-go-interop.sh) against our interop-server: every test case
it supports that needs no cloud credentials, on h2c and on TLS with grpc-go's
own test certificates. Prints TAP.
"""
import os
import subprocess
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import harness  # noqa: E402

tap = harness.Tap()
peers = os.path.join(harness.TOP_SRCDIR, "t", "peers")
bindir, testdata = harness.grpc_go_peer(tap)
client = os.path.join(bindir, "interop_client")
cases = [l.strip() for l in open(os.path.join(peers, "grpc-go-cases.txt"))
         if l.strip() and not l.startswith("#")]


def run_cases(port, tls):
    label = "tls" if tls else "h2c"
    for case in cases:
        args = [client, "--server_host=127.0.0.1", "--server_port=%d" % port,
                "--test_case=" + case]
        if tls:
            args += ["--use_tls=true", "--use_test_ca=true",
                     "--ca_file=" + os.path.join(testdata, "ca.pem"),
                     "--server_host_override=foo.test.google.fr"]
        try:
            r = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=60)
            out = r.stdout.decode("utf-8", "replace")
            tap.ok(r.returncode == 0, "grpc-go %s over %s" % (case, label), out[-1500:])
        except subprocess.TimeoutExpired:
            tap.ok(False, "grpc-go %s over %s" % (case, label), "timed out")


srv = harness.start_server("interop-server", ["--port", "0"])
run_cases(srv.port, False)
tap.ok(srv.stop() == 0, "interop-server (h2c) exits 0")

srv = harness.start_server("interop-server", [
    "--port", "0", "--use_tls",
    "--tls_cert_file", os.path.join(testdata, "server1.pem"),
    "--tls_key_file", os.path.join(testdata, "server1.key")], want_tls=True)
run_cases(srv.tls_port, True)
tap.ok(srv.stop() == 0, "interop-server (tls) exits 0")
tap.done()
