/*
 * db: PostgreSQL access through libpq: a connection pool for many threads,
 * query helpers that turn server errors into struct tk_err, transactions,
 * and per-connection prepared statements.
 *
 * Threads: the pool may be used from any thread. A PGconn handed out by
 * db_acquire() belongs to the caller until db_release(); nobody else
 * touches it meanwhile, so there are no locks around it.
 *
 * Recovery: a pooled connection that died (database restart, network
 * failure, admin kill) is noticed at the next db_acquire() and re-opened
 * with PQreset() before it is handed out; the caller sees a working
 * connection or TRPC_ERR_UNAVAILABLE, never a dead one it has to repair.
 */
#ifndef TK_STORE_DB_H
#define TK_STORE_DB_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "err.h"

struct db_pool;

struct db_pool_config {
	const char *conninfo;         /* libpq "key=value ..." string or postgresql:// URI */
	int size;                     /* connections; >= 1 */
	int acquire_timeout_ms;       /* wait for a free connection; <= 0: 5000 */
	int connect_timeout_s;        /* per connection attempt; <= 0: 10 */
	const char *application_name; /* shown in pg_stat_activity; NULL: "tasker" */
};

struct db_pool_stats {
	int size;               /* configured connections */
	int active;             /* handed out right now */
	int idle;               /* open and waiting in the pool */
	uint64_t acquires;      /* successful db_acquire() calls */
	uint64_t slow_acquires; /* of those, the ones that took more than 100 ms */
	uint64_t errors;        /* failed db_acquire() calls (timeouts, connect failures) */
	double avg_acquire_ms;  /* over successful acquires */
	double max_acquire_ms;
};

/* ------------------------------------------------------------------ pool */

/*
 * Creates a pool of cfg->size connections. One connection is opened at
 * once, so a wrong DATABASE_URL fails here with a message that names the
 * host, port, database and user (never the password); the others open on
 * first use. The configuration strings are copied.
 * Returns the pool, or NULL with err set: TRPC_ERR_INVALID (bad size or a
 * connection string libpq cannot parse), TRPC_ERR_UNAVAILABLE (the server
 * refused or could not be reached), TRPC_ERR_NOMEM.
 */
struct db_pool *db_pool_new(const struct db_pool_config *cfg, struct tk_err *err);

/* Closes every connection. All connections must have been released. NULL is a no-op. */
void db_pool_free(struct db_pool *pool);

/*
 * Takes a connection, waiting up to acquire_timeout_ms for one to be
 * released. A connection that has broken since its last use is reset
 * first. The connection is idle (no open transaction) and owned by the
 * caller until db_release().
 * Returns NULL with err set: TRPC_ERR_TIMEOUT (all connections busy),
 * TRPC_ERR_UNAVAILABLE (could not (re)connect), TRPC_ERR_NOMEM.
 */
PGconn *db_acquire(struct db_pool *pool, struct tk_err *err);

/*
 * Gives a connection back. broken != 0 says the caller saw it fail; it is
 * then reset before its next use. An open or failed transaction is rolled
 * back here, so the next user always starts clean.
 */
void db_release(struct db_pool *pool, PGconn *conn, int broken);

/* Copies a snapshot of the pool's counters into *out. */
void db_pool_stats(struct db_pool *pool, struct db_pool_stats *out);

/* ------------------------------------------------------------------ connections */

/*
 * Opens one connection outside any pool (listeners, tools). application_name
 * and connect_timeout_s are defaults that the connection string may override.
 * Returns the connection (free with PQfinish) or NULL with err set as for
 * db_pool_new().
 */
PGconn *db_connect(const char *conninfo, const char *application_name, int connect_timeout_s,
                   struct tk_err *err);

/*
 * Writes "host=... port=... dbname=... user=..." for conninfo into buf: the
 * fields that name the target, never the password. Writes
 * "(unparsable connection string)" when libpq cannot parse it.
 */
void db_describe_target(const char *conninfo, char *buf, size_t size);

/* Sends conn's NOTICE and WARNING messages (and the FATAL a server sends
 * an idle session at shutdown) to the debug log instead of stderr.
 * db_connect() does this already. */
void db_route_notices(PGconn *conn);

/* Returns 1 when conn is unusable (lost or never established), else 0. */
int db_is_connection_error(PGconn *conn);

/* ------------------------------------------------------------------ queries */

/*
 * Runs one statement with text parameters (PQexecParams; NULL params[i] is
 * SQL NULL). Returns the result (PGRES_COMMAND_OK or PGRES_TUPLES_OK; free
 * with PQclear), or NULL with err set to the server's message followed by
 * "[SQLSTATE xxxxx]":
 *   TRPC_ERR_EXISTS       unique_violation (23505)
 *   TRPC_ERR_UNAVAILABLE  the connection failed (class 08, 57P01-57P03, or lost)
 *   TRPC_ERR_TIMEOUT      statement_timeout (57014) or lock_timeout (55P03)
 *   TRPC_ERR_NOMEM        libpq could not allocate
 *   TRPC_ERR_DB           anything else
 */
PGresult *db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
                  struct tk_err *err);

/*
 * As db_exec(), but on a pooled connection the statement is prepared once
 * under name and reused afterwards (the pool remembers which names each
 * connection has prepared and forgets them when the connection is reset).
 * name must always stand for the same sql. On a connection that is not
 * from a pool this is db_exec().
 */
PGresult *db_exec_prepared(PGconn *conn, const char *name, const char *sql, int nparams,
                           const char *const *params, struct tk_err *err);

/* db_exec() for statements whose result is not needed. Returns 0 or err->code. */
int db_command(PGconn *conn, const char *sql, int nparams, const char *const *params,
               struct tk_err *err);

/* BEGIN / COMMIT / ROLLBACK. Return 0 or a negative code as db_exec().
 * db_commit() of a transaction that had failed returns TRPC_ERR_DB (the
 * server rolled it back). */
int db_begin(PGconn *conn, struct tk_err *err);
int db_commit(PGconn *conn, struct tk_err *err);
int db_rollback(PGconn *conn, struct tk_err *err);

/* Returns 1 when err came from a server error with that SQLSTATE, e.g.
 * db_err_is_sqlstate(&err, "40001") to retry a serialization failure. */
int db_err_is_sqlstate(const struct tk_err *err, const char *sqlstate);

#endif
