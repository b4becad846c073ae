/*
 * sqlbench: the SQL side of contrib/bench/engine/run.sh (libpq only).
 *
 *   sqlbench ceiling CONNINFO [--clients K] [--mode tx|one] [--timeout S]
 *
 *       The raw claim-and-complete loop over the rows of bench.steps
 *       (made by ceiling.sql): K sessions, each one connection, loop until
 *       every row is complete. --mode tx (default), one transaction of four
 *       round trips per step:
 *
 *           BEGIN
 *           SELECT id FROM bench.steps WHERE state = 'ready'
 *             ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED          -- claim
 *           <mark it complete, release its children>              -- complete
 *           COMMIT
 *
 *       --mode one: the same as a single statement (one round trip).
 *       A session that finds no ready row while others are still running
 *       sleeps 200 us and looks again. Prints one line of key=value.
 *
 *   sqlbench tasks CONNINFO --run ID --tasks N [--namespace NS] [--name NAME]
 *                 [--no-send] [--until complete|created] [--interval-ms MS]
 *                 [--timeout S]
 *
 *       Sends N TaskRequestMessages to queue orchestration_task_requests in
 *       one statement (context {"bench_run": ID, "i": 1..N}), then polls
 *       every MS milliseconds until the N tasks of the run are complete, one
 *       of them failed (error, blocked_by_failures, cancelled) or S seconds
 *       passed. Times come from the database clock: from just before the
 *       send to the last tasks.completed_at. Prints one line of key=value;
 *       exit status 0 only if all N tasks completed. --no-send: only wait
 *       for tasks of the run sent earlier (the time counts from the start);
 *       --until created: wait until the N tasks exist (the time ends with
 *       the last tasks.created_at).
 *
 * Exit status 2: bad usage or no connection.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds (user + system) of this process, all threads. */
static double cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static PGconn *connect_or_die(const char *conninfo, const char *app)
{
	const char *keys[] = {"dbname", "application_name", NULL};
	const char *vals[] = {conninfo, app, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "sqlbench: cannot connect: %s", PQerrorMessage(c));
		exit(2);
	}
	return c;
}

/* A result that must be a success; NULL (after a message) otherwise. */
static PGresult *ok_or_null(PGconn *c, PGresult *r, const char *what)
{
	ExecStatusType st = PQresultStatus(r);

	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return r;
	fprintf(stderr, "sqlbench: %s: %s", what, PQerrorMessage(c));
	PQclear(r);
	return NULL;
}

static int prepare(PGconn *c, const char *name, const char *sql, int nparams)
{
	PGresult *r = ok_or_null(c, PQprepare(c, name, sql, nparams, NULL), name);

	PQclear(r);
	return r != NULL ? 0 : -1;
}

/* ================================================================== ceiling */

static const char SQL_CLAIM[] = "SELECT id FROM bench.steps WHERE state = 'ready' "
                                "ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED";

/* $1: the claimed row. Marks it complete; each child loses one waiting
 * parent and becomes ready at zero. Returns the number of children. */
static const char SQL_COMPLETE[] =
    "WITH done AS (UPDATE bench.steps SET state = 'complete' WHERE id = $1 RETURNING id), "
    "kids AS (UPDATE bench.steps k SET waiting = k.waiting - 1, "
    "         state = CASE WHEN k.waiting = 1 THEN 'ready' ELSE k.state END "
    "         FROM bench.edges e JOIN done ON e.parent = done.id "
    "         WHERE k.id = e.child RETURNING k.id) "
    "SELECT count(*) FROM kids";

/* Both in one statement; no row when nothing was ready. */
static const char SQL_ONE[] =
    "WITH c AS (SELECT id FROM bench.steps WHERE state = 'ready' "
    "           ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED), "
    "done AS (UPDATE bench.steps s SET state = 'complete' FROM c WHERE s.id = c.id "
    "         RETURNING s.id), "
    "kids AS (UPDATE bench.steps k SET waiting = k.waiting - 1, "
    "         state = CASE WHEN k.waiting = 1 THEN 'ready' ELSE k.state END "
    "         FROM bench.edges e JOIN done ON e.parent = done.id "
    "         WHERE k.id = e.child RETURNING k.id) "
    "SELECT id, (SELECT count(*) FROM kids) FROM done";

struct ceiling {
	const char *conninfo;
	int one; /* --mode one */
	long total;
	double deadline; /* monotonic */
	atomic_long done;
	atomic_long empty;
	atomic_int failed;
	double end; /* when done reached total */
	pthread_barrier_t ready;
};

struct client {
	struct ceiling *cl;
	PGconn *conn;
};

static int run_sql(PGconn *c, const char *sql)
{
	PGresult *r = ok_or_null(c, PQexec(c, sql), sql);

	PQclear(r);
	return r != NULL ? 0 : -1;
}

/* One step: 1 = completed one, 0 = nothing ready, -1 = error. */
static int ceiling_step(struct client *me)
{
	PGconn *c = me->conn;
	PGresult *r;
	char id[32];
	const char *p[] = {id};

	if (me->cl->one) {
		r = ok_or_null(c, PQexecPrepared(c, "one", 0, NULL, NULL, NULL, 0), "one");
		if (r == NULL)
			return -1;
		int got = PQntuples(r) > 0;
		PQclear(r);
		return got;
	}
	if (run_sql(c, "BEGIN") != 0)
		return -1;
	r = ok_or_null(c, PQexecPrepared(c, "claim", 0, NULL, NULL, NULL, 0), "claim");
	if (r == NULL)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return run_sql(c, "COMMIT") == 0 ? 0 : -1;
	}
	snprintf(id, sizeof id, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	r = ok_or_null(c, PQexecPrepared(c, "complete", 1, p, NULL, NULL, 0), "complete");
	if (r == NULL)
		return -1;
	PQclear(r);
	return run_sql(c, "COMMIT") == 0 ? 1 : -1;
}

static void *ceiling_main(void *arg)
{
	struct client *me = arg;
	struct ceiling *cl = me->cl;

	pthread_barrier_wait(&cl->ready);
	while (atomic_load(&cl->done) < cl->total && !atomic_load(&cl->failed)) {
		int rv = ceiling_step(me);
		if (rv < 0) {
			atomic_store(&cl->failed, 1);
			break;
		}
		if (rv == 1) {
			if (atomic_fetch_add(&cl->done, 1) + 1 == cl->total)
				cl->end = now_s();
			continue;
		}
		atomic_fetch_add(&cl->empty, 1);
		if (now_s() > cl->deadline) {
			fprintf(stderr, "sqlbench: ceiling: timed out\n");
			atomic_store(&cl->failed, 1);
			break;
		}
		sleep_us(200);
	}
	return NULL;
}

static long scalar_long(PGconn *c, const char *sql)
{
	PGresult *r = ok_or_null(c, PQexec(c, sql), sql);
	long v = -1;

	if (r != NULL && PQntuples(r) == 1)
		v = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return v;
}

static int cmd_ceiling(const char *conninfo, int clients, int one, int timeout_s)
{
	struct ceiling cl = {.conninfo = conninfo, .one = one};
	struct client *cs = calloc((size_t)clients, sizeof *cs);
	pthread_t *th = calloc((size_t)clients, sizeof *th);
	PGconn *admin = connect_or_die(conninfo, "sqlbench");

	if (cs == NULL || th == NULL)
		return 2;
	cl.total = scalar_long(admin, "SELECT count(*) FROM bench.steps WHERE state <> 'complete'");
	if (cl.total <= 0) {
		fprintf(stderr, "sqlbench: ceiling: bench.steps has no rows to complete\n");
		return 2;
	}
	for (int i = 0; i < clients; i++) {
		cs[i].cl = &cl;
		cs[i].conn = connect_or_die(conninfo, "sqlbench-ceiling");
		if ((one ? prepare(cs[i].conn, "one", SQL_ONE, 0)
		         : prepare(cs[i].conn, "claim", SQL_CLAIM, 0) ||
		               prepare(cs[i].conn, "complete", SQL_COMPLETE, 1)) != 0)
			return 2;
	}
	pthread_barrier_init(&cl.ready, NULL, (unsigned)clients + 1);
	for (int i = 0; i < clients; i++)
		pthread_create(&th[i], NULL, ceiling_main, &cs[i]);
	double start = now_s();
	cl.deadline = start + timeout_s;
	pthread_barrier_wait(&cl.ready);
	for (int i = 0; i < clients; i++)
		pthread_join(th[i], NULL);
	long left =
	    scalar_long(admin, "SELECT count(*) FROM bench.steps WHERE state <> 'complete'");
	double secs = (cl.end > 0 ? cl.end : now_s()) - start;
	long done = atomic_load(&cl.done);
	printf("mode=%s clients=%d steps=%ld seconds=%.3f steps_per_s=%.1f empty_claims=%ld "
	       "left=%ld cpu_s=%.3f\n",
	       one ? "one" : "tx", clients, done, secs, secs > 0 ? (double)done / secs : 0.0,
	       atomic_load(&cl.empty), left, cpu_s());
	for (int i = 0; i < clients; i++)
		PQfinish(cs[i].conn);
	PQfinish(admin);
	free(cs);
	free(th);
	return atomic_load(&cl.failed) || left != 0 || done != cl.total ? 1 : 0;
}

/* ================================================================== tasks */

static const char SQL_SEND[] =
    "SELECT count(tasker.pgmq_send_with_notify('orchestration_task_requests', "
    "jsonb_build_object('namespace', $1::text, 'name', $2::text, "
    "'context', jsonb_build_object('bench_run', $3::text, 'i', g)), 0)) "
    "FROM generate_series(1, $4::integer) g";

static const char SQL_PROGRESS[] =
    "SELECT count(*), count(*) FILTER (WHERE t.complete), "
    "count(*) FILTER (WHERE tt.to_state IN ('error', 'blocked_by_failures', 'cancelled')) "
    "FROM tasker.tasks t LEFT JOIN tasker.task_transitions tt "
    "ON tt.task_uuid = t.task_uuid AND tt.most_recent "
    "WHERE t.context->>'bench_run' = $1";

/* Seconds from $2 (epoch of the start) to the first and last task created
 * and the last one completed; task latency (created -> complete) p50, p99. */
static const char SQL_TIMES[] = "SELECT extract(epoch FROM min(created_at)) - $2::float8, "
                                "extract(epoch FROM max(created_at)) - $2::float8, "
                                "COALESCE(extract(epoch FROM max(completed_at)) - $2::float8, 0), "
                                "COALESCE(percentile_cont(0.5) WITHIN GROUP "
                                "  (ORDER BY extract(epoch FROM completed_at - created_at)), 0), "
                                "COALESCE(percentile_cont(0.99) WITHIN GROUP "
                                "  (ORDER BY extract(epoch FROM completed_at - created_at)), 0) "
                                "FROM tasker.tasks WHERE context->>'bench_run' = $1";

struct tasks_opts {
	const char *run, *ns, *name;
	int n, interval_ms, timeout_s;
	int send;          /* send the N requests first */
	int until_created; /* stop when N tasks exist (else: when N are complete) */
};

static int cmd_tasks(const char *conninfo, const struct tasks_opts *o)
{
	PGconn *c = connect_or_die(conninfo, "sqlbench");
	char nbuf[16], t0buf[64];
	const char *send_p[] = {o->ns, o->name, o->run, nbuf};
	const char *run_p[] = {o->run, t0buf};
	PGresult *r;
	long created = 0, complete = 0, failed = 0;
	double sent = 0;

	snprintf(nbuf, sizeof nbuf, "%d", o->n);
	if (prepare(c, "progress", SQL_PROGRESS, 1) != 0 || prepare(c, "times", SQL_TIMES, 2) != 0)
		return 2;
	r = ok_or_null(c, PQexec(c, "SELECT extract(epoch FROM clock_timestamp())::text"), "clock");
	if (r == NULL)
		return 2;
	snprintf(t0buf, sizeof t0buf, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	double start = now_s(), last_note = start;
	if (o->send) {
		r = ok_or_null(c, PQexecParams(c, SQL_SEND, 4, NULL, send_p, NULL, NULL, 0),
		               "send");
		if (r == NULL)
			return 2;
		PQclear(r);
		sent = now_s() - start;
	}
	for (;;) {
		sleep_us((long)o->interval_ms * 1000);
		r = ok_or_null(c, PQexecPrepared(c, "progress", 1, run_p, NULL, NULL, 0),
		               "progress");
		if (r == NULL)
			return 2;
		created = atol(PQgetvalue(r, 0, 0));
		complete = atol(PQgetvalue(r, 0, 1));
		failed = atol(PQgetvalue(r, 0, 2));
		PQclear(r);
		double t = now_s();
		if ((o->until_created ? created : complete) >= o->n || failed > 0 ||
		    t - start > o->timeout_s)
			break;
		if (t - last_note >= 5) {
			fprintf(stderr, "  %.0f s: %ld created, %ld complete\n", t - start, created,
			        complete);
			last_note = t;
		}
	}
	double polled = now_s() - start;
	r = ok_or_null(c, PQexecPrepared(c, "times", 2, run_p, NULL, NULL, 0), "times");
	if (r == NULL)
		return 2;
	double first_created = atof(PQgetvalue(r, 0, 0)), last_created = atof(PQgetvalue(r, 0, 1));
	double last_complete = atof(PQgetvalue(r, 0, 2)), p50 = atof(PQgetvalue(r, 0, 3));
	double p99 = atof(PQgetvalue(r, 0, 4));
	PQclear(r);
	/* The measured span ends with the last task created or completed. */
	double secs = o->until_created ? last_created : last_complete;
	long done = o->until_created ? created : complete;
	printf("tasks=%d created=%ld complete=%ld failed=%ld seconds=%.3f poll_seconds=%.3f "
	       "send_seconds=%.3f first_created=%.3f last_created=%.3f latency_p50=%.3f "
	       "latency_p99=%.3f tasks_per_s=%.1f cpu_s=%.3f\n",
	       o->n, created, complete, failed, secs, polled, sent, first_created, last_created,
	       p50, p99, secs > 0 ? (double)done / secs : 0.0, cpu_s());
	PQfinish(c);
	return done == o->n && failed == 0 ? 0 : 1;
}

/* ================================================================== main */

static void usage(void)
{
	fprintf(stderr,
	        "usage: sqlbench ceiling CONNINFO [--clients K] [--mode tx|one] [--timeout S]\n"
	        "       sqlbench tasks CONNINFO --run ID --tasks N [--namespace NS] [--name NAME]\n"
	        "                [--no-send] [--until complete|created] [--interval-ms MS]\n"
	        "                [--timeout S]\n");
	exit(2);
}

static int int_arg(const char *v, int min, int max)
{
	char *end;
	long n = strtol(v, &end, 10);

	if (*v == '\0' || *end != '\0' || n < min || n > max)
		usage();
	return (int)n;
}

int main(int argc, char **argv)
{
	int clients = 4, one = 0, timeout_s = 300;
	struct tasks_opts to = {
	    .ns = "bench", .name = "noop_diamond", .interval_ms = 150, .send = 1};

	if (argc < 3)
		usage();
	for (int i = 3; i < argc; i++) {
		const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(k, "--no-send") == 0) {
			to.send = 0;
			continue;
		}
		if (v == NULL)
			usage();
		i++;
		if (strcmp(k, "--clients") == 0)
			clients = int_arg(v, 1, 256);
		else if (strcmp(k, "--mode") == 0 &&
		         (strcmp(v, "tx") == 0 || strcmp(v, "one") == 0))
			one = strcmp(v, "one") == 0;
		else if (strcmp(k, "--timeout") == 0)
			timeout_s = to.timeout_s = int_arg(v, 1, 86400);
		else if (strcmp(k, "--tasks") == 0)
			to.n = int_arg(v, 1, 10000000);
		else if (strcmp(k, "--interval-ms") == 0)
			to.interval_ms = int_arg(v, 10, 60000);
		else if (strcmp(k, "--run") == 0)
			to.run = v;
		else if (strcmp(k, "--namespace") == 0)
			to.ns = v;
		else if (strcmp(k, "--name") == 0)
			to.name = v;
		else if (strcmp(k, "--until") == 0 &&
		         (strcmp(v, "created") == 0 || strcmp(v, "complete") == 0))
			to.until_created = strcmp(v, "created") == 0;
		else
			usage();
	}
	to.timeout_s = timeout_s;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (strcmp(argv[1], "ceiling") == 0)
		return cmd_ceiling(argv[2], clients, one, timeout_s);
	if (strcmp(argv[1], "tasks") == 0 && to.run != NULL && to.n > 0)
		return cmd_tasks(argv[2], &to);
	usage();
	return 2;
}
