"""A private PostgreSQL cluster for the integration tests.

    cluster = pg.Cluster(tmpdir)
    cluster.start()                 # initdb on first use, then pg_ctl start
    cluster.conninfo                # "host=TMPDIR dbname=tasker"
    cluster.psql("SELECT 1")        # -> "1"
    cluster.restart()               # fast shutdown (sessions killed) + start
    cluster.stop()                  # also done at exit

The work is done by pgcluster.sh beside this file, so the shell and the
Python side cannot drift apart: same layout (TMPDIR/data, the Unix socket
in TMPDIR, no TCP), same options, same handling of root (the server runs as
the postgres user). Every wait is bounded.
"""
import atexit
import os
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "pgcluster.sh")
TIMEOUT = 90  # seconds for one pgcluster.sh call; it bounds its own waits at 30


class ClusterError(RuntimeError):
    pass


def available():
    """True if the PostgreSQL server programs are installed."""
    r = subprocess.run(["/bin/sh", SCRIPT, "bindir"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=TIMEOUT)
    return r.returncode == 0


class Cluster:
    def __init__(self, tmpdir):
        self.dir = os.path.abspath(tmpdir)
        self.bindir = None
        self._started = False
        self._atexit = False

    def _run(self, *args):
        try:
            r = subprocess.run(["/bin/sh", SCRIPT] + list(args), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            raise ClusterError("pgcluster.sh %s: timed out" % " ".join(args))
        if r.returncode != 0:
            raise ClusterError("pgcluster.sh %s failed:\n%s" % (
                " ".join(args), r.stderr.decode("utf-8", "replace")))
        return r.stdout.decode().strip()

    def start(self):
        """Initialises (first time) and starts the cluster; creates database tasker."""
        if self.bindir is None:
            self.bindir = self._run("bindir")
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        self._run("start", self.dir)
        self._started = True
        return self

    def stop(self):
        """Fast shutdown; a no-op when not running."""
        if self._started:
            self._run("stop", self.dir)
            self._started = False

    def restart(self):
        """Fast shutdown (every session gets FATAL 57P01) and start again."""
        self._run("restart", self.dir)
        self._started = True

    @property
    def conninfo(self):
        return self.conninfo_for("tasker")

    def conninfo_for(self, dbname):
        return "host=%s dbname=%s" % (self.dir, dbname)

    @property
    def log_path(self):
        return os.path.join(self.dir, "postgres.log")

    def psql(self, sql, dbname="tasker"):
        """Runs sql with psql; returns its unaligned, tuples-only output."""
        r = subprocess.run([os.path.join(self.bindir, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-h", self.dir, "-d", dbname, "-c", sql],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=TIMEOUT)
        if r.returncode != 0:
            raise ClusterError("psql: %s" % r.stderr.decode("utf-8", "replace").strip())
        return r.stdout.decode().strip()
