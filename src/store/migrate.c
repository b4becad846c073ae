/*
 * migrate: applies the embedded schema migrations (see migrate.h).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "migrate.h"

/* pg_advisory_lock key: "tasker" in ASCII. Every tasker process uses it. */
#define MIGRATION_LOCK_KEY "127961897067890"

static const char bootstrap_sql[] = "BEGIN;"
                                    "SET LOCAL client_min_messages = warning;"
                                    "CREATE SCHEMA IF NOT EXISTS tasker;"
                                    "CREATE TABLE IF NOT EXISTS tasker.schema_migrations ("
                                    " version text PRIMARY KEY,"
                                    " name text NOT NULL,"
                                    " applied_at timestamptz NOT NULL DEFAULT now());"
                                    "COMMIT";

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* Line (1-based) of the character at position pos (1-based, counted in
 * characters as the server reports it) in UTF-8 text. */
static int line_of_position(const char *text, long pos)
{
	int line = 1;
	long ch = 0;

	for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
		if ((*p & 0xC0) == 0x80)
			continue; /* continuation byte: same character */
		if (++ch >= pos)
			break;
		if (*p == '\n')
			line++;
	}
	return line;
}

/* Fills err for a failed migration statement. */
static int migration_error(PGconn *conn, const PGresult *res, const struct db_migration *m,
                           struct tk_err *err)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *pos = res ? PQresultErrorField(res, PG_DIAG_STATEMENT_POSITION) : NULL;
	const char *where = res ? PQresultErrorField(res, PG_DIAG_CONTEXT) : NULL;
	char at[48] = "";
	char ctx[160] = "";
	int code = db_is_connection_error(conn) ? TRPC_ERR_UNAVAILABLE : TRPC_ERR_DB;

	if (pos != NULL)
		snprintf(at, sizeof at, " at line %d", line_of_position(m->sql, atol(pos)));
	if (where != NULL) {
		/* The first line of the context names the function and line inside it. */
		snprintf(ctx, sizeof ctx, " (%.*s)", (int)strcspn(where, "\n"), where);
	}
	if (primary == NULL)
		primary = PQerrorMessage(conn);
	return tk_err_set(err, code, "migration %s_%s failed%s: %.*s%s [SQLSTATE %s]", m->version,
	                  m->name, at, (int)strcspn(primary, "\n"), primary, ctx,
	                  state ? state : "none");
}

/* Applies one migration and records it, in one transaction. */
static int apply_one(PGconn *conn, const struct db_migration *m, struct tk_err *err)
{
	const char *const params[] = {m->version, m->name};
	struct tk_err ignored;
	double t0 = now_ms();
	PGresult *res;
	int rc;

	rc = db_command(conn, "BEGIN", 0, NULL, err);
	if (rc < 0)
		return rc;
	rc = db_command(conn, "SET LOCAL client_min_messages = warning", 0, NULL, err);
	if (rc < 0)
		goto fail_rollback;
	/* PQexec: a migration is many statements; the last result reports the first error. */
	res = PQexec(conn, m->sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK &&
	    PQresultStatus(res) != PGRES_EMPTY_QUERY) {
		rc = migration_error(conn, res, m, err);
		PQclear(res);
		goto fail_rollback;
	}
	PQclear(res);
	rc =
	    db_command(conn, "INSERT INTO tasker.schema_migrations (version, name) VALUES ($1, $2)",
	               2, params, err);
	if (rc < 0)
		goto fail_rollback;
	rc = db_commit(conn, err);
	if (rc < 0)
		return rc;
	trpc_log(TRPC_LOG_INFO, "applied migration %s_%s in %.0f ms", m->version, m->name,
	         now_ms() - t0);
	return 0;

fail_rollback:
	db_rollback(conn, &ignored);
	return rc;
}

/* Returns 1 if version is among the n rows of res (column 0). */
static int recorded(const PGresult *res, const char *version)
{
	for (int i = 0; i < PQntuples(res); i++)
		if (strcmp(PQgetvalue(res, i, 0), version) == 0)
			return 1;
	return 0;
}

/* Logs versions the database has but this build does not know: a newer
 * build migrated it. Running on is allowed (migrations only add), but an
 * operator should know. */
static void warn_unknown(const PGresult *res, const struct db_migration *migs, size_t n)
{
	for (int i = 0; i < PQntuples(res); i++) {
		const char *v = PQgetvalue(res, i, 0);
		size_t j = 0;
		while (j < n && strcmp(migs[j].version, v) != 0)
			j++;
		if (j == n)
			trpc_log(
			    TRPC_LOG_WARN,
			    "database has migration %s, unknown to this build (a newer version "
			    "migrated it)",
			    v);
	}
}

int db_migrate_list(PGconn *conn, const struct db_migration *migs, size_t n, struct tk_err *err)
{
	const char *const key[] = {MIGRATION_LOCK_KEY};
	struct tk_err ignored, local;
	PGresult *res, *done = NULL;
	int rc, applied = 0;

	if (err == NULL)
		err = &local;
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		return tk_err_set(err, TRPC_ERR_INVALID,
		                  "migrations need an idle connection (not in a transaction)");
	res = db_exec(conn, "SELECT pg_try_advisory_lock($1::bigint)", 1, key, err);
	if (res == NULL)
		return err->code;
	int got = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!got) {
		trpc_log(TRPC_LOG_INFO, "another process is migrating the database; waiting");
		rc = db_command(conn, "SELECT pg_advisory_lock($1::bigint)", 1, key, err);
		if (rc < 0)
			return rc;
	}

	res = PQexec(conn, bootstrap_sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		static const struct db_migration boot = {"0000", "bootstrap", bootstrap_sql};
		rc = migration_error(conn, res, &boot, err);
		PQclear(res);
		if (PQtransactionStatus(conn) != PQTRANS_IDLE)
			db_rollback(conn, &ignored);
		goto unlock;
	}
	PQclear(res);
	done = db_exec(conn, "SELECT version FROM tasker.schema_migrations ORDER BY version", 0,
	               NULL, err);
	if (done == NULL) {
		rc = err->code;
		goto unlock;
	}
	warn_unknown(done, migs, n);
	rc = 0;
	for (size_t i = 0; i < n; i++) {
		if (recorded(done, migs[i].version))
			continue;
		rc = apply_one(conn, &migs[i], err);
		if (rc < 0)
			break;
		applied++;
	}
	PQclear(done);

unlock:
	/* On a lost connection the server has already dropped the lock. */
	if (!db_is_connection_error(conn))
		db_command(conn, "SELECT pg_advisory_unlock($1::bigint)", 1, key, &ignored);
	return rc < 0 ? rc : applied;
}

int db_migrate(PGconn *conn, struct tk_err *err)
{
	return db_migrate_list(conn, db_migrations, db_migrations_count, err);
}
