/*
 * Tests for src/store (db.c, migrate.c, queue.c) against a real PostgreSQL:
 * migrations (embedded and synthetic, two migrators at once), the
 * connection pool (acquire, timeout, stats, transaction clean-up, recovery
 * of killed connections, prepared-statement cache), error mapping, the
 * queues (visibility timeout, read_ct, archive, delete, set_vt, SKIP
 * LOCKED, transactions), notifications and their payloads, and recovery
 * of the pool and the listener after a database restart.
 *
 * Needs TASKER_TEST_DATABASE_URL (a fresh database for the migration
 * counts; t/70-store.t starts a private cluster). The restart test asks
 * for a restart either by running the shell command in
 * TASKER_TEST_PG_RESTART, or, with TASKER_TEST_RESTART=stdio, by printing
 * "# tasker-test: restart-database" and reading one line from stdin
 * ("restarted"); without either it is skipped.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "store/db.h"
#include "store/migrate.h"
#include "store/queue.h"

static const char *url;

/* ------------------------------------------------------------------ helpers */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* A connection to database dbname (NULL: the test database) on the test server. */
static PGconn *connect_to(const char *dbname)
{
	const char *const keys[] = {"dbname", "dbname", NULL};
	const char *const vals[] = {url, dbname, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("connect: %s", PQerrorMessage(c));
	db_route_notices(c);
	return c;
}

static void must(PGconn *c, const char *sql)
{
	PGresult *r = PQexec(c, sql);

	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(r);
}

/* First column of the first row of sql with one parameter, copied into buf. */
static const char *scalar1(PGconn *c, const char *sql, const char *param, char *buf, size_t size)
{
	const char *const params[] = {param};
	PGresult *r = PQexecParams(c, sql, param != NULL ? 1 : 0, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) < 1)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	snprintf(buf, size, "%s", PQgetisnull(r, 0, 0) ? "(null)" : PQgetvalue(r, 0, 0));
	PQclear(r);
	return buf;
}

static long scalar_long(PGconn *c, const char *sql)
{
	char buf[64];

	return atol(scalar1(c, sql, NULL, buf, sizeof buf));
}

static struct db_pool *pool_of(int size, int acquire_timeout_ms)
{
	struct db_pool_config cfg = {.conninfo = url,
	                             .size = size,
	                             .acquire_timeout_ms = acquire_timeout_ms,
	                             .connect_timeout_s = 5,
	                             .application_name = "test_store"};
	struct tk_err err;
	struct db_pool *p = db_pool_new(&cfg, &err);

	if (p == NULL)
		fail_msg("db_pool_new: %s", err.msg);
	return p;
}

/* Empties (or creates) a queue, so that a test can be re-run on one database. */
static void fresh_queue(PGconn *c, const char *name)
{
	struct tk_err err;
	char sql[160];

	snprintf(sql, sizeof sql, "SELECT pgmq.drop_queue('%s')", name);
	must(c, sql);
	assert_int_equal(mq_create(c, name, &err), 0);
}

static int64_t send_json(PGconn *c, const char *queue, const char *json, int delay)
{
	struct tk_err err;
	int64_t id = 0;

	if (mq_send(c, queue, json, delay, &id, &err) != 0)
		fail_msg("mq_send: %s", err.msg);
	return id;
}

/* ------------------------------------------------------------------ migrations */

static void test_migration_table(void **state)
{
	(void)state;
	int have_queues = 0;

	assert_true(db_migrations_count >= 1);
	for (size_t i = 0; i < db_migrations_count; i++) {
		assert_int_equal(strlen(db_migrations[i].version), 4);
		assert_true(db_migrations[i].name[0] != '\0');
		assert_true(db_migrations[i].sql[0] != '\0');
		if (i > 0)
			assert_true(strcmp(db_migrations[i - 1].version, db_migrations[i].version) <
			            0);
		if (strcmp(db_migrations[i].version, "0004") == 0 &&
		    strcmp(db_migrations[i].name, "queues") == 0)
			have_queues = 1;
	}
	assert_true(have_queues);
}

struct migrator {
	const char *dbname;
	const struct db_migration *migs; /* NULL: the embedded ones */
	size_t n;
	int rc;
	struct tk_err err;
};

static void *run_migrator(void *arg)
{
	struct migrator *m = arg;
	const char *const keys[] = {"dbname", "dbname", NULL};
	const char *const vals[] = {url, m->dbname, NULL};
	PGconn *c = PQconnectdbParams(keys, vals, 1);

	if (PQstatus(c) != CONNECTION_OK) {
		m->rc = tk_err_set(&m->err, TRPC_ERR_UNAVAILABLE, "%s", PQerrorMessage(c));
	} else if (m->migs == NULL) {
		m->rc = db_migrate(c, &m->err);
	} else {
		m->rc = db_migrate_list(c, m->migs, m->n, &m->err);
	}
	PQfinish(c);
	return NULL;
}

/* Runs two migrators at once; returns the sum of what they applied. */
static int migrate_twice_concurrently(const char *dbname, const struct db_migration *migs, size_t n)
{
	struct migrator m[2] = {{dbname, migs, n, 0, {0, ""}}, {dbname, migs, n, 0, {0, ""}}};
	pthread_t t[2];

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&t[i], NULL, run_migrator, &m[i]), 0);
	for (int i = 0; i < 2; i++)
		pthread_join(t[i], NULL);
	for (int i = 0; i < 2; i++)
		if (m[i].rc < 0)
			fail_msg("migrator %d: %s", i, m[i].err.msg);
	return m[0].rc + m[1].rc;
}

static const struct db_migration synthetic[] = {
    {"0001", "first", "CREATE TABLE tasker.t1 (id int);\nSELECT pg_sleep(0.3);\n"},
    {"0002", "second", "CREATE TABLE tasker.t2 (id int);\nINSERT INTO tasker.t2 VALUES (1);\n"},
    {"0003", "broken",
     "CREATE TABLE tasker.t3 (id int);\n-- a comment\nSELECT no_such_column FROM tasker.t1;\n"},
};

static void test_migrate_synthetic(void **state)
{
	(void)state;
	struct tk_err err;
	PGconn *c = connect_to(NULL), *mc;
	char buf[64];

	must(c, "DROP DATABASE IF EXISTS tasker_migtest");
	must(c, "CREATE DATABASE tasker_migtest");

	/* Two at once: one applies both, the other waits on the lock and finds them done. */
	assert_int_equal(migrate_twice_concurrently("tasker_migtest", synthetic, 2), 2);
	mc = connect_to("tasker_migtest");
	assert_int_equal(scalar_long(mc, "SELECT count(*) FROM tasker.schema_migrations"), 2);
	assert_string_equal(scalar1(mc,
	                            "SELECT name FROM tasker.schema_migrations WHERE version "
	                            "= '0002'",
	                            NULL, buf, sizeof buf),
	                    "second");
	assert_int_equal(scalar_long(mc, "SELECT count(*) FROM tasker.t2"), 1);
	assert_int_equal(migrate_twice_concurrently("tasker_migtest", synthetic, 2), 0);

	/* A failing migration: named, with its line; nothing of it stays; lock released. */
	tk_err_clear(&err);
	assert_int_equal(db_migrate_list(mc, synthetic, 3, &err), TRPC_ERR_DB);
	assert_non_null(strstr(err.msg, "0003_broken"));
	assert_non_null(strstr(err.msg, "line 3"));
	assert_non_null(strstr(err.msg, "no_such_column"));
	assert_true(db_err_is_sqlstate(&err, "42703"));
	assert_int_equal(scalar_long(mc, "SELECT count(*) FROM tasker.schema_migrations"), 2);
	assert_int_equal(scalar_long(mc, "SELECT count(*) FROM pg_tables WHERE tablename = 't3'"),
	                 0);
	assert_int_equal(PQtransactionStatus(mc), PQTRANS_IDLE);
	assert_string_equal(
	    scalar1(c, "SELECT pg_try_advisory_lock(127961897067890)", NULL, buf, sizeof buf), "t");
	must(c, "SELECT pg_advisory_unlock(127961897067890)");
	PQfinish(mc);
	must(c, "DROP DATABASE tasker_migtest");
	PQfinish(c);
}

static void test_migrate_embedded(void **state)
{
	(void)state;
	PGconn *c = connect_to(NULL);
	long before = 0;

	if (scalar_long(c, "SELECT count(*) FROM pg_tables WHERE schemaname = 'tasker' AND "
	                   "tablename = 'schema_migrations'") > 0)
		before = scalar_long(c, "SELECT count(*) FROM tasker.schema_migrations");
	int applied = migrate_twice_concurrently(NULL, NULL, 0);
	assert_int_equal(before + applied, (long)db_migrations_count);
	assert_int_equal(scalar_long(c, "SELECT count(*) FROM tasker.schema_migrations"),
	                 (long)db_migrations_count);
	/* Idempotent. */
	assert_int_equal(migrate_twice_concurrently(NULL, NULL, 0), 0);
	assert_int_equal(scalar_long(c, "SELECT count(*) FROM pg_namespace WHERE nspname IN "
	                                "('tasker', 'pgmq')"),
	                 2);
	PQfinish(c);
}

/* ------------------------------------------------------------------ pool */

static void test_pool_acquire_timeout_stats(void **state)
{
	(void)state;
	struct db_pool *p = pool_of(2, 200);
	struct db_pool_stats st;
	struct tk_err err;
	PGconn *a, *b, *c;

	db_pool_stats(p, &st);
	assert_int_equal(st.size, 2);
	assert_int_equal(st.active, 0);
	assert_int_equal(st.idle, 1); /* one connection opened eagerly */

	a = db_acquire(p, &err);
	b = db_acquire(p, &err);
	assert_non_null(a);
	assert_non_null(b);
	assert_ptr_not_equal(a, b);
	db_pool_stats(p, &st);
	assert_int_equal(st.active, 2);
	assert_int_equal(st.idle, 0);

	double t0 = now_ms();
	c = db_acquire(p, &err);
	double waited = now_ms() - t0;
	assert_null(c);
	assert_int_equal(err.code, TRPC_ERR_TIMEOUT);
	assert_true(waited >= 190 && waited < 2000);

	db_release(p, a, 0);
	c = db_acquire(p, &err);
	assert_ptr_equal(c, a); /* the most recently released comes back first */
	db_release(p, c, 0);
	db_release(p, b, 0);

	db_pool_stats(p, &st);
	assert_int_equal(st.active, 0);
	assert_int_equal(st.idle, 2);
	assert_int_equal(st.acquires, 3);
	assert_int_equal(st.errors, 1);
	assert_true(st.avg_acquire_ms >= 0 && st.max_acquire_ms >= st.avg_acquire_ms);
	db_pool_free(p);
}

struct holder {
	struct db_pool *pool;
	PGconn *conn;
	int hold_ms;
};

static void *hold_then_release(void *arg)
{
	struct holder *h = arg;

	sleep_ms(h->hold_ms);
	db_release(h->pool, h->conn, 0);
	return NULL;
}

static void test_pool_slow_acquire(void **state)
{
	(void)state;
	struct db_pool *p = pool_of(1, 3000);
	struct db_pool_stats st;
	struct tk_err err;
	struct holder h = {p, NULL, 250};
	pthread_t t;

	h.conn = db_acquire(p, &err);
	assert_non_null(h.conn);
	assert_int_equal(pthread_create(&t, NULL, hold_then_release, &h), 0);
	PGconn *c = db_acquire(p, &err); /* waits for the holder */
	pthread_join(t, NULL);
	assert_ptr_equal(c, h.conn);
	db_release(p, c, 0);
	db_pool_stats(p, &st);
	assert_int_equal(st.acquires, 2);
	assert_int_equal(st.slow_acquires, 1);
	assert_true(st.max_acquire_ms >= 200);
	db_pool_free(p);
}

static void test_pool_release_cleans_transaction(void **state)
{
	(void)state;
	struct db_pool *p = pool_of(1, 1000);
	struct tk_err err;
	PGconn *c = db_acquire(p, &err);
	char pid[16], pid2[16];

	scalar1(c, "SELECT pg_backend_pid()", NULL, pid, sizeof pid);
	/* A failed transaction... */
	assert_int_equal(db_begin(c, &err), 0);
	assert_int_equal(db_command(c, "SELECT 1/0", 0, NULL, &err), TRPC_ERR_DB);
	assert_true(db_err_is_sqlstate(&err, "22012"));
	assert_int_equal(PQtransactionStatus(c), PQTRANS_INERROR);
	db_release(p, c, 0);
	c = db_acquire(p, &err);
	assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
	/* ...and an open one are rolled back, on the same session. */
	assert_int_equal(db_begin(c, &err), 0);
	must(c, "CREATE TEMP TABLE leftover (x int)");
	db_release(p, c, 0);
	c = db_acquire(p, &err);
	assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);
	assert_int_equal(scalar_long(c, "SELECT count(*) FROM pg_tables WHERE tablename = "
	                                "'leftover'"),
	                 0);
	assert_string_equal(scalar1(c, "SELECT pg_backend_pid()", NULL, pid2, sizeof pid2), pid);
	db_release(p, c, 0);
	db_pool_free(p);
}

static void test_pool_recovers_killed_connection(void **state)
{
	(void)state;
	struct db_pool *p = pool_of(1, 1000);
	PGconn *admin = connect_to(NULL);
	struct tk_err err;
	char pid[16], pid2[16], buf[16];

	/* Killed while idle in the pool: noticed at acquire, reset. */
	PGconn *c = db_acquire(p, &err);
	scalar1(c, "SELECT pg_backend_pid()", NULL, pid, sizeof pid);
	db_release(p, c, 0);
	scalar1(admin, "SELECT pg_terminate_backend($1::int)", pid, buf, sizeof buf);
	sleep_ms(100);
	c = db_acquire(p, &err);
	assert_non_null(c);
	scalar1(c, "SELECT pg_backend_pid()", NULL, pid2, sizeof pid2);
	assert_string_not_equal(pid, pid2);

	/* Killed while in use: the query fails as UNAVAILABLE; released as broken, reset. */
	scalar1(admin, "SELECT pg_terminate_backend($1::int)", pid2, buf, sizeof buf);
	sleep_ms(100);
	assert_int_equal(db_command(c, "SELECT 1", 0, NULL, &err), TRPC_ERR_UNAVAILABLE);
	assert_true(db_is_connection_error(c));
	db_release(p, c, 1);
	c = db_acquire(p, &err);
	assert_non_null(c);
	assert_int_equal(db_command(c, "SELECT 1", 0, NULL, &err), 0);
	db_release(p, c, 0);
	PQfinish(admin);
	db_pool_free(p);
}

static void test_pool_bad_url(void **state)
{
	(void)state;
	static const char *const bad[] = {
	    "host=/nonexistent/socketdir dbname=nope user=alice password=sekrit",
	    "postgresql://alice:sekrit@/nope?host=/nonexistent/socketdir",
	};
	struct db_pool_config cfg = {.size = 2, .connect_timeout_s = 2};
	struct tk_err err;

	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		cfg.conninfo = bad[i];
		tk_err_clear(&err);
		assert_null(db_pool_new(&cfg, &err));
		assert_int_equal(err.code, TRPC_ERR_UNAVAILABLE);
		assert_non_null(strstr(err.msg, "/nonexistent/socketdir"));
		assert_non_null(strstr(err.msg, "nope"));
		assert_non_null(strstr(err.msg, "alice"));
		assert_null(strstr(err.msg, "sekrit"));
	}
	cfg.conninfo = "host=x password='sekrit";
	assert_null(db_pool_new(&cfg, &err));
	assert_int_equal(err.code, TRPC_ERR_INVALID);
	assert_null(strstr(err.msg, "sekrit"));
	cfg.conninfo = url;
	cfg.size = 0;
	assert_null(db_pool_new(&cfg, &err));
	assert_int_equal(err.code, TRPC_ERR_INVALID);
}

static void test_exec_errors(void **state)
{
	(void)state;
	struct db_pool *p = pool_of(1, 1000);
	struct tk_err err;
	PGconn *c = db_acquire(p, &err);
	const char *const one[] = {"1"};
	PGresult *r;

	must(c, "CREATE TEMP TABLE u (id int PRIMARY KEY)");
	assert_int_equal(db_command(c, "INSERT INTO u VALUES ($1::int)", 1, one, &err), 0);
	assert_int_equal(db_command(c, "INSERT INTO u VALUES ($1::int)", 1, one, &err),
	                 TRPC_ERR_EXISTS);
	assert_true(db_err_is_sqlstate(&err, "23505"));
	assert_non_null(strstr(err.msg, "duplicate key"));
	assert_false(db_err_is_sqlstate(&err, "23503"));

	r = db_exec(c, "SELEC 1", 0, NULL, &err);
	assert_null(r);
	assert_int_equal(err.code, TRPC_ERR_DB);
	assert_true(db_err_is_sqlstate(&err, "42601"));

	assert_int_equal(db_command(c, "SET statement_timeout = 50", 0, NULL, &err), 0);
	assert_int_equal(db_command(c, "SELECT pg_sleep(1)", 0, NULL, &err), TRPC_ERR_TIMEOUT);
	assert_int_equal(db_command(c, "RESET statement_timeout", 0, NULL, &err), 0);

	/* COMMIT of a failed transaction is an error, not a silent rollback. */
	assert_int_equal(db_begin(c, &err), 0);
	assert_int_equal(db_command(c, "INSERT INTO u VALUES ($1::int)", 1, one, &err),
	                 TRPC_ERR_EXISTS);
	assert_int_equal(db_commit(c, &err), TRPC_ERR_DB);
	assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

	r = db_exec(c, "SELECT $1::int + 1", 1, one, &err);
	assert_non_null(r);
	assert_string_equal(PQgetvalue(r, 0, 0), "2");
	PQclear(r);
	db_release(p, c, 0);
	db_pool_free(p);
}

static long prepared_count(PGconn *c, const char *name)
{
	char buf[16];

	return atol(scalar1(c, "SELECT count(*) FROM pg_prepared_statements WHERE name = $1", name,
	                    buf, sizeof buf));
}

static void test_prepared_cache(void **state)
{
	(void)state;
	struct db_pool *p = pool_of(1, 1000);
	PGconn *admin = connect_to(NULL);
	struct tk_err err;
	const char *const params[] = {"41"};
	char pid[16], buf[16];
	PGresult *r;
	PGconn *c = db_acquire(p, &err);

	for (int i = 0; i < 3; i++) {
		r = db_exec_prepared(c, "t_plus_one", "SELECT $1::int + 1", 1, params, &err);
		assert_non_null(r);
		assert_string_equal(PQgetvalue(r, 0, 0), "42");
		PQclear(r);
	}
	assert_int_equal(prepared_count(c, "t_plus_one"), 1);
	/* Prepared statements are not transactional: still there after a rollback. */
	assert_int_equal(db_begin(c, &err), 0);
	r = db_exec_prepared(c, "t_in_tx", "SELECT $1::int", 1, params, &err);
	PQclear(r);
	assert_int_equal(db_rollback(c, &err), 0);
	r = db_exec_prepared(c, "t_in_tx", "SELECT $1::int", 1, params, &err);
	assert_non_null(r);
	PQclear(r);
	/* After DEALLOCATE ALL the failing call makes the cache forget; the next prepares again. */
	must(c, "DEALLOCATE ALL");
	assert_null(db_exec_prepared(c, "t_plus_one", "SELECT $1::int + 1", 1, params, &err));
	assert_true(db_err_is_sqlstate(&err, "26000"));
	r = db_exec_prepared(c, "t_plus_one", "SELECT $1::int + 1", 1, params, &err);
	assert_non_null(r);
	PQclear(r);
	/* A reset session starts with an empty cache. */
	scalar1(c, "SELECT pg_backend_pid()", NULL, pid, sizeof pid);
	db_release(p, c, 0);
	scalar1(admin, "SELECT pg_terminate_backend($1::int)", pid, buf, sizeof buf);
	sleep_ms(100);
	c = db_acquire(p, &err);
	assert_non_null(c);
	assert_int_equal(prepared_count(c, "t_plus_one"), 0);
	r = db_exec_prepared(c, "t_plus_one", "SELECT $1::int + 1", 1, params, &err);
	assert_non_null(r);
	PQclear(r);
	assert_int_equal(prepared_count(c, "t_plus_one"), 1);
	db_release(p, c, 0);
	db_pool_free(p);

	/* Outside a pool: plain execution, nothing prepared. */
	r = db_exec_prepared(admin, "t_plus_one", "SELECT $1::int + 1", 1, params, &err);
	assert_non_null(r);
	PQclear(r);
	assert_int_equal(prepared_count(admin, "t_plus_one"), 0);
	PQfinish(admin);
}

/* ------------------------------------------------------------------ queues */

static void test_queue_names(void **state)
{
	(void)state;
	PGconn *c = connect_to(NULL);
	struct tk_err err;
	struct mq_msg *msgs;
	size_t n;
	int64_t id;

	assert_true(mq_name_valid("worker_payments_queue"));
	assert_true(mq_name_valid("Q1"));
	assert_false(mq_name_valid(""));
	assert_false(mq_name_valid("a-b"));
	assert_false(mq_name_valid("x; DROP TABLE y"));
	assert_false(mq_name_valid("q_2345678901234567890123456789012345678901234567")); /* 48 */
	assert_true(mq_name_valid("q_234567890123456789012345678901234567890123456"));   /* 47 */
	assert_int_equal(mq_create(c, "a\"b", &err), TRPC_ERR_INVALID);
	assert_int_equal(mq_send(c, "no such", "{}", 0, &id, &err), TRPC_ERR_INVALID);
	/* The server checks too, for callers that bypass the C API. */
	PGresult *r = PQexec(c, "SELECT pgmq.create('x\"; DROP SCHEMA pgmq CASCADE; --')");
	assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
	assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "22023");
	PQclear(r);
	/* A valid name that is not a queue. */
	must(c, "SELECT pgmq.drop_queue('never_created')");
	assert_int_equal(mq_send(c, "never_created", "{}", 0, &id, &err), TRPC_ERR_NOT_FOUND);
	assert_non_null(strstr(err.msg, "never_created"));
	assert_int_equal(mq_read(c, "never_created", 30, 1, &msgs, &n, &err), TRPC_ERR_NOT_FOUND);
	/* Bad JSON. */
	fresh_queue(c, "t_names");
	assert_int_equal(mq_send(c, "t_names", "{not json", 0, &id, &err), TRPC_ERR_INVALID);
	/* Names are case-insensitive. */
	assert_int_equal(mq_create(c, "T_Names", &err), 0);
	id = send_json(c, "T_NAMES", "{\"k\": 1}", 0);
	assert_int_equal(mq_read(c, "t_names", 30, 5, &msgs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].msg_id, id);
	mq_msgs_free(msgs, n);
	PQfinish(c);
}

static void test_queue_visibility(void **state)
{
	(void)state;
	PGconn *c = connect_to(NULL);
	struct tk_err err;
	struct mq_msg *msgs;
	size_t n;
	int64_t id[3];
	double t0 = (double)time(NULL);

	fresh_queue(c, "t_vis");
	id[0] = send_json(c, "t_vis", "{\"n\": 0}", 0);
	id[1] = send_json(c, "t_vis", "{\"n\": 1}", 0);
	id[2] = send_json(c, "t_vis", "{\"n\": 2, \"s\": \"caf\\u00e9 \\\"q\\\"\"}", 0);
	assert_true(id[0] < id[1] && id[1] < id[2]);

	/* Oldest first; a read message is hidden for vt seconds. */
	assert_int_equal(mq_read(c, "t_vis", 1, 1, &msgs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].msg_id, id[0]);
	assert_int_equal(msgs[0].read_ct, 1);
	assert_string_equal(msgs[0].message, "{\"n\": 0}");
	assert_true(msgs[0].enqueued_at_epoch >= t0 - 5 && msgs[0].enqueued_at_epoch <= t0 + 5);
	assert_true(msgs[0].vt_epoch > msgs[0].enqueued_at_epoch);
	mq_msgs_free(msgs, n);
	assert_int_equal(mq_read(c, "t_vis", 1, 1, &msgs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].msg_id, id[1]);
	mq_msgs_free(msgs, n);

	/* After the timeout they come back, read twice. */
	sleep_ms(1200);
	assert_int_equal(mq_read(c, "t_vis", 30, 10, &msgs, &n, &err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(msgs[0].msg_id, id[0]);
	assert_int_equal(msgs[0].read_ct, 2);
	assert_int_equal(msgs[1].read_ct, 2);
	assert_int_equal(msgs[2].read_ct, 1);
	assert_string_equal(msgs[2].message, "{\"n\": 2, \"s\": \"café \\\"q\\\"\"}");
	mq_msgs_free(msgs, n);
	assert_int_equal(mq_read(c, "t_vis", 30, 10, &msgs, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_null(msgs);

	/* A delayed message is invisible until the delay passes. */
	int64_t late = send_json(c, "t_vis", "{}", 1);
	assert_int_equal(mq_read(c, "t_vis", 30, 10, &msgs, &n, &err), 0);
	assert_int_equal(n, 0);
	sleep_ms(1200);
	assert_int_equal(mq_read(c, "t_vis", 30, 10, &msgs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].msg_id, late);
	mq_msgs_free(msgs, n);
	PQfinish(c);
}

static void test_queue_ack_and_metrics(void **state)
{
	(void)state;
	PGconn *c = connect_to(NULL);
	struct tk_err err;
	struct mq_metrics m;
	struct mq_msg *msgs;
	size_t n;
	char buf[32];

	fresh_queue(c, "t_ack");
	assert_int_equal(mq_metrics(c, "t_ack", &m, &err), 0);
	assert_int_equal(m.queue_length, 0);
	assert_int_equal(m.oldest_msg_age_s, -1);
	assert_int_equal(m.total_messages, 0);

	int64_t a = send_json(c, "t_ack", "{\"a\": 1}", 0);
	int64_t b = send_json(c, "t_ack", "{\"b\": 1}", 0);
	int64_t d = send_json(c, "t_ack", "{\"d\": 1}", 0);

	assert_int_equal(mq_archive(c, "t_ack", a, &err), 0);
	assert_int_equal(mq_archive(c, "t_ack", a, &err), TRPC_ERR_NOT_FOUND);
	snprintf(buf, sizeof buf, "%" PRId64, a);
	assert_string_equal(scalar1(c,
	                            "SELECT message::text FROM pgmq.a_t_ack WHERE msg_id = "
	                            "$1::bigint",
	                            buf, buf, sizeof buf),
	                    "{\"a\": 1}");
	assert_int_equal(mq_delete(c, "t_ack", b, &err), 0);
	assert_int_equal(mq_delete(c, "t_ack", b, &err), TRPC_ERR_NOT_FOUND);
	assert_int_equal(scalar_long(c, "SELECT count(*) FROM pgmq.a_t_ack"), 1);

	/* set_vt: hide, then nack (0) makes it visible at once. */
	assert_int_equal(mq_set_vt(c, "t_ack", d, 60, &err), 0);
	assert_int_equal(mq_read(c, "t_ack", 30, 10, &msgs, &n, &err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(mq_metrics(c, "t_ack", &m, &err), 0);
	assert_int_equal(m.queue_length, 1);
	assert_int_equal(m.visible_length, 0);
	assert_int_equal(mq_set_vt(c, "t_ack", d, 0, &err), 0);
	assert_int_equal(mq_read(c, "t_ack", 30, 10, &msgs, &n, &err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(msgs[0].msg_id, d);
	mq_msgs_free(msgs, n);
	assert_int_equal(mq_set_vt(c, "t_ack", 999999, 0, &err), TRPC_ERR_NOT_FOUND);

	assert_int_equal(mq_metrics(c, "t_ack", &m, &err), 0);
	assert_int_equal(m.queue_length, 1);
	assert_int_equal(m.total_messages, 3);
	assert_true(m.oldest_msg_age_s >= 0 && m.newest_msg_age_s >= 0);
	assert_int_equal(scalar_long(c, "SELECT count(*) FROM pgmq.list_queues() WHERE queue_name "
	                                "= 't_ack'"),
	                 1);
	PQfinish(c);
}

static void test_queue_skip_locked(void **state)
{
	(void)state;
	PGconn *a = connect_to(NULL), *b = connect_to(NULL);
	struct tk_err err;
	struct mq_msg *ma, *mb;
	size_t na, nb;

	fresh_queue(a, "t_skip");
	for (int i = 0; i < 5; i++)
		send_json(a, "t_skip", "{}", 0);
	/* a holds its rows locked in an open transaction; b must skip them, not wait. */
	must(a, "BEGIN");
	assert_int_equal(mq_read(a, "t_skip", 30, 2, &ma, &na, &err), 0);
	assert_int_equal(na, 2);
	double t0 = now_ms();
	assert_int_equal(mq_read(b, "t_skip", 30, 10, &mb, &nb, &err), 0);
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(nb, 3);
	for (size_t i = 0; i < na; i++)
		for (size_t j = 0; j < nb; j++)
			assert_true(ma[i].msg_id != mb[j].msg_id);
	mq_msgs_free(mb, nb);
	/* a's rollback undoes its read: visible again, read_ct as before. */
	must(a, "ROLLBACK");
	assert_int_equal(mq_read(b, "t_skip", 30, 10, &mb, &nb, &err), 0);
	assert_int_equal(nb, 2);
	assert_int_equal(mb[0].msg_id, ma[0].msg_id);
	assert_int_equal(mb[0].read_ct, 1);
	mq_msgs_free(ma, na);
	mq_msgs_free(mb, nb);
	PQfinish(a);
	PQfinish(b);
}

#define RACE_MSGS    200
#define RACE_READERS 4

struct reader {
	struct db_pool *pool;
	int64_t got[RACE_MSGS];
	int n;
	int failed;
};

static void *race_reader(void *arg)
{
	struct reader *r = arg;
	struct tk_err err;
	struct mq_msg *msgs;
	size_t n;

	for (;;) {
		PGconn *c = db_acquire(r->pool, &err);
		if (c == NULL || mq_read(c, "t_race", 30, 3, &msgs, &n, &err) != 0) {
			r->failed = 1;
			if (c != NULL)
				db_release(r->pool, c, db_is_connection_error(c));
			return NULL;
		}
		for (size_t i = 0; i < n && r->n < RACE_MSGS; i++) {
			r->got[r->n++] = msgs[i].msg_id;
			mq_archive(c, "t_race", msgs[i].msg_id, &err);
		}
		mq_msgs_free(msgs, n);
		db_release(r->pool, c, 0);
		if (n == 0)
			return NULL;
	}
}

static void test_queue_concurrent_readers(void **state)
{
	(void)state;
	struct db_pool *p = pool_of(RACE_READERS, 5000);
	struct reader r[RACE_READERS];
	pthread_t t[RACE_READERS];
	static int seen[RACE_MSGS + 1];
	struct tk_err err;
	int64_t first = 0;
	PGconn *c = db_acquire(p, &err);

	fresh_queue(c, "t_race");
	for (int i = 0; i < RACE_MSGS; i++) {
		int64_t id = send_json(c, "t_race", "{}", 0);
		if (i == 0)
			first = id;
	}
	db_release(p, c, 0);
	memset(r, 0, sizeof r);
	memset(seen, 0, sizeof seen);
	for (int i = 0; i < RACE_READERS; i++) {
		r[i].pool = p;
		assert_int_equal(pthread_create(&t[i], NULL, race_reader, &r[i]), 0);
	}
	for (int i = 0; i < RACE_READERS; i++)
		pthread_join(t[i], NULL);
	int total = 0;
	for (int i = 0; i < RACE_READERS; i++) {
		assert_false(r[i].failed);
		for (int j = 0; j < r[i].n; j++) {
			int64_t k = r[i].got[j] - first;
			assert_true(k >= 0 && k < RACE_MSGS);
			seen[k]++;
		}
		total += r[i].n;
	}
	assert_int_equal(total, RACE_MSGS);
	for (int k = 0; k < RACE_MSGS; k++)
		assert_int_equal(seen[k], 1); /* every message exactly once */
	db_pool_free(p);
}

/* ------------------------------------------------------------------ notifications */

/* Waits up to ms for a notification; fails the test on error. */
static int wait_note(struct mq_listener *l, int ms, char *ch, size_t chlen, char **payload)
{
	struct tk_err err;
	double deadline = now_ms() + ms;
	int r;

	do {
		r = mq_listener_wait(l, (int)(deadline - now_ms()) + 1, ch, chlen, payload, &err);
		if (r < 0)
			fail_msg("mq_listener_wait: %s", err.msg);
	} while (r == 0 && now_ms() < deadline);
	return r;
}

struct note {
	char event_type[32];
	long msg_id;
	char queue_name[64];
	char ns[64];
	char message_k[32]; /* message->>'k' or "(null)" */
	int has_message;
	int payload_omitted;
	int delay_seconds;
	int has_ready_at;
};

/* Parses a payload with the server's JSON parser. */
static void parse_note(PGconn *c, const char *payload, struct note *n)
{
	const char *const params[] = {payload};
	PGresult *r = PQexecParams(
	    c,
	    "SELECT j->>'event_type', (j->>'msg_id')::bigint, j->>'queue_name', j->>'namespace', "
	    "j->'message'->>'k', (j ? 'message')::int, coalesce((j->>'payload_omitted')::bool, "
	    "false)::int, (j->>'delay_seconds')::int, (j->>'ready_at')::timestamptz IS NOT NULL "
	    "FROM (SELECT $1::jsonb AS j) s",
	    1, NULL, params, NULL, NULL, 0);

	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("payload %s: %s", payload, PQerrorMessage(c));
	snprintf(n->event_type, sizeof n->event_type, "%s", PQgetvalue(r, 0, 0));
	n->msg_id = atol(PQgetvalue(r, 0, 1));
	snprintf(n->queue_name, sizeof n->queue_name, "%s", PQgetvalue(r, 0, 2));
	snprintf(n->ns, sizeof n->ns, "%s", PQgetvalue(r, 0, 3));
	snprintf(n->message_k, sizeof n->message_k, "%s",
	         PQgetisnull(r, 0, 4) ? "(null)" : PQgetvalue(r, 0, 4));
	n->has_message = atoi(PQgetvalue(r, 0, 5));
	n->payload_omitted = atoi(PQgetvalue(r, 0, 6));
	n->delay_seconds = atoi(PQgetvalue(r, 0, 7));
	n->has_ready_at = strcmp(PQgetvalue(r, 0, 8), "t") == 0;
	PQclear(r);
}

/* Expects the next notification on channel and parses it. */
static void expect_note(struct mq_listener *l, PGconn *c, const char *channel, struct note *n)
{
	char ch[128];
	char *payload = NULL;

	if (wait_note(l, 5000, ch, sizeof ch, &payload) != 1)
		fail_msg("no notification on %s within 5 s", channel);
	assert_string_equal(ch, channel);
	parse_note(c, payload, n);
	free(payload);
}

static void test_notify_payloads(void **state)
{
	(void)state;
	static const char *const channels[] = {"pgmq_message_ready.payments", "pgmq_message_ready",
	                                       "pgmq_queue_created"};
	PGconn *c = connect_to(NULL);
	struct tk_err err;
	struct note n;
	struct mq_msg claimed;
	char ch[64];
	char *payload;

	must(c, "SELECT pgmq.drop_queue('worker_payments_queue'), "
	        "pgmq.drop_queue('orchestration_step_results')");
	struct mq_listener *l = mq_listener_new(url, channels, 3, &err);
	if (l == NULL)
		fail_msg("mq_listener_new: %s", err.msg);
	assert_true(mq_listener_connected(l));
	assert_int_equal(mq_listener_wait(l, 0, ch, sizeof ch, &payload, &err), 0);
	assert_null(payload);

	assert_int_equal(mq_create(c, "worker_payments_queue", &err), 0);
	expect_note(l, c, "pgmq_queue_created", &n);
	assert_string_equal(n.event_type, "queue_created");
	assert_string_equal(n.queue_name, "worker_payments_queue");
	assert_string_equal(n.ns, "payments");
	assert_int_equal(mq_create(c, "worker_payments_queue", &err), 0); /* exists: no notice */

	/* Small message: carried in the payload, on the namespace and global channels. */
	int64_t id = send_json(c, "worker_payments_queue", "{\"k\": \"v1\"}", 0);
	expect_note(l, c, "pgmq_message_ready.payments", &n);
	assert_string_equal(n.event_type, "message_with_payload");
	assert_int_equal(n.msg_id, id);
	assert_string_equal(n.queue_name, "worker_payments_queue");
	assert_string_equal(n.ns, "payments");
	assert_int_equal(n.has_message, 1);
	assert_string_equal(n.message_k, "v1");
	assert_int_equal(n.delay_seconds, 0);
	assert_true(n.has_ready_at);
	expect_note(l, c, "pgmq_message_ready", &n);
	assert_string_equal(n.event_type, "message_with_payload");
	assert_int_equal(n.msg_id, id);

	/* The consumer claims the notified message by id; a second claim finds it taken. */
	assert_int_equal(mq_claim(c, "worker_payments_queue", id, 30, &claimed, &err), 0);
	assert_int_equal(claimed.msg_id, id);
	assert_int_equal(claimed.read_ct, 1);
	free(claimed.message);
	assert_int_equal(mq_claim(c, "worker_payments_queue", id, 30, &claimed, &err),
	                 TRPC_ERR_NOT_FOUND);

	/* Large message (>= 7000 bytes): signal only. */
	size_t big = 8000;
	char *json = malloc(big + 32);
	assert_non_null(json);
	int off = snprintf(json, big + 32, "{\"k\": \"");
	memset(json + off, 'x', big);
	snprintf(json + off + big, 32, "\"}");
	id = send_json(c, "worker_payments_queue", json, 2);
	free(json);
	expect_note(l, c, "pgmq_message_ready.payments", &n);
	assert_string_equal(n.event_type, "message_ready");
	assert_int_equal(n.msg_id, id);
	assert_int_equal(n.has_message, 0);
	assert_int_equal(n.payload_omitted, 1);
	assert_int_equal(n.delay_seconds, 2);
	expect_note(l, c, "pgmq_message_ready", &n);
	assert_string_equal(n.event_type, "message_ready");

	/* Orchestration queues: namespace "orchestration", heard on the global channel only. */
	assert_int_equal(mq_create(c, "orchestration_step_results", &err), 0);
	expect_note(l, c, "pgmq_queue_created", &n);
	assert_string_equal(n.ns, "orchestration");
	id = send_json(c, "orchestration_step_results", "{\"k\": \"r\"}", 0);
	expect_note(l, c, "pgmq_message_ready", &n);
	assert_string_equal(n.ns, "orchestration");
	assert_int_equal(n.msg_id, id);

	/* Batches. */
	must(c, "SELECT tasker.pgmq_send_batch_with_notify('worker_payments_queue', "
	        "ARRAY['{\"k\": 1}', '{\"k\": 2}']::jsonb[])");
	expect_note(l, c, "pgmq_message_ready.payments", &n);
	assert_string_equal(n.event_type, "batch_ready");
	expect_note(l, c, "pgmq_message_ready", &n);

	/* Nothing is heard of a rolled-back send, nor sent twice. */
	must(c, "BEGIN");
	send_json(c, "worker_payments_queue", "{\"k\": \"never\"}", 0);
	must(c, "ROLLBACK");
	assert_int_equal(wait_note(l, 300, ch, sizeof ch, &payload), 0);

	/* Delivered at commit, not before. */
	must(c, "BEGIN");
	id = send_json(c, "worker_payments_queue", "{\"k\": \"tx\"}", 0);
	assert_int_equal(wait_note(l, 200, ch, sizeof ch, &payload), 0);
	must(c, "COMMIT");
	expect_note(l, c, "pgmq_message_ready.payments", &n);
	assert_int_equal(n.msg_id, id);
	assert_string_equal(n.message_k, "tx");
	expect_note(l, c, "pgmq_message_ready", &n);

	mq_listener_free(l);
	PQfinish(c);
}

/* ------------------------------------------------------------------ restart */

/* Asks the harness to restart the database; returns 0 when done, -1 to skip. */
static int restart_database(void)
{
	const char *cmd = getenv("TASKER_TEST_PG_RESTART");
	const char *mode = getenv("TASKER_TEST_RESTART");
	char line[64];

	if (cmd != NULL && cmd[0] != '\0') {
		if (system(cmd) != 0)
			fail_msg("restart command failed: %s", cmd);
		return 0;
	}
	if (mode == NULL || strcmp(mode, "stdio") != 0)
		return -1;
	printf("# tasker-test: restart-database\n");
	fflush(stdout);
	if (fgets(line, sizeof line, stdin) == NULL || strncmp(line, "restarted", 9) != 0)
		fail_msg("the harness did not restart the database");
	return 0;
}

#define LOADERS 3

struct loader {
	struct db_pool *pool;
	atomic_int *stop;
	atomic_long ok_after; /* successful sends after restarted was set */
	atomic_int *restarted;
	long ok, failed;
};

/* Sends messages in a loop through the pool, as a busy server would. */
static void *load(void *arg)
{
	struct loader *ld = arg;
	struct tk_err err;

	while (!atomic_load(ld->stop)) {
		PGconn *c = db_acquire(ld->pool, &err);
		if (c == NULL) {
			ld->failed++;
			sleep_ms(20);
			continue;
		}
		if (mq_send(c, "t_restart", "{\"load\": true}", 0, NULL, &err) == 0) {
			ld->ok++;
			if (atomic_load(ld->restarted))
				atomic_fetch_add(&ld->ok_after, 1);
		} else {
			ld->failed++;
		}
		db_release(ld->pool, c, db_is_connection_error(c));
		sleep_ms(5);
	}
	return NULL;
}

static void test_restart_recovery(void **state)
{
	(void)state;
	static const char *const channels[] = {"pgmq_message_ready"};
	struct db_pool *p = pool_of(LOADERS + 2, 3000);
	struct loader ld[LOADERS];
	pthread_t t[LOADERS];
	atomic_int stop = 0, restarted = 0;
	struct tk_err err;
	PGconn *held[LOADERS + 2];
	struct note n;
	char ch[64];
	char *payload = NULL;

	PGconn *c = db_acquire(p, &err);
	fresh_queue(c, "t_restart");
	db_release(p, c, 0);
	/* Open every pooled connection, so that all of them see the restart. */
	for (int i = 0; i < LOADERS + 2; i++)
		assert_non_null(held[i] = db_acquire(p, &err));
	for (int i = 0; i < LOADERS + 2; i++)
		db_release(p, held[i], 0);
	struct mq_listener *l = mq_listener_new(url, channels, 1, &err);
	if (l == NULL)
		fail_msg("mq_listener_new: %s", err.msg);

	memset(ld, 0, sizeof ld);
	for (int i = 0; i < LOADERS; i++) {
		ld[i].pool = p;
		ld[i].stop = &stop;
		ld[i].restarted = &restarted;
		assert_int_equal(pthread_create(&t[i], NULL, load, &ld[i]), 0);
	}
	sleep_ms(200);
	if (restart_database() < 0) {
		atomic_store(&stop, 1);
		for (int i = 0; i < LOADERS; i++)
			pthread_join(t[i], NULL);
		mq_listener_free(l);
		db_pool_free(p);
		skip();
	}
	atomic_store(&restarted, 1);

	/*
	 * The listener notices at its next wait (the old socket is at EOF),
	 * reconnects and listens again by itself, returning 0 meanwhile.
	 * Notifications may come first: the loaders' sends from before the
	 * restart, or from after the reconnection.
	 */
	double deadline = now_ms() + 15000;
	int r;
	do {
		r = mq_listener_wait(l, 300, ch, sizeof ch, &payload, &err);
		assert_true(r >= 0);
		free(payload);
		payload = NULL;
	} while (!(r == 0 && mq_listener_connected(l)) && now_ms() < deadline);
	assert_true(mq_listener_connected(l));

	/* The loaders recover: every one sends successfully after the restart. */
	deadline = now_ms() + 15000;
	for (int i = 0; i < LOADERS; i++)
		while (atomic_load(&ld[i].ok_after) == 0 && now_ms() < deadline)
			sleep_ms(50);
	atomic_store(&stop, 1);
	for (int i = 0; i < LOADERS; i++) {
		pthread_join(t[i], NULL);
		assert_true(atomic_load(&ld[i].ok_after) > 0);
	}
	while (mq_listener_wait(l, 100, ch, sizeof ch, &payload, &err) > 0) {
		free(payload);
		payload = NULL;
	}

	/* Every pooled connection works, all held at once (so none is skipped). */
	for (int i = 0; i < LOADERS + 2; i++) {
		held[i] = db_acquire(p, &err);
		if (held[i] == NULL)
			fail_msg("acquire %d after restart: %s", i, err.msg);
		assert_int_equal(db_command(held[i], "SELECT 1", 0, NULL, &err), 0);
	}
	for (int i = 1; i < LOADERS + 2; i++)
		db_release(p, held[i], 0);
	/* And the listener hears a new message. */
	int64_t id = send_json(held[0], "t_restart", "{\"k\": \"after\"}", 0);
	expect_note(l, held[0], "pgmq_message_ready", &n);
	assert_int_equal(n.msg_id, id);
	assert_string_equal(n.message_k, "after");
	db_release(p, held[0], 0);

	struct db_pool_stats st;
	db_pool_stats(p, &st);
	print_message("# pool after restart: %" PRIu64 " acquires, %" PRIu64
	              " errors, max %.1f ms\n",
	              st.acquires, st.errors, st.max_acquire_ms);
	mq_listener_free(l);
	db_pool_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_migration_table),
	    cmocka_unit_test(test_migrate_synthetic),
	    cmocka_unit_test(test_migrate_embedded),
	    cmocka_unit_test(test_pool_acquire_timeout_stats),
	    cmocka_unit_test(test_pool_slow_acquire),
	    cmocka_unit_test(test_pool_release_cleans_transaction),
	    cmocka_unit_test(test_pool_recovers_killed_connection),
	    cmocka_unit_test(test_pool_bad_url),
	    cmocka_unit_test(test_exec_errors),
	    cmocka_unit_test(test_prepared_cache),
	    cmocka_unit_test(test_queue_names),
	    cmocka_unit_test(test_queue_visibility),
	    cmocka_unit_test(test_queue_ack_and_metrics),
	    cmocka_unit_test(test_queue_skip_locked),
	    cmocka_unit_test(test_queue_concurrent_readers),
	    cmocka_unit_test(test_notify_payloads),
	    cmocka_unit_test(test_restart_recovery),
	};

	url = getenv("TASKER_TEST_DATABASE_URL");
	if (url == NULL || url[0] == '\0') {
		printf("1..0 # SKIP TASKER_TEST_DATABASE_URL is not set\n");
		return 0;
	}
	trpc_log_set_level(getenv("TASKER_TEST_VERBOSE") ? TRPC_LOG_DEBUG : TRPC_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
