/*
 * db: the libpq connection pool and query helpers (see db.h).
 *
 * The pool is an array of slots and a stack of free slot indices under
 * one mutex. The mutex guards only the stack and the counters: connecting,
 * resetting and health checks run outside it, on the thread that owns the
 * slot at that moment. Each pooled PGconn carries a pointer to its slot as
 * libpq "instance data", which is how db_exec_prepared() and db_release()
 * find the slot from a bare PGconn.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-events.h>

#include "db.h"

#define DEFAULT_ACQUIRE_TIMEOUT_MS 5000
#define DEFAULT_CONNECT_TIMEOUT_S  10
#define DEFAULT_APPLICATION_NAME   "tasker"
#define SLOW_ACQUIRE_MS            100.0

struct db_slot {
	PGconn *conn; /* NULL until first use */
	int broken;   /* reset before the next use */
	char **stmts; /* names prepared on conn */
	size_t nstmts, capstmts;
};

struct db_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv; /* CLOCK_MONOTONIC; signalled when a slot is freed */
	char *conninfo;
	char *application_name;
	char target[256]; /* db_describe_target(conninfo), for messages */
	int connect_timeout_s;
	int acquire_timeout_ms;
	int size;
	struct db_slot *slots;
	int *free_stack; /* slot indices; the top is the most recently released */
	int nfree;
	uint64_t acquires, slow_acquires, errors;
	double total_acquire_ms, max_acquire_ms;
};

/* ------------------------------------------------------------------ small helpers */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Copies a libpq message into buf on one line: newlines become "; ",
 * trailing blanks go. */
static void one_line(const char *msg, char *buf, size_t size)
{
	size_t o = 0;

	if (size == 0)
		return;
	for (const char *p = msg != NULL ? msg : ""; *p != '\0' && o + 3 < size; p++) {
		if (*p == '\n') {
			if (p[1] == '\0')
				break;
			buf[o++] = ';';
			buf[o++] = ' ';
		} else {
			buf[o++] = *p;
		}
	}
	while (o > 0 && (buf[o - 1] == ' ' || buf[o - 1] == ';'))
		o--;
	buf[o] = '\0';
}

/* ------------------------------------------------------------------ errors */

/* SQLSTATEs that say the server side of the connection went away. */
static int sqlstate_is_connection(const char *s)
{
	return strncmp(s, "08", 2) == 0 || strcmp(s, "57P01") == 0 || strcmp(s, "57P02") == 0 ||
	       strcmp(s, "57P03") == 0;
}

static int map_sqlstate(PGconn *conn, const char *state)
{
	if (state == NULL || state[0] == '\0')
		return PQstatus(conn) == CONNECTION_BAD ? TRPC_ERR_UNAVAILABLE : TRPC_ERR_DB;
	if (strcmp(state, "23505") == 0)
		return TRPC_ERR_EXISTS;
	if (sqlstate_is_connection(state) || PQstatus(conn) == CONNECTION_BAD)
		return TRPC_ERR_UNAVAILABLE;
	if (strcmp(state, "57014") == 0 || strcmp(state, "55P03") == 0)
		return TRPC_ERR_TIMEOUT;
	return TRPC_ERR_DB;
}

/* Fills err from a failed result (res may be NULL: then libpq itself
 * failed) and returns the code. */
static int set_query_error(PGconn *conn, const PGresult *res, struct tk_err *err)
{
	const char *state = NULL, *primary = NULL, *detail = NULL;
	char line[400];

	if (res != NULL) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	}
	if (res == NULL && PQstatus(conn) == CONNECTION_OK)
		return tk_err_set(err, TRPC_ERR_NOMEM, "database: out of memory in libpq");
	if (primary == NULL) {
		/* libpq's own failures (lost connection) carry no SQLSTATE. */
		one_line(PQerrorMessage(conn), line, sizeof line);
		primary = line[0] != '\0' ? line : "unknown error";
	}
	if (state == NULL)
		return tk_err_set(err, map_sqlstate(conn, NULL), "database: %s", primary);
	if (detail != NULL)
		return tk_err_set(err, map_sqlstate(conn, state), "database: %s (%s) [SQLSTATE %s]",
		                  primary, detail, state);
	return tk_err_set(err, map_sqlstate(conn, state), "database: %s [SQLSTATE %s]", primary,
	                  state);
}

static int result_ok(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return res != NULL && (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
}

int db_err_is_sqlstate(const struct tk_err *err, const char *sqlstate)
{
	char tag[32];

	if (err == NULL || err->code == 0 || sqlstate == NULL)
		return 0;
	snprintf(tag, sizeof tag, "[SQLSTATE %s]", sqlstate);
	return strstr(err->msg, tag) != NULL;
}

int db_is_connection_error(PGconn *conn)
{
	return conn == NULL || PQstatus(conn) == CONNECTION_BAD;
}

/* ------------------------------------------------------------------ connecting */

void db_describe_target(const char *conninfo, char *buf, size_t size)
{
	static const char *const shown[] = {"host", "hostaddr", "port", "dbname", "user"};
	PQconninfoOption *opts, *o;
	char *errmsg = NULL;
	size_t len = 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	opts = PQconninfoParse(conninfo != NULL ? conninfo : "", &errmsg);
	if (opts == NULL) {
		/* errmsg may quote part of the string, which may hold a password. */
		PQfreemem(errmsg);
		snprintf(buf, size, "(unparsable connection string)");
		return;
	}
	for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++) {
		for (o = opts; o->keyword != NULL; o++) {
			if (strcmp(o->keyword, shown[i]) != 0 || o->val == NULL ||
			    o->val[0] == '\0')
				continue;
			int n = snprintf(buf + len, size - len, "%s%s=%s", len > 0 ? " " : "",
			                 o->keyword, o->val);
			if (n < 0 || (size_t)n >= size - len)
				goto done;
			len += (size_t)n;
		}
	}
	if (len == 0)
		snprintf(buf, size, "(libpq defaults)");
done:
	PQconninfoFree(opts);
}

/* libpq prints NOTICEs on stderr by default; ours go to the debug log. */
static void on_notice(void *arg, const char *message)
{
	char line[400];

	(void)arg;
	one_line(message, line, sizeof line);
	trpc_log(TRPC_LOG_DEBUG, "database: %s", line);
}

void db_route_notices(PGconn *conn)
{
	PQsetNoticeProcessor(conn, on_notice, NULL);
}

PGconn *db_connect(const char *conninfo, const char *application_name, int connect_timeout_s,
                   struct tk_err *err)
{
	char timeout[16], where[256], why[400];
	PQconninfoOption *opts;
	char *errmsg = NULL;
	PGconn *conn;

	opts = PQconninfoParse(conninfo != NULL ? conninfo : "", &errmsg);
	if (opts == NULL) {
		PQfreemem(errmsg);
		tk_err_set(err, TRPC_ERR_INVALID,
		           "invalid database connection string: libpq cannot parse it (check "
		           "quoting and key names; the text is not shown because it may hold a "
		           "password)");
		return NULL;
	}
	PQconninfoFree(opts);

	/* Entries before the expanded "dbname" are defaults the string overrides. */
	snprintf(timeout, sizeof timeout, "%d",
	         connect_timeout_s > 0 ? connect_timeout_s : DEFAULT_CONNECT_TIMEOUT_S);
	const char *const keys[] = {"application_name", "connect_timeout", "dbname", NULL};
	const char *const vals[] = {application_name != NULL ? application_name
	                                                     : DEFAULT_APPLICATION_NAME,
	                            timeout, conninfo != NULL ? conninfo : "", NULL};
	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "database: out of memory in libpq");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		db_describe_target(conninfo, where, sizeof where);
		one_line(PQerrorMessage(conn), why, sizeof why);
		tk_err_set(err, TRPC_ERR_UNAVAILABLE, "cannot connect to PostgreSQL at %s: %s",
		           where, why);
		PQfinish(conn);
		return NULL;
	}
	db_route_notices(conn);
	return conn;
}

/* ------------------------------------------------------------------ prepared-statement cache */

static void slot_forget_stmts(struct db_slot *s)
{
	for (size_t i = 0; i < s->nstmts; i++)
		free(s->stmts[i]);
	s->nstmts = 0;
}

static int slot_has_stmt(const struct db_slot *s, const char *name)
{
	for (size_t i = 0; i < s->nstmts; i++)
		if (strcmp(s->stmts[i], name) == 0)
			return 1;
	return 0;
}

static void slot_drop_stmt(struct db_slot *s, const char *name)
{
	for (size_t i = 0; i < s->nstmts; i++) {
		if (strcmp(s->stmts[i], name) == 0) {
			free(s->stmts[i]);
			s->stmts[i] = s->stmts[--s->nstmts];
			return;
		}
	}
}

/* Makes room for one more name before anything is prepared, so that an
 * allocation failure can never leave a prepared name unrecorded. */
static int slot_reserve_stmt(struct db_slot *s)
{
	if (s->nstmts < s->capstmts)
		return 0;
	size_t cap = s->capstmts ? s->capstmts * 2 : 16;
	char **p = realloc(s->stmts, cap * sizeof *p);
	if (p == NULL)
		return TRPC_ERR_NOMEM;
	s->stmts = p;
	s->capstmts = cap;
	return 0;
}

/*
 * libpq event callback: it exists so that each pooled PGconn can carry its
 * slot (PQinstanceData) and so that a PQreset() from anywhere drops the
 * names prepared on the old session.
 */
static int on_conn_event(PGEventId id, void *info, void *pass)
{
	struct db_slot *s = pass;

	(void)info;
	if (id == PGEVT_CONNRESET && s != NULL)
		slot_forget_stmts(s);
	return 1;
}

PGresult *db_exec_prepared(PGconn *conn, const char *name, const char *sql, int nparams,
                           const char *const *params, struct tk_err *err)
{
	struct db_slot *s = PQinstanceData(conn, on_conn_event);
	PGresult *res;

	if (s == NULL)
		return db_exec(conn, sql, nparams, params, err);
	if (!slot_has_stmt(s, name)) {
		char *copy = strdup(name);
		if (copy == NULL || slot_reserve_stmt(s) < 0) {
			free(copy);
			tk_err_set(err, TRPC_ERR_NOMEM, "database: out of memory");
			return NULL;
		}
		res = PQprepare(conn, name, sql, nparams, NULL);
		if (!result_ok(res)) {
			set_query_error(conn, res, err);
			PQclear(res);
			free(copy);
			return NULL;
		}
		PQclear(res);
		s->stmts[s->nstmts++] = copy;
	}
	res = PQexecPrepared(conn, name, nparams, params, NULL, NULL, 0);
	if (result_ok(res))
		return res;
	set_query_error(conn, res, err);
	/* invalid_sql_statement_name: someone ran DEALLOCATE or DISCARD; prepare again next time. */
	if (db_err_is_sqlstate(err, "26000"))
		slot_drop_stmt(s, name);
	PQclear(res);
	return NULL;
}

/* ------------------------------------------------------------------ queries */

PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  struct tk_err *err)
{
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

	if (result_ok(res))
		return res;
	set_query_error(conn, res, err);
	PQclear(res);
	return NULL;
}

int db_command(PGconn *conn, const char *sql, int nparams, const char *const *params,
               struct tk_err *err)
{
	struct tk_err local;
	PGresult *res;

	if (err == NULL)
		err = &local; /* the code is returned all the same */
	res = db_exec(conn, sql, nparams, params, err);
	if (res == NULL)
		return err->code;
	PQclear(res);
	return 0;
}

int db_begin(PGconn *conn, struct tk_err *err)
{
	return db_command(conn, "BEGIN", 0, NULL, err);
}

int db_commit(PGconn *conn, struct tk_err *err)
{
	struct tk_err local;
	PGresult *res;

	if (err == NULL)
		err = &local;
	res = db_exec(conn, "COMMIT", 0, NULL, err);
	if (res == NULL)
		return err->code;
	/* COMMIT of a failed transaction "succeeds" with the tag ROLLBACK. */
	int rolled_back = strcmp(PQcmdStatus(res), "ROLLBACK") == 0;
	PQclear(res);
	if (rolled_back)
		return tk_err_set(err, TRPC_ERR_DB,
		                  "database: the transaction had failed and was rolled back");
	return 0;
}

int db_rollback(PGconn *conn, struct tk_err *err)
{
	return db_command(conn, "ROLLBACK", 0, NULL, err);
}

/* ------------------------------------------------------------------ pool */

/* Opens the slot's first connection and ties the slot to it. */
static int slot_connect(struct db_pool *p, struct db_slot *s, struct tk_err *err)
{
	struct tk_err local;

	if (err == NULL)
		err = &local;
	s->conn = db_connect(p->conninfo, p->application_name, p->connect_timeout_s, err);
	if (s->conn == NULL)
		return err->code;
	if (!PQregisterEventProc(s->conn, on_conn_event, "tasker-db-pool", s) ||
	    !PQsetInstanceData(s->conn, on_conn_event, s)) {
		PQfinish(s->conn);
		s->conn = NULL;
		return tk_err_set(err, TRPC_ERR_NOMEM, "database: out of memory in libpq");
	}
	return 0;
}

/*
 * An idle connection learns that its server went away only by reading: a
 * restarted server sent FATAL and closed the socket. A healthy idle
 * connection has nothing to read but notifications, so anything readable
 * is consumed and the status checked again. One poll(2) in the common case.
 */
static int conn_usable(PGconn *conn)
{
	struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
	PGnotify *n;

	if (PQstatus(conn) != CONNECTION_OK || pfd.fd < 0)
		return 0;
	for (int round = 0; round < 4; round++) {
		int r = poll(&pfd, 1, 0);
		if (r == 0)
			break;
		if (r == -1) {
			if (errno == EINTR)
				continue;
			return 0;
		}
		if (!PQconsumeInput(conn) || PQstatus(conn) != CONNECTION_OK)
			return 0;
		while ((n = PQnotifies(conn)) != NULL)
			PQfreemem(n);
	}
	return PQtransactionStatus(conn) == PQTRANS_IDLE;
}

/* Makes the slot's connection usable: first connect, or reset a broken one. */
static int slot_ready(struct db_pool *p, struct db_slot *s, struct tk_err *err)
{
	char why[400];

	if (s->conn == NULL)
		return slot_connect(p, s, err);
	if (!s->broken && conn_usable(s->conn))
		return 0;
	slot_forget_stmts(s);
	PQreset(s->conn);
	if (PQstatus(s->conn) != CONNECTION_OK) {
		s->broken = 1;
		one_line(PQerrorMessage(s->conn), why, sizeof why);
		return tk_err_set(err, TRPC_ERR_UNAVAILABLE,
		                  "cannot reconnect to PostgreSQL at %s: %s", p->target, why);
	}
	s->broken = 0;
	trpc_log(TRPC_LOG_INFO, "database connection to %s re-established", p->target);
	return 0;
}

static void slot_close(struct db_slot *s)
{
	if (s->conn != NULL)
		PQfinish(s->conn);
	s->conn = NULL;
	slot_forget_stmts(s);
	free(s->stmts);
	s->stmts = NULL;
	s->capstmts = 0;
}

struct db_pool *db_pool_new(const struct db_pool_config *cfg, struct tk_err *err)
{
	struct db_pool *p;
	pthread_condattr_t attr;
	int rc;

	if (cfg == NULL || cfg->conninfo == NULL || cfg->size < 1) {
		tk_err_set(err, TRPC_ERR_INVALID,
		           "database pool: a connection string and size >= 1 are required");
		return NULL;
	}
	p = calloc(1, sizeof *p);
	if (p == NULL) {
		tk_err_set(err, TRPC_ERR_NOMEM, "database pool: out of memory");
		return NULL;
	}
	p->size = cfg->size;
	p->acquire_timeout_ms =
	    cfg->acquire_timeout_ms > 0 ? cfg->acquire_timeout_ms : DEFAULT_ACQUIRE_TIMEOUT_MS;
	p->connect_timeout_s =
	    cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : DEFAULT_CONNECT_TIMEOUT_S;
	p->conninfo = strdup(cfg->conninfo);
	p->application_name = strdup(cfg->application_name != NULL ? cfg->application_name
	                                                           : DEFAULT_APPLICATION_NAME);
	p->slots = calloc((size_t)p->size, sizeof *p->slots);
	p->free_stack = calloc((size_t)p->size, sizeof *p->free_stack);
	if (p->conninfo == NULL || p->application_name == NULL || p->slots == NULL ||
	    p->free_stack == NULL || pthread_mutex_init(&p->mu, NULL) != 0) {
		tk_err_set(err, TRPC_ERR_NOMEM, "database pool: out of memory");
		goto fail_free;
	}
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	rc = pthread_cond_init(&p->cv, &attr);
	pthread_condattr_destroy(&attr);
	if (rc != 0) {
		tk_err_set(err, TRPC_ERR_NOMEM, "database pool: out of memory");
		goto fail_mutex;
	}
	db_describe_target(p->conninfo, p->target, sizeof p->target);
	/* Slot 0 on top of the stack: it is the one connected now. */
	for (int i = 0; i < p->size; i++)
		p->free_stack[i] = p->size - 1 - i;
	p->nfree = p->size;
	if (slot_connect(p, &p->slots[0], err) < 0)
		goto fail_cond;
	trpc_log(TRPC_LOG_DEBUG, "database pool: %d connections to %s", p->size, p->target);
	return p;

fail_cond:
	pthread_cond_destroy(&p->cv);
fail_mutex:
	pthread_mutex_destroy(&p->mu);
fail_free:
	free(p->free_stack);
	free(p->slots);
	free(p->application_name);
	free(p->conninfo);
	free(p);
	return NULL;
}

void db_pool_free(struct db_pool *p)
{
	if (p == NULL)
		return;
	for (int i = 0; i < p->size; i++)
		slot_close(&p->slots[i]);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p->free_stack);
	free(p->slots);
	free(p->application_name);
	free(p->conninfo);
	free(p);
}

static struct timespec deadline_after_ms(int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	return ts;
}

PGconn *db_acquire(struct db_pool *p, struct tk_err *err)
{
	struct timespec deadline = deadline_after_ms(p->acquire_timeout_ms);
	double t0 = now_ms();
	struct db_slot *s;
	int idx, rc;

	pthread_mutex_lock(&p->mu);
	while (p->nfree == 0) {
		rc = pthread_cond_timedwait(&p->cv, &p->mu, &deadline);
		if (rc == ETIMEDOUT && p->nfree == 0) {
			p->errors++;
			pthread_mutex_unlock(&p->mu);
			tk_err_set(err, TRPC_ERR_TIMEOUT,
			           "database pool: no connection free after %d ms (all %d in use)",
			           p->acquire_timeout_ms, p->size);
			return NULL;
		}
	}
	idx = p->free_stack[--p->nfree];
	pthread_mutex_unlock(&p->mu);

	s = &p->slots[idx];
	rc = slot_ready(p, s, err);
	double ms = now_ms() - t0;

	pthread_mutex_lock(&p->mu);
	if (rc < 0) {
		p->free_stack[p->nfree++] = idx;
		p->errors++;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		return NULL;
	}
	p->acquires++;
	p->total_acquire_ms += ms;
	if (ms > p->max_acquire_ms)
		p->max_acquire_ms = ms;
	if (ms > SLOW_ACQUIRE_MS)
		p->slow_acquires++;
	pthread_mutex_unlock(&p->mu);
	return s->conn;
}

/* Leaves conn idle with no transaction; returns 0 if that failed. */
static int conn_clean(PGconn *conn)
{
	PGnotify *n;

	if (PQstatus(conn) != CONNECTION_OK)
		return 0;
	switch (PQtransactionStatus(conn)) {
	case PQTRANS_IDLE:
		break;
	case PQTRANS_INTRANS:
	case PQTRANS_INERROR: {
		PGresult *res = PQexec(conn, "ROLLBACK");
		int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
		PQclear(res);
		if (!ok)
			return 0;
		break;
	}
	default: /* a query still running, or unknown: only a reset is safe */
		return 0;
	}
	while ((n = PQnotifies(conn)) != NULL)
		PQfreemem(n);
	return 1;
}

void db_release(struct db_pool *p, PGconn *conn, int broken)
{
	struct db_slot *s;

	if (p == NULL || conn == NULL)
		return;
	s = PQinstanceData(conn, on_conn_event);
	if (s == NULL || s < p->slots || s >= p->slots + p->size) {
		trpc_log(TRPC_LOG_ERROR, "db_release: connection does not belong to this pool");
		return;
	}
	if (broken || !conn_clean(conn))
		s->broken = 1;
	pthread_mutex_lock(&p->mu);
	p->free_stack[p->nfree++] = (int)(s - p->slots);
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

void db_pool_stats(struct db_pool *p, struct db_pool_stats *out)
{
	memset(out, 0, sizeof *out);
	pthread_mutex_lock(&p->mu);
	out->size = p->size;
	out->active = p->size - p->nfree;
	/* A free slot is "idle" once it has a connection; slots never used have none.
	 * Reading slot->conn here is safe: only the slot's owner writes it, and a free
	 * slot has no owner. */
	for (int i = 0; i < p->nfree; i++)
		if (p->slots[p->free_stack[i]].conn != NULL)
			out->idle++;
	out->acquires = p->acquires;
	out->slow_acquires = p->slow_acquires;
	out->errors = p->errors;
	out->avg_acquire_ms = p->acquires ? p->total_acquire_ms / (double)p->acquires : 0.0;
	out->max_acquire_ms = p->max_acquire_ms;
	pthread_mutex_unlock(&p->mu);
}
