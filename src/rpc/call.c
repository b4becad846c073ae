/*
 * call: the handler-facing side of a call (public trpc_call_* API), the
 * per-call event queue that serializes handler callbacks on the pool, and
 * the bounded outbound message queue shared with the I/O thread.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call.h"
#include "codec.h"
#include "conn.h"
#include "keepalive.h"
#include "logging.h"
#include "loop.h"
#include "server.h"

static void call_run(struct pool_task *t);

/* The call whose handler callback runs on this thread (log context, trace
 * propagation of client calls). */
static __thread struct trpc_call *current_call;

struct trpc_call *call_new(struct trpc_server *srv, struct conn *conn, int32_t stream_id)
{
	struct trpc_call *c = calloc(1, sizeof *c);
	if (c == NULL)
		return NULL;
	atomic_init(&c->refs, 1);
	atomic_init(&c->dirty, 0);
	atomic_init(&c->cancelled, 0);
	c->srv = srv;
	c->conn = conn;
	conn_ref(conn);
	c->stream_id = stream_id;
	/* Streams begin while their connection's bytes are read, which stamps
	 * last_read: no clock read of our own. */
	c->t_start = atomic_load_explicit(&conn->last_read, memory_order_relaxed);
	c->midx = -1;
	c->deadline = INT64_MAX;
	c->req_encoding = CODEC_IDENTITY;
	c->resp_encoding = CODEC_IDENTITY;
	codec_framer_init(&c->framer, (size_t)srv->cfg.max_recv_message_size);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	arena_init(&c->arena);
	c->task.run = call_run;
	atomic_fetch_add(&srv->ncalls, 1);
	return c;
}

static void free_md(struct md *md, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free((char *)md[i].key);
		free((char *)md[i].value);
	}
	free(md);
}

static void free_out(struct trpc_call *c)
{
	struct out_msg *m = c->out_head;
	while (m != NULL) {
		struct out_msg *next = m->next;
		free(m);
		m = next;
	}
	c->out_head = c->out_tail = NULL;
	c->out_off = 0;
	c->out_bytes = 0;
}

static void call_free(struct trpc_call *c)
{
	struct trpc_server *srv = c->srv;
	free_out(c);
	for (struct call_ev *e = c->ev_head, *next; e != NULL; e = next) {
		next = e->next;
		free(e->payload);
		free(e);
	}
	free_md(c->resp_md, c->n_resp_md);
	free_md(c->trail_md, c->n_trail_md);
	free(c->md); /* entries point into the arena */
	free(c->finish_msg);
	free(c->identity);
	free(c->unary_payload);
	codec_framer_clear(&c->framer);
	arena_clear(&c->arena);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	conn_unref(c->conn);
	free(c);
	atomic_fetch_sub(&srv->ncalls, 1);
}

void call_ref(struct trpc_call *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void call_unref(struct trpc_call *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
		call_free(c);
}

void trpc_call_ref(trpc_call *c)
{
	call_ref(c);
}

void trpc_call_unref(trpc_call *c)
{
	call_unref(c);
}

int call_add_md(struct trpc_call *c, const char *key, size_t klen, const char *val, size_t vlen)
{
	if (c->n_md == c->cap_md) {
		size_t cap = c->cap_md ? c->cap_md * 2 : 8;
		struct md *md = realloc(c->md, cap * sizeof *md);
		if (md == NULL)
			return TRPC_ERR_NOMEM;
		c->md = md;
		c->cap_md = cap;
	}
	struct md *m = &c->md[c->n_md];
	m->key = arena_strndup(&c->arena, key, klen);
	if (m->key == NULL)
		return TRPC_ERR_NOMEM;
	if (klen > 4 && memcmp(key + klen - 4, "-bin", 4) == 0) {
		uint8_t *out = arena_alloc(&c->arena, 3 * (vlen / 4) + 4);
		if (out == NULL)
			return TRPC_ERR_NOMEM;
		size_t outlen;
		if (codec_b64_decode(val, vlen, out, &outlen) != 0)
			return TRPC_ERR_PROTOCOL;
		out[outlen] = '\0';
		m->value = (const char *)out;
		m->len = outlen;
	} else {
		m->value = arena_strndup(&c->arena, val, vlen);
		if (m->value == NULL)
			return TRPC_ERR_NOMEM;
		m->len = vlen;
	}
	c->n_md++;
	return 0;
}

/* ------------------------------------------------------------------ events */

int call_post(struct trpc_call *c, int type, uint8_t *payload, size_t len, struct call_batch *batch)
{
	struct call_ev *e = malloc(sizeof *e);
	if (e == NULL) {
		free(payload);
		return TRPC_ERR_NOMEM;
	}
	e->next = NULL;
	e->type = type;
	e->payload = payload;
	e->len = len;
	int schedule = 0;
	pthread_mutex_lock(&c->mu);
	if (c->ev_tail != NULL)
		c->ev_tail->next = e;
	else
		c->ev_head = e;
	c->ev_tail = e;
	if (!c->scheduled) {
		c->scheduled = 1;
		schedule = 1;
	}
	pthread_mutex_unlock(&c->mu);
	if (!schedule)
		return 0;
	call_ref(c); /* the pool's */
	if (batch == NULL) {
		pool_push(c->srv->pool, &c->task);
		return 0;
	}
	c->task.next = NULL;
	if (batch->tail != NULL)
		batch->tail->next = &c->task;
	else
		batch->head = &c->task;
	batch->tail = &c->task;
	batch->n++;
	return 0;
}

/* A received message has been taken by the handler; when none is left
 * waiting, the I/O thread may reopen the flow-control window. */
static void taken(struct trpc_call *c)
{
	if (atomic_fetch_sub(&c->pending_msgs, 1) == 1)
		call_mark_dirty(c);
}

static int handler_gone(struct trpc_call *c)
{
	pthread_mutex_lock(&c->mu);
	int gone = c->handler_released;
	pthread_mutex_unlock(&c->mu);
	return gone;
}

static void run_message(struct trpc_call *c, struct call_ev *e, void *ud)
{
	const struct trpc_method *m = c->method->m;
	if (m->handler != NULL) {
		/* Unary and server streaming: decoded into the arena, lives as
		 * long as the call. */
		taken(c);
		c->started = 1;
		ProtobufCMessage *req =
		    protobuf_c_message_unpack(m->request, &c->arena.pb, e->len, e->payload);
		if (req == NULL) {
			trpc_call_finish(c, TRPC_STATUS_INTERNAL,
			                 "cannot parse the request message");
			return;
		}
		m->handler(c, req, ud);
		return;
	}
	if (handler_gone(c)) {
		taken(c);
		return;
	}
	ProtobufCMessage *msg = protobuf_c_message_unpack(m->request, NULL, e->len, e->payload);
	if (msg == NULL) {
		taken(c);
		call_fail(c, TRPC_STATUS_INTERNAL, "cannot parse a request message", NULL);
		return;
	}
	if (m->stream.on_message != NULL)
		m->stream.on_message(c, msg, ud);
	protobuf_c_message_free_unpacked(msg, NULL);
	/* Only now is the message taken: this may reopen the window. */
	taken(c);
}

static void run_event(struct trpc_call *c, struct call_ev *e)
{
	const struct trpc_method *m = c->method->m;
	void *ud = c->method->svc->ud;

	if (c->cancel_delivered || atomic_load(&c->cancelled)) {
		if (e->type == CALL_EV_MESSAGE)
			taken(c);
		if (c->cancel_delivered)
			return;
		c->cancel_delivered = 1;
		if (!c->started) {
			/* The handler never saw this call: release its hold here. */
			c->started = 1;
			trpc_call_finish(c, TRPC_STATUS_CANCELLED, NULL);
		} else if (m->stream.on_cancel != NULL && !handler_gone(c)) {
			m->stream.on_cancel(c, ud);
		}
		return;
	}
	switch (e->type) {
	case CALL_EV_START:
		c->started = 1;
		if (m->stream.on_start != NULL)
			m->stream.on_start(c, ud);
		break;
	case CALL_EV_MESSAGE:
		run_message(c, e, ud);
		break;
	case CALL_EV_HALF_CLOSE:
		if (m->handler == NULL && m->stream.on_half_close != NULL && !handler_gone(c))
			m->stream.on_half_close(c, ud);
		break;
	case CALL_EV_CANCEL:
		break; /* handled above: the cancelled flag is set before posting */
	}
}

/* Pool task: runs every queued event of one call, in order. The call is
 * never on two workers at once, so handler callbacks are serialized. */
static void call_run(struct pool_task *t)
{
	struct trpc_call *c = (struct trpc_call *)((char *)t - offsetof(struct trpc_call, task));
	struct trpc_call *outer = current_call; /* a task run from inside a handler */
	current_call = c;
	for (;;) {
		pthread_mutex_lock(&c->mu);
		struct call_ev *e = c->ev_head;
		if (e == NULL) {
			c->scheduled = 0;
			pthread_mutex_unlock(&c->mu);
			break;
		}
		c->ev_head = c->ev_tail = NULL;
		pthread_mutex_unlock(&c->mu);
		while (e != NULL) {
			struct call_ev *next = e->next;
			run_event(c, e);
			free(e->payload);
			free(e);
			e = next;
		}
	}
	current_call = outer;
	call_unref(c);
}

/* ------------------------------------------------------------------ state */

void call_mark_dirty(struct trpc_call *c)
{
	if (atomic_exchange(&c->dirty, 1) == 0) {
		call_ref(c);
		loop_push_dirty(c->conn->loop, c);
	}
}

static int set_status_locked(struct trpc_call *c, int status, const char *msg)
{
	if (c->finished)
		return 0;
	c->finished = 1;
	c->finish_status = status;
	c->finish_msg = msg != NULL && *msg ? strdup(msg) : NULL;
	return 1;
}

int call_fail(struct trpc_call *c, int status, const char *msg, struct call_batch *batch)
{
	pthread_mutex_lock(&c->mu);
	int set = set_status_locked(c, status, msg);
	if (set)
		free_out(c);
	int notify_handler = c->dispatched && !c->handler_released;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (!set)
		return 0;
	atomic_store(&c->cancelled, 1);
	if (notify_handler)
		call_post(c, CALL_EV_CANCEL, NULL, 0, batch);
	keepalive_remove_deadline(c->srv->ka, c);
	call_mark_dirty(c);
	return 1;
}

/* The stream is over (io thread): count the call, write its access line. */
static void call_account(struct trpc_call *c)
{
	struct metrics_slab *slab = c->conn->loop->slab;
	int access = c->srv->cfg.log_access;
	int64_t duration;

	metric_inc(&slab->counters[MC_STREAMS_CLOSED]);
	if (c->midx < 0)
		return; /* the request headers never completed */
	/* The wake-up's clock is close enough for the histogram; an access
	 * record, which costs a write anyway, gets the exact time. */
	duration = (access ? now_ns() : loop_now(c->conn->loop)) - c->t_start;
	if (duration < 0)
		duration = 0;
	/* finished is set: finish_status and finish_msg no longer change. */
	metrics_call_done(slab, c->midx, c->finish_status, duration);
	if (access)
		log_access(c, c->finish_status, c->finish_msg, duration);
}

void call_stream_closed(struct trpc_call *c, int abnormal, struct call_batch *batch)
{
	c->io_closed = 1;
	pthread_mutex_lock(&c->mu);
	int was_finished = c->finished;
	if (!was_finished)
		set_status_locked(c, TRPC_STATUS_CANCELLED, "stream closed by the client");
	if (abnormal || !was_finished)
		free_out(c);
	int notify_handler = c->dispatched && !c->handler_released && (abnormal || !was_finished);
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	if (abnormal || !was_finished) {
		atomic_store(&c->cancelled, 1);
		if (notify_handler)
			call_post(c, CALL_EV_CANCEL, NULL, 0, batch);
	}
	keepalive_remove_deadline(c->srv->ka, c);
	call_account(c);
	call_unref(c); /* the stream's reference */
}

/* ------------------------------------------------------------------ public */

int trpc_call_send(trpc_call *c, const ProtobufCMessage *msg)
{
	return trpc_call_send_ex(c, msg, 0);
}

static struct out_msg *encode(struct trpc_call *c, const ProtobufCMessage *msg, int enc, int *err)
{
	size_t size = protobuf_c_message_get_packed_size(msg);
	if (size > (size_t)c->srv->cfg.max_send_message_size) {
		*err = TRPC_ERR_TOO_LARGE;
		return NULL;
	}
	struct out_msg *m = malloc(sizeof *m + 5 + size);
	if (m == NULL) {
		*err = TRPC_ERR_NOMEM;
		return NULL;
	}
	m->next = NULL;
	protobuf_c_message_pack(msg, m->data + 5);
	if (enc == CODEC_IDENTITY) {
		codec_put_prefix(m->data, 0, (uint32_t)size);
		m->len = 5 + size;
		return m;
	}
	struct buf z = {0};
	int rv = codec_compress(enc, m->data + 5, size, &z);
	if (rv != 0) {
		free(m);
		buf_free(&z);
		*err = rv;
		return NULL;
	}
	struct out_msg *cm = malloc(sizeof *cm + 5 + z.len);
	if (cm == NULL) {
		free(m);
		buf_free(&z);
		*err = TRPC_ERR_NOMEM;
		return NULL;
	}
	cm->next = NULL;
	codec_put_prefix(cm->data, 1, (uint32_t)z.len);
	memcpy(cm->data + 5, z.data, z.len);
	cm->len = 5 + z.len;
	free(m);
	buf_free(&z);
	return cm;
}

int trpc_call_send_ex(trpc_call *c, const ProtobufCMessage *msg, unsigned flags)
{
	if (c == NULL || msg == NULL)
		return TRPC_ERR_INVALID;
	pthread_mutex_lock(&c->mu);
	int enc = (flags & TRPC_SEND_NO_COMPRESS) ? CODEC_IDENTITY : c->resp_encoding;
	int done = c->finished;
	pthread_mutex_unlock(&c->mu);
	if (done)
		return TRPC_ERR_CLOSED;
	int err = 0;
	struct out_msg *m = encode(c, msg, enc, &err);
	if (m == NULL)
		return err;

	size_t bound = (size_t)c->srv->cfg.max_outbound_bytes;
	int may_wait = !loop_on_io_thread();
	pthread_mutex_lock(&c->mu);
	while (may_wait && !c->finished && c->out_bytes >= bound)
		pthread_cond_wait(&c->cv, &c->mu);
	if (c->finished) {
		pthread_mutex_unlock(&c->mu);
		free(m);
		return TRPC_ERR_CLOSED;
	}
	if (c->out_tail != NULL)
		c->out_tail->next = m;
	else
		c->out_head = m;
	c->out_tail = m;
	c->out_bytes += m->len;
	pthread_mutex_unlock(&c->mu);
	call_mark_dirty(c);
	return 0;
}

int trpc_call_finish(trpc_call *c, int status, const char *message)
{
	if (c == NULL)
		return TRPC_ERR_INVALID;
	if (status < 0 || status > 16) {
		/* Still release the hold; the client learns of the bug. */
		trpc_log(TRPC_LOG_WARN, "%s: handler finished with invalid status %d", c->path,
		         status);
		status = TRPC_STATUS_UNKNOWN;
		message = "handler returned an invalid status code";
	}
	pthread_mutex_lock(&c->mu);
	if (c->handler_released) {
		pthread_mutex_unlock(&c->mu);
		return TRPC_ERR_INVALID;
	}
	c->handler_released = 1;
	int set = set_status_locked(c, status, message);
	pthread_mutex_unlock(&c->mu);
	if (set) {
		keepalive_remove_deadline(c->srv->ka, c);
		call_mark_dirty(c);
	}
	call_unref(c); /* the handler's hold */
	return set ? 0 : TRPC_ERR_CLOSED;
}

static int add_resp_md(struct trpc_call *c, int trailing, const char *key, const void *value,
                       size_t len)
{
	if (c == NULL || key == NULL || (value == NULL && len > 0))
		return TRPC_ERR_INVALID;
	for (const char *p = key; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return TRPC_ERR_INVALID;
	char *k = strdup(key);
	char *v = malloc(len + 1);
	if (k == NULL || v == NULL) {
		free(k);
		free(v);
		return TRPC_ERR_NOMEM;
	}
	if (len > 0)
		memcpy(v, value, len);
	v[len] = '\0';
	pthread_mutex_lock(&c->mu);
	int rv = 0;
	struct md **arr = trailing ? &c->trail_md : &c->resp_md;
	size_t *n = trailing ? &c->n_trail_md : &c->n_resp_md;
	size_t *cap = trailing ? &c->cap_trail_md : &c->cap_resp_md;
	if (c->finished || (!trailing && c->headers_sent)) {
		rv = c->finished ? TRPC_ERR_CLOSED : TRPC_ERR_INVALID;
	} else if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 4;
		struct md *na = realloc(*arr, ncap * sizeof *na);
		if (na == NULL)
			rv = TRPC_ERR_NOMEM;
		else {
			*arr = na;
			*cap = ncap;
		}
	}
	if (rv == 0) {
		(*arr)[*n] = (struct md){.key = k, .value = v, .len = len};
		(*n)++;
	}
	pthread_mutex_unlock(&c->mu);
	if (rv != 0) {
		free(k);
		free(v);
	}
	return rv;
}

int trpc_call_add_initial_metadata(trpc_call *c, const char *key, const void *value, size_t len)
{
	return add_resp_md(c, 0, key, value, len);
}

int trpc_call_add_trailing_metadata(trpc_call *c, const char *key, const void *value, size_t len)
{
	return add_resp_md(c, 1, key, value, len);
}

int trpc_call_set_compression(trpc_call *c, const char *encoding)
{
	if (c == NULL || encoding == NULL)
		return TRPC_ERR_INVALID;
	int enc = codec_encoding_from_name(encoding, strlen(encoding));
	if (enc == CODEC_UNSUPPORTED)
		return TRPC_ERR_ENCODING;
	if (!codec_accepts(c->accept_encoding, c->accept_encoding_len, enc))
		return TRPC_ERR_ENCODING;
	pthread_mutex_lock(&c->mu);
	int rv = 0;
	if (c->headers_sent || c->out_head != NULL)
		rv = TRPC_ERR_INVALID;
	else
		c->resp_encoding = enc;
	pthread_mutex_unlock(&c->mu);
	return rv;
}

const char *trpc_call_metadata(const trpc_call *c, const char *key, size_t *len)
{
	for (size_t i = 0; i < c->n_md; i++)
		if (strcmp(c->md[i].key, key) == 0) {
			if (len != NULL)
				*len = c->md[i].len;
			return c->md[i].value;
		}
	return NULL;
}

size_t trpc_call_metadata_count(const trpc_call *c)
{
	return c->n_md;
}

int trpc_call_metadata_at(const trpc_call *c, size_t i, const char **key, const char **value,
                          size_t *len)
{
	if (i >= c->n_md)
		return TRPC_ERR_INVALID;
	*key = c->md[i].key;
	*value = c->md[i].value;
	if (len != NULL)
		*len = c->md[i].len;
	return 0;
}

const char *trpc_call_method(const trpc_call *c)
{
	return c->path;
}

const char *trpc_call_peer(const trpc_call *c)
{
	return c->conn->peer;
}

const char *trpc_call_identity(const trpc_call *c)
{
	return c->identity;
}

int trpc_call_set_identity(trpc_call *c, const char *identity)
{
	char *dup = identity ? strdup(identity) : NULL;
	if (identity != NULL && dup == NULL)
		return TRPC_ERR_NOMEM;
	free(c->identity);
	c->identity = dup;
	return 0;
}

const char *trpc_call_tls_peer_subject(const trpc_call *c)
{
	return c->conn->tls_subject;
}

int64_t trpc_call_deadline(const trpc_call *c)
{
	return c->deadline;
}

/* ------------------------------------------------------------------ trace */

/* Decides the call's trace from its request metadata (mu held). */
static void make_trace(struct trpc_call *c)
{
	struct traceparent tp;
	const char *v;
	size_t len = 0;
	int have_tp;

	v = trpc_call_metadata(c, "traceparent", &len);
	have_tp = v != NULL && trace_parse_traceparent(v, len, &tp) == 0;
	if (have_tp) {
		memcpy(c->trace_w3c, tp.trace_id, sizeof c->trace_w3c);
		memcpy(c->trace_flags, tp.flags, sizeof c->trace_flags);
	} else {
		trace_random_hex(c->trace_w3c, TRACE_ID_HEX);
		memcpy(c->trace_flags, "01", 3); /* we record it: sampled */
	}
	v = trpc_call_metadata(c, "x-trace-id", &len);
	if (!have_tp && v != NULL && trace_valid_x_trace_id(v, len)) {
		memcpy(c->trace_id, v, len);
		c->trace_id[len] = '\0';
		if (trace_is_w3c_id(v, len))
			memcpy(c->trace_w3c, v, sizeof c->trace_w3c);
	} else {
		memcpy(c->trace_id, c->trace_w3c, sizeof c->trace_w3c);
	}
}

const char *trpc_call_trace_id(const trpc_call *call)
{
	/* Const for the caller: the trace is made once, on first use, so that
	 * calls nobody traces or logs never pay for an id. */
	struct trpc_call *c = (struct trpc_call *)call;

	if (c == NULL)
		return NULL;
	if (!atomic_load_explicit(&c->trace_ready, memory_order_acquire)) {
		pthread_mutex_lock(&c->mu);
		if (!atomic_load_explicit(&c->trace_ready, memory_order_relaxed)) {
			make_trace(c);
			atomic_store_explicit(&c->trace_ready, 1, memory_order_release);
		}
		pthread_mutex_unlock(&c->mu);
	}
	return c->trace_id;
}

void call_trace_outgoing(const struct trpc_call *c, char *traceparent, const char **trace_id)
{
	char span[TRACE_SPAN_HEX + 1];

	*trace_id = trpc_call_trace_id(c);
	trace_random_hex(span, TRACE_SPAN_HEX);
	snprintf(traceparent, TRACEPARENT_LEN + 1, "00-%s-%s-%s", c->trace_w3c, span,
	         c->trace_flags);
}

trpc_call *trpc_call_current(void)
{
	return current_call;
}

trpc_call *trpc_call_set_current(trpc_call *call)
{
	struct trpc_call *prev = current_call;
	current_call = call;
	return prev;
}

int trpc_call_is_cancelled(const trpc_call *c)
{
	return atomic_load(&((trpc_call *)c)->cancelled);
}

const char *trpc_call_request_encoding(const trpc_call *c)
{
	return codec_encoding_name(c->req_encoding);
}

int trpc_call_accepts_encoding(const trpc_call *c, const char *encoding)
{
	int enc = codec_encoding_from_name(encoding, strlen(encoding));
	if (enc == CODEC_UNSUPPORTED)
		return 0;
	return codec_accepts(c->accept_encoding, c->accept_encoding_len, enc);
}

void *trpc_call_alloc(trpc_call *c, size_t size)
{
	return arena_alloc(&c->arena, size);
}

char *trpc_call_strdup(trpc_call *c, const char *s)
{
	return arena_strndup(&c->arena, s, strlen(s));
}

ProtobufCAllocator *trpc_call_allocator(trpc_call *c)
{
	return &c->arena.pb;
}

void trpc_call_set_user(trpc_call *c, void *user)
{
	c->user = user;
}

void *trpc_call_user(const trpc_call *c)
{
	return c->user;
}
