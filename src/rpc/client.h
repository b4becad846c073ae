/*
 * client: the gRPC client runtime. A channel owns one I/O thread (epoll +
 * eventfd + a timer heap) that runs every connection, stream and timer of
 * the channel; other threads reach it through a command queue. Internal
 * structures, shared by client.c (channel, balancing, circuit breakers,
 * retries, public API) and cconn.c (connections and HTTP/2 streams).
 */
#ifndef TRPC_CLIENT_H
#define TRPC_CLIENT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "buf.h"
#include "call.h"
#include "codec.h"
#include "tasker/rpc.h"
#include "theap.h"

enum ep_state { EP_IDLE = 1, EP_CONNECTING = 2, EP_READY = 3, EP_TRANSIENT_FAILURE = 4 };
enum cconn_state { CC_CONNECTING = 1, CC_TLS = 2, CC_READY = 3, CC_CLOSED = 4 };

struct cconn {
	struct trpc_channel *ch;
	struct endpoint *ep;
	int fd;
	SSL *ssl;
	nghttp2_session *h2;
	struct buf out;
	int state;
	int draining; /* GOAWAY received: no new streams */
	int want_write;
	int in_flush;
	struct cconn *flush_next;
	struct cconn *dead_next;
	struct trpc_ccall *streams; /* calls with a stream on this connection */
	int nstreams;
	struct timer connect_timer;
	struct timer ka_timer;
	int64_t ping_sent;
	int64_t last_read;
};

struct endpoint {
	struct trpc_channel *ch;
	size_t index;
	char name[300]; /* "host:port" as given or resolved */
	char host[256]; /* for :authority and SNI */
	struct sockaddr_storage sa;
	socklen_t salen;
	int state;
	struct cconn *conn;
	int64_t backoff_ms;
	struct timer reconnect_timer;
	char last_error[300];
	/* circuit breaker (channel thread) */
	int circuit;
	int fails;
	int successes;
	int half_open_inflight;
	int64_t opened_at;
	int inflight;
	/* calls waiting for this endpoint to connect */
	struct trpc_ccall *wait_head, *wait_tail;
	/* published for other threads */
	atomic_int pub_circuit;
	atomic_llong pub_opened_at;
	atomic_int pub_connected;
	atomic_ullong pub_calls;
};

enum ccmd_type { CCMD_START = 1, CCMD_KICK = 2, CCMD_CANCEL = 3, CCMD_STOP = 4 };

struct ccmd {
	struct ccmd *next;
	int type;
	struct trpc_ccall *call; /* referenced */
};

struct metrics {
	atomic_ullong calls_started, calls_succeeded, calls_failed;
	atomic_ullong latency_us_sum, latency_count, retries;
	atomic_ullong circuit_opened, circuit_half_opened, circuit_closed;
	atomic_ullong connects, connect_failures;
};

struct trpc_channel {
	struct trpc_channel_config cfg; /* strings owned (copied) */
	int epfd, evfd;
	pthread_t thread;
	int thread_started;
	int stopping;
	pthread_mutex_t mu; /* guards the command queue */
	struct ccmd *cmd_head, *cmd_tail;
	int wake_pending;
	struct ccmd *local_head, *local_tail; /* posted on the channel thread itself */
	SSL_CTX *ssl_ctx;
	struct endpoint *eps;
	size_t neps;
	size_t rr_next;
	unsigned rand_state;
	struct theap timers;
	struct cconn *flush_head;
	struct cconn *dead;
	struct trpc_ccall *calls; /* every call not yet closed (channel thread) */
	uint8_t *rbuf;
	size_t rbuf_size;
	struct metrics m;
	int req_encoding;
};

struct trpc_ccall {
	atomic_int refs;
	struct trpc_channel *ch;
	char *path;
	const ProtobufCMessageDescriptor *resp_desc;
	struct trpc_ccall_ops ops;
	void *ud;
	/* options (immutable after start) */
	struct trpc_md *md;
	size_t n_md;
	char *traceparent, *trace_id;
	int req_encoding;
	int retryable; /* the whole request is `first`: it can be sent again */
	int no_retry;
	int64_t deadline; /* INT64_MAX when none */
	int64_t started;
	uint8_t *first; /* framed first message, kept for retries */
	size_t first_len;

	/* outbound queue, shared with senders (mu) */
	pthread_mutex_t mu;
	struct out_msg *out_head, *out_tail;
	size_t out_off;
	int half_closed;
	int closed_pub; /* on_close has run */

	/* channel thread */
	struct trpc_ccall *all_prev, *all_next;
	struct trpc_ccall *wait_next;       /* endpoint waiting list */
	struct trpc_ccall *s_prev, *s_next; /* connection stream list */
	struct endpoint *ep;
	struct cconn *conn;
	int32_t stream_id;
	int attempt;
	int waiting; /* on an endpoint's waiting list */
	int done;
	int counted; /* in ep->inflight (and a half-open probe) */
	int probe;
	int data_deferred;
	int headers_received;
	int msgs_received;
	int http_status;
	int have_status;
	int status;
	char *message;
	struct trpc_md *hdrs, *trls;
	size_t n_hdrs, n_trls, cap_hdrs, cap_trls;
	int resp_encoding;
	struct codec_framer framer;
	int pushback_ms;
	int local_error; /* the attempt ended by a transport failure */
	char *local_msg; /* malloc'd, set with ccall_local_error() */
	struct timer deadline_timer;
	struct timer retry_timer;
	const char *endpoint_name; /* the endpoint's name (lives with the channel) */
	/* blocking unary support */
	int keep_message;
	ProtobufCMessage *kept;
};

/* --- cconn.c, all on the channel thread --- */
int cconn_open(struct endpoint *ep);
void cconn_on_event(struct cconn *c, uint32_t events);
void cconn_flush(struct cconn *c);
void cconn_want_flush(struct cconn *c);
void cconn_close(struct cconn *c, const char *why);
/* Opens a stream for the call's current attempt. 0 or a negative error. */
int cconn_submit(struct cconn *c, struct trpc_ccall *call);
void cconn_resume(struct trpc_ccall *call);
void cconn_reset(struct trpc_ccall *call, uint32_t code);
int cconn_available(const struct cconn *c);

/* --- client.c, called from cconn.c --- */
/* The endpoint's connection is ready / failed / lost. */
void channel_on_connected(struct endpoint *ep);
void channel_on_conn_failed(struct endpoint *ep, const char *why);
void channel_on_conn_closed(struct endpoint *ep, struct cconn *c, const char *why);
/* A stream ended: decides between retry and completion. */
void channel_attempt_done(struct trpc_ccall *call);
void ccall_unref_internal(struct trpc_ccall *call);
/* Marks the attempt as ended by a transport failure, with a reason. */
void ccall_local_error(struct trpc_ccall *call, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
