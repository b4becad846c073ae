/*
 * call: one gRPC call (one HTTP/2 stream) as both sides see it.
 *
 * Ownership is split by thread:
 *  - "io" fields belong to the owning I/O thread (the connection's loop);
 *  - "handler" fields to whichever worker thread runs the call's events
 *    (the pool runs one task per call at a time);
 *  - "shared" fields are guarded by call->mu.
 * References: the stream (dropped when the stream closes), the handler's
 * hold (dropped by trpc_call_finish), and one per queue the call sits in
 * (pool, loop dirty list, deadline heap).
 */
#ifndef TRPC_CALL_H
#define TRPC_CALL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "arena.h"
#include "codec.h"
#include "pool.h"
#include "tasker/rpc.h"
#include "trace.h"

struct conn;
struct method_entry;

struct md {
	const char *key;
	const char *value; /* decoded bytes for -bin keys, NUL terminated */
	size_t len;
};

/* An outbound frame of bytes: a length-prefixed message. */
struct out_msg {
	struct out_msg *next;
	size_t len;
	uint8_t data[];
};

enum call_ev_type {
	CALL_EV_START = 1,
	CALL_EV_MESSAGE = 2,
	CALL_EV_HALF_CLOSE = 3,
	CALL_EV_CANCEL = 4
};

struct call_ev {
	struct call_ev *next;
	int type;
	uint8_t *payload; /* CALL_EV_MESSAGE: decompressed bytes (malloc'd) */
	size_t len;
};

struct trpc_call {
	atomic_int refs;
	struct trpc_server *srv;
	struct conn *conn; /* a reference is held */
	int32_t stream_id;
	const struct method_entry *method;

	/* ---- io ---- */
	struct trpc_call *io_prev, *io_next; /* the connection's open calls */
	struct codec_framer framer;
	size_t header_bytes;
	int req_encoding; /* enum codec_encoding */
	const char *accept_encoding;
	size_t accept_encoding_len;
	const char *path;
	int nmsgs;              /* request messages seen (unary: at most one) */
	uint8_t *unary_payload; /* unary/server-streaming request, held until END_STREAM */
	size_t unary_len;
	/* Flow control: DATA bytes received, and returned to the peer's window.
	 * Bytes are returned only while no received message waits for the
	 * handler (pending_msgs == 0), so a slow handler stops the sender. */
	size_t io_fed, io_credited;
	int reject_http; /* early rejection decided while reading headers */
	int reject_status;
	const char *reject_msg;
	unsigned io_closed : 1; /* nghttp2 stream closed */

	unsigned data_deferred : 1; /* data provider returned DEFERRED */
	unsigned remote_closed : 1; /* END_STREAM received */
	unsigned status_sent : 1;   /* trailers (or trailers-only) submitted */
	unsigned te_ok : 1, ct_ok : 1, method_ok : 1;
	unsigned bad_timeout : 1;

	/* ---- set on io before dispatch, read-only afterwards ---- */
	struct md *md;
	size_t n_md, cap_md;
	int64_t deadline; /* CLOCK_MONOTONIC ns, INT64_MAX when none */
	int64_t timeout_ns;

	/* ---- shared (mu) ---- */
	pthread_mutex_t mu;
	pthread_cond_t cv; /* senders waiting for room */
	struct out_msg *out_head, *out_tail;
	size_t out_off;   /* bytes of out_head already given to nghttp2 */
	size_t out_bytes; /* bytes queued */
	struct md *resp_md, *trail_md;
	size_t n_resp_md, n_trail_md, cap_resp_md, cap_trail_md;
	int resp_encoding;
	int finished; /* a status is set (by the handler or the runtime) */
	int finish_status;
	char *finish_msg;     /* malloc'd */
	int handler_released; /* trpc_call_finish called */
	int dispatched;       /* the handler has been given the call (set by io, under mu) */
	int headers_sent; /* response HEADERS submitted (set by io, under mu; read by senders) */
	struct call_ev *ev_head, *ev_tail;
	int scheduled;           /* the call is queued on or running in the pool */
	atomic_int pending_msgs; /* messages received, not yet taken by the handler */
	int deadline_hit;
	atomic_int cancelled;

	/* ---- queue links ---- */
	struct pool_task task;
	struct trpc_call *dirty_next;
	atomic_int dirty; /* on its loop's dirty list */
	size_t heap_idx;  /* deadline heap slot + 1; 0 when not in the heap */

	/* ---- metrics and access log (io) ---- */
	int64_t t_start; /* CLOCK_MONOTONIC ns when the stream began */
	int midx;        /* metrics slot, set with the request headers; -1 before */

	/* ---- trace: made on first use under mu, read-only once trace_ready ---- */
	atomic_int trace_ready;
	char trace_id[TRACE_XID_MAX + 1]; /* what logs show: traceparent's, x-trace-id, or new */
	char trace_w3c[TRACE_ID_HEX + 1]; /* the W3C trace-id propagated in traceparent */
	char trace_flags[3];

	/* ---- handler ---- */
	struct arena arena;
	void *user;
	char *identity;
	int started;          /* the handler has seen the call */
	int cancel_delivered; /* on_cancel ran (or was due): no more callbacks */
};

/* Creates a call for a new stream; the stream's reference is returned. */
struct trpc_call *call_new(struct trpc_server *srv, struct conn *conn, int32_t stream_id);

/* Request metadata (io thread, before dispatch). 0 or TRPC_ERR_NOMEM. */
int call_add_md(struct trpc_call *c, const char *key, size_t klen, const char *val, size_t vlen);

/* Queues a handler event; if the call was idle, links it into the batch
 * (*head, *tail, *n) to be pushed to the pool, taking a reference. */
struct call_batch {
	struct pool_task *head, *tail;
	size_t n;
};
int call_post(struct trpc_call *c, int type, uint8_t *payload, size_t len,
              struct call_batch *batch);

/* The runtime ends the call itself (bad input, deadline, shutdown): records
 * the status unless one is set, drops queued output, and cancels the
 * handler side. Returns 1 if this set the status. Any thread. */
int call_fail(struct trpc_call *c, int status, const char *msg, struct call_batch *batch);

/* Puts the call on its loop's dirty list so the I/O thread looks at it. */
void call_mark_dirty(struct trpc_call *c);

/* The stream is gone (io thread): wakes senders, cancels the handler if the
 * call had not ended, drops the stream reference. */
void call_stream_closed(struct trpc_call *c, int abnormal, struct call_batch *batch);

void call_ref(struct trpc_call *c);
void call_unref(struct trpc_call *c);

/* For a client call made in c's context: a traceparent with c's trace and a
 * new span id (TRACEPARENT_LEN + 1 bytes) and the x-trace-id to send. */
void call_trace_outgoing(const struct trpc_call *c, char *traceparent, const char **trace_id);

#endif
