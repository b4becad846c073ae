/*
 * migrate: schema migrations compiled into the binaries.
 *
 * The migrations are the files src/store/migrations/NNNN_name.sql; the
 * build turns them into the db_migrations[] table (build-aux/sql2c.sh),
 * sorted by file name. Each runs in its own transaction, so a migration
 * must not contain BEGIN/COMMIT or statements that refuse to run inside a
 * transaction block (CREATE INDEX CONCURRENTLY, VACUUM). Schema-qualify
 * every object (tasker., pgmq.): the search_path is not set.
 */
#ifndef TK_STORE_MIGRATE_H
#define TK_STORE_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "err.h"

struct db_migration {
	const char *version; /* "0001": the file name up to the first '_' */
	const char *name;    /* "schema_and_tables": the rest, without ".sql" */
	const char *sql;     /* the file's text */
};

/* Generated (gen/migrations.c), in version order. */
extern const struct db_migration db_migrations[];
extern const size_t db_migrations_count;

/*
 * Brings the database up to date with db_migrations[]. Safe to run from
 * several processes at once: they serialise on a session advisory lock,
 * and whoever comes second finds the work done. Creates schema tasker and
 * tasker.schema_migrations when missing, skips the versions recorded
 * there, applies each missing one in its own transaction together with its
 * row in schema_migrations, and logs each applied migration.
 * conn must be idle (not in a transaction).
 * Returns the number of migrations applied (>= 0), or a negative code with
 * err naming the migration, the line of the failing statement and the
 * server's message (TRPC_ERR_DB, TRPC_ERR_UNAVAILABLE, TRPC_ERR_INVALID).
 * A failed migration leaves nothing behind; the ones before it stay.
 */
int db_migrate(PGconn *conn, struct tk_err *err);

/* db_migrate() with another list (tests, tools); migs must be sorted by version. */
int db_migrate_list(PGconn *conn, const struct db_migration *migs, size_t n, struct tk_err *err);

#endif
