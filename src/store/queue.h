/*
 * queue: message queues in PostgreSQL (schema pgmq, migration 0004) and a
 * LISTEN/NOTIFY listener that wakes consumers when messages arrive.
 *
 * Semantics are pgmq's: a message read with a visibility timeout stays in
 * the queue but is invisible to other readers until the timeout passes;
 * then it can be read again, with read_ct one higher. A consumer acks by
 * archiving (or deleting) the message, or nacks by setting its visibility
 * timeout to 0. Concurrent readers never receive the same message.
 *
 * Queue names: 1 to 47 letters, digits or underscores, case-insensitive.
 * All functions take a connection the caller owns and run in the caller's
 * transaction if one is open.
 */
#ifndef TK_STORE_QUEUE_H
#define TK_STORE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "err.h"

struct mq_msg {
	int64_t msg_id;
	int read_ct;              /* reads so far, this one included */
	char *message;            /* JSON text */
	double enqueued_at_epoch; /* seconds since 1970, UTC */
	double vt_epoch;          /* invisible to other readers until then */
};

struct mq_metrics {
	int64_t queue_length;     /* messages in the queue, visible or not */
	int64_t visible_length;   /* of those, readable now */
	int64_t newest_msg_age_s; /* -1 when empty */
	int64_t oldest_msg_age_s; /* -1 when empty */
	int64_t total_messages;   /* ever sent to the queue */
};

/* Returns 1 if name is a valid queue name, else 0 (no database needed). */
int mq_name_valid(const char *name);

/* Creates the queue if it does not exist (and notifies pgmq_queue_created
 * when it did not). Returns 0, TRPC_ERR_INVALID (bad name), or a db_exec() code. */
int mq_create(PGconn *conn, const char *queue, struct tk_err *err);

/*
 * Sends json (a JSON text) to queue, readable after delay_s seconds, and
 * notifies listeners (channels pgmq_message_ready.<namespace> and
 * pgmq_message_ready) in the same transaction. Stores the new id in
 * *msg_id if msg_id is not NULL.
 * Returns 0, TRPC_ERR_INVALID (bad name or JSON), TRPC_ERR_NOT_FOUND (no
 * such queue), or a db_exec() code.
 */
int mq_send(PGconn *conn, const char *queue, const char *json, int delay_s, int64_t *msg_id,
            struct tk_err *err);

/*
 * Reads up to qty visible messages, oldest first, hiding them for vt_s
 * seconds. On success *msgs is an array of *n messages (NULL when none;
 * free with mq_msgs_free). Returns 0, TRPC_ERR_INVALID, TRPC_ERR_NOT_FOUND,
 * TRPC_ERR_NOMEM, or a db_exec() code.
 */
int mq_read(PGconn *conn, const char *queue, int vt_s, int qty, struct mq_msg **msgs, size_t *n,
            struct tk_err *err);

/*
 * Claims one message by id (after a notification that carried it): hides
 * it for vt_s seconds if it is visible and not being read by someone else.
 * On success *msg is filled (free its message with free()).
 * Returns 0, TRPC_ERR_NOT_FOUND (gone, invisible or locked), or as mq_read().
 */
int mq_claim(PGconn *conn, const char *queue, int64_t msg_id, int vt_s, struct mq_msg *msg,
             struct tk_err *err);

/* Frees an array from mq_read(). NULL is a no-op. */
void mq_msgs_free(struct mq_msg *msgs, size_t n);

/* Moves a message to the queue's archive (ack). Returns 0, TRPC_ERR_NOT_FOUND
 * when the message is not in the queue, or as mq_send(). */
int mq_archive(PGconn *conn, const char *queue, int64_t msg_id, struct tk_err *err);

/* Deletes a message. Returns as mq_archive(). */
int mq_delete(PGconn *conn, const char *queue, int64_t msg_id, struct tk_err *err);

/* Makes a message invisible for vt_s seconds from now (0: visible at once,
 * a nack). Returns as mq_archive(). */
int mq_set_vt(PGconn *conn, const char *queue, int64_t msg_id, int vt_s, struct tk_err *err);

/* Fills *out. Returns 0, or as mq_send(). */
int mq_metrics(PGconn *conn, const char *queue, struct mq_metrics *out, struct tk_err *err);

/* ------------------------------------------------------------------ statements of one queue */

/*
 * mq_read(), mq_claim(), mq_archive(), mq_delete() and mq_set_vt() run
 * statements that name the queue's tables, prepared once per pooled
 * connection and queue, instead of the pgmq.* functions, whose dynamic SQL
 * is parsed and planned at every call. Callers with statements of their
 * own about a queue build them the same way:
 */

/*
 * Returns tmpl with every "{q}" replaced by the queue's table
 * (pgmq.q_<queue in lower case>) and every "{a}" by its archive
 * (pgmq.a_<queue>), in a malloc'd string; NULL when the queue name is not
 * valid or out of memory.
 */
char *mq_queue_sql(const char *tmpl, const char *queue);

/*
 * Writes "<op>.<queue in lower case>" into buf, a statement name for
 * db_exec_prepared(): op at most 14 bytes keeps it within PostgreSQL's 63.
 * Returns 0, or TRPC_ERR_INVALID when it does not fit.
 */
int mq_queue_stmt(char *buf, size_t size, const char *op, const char *queue);

/* The ids as a PostgreSQL array literal ("{1,2,3}"), malloc'd; NULL when
 * out of memory. */
char *mq_ids_literal(const int64_t *ids, size_t n);

/* ------------------------------------------------------------------ listener */

/*
 * A LISTEN connection of its own. Notifications are delivered at commit of
 * the sending transaction. Not thread-safe: one thread owns a listener.
 *
 * The listener repairs itself: when its connection drops (database
 * restart), mq_listener_wait() reconnects and LISTENs again in the
 * background of its calls, with a growing pause between attempts, and
 * returns 0 meanwhile. Notifications sent while it was away are lost, so a
 * consumer treats 0 as "poll the queue now" (the hybrid mode: LISTEN plus
 * polling on timeout).
 */
struct mq_listener;

/*
 * Connects (blocking, up to 10 s) and LISTENs on the n channels (any
 * text, e.g. "pgmq_message_ready.payments"). Returns the listener or NULL
 * with err set: TRPC_ERR_INVALID, TRPC_ERR_UNAVAILABLE, TRPC_ERR_NOMEM.
 */
struct mq_listener *mq_listener_new(const char *conninfo, const char *const *channels, size_t n,
                                    struct tk_err *err);

/*
 * Waits up to timeout_ms (0: just check) for a notification.
 * Returns 1 with the channel copied into channel[chlen] (cut to fit) and
 * *payload set to a malloc'd copy of the payload (free it; payload may be
 * NULL if not wanted); 0 on timeout, while disconnected, and right after a
 * reconnection (so that the caller polls for what it missed); negative on
 * error (TRPC_ERR_NOMEM, TRPC_ERR_SYSTEM), with err set.
 */
int mq_listener_wait(struct mq_listener *l, int timeout_ms, char *channel, size_t chlen,
                     char **payload, struct tk_err *err);

/* Returns 1 while the listener's connection is up and listening. */
int mq_listener_connected(const struct mq_listener *l);

/* Closes the connection and frees the listener. NULL is a no-op. */
void mq_listener_free(struct mq_listener *l);

#endif
