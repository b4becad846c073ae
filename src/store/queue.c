/*
 * queue: the C side of the pgmq-style queues and the LISTEN/NOTIFY
 * listener (see queue.h; the SQL is migrations/0004_queues.sql).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "queue.h"

#define QUEUE_NAME_MAX          47
#define LISTENER_APP_NAME       "tasker-listener"
#define LISTENER_CONNECT_S      10
#define LISTENER_BACKOFF_MIN_MS 100
#define LISTENER_BACKOFF_MAX_MS 2000

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------------ queries */

int mq_name_valid(const char *name)
{
	size_t len = 0;

	if (name == NULL)
		return 0;
	for (const char *p = name; *p != '\0'; p++, len++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return 0;
	}
	return len >= 1 && len <= QUEUE_NAME_MAX;
}

static int bad_name(const char *queue, struct tk_err *err)
{
	return tk_err_set(
	    err, TRPC_ERR_INVALID,
	    "invalid queue name \"%.60s\": use 1 to %d letters, digits or underscores",
	    queue != NULL ? queue : "(null)", QUEUE_NAME_MAX);
}

/*
 * Runs a queue statement (prepared once per pooled connection under stmt)
 * and turns the server errors that the queue functions raise into the
 * codes queue.h promises. Returns the result or NULL with *rc and err set.
 */
static PGresult *q_exec(PGconn *conn, const char *stmt, const char *sql, int nparams,
                        const char *const *params, const char *queue, int *rc, struct tk_err *err)
{
	struct tk_err e;
	PGresult *res;

	tk_err_clear(&e);
	res = db_exec_prepared(conn, stmt, sql, nparams, params, &e);
	if (res != NULL) {
		*rc = 0;
		return res;
	}
	if (db_err_is_sqlstate(&e, "42P01")) /* undefined_table: pgmq.q_<queue> */
		tk_err_set(&e, TRPC_ERR_NOT_FOUND, "queue \"%s\" does not exist", queue);
	else if (db_err_is_sqlstate(&e, "22023") || db_err_is_sqlstate(&e, "22P02"))
		e.code =
		    TRPC_ERR_INVALID; /* bad queue name, bad JSON: the server's message says which */
	*rc = e.code < 0 ? e.code : TRPC_ERR_DB;
	if (err != NULL)
		*err = e;
	return NULL;
}

/* ------------------------------------------------------------------ statements of one queue */

char *mq_queue_sql(const char *tmpl, const char *queue)
{
	size_t qlen, len = 0, cap;
	char *out;

	if (!mq_name_valid(queue))
		return NULL;
	qlen = strlen(queue);
	cap = strlen(tmpl) + 1;
	for (const char *p = strstr(tmpl, "{"); p != NULL; p = strstr(p + 1, "{"))
		cap += qlen + 8; /* "{q}" -> "pgmq.q_" + queue */
	if ((out = malloc(cap)) == NULL)
		return NULL;
	for (const char *p = tmpl; *p != '\0';) {
		if ((p[0] == '{' && (p[1] == 'q' || p[1] == 'a') && p[2] == '}')) {
			len += (size_t)snprintf(out + len, cap - len, "pgmq.%c_", p[1]);
			for (size_t i = 0; i < qlen; i++)
				out[len++] = (char)tolower((unsigned char)queue[i]);
			p += 3;
		} else {
			out[len++] = *p++;
		}
	}
	out[len] = '\0';
	return out;
}

int mq_queue_stmt(char *buf, size_t size, const char *op, const char *queue)
{
	int n;

	if (!mq_name_valid(queue) || size == 0)
		return TRPC_ERR_INVALID;
	n = snprintf(buf, size, "%s.%s", op, queue);
	if (n < 0 || (size_t)n >= size || n > 63) /* NAMEDATALEN - 1 */
		return TRPC_ERR_INVALID;
	for (char *p = buf + strlen(op) + 1; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

char *mq_ids_literal(const int64_t *ids, size_t n)
{
	size_t cap = n * 21 + 3, len = 0;
	char *out = malloc(cap);

	if (out == NULL)
		return NULL;
	out[len++] = '{';
	for (size_t i = 0; i < n; i++)
		len +=
		    (size_t)snprintf(out + len, cap - len, "%s%" PRId64, i > 0 ? "," : "", ids[i]);
	out[len++] = '}';
	out[len] = '\0';
	return out;
}

/*
 * q_exec() of a statement about one queue: tmpl as mq_queue_sql() expands
 * it, prepared under "<op>.<queue>".
 */
static PGresult *q_exec_queue(PGconn *conn, const char *op, const char *tmpl, int nparams,
                              const char *const *params, const char *queue, int *rc,
                              struct tk_err *err)
{
	char name[64];
	char *sql;
	PGresult *res;

	if (mq_queue_stmt(name, sizeof name, op, queue) != 0) {
		*rc = bad_name(queue, err);
		return NULL;
	}
	if ((sql = mq_queue_sql(tmpl, queue)) == NULL) {
		*rc = tk_err_set(err, TRPC_ERR_NOMEM, "queue %s: out of memory", queue);
		return NULL;
	}
	res = q_exec(conn, name, sql, nparams, params, queue, rc, err);
	free(sql);
	return res;
}

int mq_create(PGconn *conn, const char *queue, struct tk_err *err)
{
	const char *const params[] = {queue};
	PGresult *res;
	int rc;

	if (!mq_name_valid(queue))
		return bad_name(queue, err);
	res = q_exec(conn, "tk_mq_create", "SELECT pgmq.create($1::text)", 1, params, queue, &rc,
	             err);
	PQclear(res);
	return rc;
}

int mq_send(PGconn *conn, const char *queue, const char *json, int delay_s, int64_t *msg_id,
            struct tk_err *err)
{
	char delay[16];
	const char *const params[] = {queue, json, delay};
	PGresult *res;
	int rc;

	if (!mq_name_valid(queue))
		return bad_name(queue, err);
	if (json == NULL)
		return tk_err_set(err, TRPC_ERR_INVALID, "queue %s: message is NULL", queue);
	snprintf(delay, sizeof delay, "%d", delay_s > 0 ? delay_s : 0);
	res = q_exec(conn, "tk_mq_send",
	             "SELECT tasker.pgmq_send_with_notify($1::text, $2::jsonb, $3::integer)", 3,
	             params, queue, &rc, err);
	if (res == NULL)
		return rc;
	if (msg_id != NULL)
		*msg_id = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	return 0;
}

/* Columns: msg_id, read_ct, message::text, epoch(enqueued_at), epoch(vt). */
#define MSG_COLUMNS                                                                                \
	"msg_id, read_ct, message::text, extract(epoch FROM enqueued_at)::float8, "                \
	"extract(epoch FROM vt)::float8"

static int fill_msg(const PGresult *res, int row, struct mq_msg *m)
{
	m->msg_id = strtoll(PQgetvalue(res, row, 0), NULL, 10);
	m->read_ct = atoi(PQgetvalue(res, row, 1));
	m->enqueued_at_epoch = strtod(PQgetvalue(res, row, 3), NULL);
	m->vt_epoch = strtod(PQgetvalue(res, row, 4), NULL);
	m->message = NULL;
	if (PQgetisnull(res, row, 2))
		return 0;
	m->message = strdup(PQgetvalue(res, row, 2));
	return m->message != NULL ? 0 : TRPC_ERR_NOMEM;
}

void mq_msgs_free(struct mq_msg *msgs, size_t n)
{
	if (msgs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(msgs[i].message);
	free(msgs);
}

int mq_read(PGconn *conn, const char *queue, int vt_s, int qty, struct mq_msg **msgs, size_t *n,
            struct tk_err *err)
{
	char vt[16], count[16];
	const char *const params[] = {vt, count};
	struct mq_msg *out = NULL;
	PGresult *res;
	int rc, rows;

	*msgs = NULL;
	*n = 0;
	if (!mq_name_valid(queue))
		return bad_name(queue, err);
	if (qty <= 0)
		return 0;
	snprintf(vt, sizeof vt, "%d", vt_s > 0 ? vt_s : 0);
	snprintf(count, sizeof count, "%d", qty);
	/* pgmq.read() as a static statement */
	res = q_exec_queue(conn, "mq_read",
	                   "WITH c AS (SELECT msg_id FROM {q} WHERE vt <= clock_timestamp() "
	                   "ORDER BY msg_id LIMIT $2::integer FOR UPDATE SKIP LOCKED), "
	                   "m AS (UPDATE {q} m SET vt = clock_timestamp() + "
	                   "make_interval(secs => $1::integer), read_ct = m.read_ct + 1 FROM c "
	                   "WHERE m.msg_id = c.msg_id RETURNING m.*) "
	                   "SELECT " MSG_COLUMNS " FROM m ORDER BY msg_id",
	                   2, params, queue, &rc, err);
	if (res == NULL)
		return rc;
	rows = PQntuples(res);
	if (rows > 0) {
		out = calloc((size_t)rows, sizeof *out);
		if (out == NULL)
			goto fail_nomem;
		for (int i = 0; i < rows; i++) {
			if (fill_msg(res, i, &out[i]) < 0) {
				mq_msgs_free(out, (size_t)i);
				goto fail_nomem;
			}
		}
	}
	PQclear(res);
	*msgs = out;
	*n = (size_t)rows;
	return 0;

fail_nomem:
	/* The messages are hidden for vt_s seconds and come back afterwards. */
	PQclear(res);
	return tk_err_set(err, TRPC_ERR_NOMEM, "queue %s: out of memory reading %d messages", queue,
	                  rows);
}

int mq_claim(PGconn *conn, const char *queue, int64_t msg_id, int vt_s, struct mq_msg *msg,
             struct tk_err *err)
{
	char id[24], vt[16];
	const char *const params[] = {id, vt};
	PGresult *res;
	int rc;

	memset(msg, 0, sizeof *msg);
	if (!mq_name_valid(queue))
		return bad_name(queue, err);
	snprintf(id, sizeof id, "%" PRId64, msg_id);
	snprintf(vt, sizeof vt, "%d", vt_s > 0 ? vt_s : 0);
	/* tasker.pgmq_read_specific_message() as a static statement */
	res = q_exec_queue(conn, "mq_claim",
	                   "WITH c AS (SELECT msg_id FROM {q} WHERE msg_id = $1::bigint "
	                   "AND vt <= clock_timestamp() FOR UPDATE SKIP LOCKED), "
	                   "m AS (UPDATE {q} m SET vt = clock_timestamp() + "
	                   "make_interval(secs => $2::integer), read_ct = m.read_ct + 1 FROM c "
	                   "WHERE m.msg_id = c.msg_id RETURNING m.*) "
	                   "SELECT " MSG_COLUMNS " FROM m",
	                   2, params, queue, &rc, err);
	if (res == NULL)
		return rc;
	if (PQntuples(res) == 0)
		rc = tk_err_set(err, TRPC_ERR_NOT_FOUND,
		                "queue %s: message %" PRId64 " is gone, invisible or being read",
		                queue, msg_id);
	else if (fill_msg(res, 0, msg) < 0)
		rc = tk_err_set(err, TRPC_ERR_NOMEM, "queue %s: out of memory", queue);
	PQclear(res);
	return rc;
}

/* Runs a statement about one message of a queue (mq_queue_sql() template,
 * $1 the message id) that returns a row when the message was there. */
static int one_msg_op(PGconn *conn, const char *stmt, const char *sql, const char *queue,
                      int64_t msg_id, const char *arg, struct tk_err *err)
{
	char id[24];
	const char *const params[] = {id, arg};
	PGresult *res;
	int rc, found;

	if (!mq_name_valid(queue))
		return bad_name(queue, err);
	snprintf(id, sizeof id, "%" PRId64, msg_id);
	res = q_exec_queue(conn, stmt, sql, arg != NULL ? 2 : 1, params, queue, &rc, err);
	if (res == NULL)
		return rc;
	found = PQntuples(res) > 0 && strcmp(PQgetvalue(res, 0, 0), "f") != 0;
	PQclear(res);
	if (!found)
		return tk_err_set(err, TRPC_ERR_NOT_FOUND, "queue %s: no message %" PRId64, queue,
		                  msg_id);
	return 0;
}

int mq_archive(PGconn *conn, const char *queue, int64_t msg_id, struct tk_err *err)
{
	return one_msg_op(conn, "mq_archive",
	                  "WITH m AS (DELETE FROM {q} WHERE msg_id = $1::bigint "
	                  "RETURNING msg_id, read_ct, enqueued_at, vt, message, headers) "
	                  "INSERT INTO {a} (msg_id, read_ct, enqueued_at, vt, message, headers) "
	                  "SELECT msg_id, read_ct, enqueued_at, vt, message, headers FROM m "
	                  "RETURNING msg_id",
	                  queue, msg_id, NULL, err);
}

int mq_delete(PGconn *conn, const char *queue, int64_t msg_id, struct tk_err *err)
{
	return one_msg_op(conn, "mq_delete",
	                  "DELETE FROM {q} WHERE msg_id = $1::bigint RETURNING msg_id", queue,
	                  msg_id, NULL, err);
}

int mq_set_vt(PGconn *conn, const char *queue, int64_t msg_id, int vt_s, struct tk_err *err)
{
	char vt[16];

	snprintf(vt, sizeof vt, "%d", vt_s > 0 ? vt_s : 0);
	return one_msg_op(
	    conn, "mq_set_vt",
	    "UPDATE {q} SET vt = clock_timestamp() + make_interval(secs => $2::integer) "
	    "WHERE msg_id = $1::bigint RETURNING msg_id",
	    queue, msg_id, vt, err);
}

static int64_t int_or(const PGresult *res, int col, int64_t dflt)
{
	return PQgetisnull(res, 0, col) ? dflt : strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

int mq_metrics(PGconn *conn, const char *queue, struct mq_metrics *out, struct tk_err *err)
{
	const char *const params[] = {queue};
	PGresult *res;
	int rc;

	memset(out, 0, sizeof *out);
	if (!mq_name_valid(queue))
		return bad_name(queue, err);
	res = q_exec(conn, "tk_mq_metrics",
	             "SELECT queue_length, queue_visible_length, newest_msg_age_sec, "
	             "oldest_msg_age_sec, total_messages FROM pgmq.metrics($1::text)",
	             1, params, queue, &rc, err);
	if (res == NULL)
		return rc;
	out->queue_length = int_or(res, 0, 0);
	out->visible_length = int_or(res, 1, 0);
	out->newest_msg_age_s = int_or(res, 2, -1);
	out->oldest_msg_age_s = int_or(res, 3, -1);
	out->total_messages = int_or(res, 4, 0);
	PQclear(res);
	return 0;
}

/* ------------------------------------------------------------------ listener */

struct mq_listener {
	char *conninfo;
	char **channels;
	size_t n;
	PGconn *conn;                   /* NULL while disconnected */
	int connecting;                 /* conn is being set up by PQconnectPoll */
	PostgresPollingStatusType want; /* what PQconnectPoll waits for */
	double connect_deadline_ms;
	double retry_at_ms; /* next connection attempt, while conn is NULL */
	int backoff_ms;
	int down; /* the loss was logged; log the recovery */
};

/* LISTENs on every channel in one round trip. */
static int listen_all(struct mq_listener *l, struct tk_err *err)
{
	size_t cap = 1, len = 0;
	char *sql;
	PGresult *res;
	int ok;

	for (size_t i = 0; i < l->n; i++)
		cap += 2 * strlen(l->channels[i]) + 16;
	sql = malloc(cap);
	if (sql == NULL)
		return tk_err_set(err, TRPC_ERR_NOMEM, "listener: out of memory");
	for (size_t i = 0; i < l->n; i++) {
		char *id = PQescapeIdentifier(l->conn, l->channels[i], strlen(l->channels[i]));
		if (id == NULL) {
			free(sql);
			return tk_err_set(err, TRPC_ERR_NOMEM, "listener: cannot quote channel %s",
			                  l->channels[i]);
		}
		len += (size_t)snprintf(sql + len, cap - len, "LISTEN %s;", id);
		PQfreemem(id);
	}
	res = PQexec(l->conn, sql);
	free(sql);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		tk_err_set(err, TRPC_ERR_UNAVAILABLE, "listener: LISTEN failed: %.300s",
		           PQerrorMessage(l->conn));
	PQclear(res);
	return ok ? 0 : TRPC_ERR_UNAVAILABLE;
}

static void drop_conn(struct mq_listener *l)
{
	if (l->conn != NULL)
		PQfinish(l->conn);
	l->conn = NULL;
	l->connecting = 0;
}

/* The connection is gone or could not be made: try again after a pause
 * that doubles up to LISTENER_BACKOFF_MAX_MS. */
static void schedule_retry(struct mq_listener *l, const char *why)
{
	char where[256];

	if (!l->down) {
		db_describe_target(l->conninfo, where, sizeof where);
		trpc_log(TRPC_LOG_WARN, "listener: connection to %s lost (%.*s); reconnecting",
		         where, (int)strcspn(why, "\n"), why);
		l->down = 1;
	}
	drop_conn(l);
	l->retry_at_ms = now_ms() + l->backoff_ms;
	l->backoff_ms = l->backoff_ms * 2 > LISTENER_BACKOFF_MAX_MS ? LISTENER_BACKOFF_MAX_MS
	                                                            : l->backoff_ms * 2;
}

static void start_connect(struct mq_listener *l)
{
	const char *const keys[] = {"application_name", "dbname", NULL};
	const char *const vals[] = {LISTENER_APP_NAME, l->conninfo, NULL};

	l->conn = PQconnectStartParams(keys, vals, 1);
	if (l->conn == NULL || PQstatus(l->conn) == CONNECTION_BAD) {
		schedule_retry(l, l->conn != NULL ? PQerrorMessage(l->conn) : "out of memory");
		return;
	}
	db_route_notices(l->conn);
	l->connecting = 1;
	l->want = PGRES_POLLING_WRITING; /* as the libpq manual says to begin */
	l->connect_deadline_ms = now_ms() + LISTENER_CONNECT_S * 1000.0;
}

/* The connection is up: LISTEN again. */
static void finish_connect(struct mq_listener *l)
{
	struct tk_err e;

	l->connecting = 0;
	if (listen_all(l, &e) < 0) {
		schedule_retry(l, e.msg);
		return;
	}
	l->backoff_ms = LISTENER_BACKOFF_MIN_MS;
	if (l->down)
		trpc_log(TRPC_LOG_INFO, "listener: reconnected; listening again");
	l->down = 0;
}

/* Hands out one queued notification: 1, 0 if none, or TRPC_ERR_NOMEM. */
static int take_notification(struct mq_listener *l, char *channel, size_t chlen, char **payload,
                             struct tk_err *err)
{
	PGnotify *nt = PQnotifies(l->conn);

	if (nt == NULL)
		return 0;
	if (channel != NULL && chlen > 0)
		snprintf(channel, chlen, "%s", nt->relname);
	if (payload != NULL) {
		*payload = strdup(nt->extra != NULL ? nt->extra : "");
		if (*payload == NULL) {
			PQfreemem(nt);
			return tk_err_set(err, TRPC_ERR_NOMEM, "listener: out of memory");
		}
	}
	PQfreemem(nt);
	return 1;
}

struct mq_listener *mq_listener_new(const char *conninfo, const char *const *channels, size_t n,
                                    struct tk_err *err)
{
	struct mq_listener *l;

	if (conninfo == NULL || channels == NULL || n == 0) {
		tk_err_set(err, TRPC_ERR_INVALID,
		           "listener: a connection string and channels are "
		           "required");
		return NULL;
	}
	l = calloc(1, sizeof *l);
	if (l == NULL)
		goto fail_nomem;
	l->backoff_ms = LISTENER_BACKOFF_MIN_MS;
	l->conninfo = strdup(conninfo);
	l->channels = calloc(n, sizeof *l->channels);
	if (l->conninfo == NULL || l->channels == NULL)
		goto fail_free;
	for (l->n = 0; l->n < n; l->n++) {
		l->channels[l->n] = strdup(channels[l->n] != NULL ? channels[l->n] : "");
		if (l->channels[l->n] == NULL)
			goto fail_free;
	}
	l->conn = db_connect(conninfo, LISTENER_APP_NAME, LISTENER_CONNECT_S, err);
	if (l->conn == NULL)
		goto fail_listener;
	if (listen_all(l, err) < 0)
		goto fail_listener;
	return l;

fail_free:
	tk_err_set(err, TRPC_ERR_NOMEM, "listener: out of memory");
fail_listener:
	mq_listener_free(l);
	return NULL;
fail_nomem:
	tk_err_set(err, TRPC_ERR_NOMEM, "listener: out of memory");
	return NULL;
}

void mq_listener_free(struct mq_listener *l)
{
	if (l == NULL)
		return;
	drop_conn(l);
	for (size_t i = 0; i < l->n; i++)
		free(l->channels[i]);
	free(l->channels);
	free(l->conninfo);
	free(l);
}

int mq_listener_connected(const struct mq_listener *l)
{
	return l->conn != NULL && !l->connecting && PQstatus(l->conn) == CONNECTION_OK;
}

/* Milliseconds from now until t, rounded up, at least 0, at most INT_MAX-ish. */
static int ms_until(double t)
{
	double d = t - now_ms();

	if (d <= 0)
		return 0;
	if (d > 1e9)
		return 1000000000;
	return (int)d + ((double)(int)d < d); /* rounded up */
}

int mq_listener_wait(struct mq_listener *l, int timeout_ms, char *channel, size_t chlen,
                     char **payload, struct tk_err *err)
{
	double deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	struct pollfd pfd;
	int r;

	if (payload != NULL)
		*payload = NULL;
	for (;;) {
		if (l->conn != NULL && !l->connecting) {
			r = take_notification(l, channel, chlen, payload, err);
			if (r != 0)
				return r;
		}
		int left = ms_until(deadline);

		if (l->conn == NULL) {
			if (now_ms() >= l->retry_at_ms) {
				start_connect(l);
				continue;
			}
			if (left == 0)
				return 0;
			int pause = ms_until(l->retry_at_ms);
			poll(NULL, 0, pause < left ? pause : left);
			continue;
		}
		pfd.fd = PQsocket(l->conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (l->connecting) {
			if (now_ms() >= l->connect_deadline_ms) {
				schedule_retry(l, "timeout expired");
				continue;
			}
			pfd.events = l->want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
			int cleft = ms_until(l->connect_deadline_ms);
			if (cleft < left)
				left = cleft;
		}
		r = poll(&pfd, 1, left);
		if (r == -1) {
			if (errno == EINTR)
				continue;
			return tk_err_set(err, TRPC_ERR_SYSTEM, "listener: poll: %s",
			                  strerror(errno));
		}
		if (r == 0) {
			if (ms_until(deadline) == 0)
				return 0;
			continue;
		}
		if (l->connecting) {
			l->want = PQconnectPoll(l->conn);
			if (l->want == PGRES_POLLING_FAILED) {
				schedule_retry(l, PQerrorMessage(l->conn));
			} else if (l->want == PGRES_POLLING_OK) {
				finish_connect(l);
				if (l->conn != NULL)
					return 0; /* back: the caller polls for what it missed */
			}
			continue;
		}
		if (!PQconsumeInput(l->conn) || PQstatus(l->conn) != CONNECTION_OK)
			schedule_retry(l, PQerrorMessage(l->conn));
	}
}
