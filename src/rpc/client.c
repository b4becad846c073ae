/*
 * client: channels, endpoint selection (load balancing and circuit
 * breakers), retries and deadlines, and the public client API.
 *
 * Everything that touches connections, streams or timers runs on the
 * channel's thread; the public functions only queue commands, except
 * trpc_ccall_send, which appends to the call's outbound queue under its
 * lock and then kicks the thread.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "call.h"
#include "client.h"
#include "server.h"
#include "tls.h"

static __thread char client_why[512];

static void fail_call(struct trpc_ccall *call, int status, const char *msg);
static void dispatch(struct trpc_ccall *call);

/* ------------------------------------------------------------------ config */

void trpc_channel_config_init(struct trpc_channel_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	cfg->lb_policy = TRPC_LB_ROUND_ROBIN;
	cfg->connect_timeout_ms = 20000;
	cfg->reconnect_initial_backoff_ms = 1000;
	cfg->reconnect_max_backoff_ms = 120000;
	cfg->keepalive_timeout_ms = 20000;
	cfg->failure_threshold = 5;
	cfg->open_timeout_ms = 30000;
	cfg->half_open_max_calls = 3;
	cfg->success_threshold = 2;
	cfg->max_retries = 3;
	cfg->initial_backoff_ms = 100;
	cfg->backoff_multiplier = 2.0;
	cfg->max_backoff_ms = 10000;
	cfg->retry_codes = 1u << TRPC_STATUS_UNAVAILABLE;
	cfg->max_recv_message_size = 4 * 1024 * 1024;
}

static char *dup_opt(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void free_cfg_strings(struct trpc_channel_config *c)
{
	free((char *)c->target);
	free((char *)c->ca_file);
	free((char *)c->server_name);
	free((char *)c->client_cert_file);
	free((char *)c->client_key_file);
	free((char *)c->bearer_token);
	free((char *)c->api_key_header);
	free((char *)c->api_key);
	free((char *)c->compression);
	free((char *)c->user_agent);
}

static void copy_cfg(struct trpc_channel_config *d, const struct trpc_channel_config *s)
{
	*d = *s;
	d->target = dup_opt(s->target);
	d->ca_file = dup_opt(s->ca_file);
	d->server_name = dup_opt(s->server_name);
	d->client_cert_file = dup_opt(s->client_cert_file);
	d->client_key_file = dup_opt(s->client_key_file);
	d->bearer_token = dup_opt(s->bearer_token);
	d->api_key_header = dup_opt(s->api_key_header);
	d->api_key = dup_opt(s->api_key);
	d->compression = dup_opt(s->compression);
	d->user_agent = dup_opt(s->user_agent);
}

/* ------------------------------------------------------------------ endpoints */

/* host:port as trpc_split_hostport, with a host: a target names one. */
static int split_target(const char *spec, char *host, size_t hsize, char *port, size_t psize)
{
	return trpc_split_hostport(spec, host, hsize, port, psize) == 0 && host[0] ? 0 : -1;
}

static int add_endpoint(struct trpc_channel *ch, const char *host, const char *port,
                        const struct addrinfo *ai, int named)
{
	struct endpoint *v = realloc(ch->eps, (ch->neps + 1) * sizeof *v);
	if (v == NULL)
		return TRPC_ERR_NOMEM;
	ch->eps = v;
	struct endpoint *ep = &ch->eps[ch->neps];
	memset(ep, 0, sizeof *ep);
	ep->index = ch->neps;
	memcpy(&ep->sa, ai->ai_addr, ai->ai_addrlen);
	ep->salen = ai->ai_addrlen;
	snprintf(ep->host, sizeof ep->host, "%s", host);
	if (named) {
		/* A name resolving to several addresses: show which one. */
		char addr[INET6_ADDRSTRLEN + 2];
		getnameinfo(ai->ai_addr, ai->ai_addrlen, addr, sizeof addr, NULL, 0,
		            NI_NUMERICHOST);
		snprintf(ep->name, sizeof ep->name, ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
		         addr, port);
	} else {
		snprintf(ep->name, sizeof ep->name, strchr(host, ':') ? "[%s]:%s" : "%s:%s", host,
		         port);
	}
	ep->state = EP_IDLE;
	ep->circuit = TRPC_CIRCUIT_CLOSED;
	ch->neps++;
	return 0;
}

static int resolve_target(struct trpc_channel *ch, const char **why)
{
	char *copy = strdup(ch->cfg.target);
	if (copy == NULL)
		return TRPC_ERR_NOMEM;
	char *save = NULL;
	int rv = 0;
	for (char *tok = strtok_r(copy, ", ", &save); tok && rv == 0;
	     tok = strtok_r(NULL, ", ", &save)) {
		if (strncmp(tok, "dns:", 4) == 0)
			tok += 4;
		char host[256], port[32];
		if (split_target(tok, host, sizeof host, port, sizeof port) != 0) {
			snprintf(client_why, sizeof client_why,
			         "target \"%s\": expected host:port or [v6]:port", tok);
			rv = TRPC_ERR_INVALID;
			break;
		}
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
		struct addrinfo *res;
		int g = getaddrinfo(host, port, &hints, &res);
		if (g != 0) {
			snprintf(client_why, sizeof client_why, "cannot resolve %s: %s", tok,
			         gai_strerror(g));
			rv = TRPC_ERR_INVALID;
			break;
		}
		int count = 0;
		for (struct addrinfo *a = res; a; a = a->ai_next)
			count++;
		for (struct addrinfo *a = res; a && rv == 0; a = a->ai_next)
			rv = add_endpoint(ch, host, port, a, count > 1);
		freeaddrinfo(res);
	}
	free(copy);
	if (rv == 0 && ch->neps == 0) {
		snprintf(client_why, sizeof client_why, "target \"%s\" names no endpoint",
		         ch->cfg.target);
		rv = TRPC_ERR_INVALID;
	}
	if (rv != 0)
		*why = client_why;
	return rv;
}

/* ------------------------------------------------------------------ circuit */

static void set_circuit(struct endpoint *ep, int state)
{
	struct trpc_channel *ch = ep->ch;
	if (ep->circuit == state)
		return;
	ep->circuit = state;
	atomic_store(&ep->pub_circuit, state);
	if (state == TRPC_CIRCUIT_OPEN) {
		ep->opened_at = now_ns();
		atomic_store(&ep->pub_opened_at, ep->opened_at);
		atomic_fetch_add(&ch->m.circuit_opened, 1);
		trpc_log(TRPC_LOG_WARN, "circuit to %s opened after %d failures", ep->name,
		         ep->fails);
	} else if (state == TRPC_CIRCUIT_HALF_OPEN) {
		ep->half_open_inflight = 0;
		ep->successes = 0;
		atomic_fetch_add(&ch->m.circuit_half_opened, 1);
	} else {
		ep->fails = 0;
		atomic_fetch_add(&ch->m.circuit_closed, 1);
		trpc_log(TRPC_LOG_INFO, "circuit to %s closed", ep->name);
	}
}

/* May a call go to this endpoint now? Moves OPEN to HALF_OPEN once the
 * open timeout has passed. */
static int circuit_allows(struct endpoint *ep, int64_t now)
{
	if (ep->circuit == TRPC_CIRCUIT_OPEN &&
	    now - ep->opened_at >= (int64_t)ep->ch->cfg.open_timeout_ms * 1000000)
		set_circuit(ep, TRPC_CIRCUIT_HALF_OPEN);
	if (ep->circuit == TRPC_CIRCUIT_OPEN)
		return 0;
	if (ep->circuit == TRPC_CIRCUIT_HALF_OPEN)
		return ep->half_open_inflight < ep->ch->cfg.half_open_max_calls;
	return 1;
}

static void circuit_record(struct endpoint *ep, int failure)
{
	const struct trpc_channel_config *cfg = &ep->ch->cfg;
	if (failure) {
		ep->successes = 0;
		ep->fails++;
		if (ep->circuit == TRPC_CIRCUIT_HALF_OPEN ||
		    (ep->circuit == TRPC_CIRCUIT_CLOSED && ep->fails >= cfg->failure_threshold))
			set_circuit(ep, TRPC_CIRCUIT_OPEN);
		else if (ep->circuit == TRPC_CIRCUIT_OPEN) {
			ep->opened_at = now_ns();
			atomic_store(&ep->pub_opened_at, ep->opened_at);
		}
		return;
	}
	ep->fails = 0;
	if (ep->circuit == TRPC_CIRCUIT_HALF_OPEN && ++ep->successes >= cfg->success_threshold)
		set_circuit(ep, TRPC_CIRCUIT_CLOSED);
}

/* Failures for the breaker: transport errors and statuses that say the
 * endpoint is unwell, not that the request was wrong. */
static int is_endpoint_failure(const struct trpc_ccall *call)
{
	if (call->local_error)
		return 1;
	switch (call->status) {
	case TRPC_STATUS_UNAVAILABLE:
	case TRPC_STATUS_DEADLINE_EXCEEDED:
	case TRPC_STATUS_INTERNAL:
	case TRPC_STATUS_RESOURCE_EXHAUSTED:
		return 1;
	default:
		return 0;
	}
}

/* ------------------------------------------------------------------ balancing */

static unsigned next_rand(struct trpc_channel *ch)
{
	ch->rand_state = ch->rand_state * 1103515245u + 12345u;
	return ch->rand_state >> 8;
}

/* Chooses among the endpoints a call may use now (not backing off, circuit
 * allowing); with ready_only, among those with a usable connection. */
static struct endpoint *pick(struct trpc_channel *ch, int ready_only)
{
	int64_t now = now_ns();
	struct endpoint *best = NULL;
	size_t n = ch->neps, candidates = 0;
	for (size_t k = 0; k < n; k++) {
		size_t i = (ch->rr_next + k) % n;
		struct endpoint *ep = &ch->eps[i];
		if (ep->state == EP_TRANSIENT_FAILURE || !circuit_allows(ep, now))
			continue;
		if (ready_only && !(ep->state == EP_READY && cconn_available(ep->conn)))
			continue;
		candidates++;
		switch (ch->cfg.lb_policy) {
		case TRPC_LB_LEAST_LOADED:
			/* ties go to the first in rotation order */
			if (best == NULL || ep->inflight < best->inflight)
				best = ep;
			break;
		case TRPC_LB_RANDOM:
			/* Reservoir sampling over the candidates. */
			if (next_rand(ch) % candidates == 0)
				best = ep;
			break;
		default:
			if (best == NULL)
				best = ep;
			break;
		}
	}
	if (best != NULL)
		ch->rr_next = (best->index + 1) % n;
	return best;
}

/* Like gRPC's balancers, every usable endpoint is kept connected: calls go
 * to ready ones and are not held up by one that is still connecting. */
static void connect_idle(struct trpc_channel *ch)
{
	int64_t now = now_ns();
	for (size_t i = 0; i < ch->neps; i++) {
		struct endpoint *ep = &ch->eps[i];
		if (ep->state == EP_IDLE && circuit_allows(ep, now))
			cconn_open(ep);
	}
}

static void describe_unavailable(struct trpc_channel *ch, char *out, size_t size)
{
	size_t off = (size_t)snprintf(out, size, "no endpoint available");
	for (size_t i = 0; i < ch->neps && off < size; i++) {
		struct endpoint *ep = &ch->eps[i];
		const char *what = ep->circuit == TRPC_CIRCUIT_OPEN ? "circuit open"
		                   : ep->last_error[0]              ? ep->last_error
		                                                    : "not connected";
		off += (size_t)snprintf(out + off, size - off, "%s %s (%s)", i ? ";" : ":",
		                        ep->name, what);
	}
}

/* ------------------------------------------------------------------ endpoint events */

static void on_reconnect_timer(struct timer *t)
{
	struct endpoint *ep =
	    (struct endpoint *)((char *)t - offsetof(struct endpoint, reconnect_timer));
	if (ep->state == EP_TRANSIENT_FAILURE)
		ep->state = EP_IDLE;
}

static void take_waiting(struct endpoint *ep, struct trpc_ccall **head)
{
	*head = ep->wait_head;
	ep->wait_head = ep->wait_tail = NULL;
	for (struct trpc_ccall *c = *head; c; c = c->wait_next)
		c->waiting = 0;
}

void channel_on_connected(struct endpoint *ep)
{
	ep->state = EP_READY;
	ep->backoff_ms = 0;
	ep->last_error[0] = '\0';
	atomic_store(&ep->pub_connected, 1);
	struct trpc_ccall *c;
	take_waiting(ep, &c);
	while (c != NULL) {
		struct trpc_ccall *next = c->wait_next;
		c->wait_next = NULL;
		dispatch(c);
		ccall_unref_internal(c); /* the waiting list's reference */
		c = next;
	}
}

static void enter_backoff(struct endpoint *ep, const char *why)
{
	struct trpc_channel *ch = ep->ch;
	snprintf(ep->last_error, sizeof ep->last_error, "%s", why);
	ep->state = EP_TRANSIENT_FAILURE;
	atomic_store(&ep->pub_connected, 0);
	int64_t b =
	    ep->backoff_ms ? (int64_t)(ep->backoff_ms * 1.6) : ch->cfg.reconnect_initial_backoff_ms;
	if (b > ch->cfg.reconnect_max_backoff_ms)
		b = ch->cfg.reconnect_max_backoff_ms;
	ep->backoff_ms = b;
	/* +-20% jitter so endpoints that failed together do not return together. */
	int64_t jitter = (int64_t)(next_rand(ch) % 401) - 200; /* per mille */
	int64_t delay = b * 1000000 + b * jitter * 1000;
	theap_arm(&ch->timers, &ep->reconnect_timer, now_ns() + delay);
}

void channel_on_conn_failed(struct endpoint *ep, const char *why)
{
	struct trpc_channel *ch = ep->ch;
	char msg[400];
	snprintf(msg, sizeof msg, "connect to %s: %s", ep->name, why);
	trpc_log(TRPC_LOG_INFO, "%s", msg);
	atomic_fetch_add(&ch->m.connect_failures, 1);
	/* Waiting calls each count as a failure below; with none, the failed
	 * connection attempt itself counts. */
	if (ep->wait_head == NULL)
		circuit_record(ep, 1);
	enter_backoff(ep, msg);
	/* Calls waiting here fail as transport errors; retries go elsewhere. */
	struct trpc_ccall *c;
	take_waiting(ep, &c);
	while (c != NULL) {
		struct trpc_ccall *next = c->wait_next;
		c->wait_next = NULL;
		ccall_local_error(c, "%s", msg);
		c->ep = ep;
		channel_attempt_done(c);
		ccall_unref_internal(c);
		c = next;
	}
}

void channel_on_conn_closed(struct endpoint *ep, struct cconn *c, const char *why)
{
	(void)c;
	atomic_store(&ep->pub_connected, 0);
	if (strcmp(why, "server sent GOAWAY") == 0) {
		/* A graceful goodbye: connect again on demand, no backoff. */
		ep->state = EP_IDLE;
		return;
	}
	char msg[400];
	snprintf(msg, sizeof msg, "connection to %s lost: %s", ep->name, why);
	trpc_log(TRPC_LOG_INFO, "%s", msg);
	ep->backoff_ms = 0;
	enter_backoff(ep, msg);
	/* Reconnecting right away is allowed once after losing a working
	 * connection; the backoff applies to failed attempts. */
	ep->state = EP_IDLE;
	theap_disarm(&ep->ch->timers, &ep->reconnect_timer);
}

/* ------------------------------------------------------------------ calls */

void ccall_unref_internal(struct trpc_ccall *call)
{
	if (atomic_fetch_sub_explicit(&call->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (size_t i = 0; i < call->n_md; i++) {
		free((char *)call->md[i].key);
		free((void *)call->md[i].value);
	}
	free(call->md);
	for (size_t i = 0; i < call->n_hdrs; i++) {
		free((char *)call->hdrs[i].key);
		free((void *)call->hdrs[i].value);
	}
	free(call->hdrs);
	for (size_t i = 0; i < call->n_trls; i++) {
		free((char *)call->trls[i].key);
		free((void *)call->trls[i].value);
	}
	free(call->trls);
	for (struct out_msg *m = call->out_head, *next; m; m = next) {
		next = m->next;
		free(m);
	}
	if (call->kept != NULL)
		protobuf_c_message_free_unpacked(call->kept, NULL);
	codec_framer_clear(&call->framer);
	free(call->message);
	free(call->local_msg);
	free(call->first);
	free(call->path);
	free(call->traceparent);
	free(call->trace_id);
	pthread_mutex_destroy(&call->mu);
	free(call);
}

void ccall_local_error(struct trpc_ccall *call, const char *fmt, ...)
{
	char buf[600];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	call->local_error = 1;
	free(call->local_msg);
	call->local_msg = strdup(buf);
}

void trpc_ccall_ref(trpc_ccall *call)
{
	atomic_fetch_add(&call->refs, 1);
}

void trpc_ccall_unref(trpc_ccall *call)
{
	if (call != NULL)
		ccall_unref_internal(call);
}

static void reset_attempt(struct trpc_ccall *call)
{
	call->headers_received = 0;
	call->msgs_received = 0;
	call->http_status = 0;
	call->have_status = 0;
	call->status = 0;
	free(call->message);
	call->message = NULL;
	for (size_t i = 0; i < call->n_hdrs; i++) {
		free((char *)call->hdrs[i].key);
		free((void *)call->hdrs[i].value);
	}
	call->n_hdrs = 0;
	for (size_t i = 0; i < call->n_trls; i++) {
		free((char *)call->trls[i].key);
		free((void *)call->trls[i].value);
	}
	call->n_trls = 0;
	call->resp_encoding = CODEC_IDENTITY;
	codec_framer_clear(&call->framer);
	codec_framer_init(&call->framer, (size_t)call->ch->cfg.max_recv_message_size);
	call->pushback_ms = -1;
	call->local_error = 0;
	free(call->local_msg);
	call->local_msg = NULL;
	call->data_deferred = 0;
}

/* Puts the request back in the outbound queue for another attempt. */
static int requeue_first(struct trpc_ccall *call)
{
	struct out_msg *m = malloc(sizeof *m + call->first_len);
	if (m == NULL)
		return TRPC_ERR_NOMEM;
	m->next = NULL;
	m->len = call->first_len;
	memcpy(m->data, call->first, call->first_len);
	pthread_mutex_lock(&call->mu);
	for (struct out_msg *o = call->out_head, *next; o; o = next) {
		next = o->next;
		free(o);
	}
	call->out_head = call->out_tail = m;
	call->out_off = 0;
	pthread_mutex_unlock(&call->mu);
	return 0;
}

static void count_in(struct trpc_ccall *call, struct endpoint *ep)
{
	call->ep = ep;
	call->counted = 1;
	ep->inflight++;
	call->probe = ep->circuit == TRPC_CIRCUIT_HALF_OPEN;
	if (call->probe)
		ep->half_open_inflight++;
	atomic_fetch_add(&ep->pub_calls, 1);
}

static void count_out(struct trpc_ccall *call)
{
	if (!call->counted)
		return;
	call->counted = 0;
	call->ep->inflight--;
	if (call->probe && call->ep->half_open_inflight > 0)
		call->ep->half_open_inflight--;
	call->probe = 0;
}

/* Sends the call's current attempt: to a ready endpoint, or queued on one
 * that is connecting, or it fails as unavailable. */
static void dispatch(struct trpc_ccall *call)
{
	struct trpc_channel *ch = call->ch;
	if (call->done)
		return;
	if (now_ns() >= call->deadline) {
		fail_call(call, TRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
		return;
	}
	connect_idle(ch);
	struct endpoint *ep = pick(ch, 1);
	if (ep == NULL)
		ep = pick(ch, 0);
	if (ep == NULL) {
		char msg[600];
		describe_unavailable(ch, msg, sizeof msg);
		fail_call(call, TRPC_STATUS_UNAVAILABLE, msg);
		return;
	}
	reset_attempt(call);
	if (ep->state == EP_READY && cconn_available(ep->conn)) {
		count_in(call, ep);
		if (cconn_submit(ep->conn, call) != 0) {
			count_out(call);
			fail_call(call, TRPC_STATUS_INTERNAL, "cannot open a stream");
		}
		return;
	}
	if (ep->state == EP_IDLE || (ep->state == EP_READY && !cconn_available(ep->conn))) {
		cconn_open(ep);
		if (ep->state == EP_TRANSIENT_FAILURE) {
			/* Failed at once (reported by cconn_open): pick again. */
			dispatch(call);
			return;
		}
	}
	/* Wait for the connection; picked again when it is ready. */
	trpc_ccall_ref(call); /* the waiting list's */
	call->waiting = 1;
	call->wait_next = NULL;
	call->ep = ep;
	if (ep->wait_tail != NULL)
		ep->wait_tail->wait_next = call;
	else
		ep->wait_head = call;
	ep->wait_tail = call;
}

static void remove_waiting(struct trpc_ccall *call)
{
	if (!call->waiting || call->ep == NULL)
		return;
	struct endpoint *ep = call->ep;
	struct trpc_ccall **pp = &ep->wait_head, *prev = NULL;
	while (*pp != NULL && *pp != call) {
		prev = *pp;
		pp = &(*pp)->wait_next;
	}
	if (*pp == call) {
		*pp = call->wait_next;
		if (ep->wait_tail == call)
			ep->wait_tail = prev;
		call->waiting = 0;
		call->wait_next = NULL;
		ccall_unref_internal(call);
	}
}

/* Ends the call: on_close once, metrics, the channel's reference. */
static void complete(struct trpc_ccall *call)
{
	struct trpc_channel *ch = call->ch;
	if (call->done)
		return;
	call->done = 1;
	theap_disarm(&ch->timers, &call->deadline_timer);
	theap_disarm(&ch->timers, &call->retry_timer);
	remove_waiting(call);
	if (!call->have_status) {
		call->have_status = 1;
		call->status = TRPC_STATUS_UNAVAILABLE;
		free(call->message);
		call->message = strdup(call->local_msg ? call->local_msg : "call failed");
	}
	pthread_mutex_lock(&call->mu);
	call->closed_pub = 1;
	pthread_mutex_unlock(&call->mu);
	int64_t lat = (now_ns() - call->started) / 1000;
	atomic_fetch_add(&ch->m.latency_us_sum, (unsigned long long)lat);
	atomic_fetch_add(&ch->m.latency_count, 1);
	atomic_fetch_add(
	    call->status == TRPC_STATUS_OK ? &ch->m.calls_succeeded : &ch->m.calls_failed, 1);
	struct trpc_call_status st = {
	    .code = call->status,
	    .message = call->message,
	    .trailers = call->trls,
	    .n_trailers = call->n_trls,
	    .retry_pushback_ms = call->pushback_ms >= 0 ? call->pushback_ms : -1,
	};
	if (call->ops.on_close != NULL)
		call->ops.on_close(call, &st, call->ud);
	/* unlink from the channel's list and drop its reference */
	if (call->all_prev != NULL)
		call->all_prev->all_next = call->all_next;
	else
		ch->calls = call->all_next;
	if (call->all_next != NULL)
		call->all_next->all_prev = call->all_prev;
	call->all_prev = call->all_next = NULL;
	ccall_unref_internal(call);
}

static void fail_call(struct trpc_ccall *call, int status, const char *msg)
{
	if (call->done)
		return;
	call->have_status = 1;
	call->status = status;
	free(call->message);
	call->message = strdup(msg);
	if (call->conn != NULL) {
		/* Stop the stream; its close will not reach us again (done). */
		cconn_reset(call, NGHTTP2_CANCEL);
		nghttp2_session_set_stream_user_data(call->conn->h2, call->stream_id, NULL);
		struct cconn *c = call->conn;
		if (call->s_prev != NULL)
			call->s_prev->s_next = call->s_next;
		else
			c->streams = call->s_next;
		if (call->s_next != NULL)
			call->s_next->s_prev = call->s_prev;
		call->s_next = call->s_prev = NULL;
		call->conn = NULL;
		c->nstreams--;
	}
	count_out(call);
	complete(call);
}

static void on_retry_timer(struct timer *t)
{
	struct trpc_ccall *call =
	    (struct trpc_ccall *)((char *)t - offsetof(struct trpc_ccall, retry_timer));
	if (requeue_first(call) != 0) {
		fail_call(call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
		return;
	}
	dispatch(call);
}

static void on_deadline_timer(struct timer *t)
{
	struct trpc_ccall *call =
	    (struct trpc_ccall *)((char *)t - offsetof(struct trpc_ccall, deadline_timer));
	fail_call(call, TRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
}

/* Retry policy: only requests that can be sent again whole, never once the
 * server answered with headers or a message, never past the deadline. */
static int64_t retry_delay_ms(struct trpc_ccall *call)
{
	const struct trpc_channel_config *cfg = &call->ch->cfg;
	if (!call->retryable || call->no_retry || call->attempt > cfg->max_retries)
		return -1;
	if (call->headers_received || call->msgs_received)
		return -1;
	if (!call->local_error && !(call->status < 32 && (cfg->retry_codes & (1u << call->status))))
		return -1;
	if (call->pushback_ms == -2)
		return -1; /* the server said: do not retry */
	int64_t delay;
	if (call->pushback_ms >= 0) {
		delay = call->pushback_ms;
	} else {
		double b = cfg->initial_backoff_ms;
		for (int i = 1; i < call->attempt; i++)
			b *= cfg->backoff_multiplier;
		if (b > cfg->max_backoff_ms)
			b = cfg->max_backoff_ms;
		/* full jitter in [0.5b, 1.0b] keeps retries from synchronizing */
		delay = (int64_t)(b * (0.5 + (double)(next_rand(call->ch) % 1001) / 2000.0));
	}
	if (call->deadline != INT64_MAX && now_ns() + delay * 1000000 >= call->deadline)
		return -1;
	return delay;
}

void channel_attempt_done(struct trpc_ccall *call)
{
	struct trpc_channel *ch = call->ch;
	if (call->done)
		return;
	struct endpoint *ep = call->ep;
	int counted = call->counted;
	count_out(call);
	if (ep != NULL && (counted || call->local_error))
		circuit_record(ep, is_endpoint_failure(call));
	if (!call->have_status && !call->local_error) {
		call->have_status = 1;
		call->status = TRPC_STATUS_INTERNAL;
		call->message = strdup("stream ended without a status");
	}
	int64_t delay = retry_delay_ms(call);
	if (delay >= 0) {
		call->attempt++;
		atomic_fetch_add(&ch->m.retries, 1);
		trpc_log(TRPC_LOG_DEBUG, "%s: retry %d in %lld ms after %s", call->path,
		         call->attempt - 1, (long long)delay,
		         call->local_error ? call->local_msg : trpc_status_name(call->status));
		theap_arm(&ch->timers, &call->retry_timer, now_ns() + delay * 1000000);
		return;
	}
	if (call->local_error && !call->have_status) {
		call->have_status = 1;
		call->status = TRPC_STATUS_UNAVAILABLE;
		free(call->message);
		call->message = strdup(call->local_msg ? call->local_msg : "transport failure");
	}
	complete(call);
}

/* ------------------------------------------------------------------ thread */

static void post(struct trpc_channel *ch, int type, struct trpc_ccall *call)
{
	struct ccmd *cmd = malloc(sizeof *cmd);
	if (cmd == NULL)
		return;
	cmd->next = NULL;
	cmd->type = type;
	cmd->call = call;
	if (call != NULL)
		trpc_ccall_ref(call);
	if (ch->thread_started && pthread_equal(pthread_self(), ch->thread)) {
		/* From a callback on the channel thread: no lock, no wake-up;
		 * run before this loop iteration flushes. */
		if (ch->local_tail != NULL)
			ch->local_tail->next = cmd;
		else
			ch->local_head = cmd;
		ch->local_tail = cmd;
		return;
	}
	pthread_mutex_lock(&ch->mu);
	if (ch->cmd_tail != NULL)
		ch->cmd_tail->next = cmd;
	else
		ch->cmd_head = cmd;
	ch->cmd_tail = cmd;
	int wake = !ch->wake_pending;
	ch->wake_pending = 1;
	pthread_mutex_unlock(&ch->mu);
	if (wake) {
		uint64_t one = 1;
		ssize_t n = write(ch->evfd, &one, sizeof one);
		(void)n;
	}
}

static void start_call(struct trpc_ccall *call)
{
	struct trpc_channel *ch = call->ch;
	trpc_ccall_ref(call); /* the channel's, until complete() */
	call->all_prev = NULL;
	call->all_next = ch->calls;
	if (ch->calls != NULL)
		ch->calls->all_prev = call;
	ch->calls = call;
	if (call->deadline != INT64_MAX)
		theap_arm(&ch->timers, &call->deadline_timer, call->deadline);
	call->attempt = 1;
	dispatch(call);
}

static void start_call(struct trpc_ccall *call);

/* Runs a list of commands; returns 1 if one was STOP. */
static int run_list(struct ccmd *cmd)
{
	int stop = 0;
	while (cmd != NULL) {
		struct ccmd *next = cmd->next;
		struct trpc_ccall *call = cmd->call;
		switch (cmd->type) {
		case CCMD_START:
			start_call(call);
			break;
		case CCMD_KICK:
			if (!call->done)
				cconn_resume(call);
			break;
		case CCMD_CANCEL:
			fail_call(call, TRPC_STATUS_CANCELLED, "cancelled by the client");
			break;
		case CCMD_STOP:
			stop = 1;
			break;
		}
		if (call != NULL)
			ccall_unref_internal(call);
		free(cmd);
		cmd = next;
	}
	return stop;
}

static int run_cmds(struct trpc_channel *ch)
{
	uint64_t v;
	ssize_t n = read(ch->evfd, &v, sizeof v);
	(void)n;
	pthread_mutex_lock(&ch->mu);
	struct ccmd *cmd = ch->cmd_head;
	ch->cmd_head = ch->cmd_tail = NULL;
	ch->wake_pending = 0;
	pthread_mutex_unlock(&ch->mu);
	return run_list(cmd);
}

/* Commands posted by callbacks on this thread; running them may post more. */
static int run_local(struct trpc_channel *ch)
{
	int stop = 0;
	while (ch->local_head != NULL) {
		struct ccmd *cmd = ch->local_head;
		ch->local_head = ch->local_tail = NULL;
		stop |= run_list(cmd);
	}
	return stop;
}

static void flush_and_reap(struct trpc_channel *ch)
{
	while (ch->flush_head != NULL) {
		struct cconn *c = ch->flush_head;
		ch->flush_head = c->flush_next;
		c->in_flush = 0;
		cconn_flush(c);
	}
	while (ch->dead != NULL) {
		struct cconn *c = ch->dead;
		ch->dead = c->dead_next;
		free(c);
	}
}

static void *channel_main(void *arg)
{
	struct trpc_channel *ch = arg;
	struct epoll_event evs[128];
	int stop = 0;
	while (!stop) {
		int timeout = -1;
		struct timer *top = theap_top(&ch->timers);
		if (top != NULL) {
			int64_t left = top->when - now_ns();
			timeout = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
		}
		int n = epoll_wait(ch->epfd, evs, 128, timeout);
		if (n == -1 && errno != EINTR)
			break;
		for (int i = 0; i < n; i++) {
			if (evs[i].data.ptr == ch)
				stop |= run_cmds(ch);
			else
				cconn_on_event(evs[i].data.ptr, evs[i].events);
		}
		int64_t now = now_ns();
		struct timer *t;
		while ((t = theap_pop_due(&ch->timers, now)) != NULL)
			t->fire(t);
		stop |= run_local(ch);
		flush_and_reap(ch);
	}
	/* Shutdown: cancel every call, close every connection. */
	run_local(ch);
	while (ch->calls != NULL) {
		fail_call(ch->calls, TRPC_STATUS_CANCELLED, "channel closed");
		run_local(ch); /* on_close may have started calls: end those too */
	}
	for (size_t i = 0; i < ch->neps; i++)
		if (ch->eps[i].conn != NULL)
			cconn_close(ch->eps[i].conn, "channel closed");
	flush_and_reap(ch);
	return NULL;
}

/* ------------------------------------------------------------------ public */

trpc_channel *trpc_channel_new(const struct trpc_channel_config *cfg, const char **why)
{
	if (cfg == NULL || cfg->target == NULL) {
		*why = "channel target is required";
		return NULL;
	}
	struct trpc_channel *ch = calloc(1, sizeof *ch);
	if (ch == NULL) {
		*why = "out of memory";
		return NULL;
	}
	copy_cfg(&ch->cfg, cfg);
	ch->epfd = ch->evfd = -1;
	pthread_mutex_init(&ch->mu, NULL);
	ch->rand_state = (unsigned)now_ns() ^ (unsigned)(uintptr_t)ch;
	ch->req_encoding = CODEC_IDENTITY;
	if (cfg->compression != NULL) {
		ch->req_encoding =
		    codec_encoding_from_name(cfg->compression, strlen(cfg->compression));
		if (ch->req_encoding == CODEC_UNSUPPORTED) {
			*why = "unsupported compression (identity, gzip, deflate)";
			goto fail;
		}
	}
	if (resolve_target(ch, why) != 0)
		goto fail;
	for (size_t i = 0; i < ch->neps; i++) {
		ch->eps[i].ch = ch;
		ch->eps[i].reconnect_timer.fire = on_reconnect_timer;
	}
	if (cfg->use_tls) {
		ch->ssl_ctx = tls_client_ctx_new(&ch->cfg, why);
		if (ch->ssl_ctx == NULL)
			goto fail;
	}
	ch->rbuf_size = 64 * 1024;
	ch->rbuf = malloc(ch->rbuf_size);
	ch->epfd = epoll_create1(EPOLL_CLOEXEC);
	ch->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ch->rbuf == NULL || ch->epfd == -1 || ch->evfd == -1) {
		*why = "cannot create the channel's event loop";
		goto fail;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = ch};
	if (epoll_ctl(ch->epfd, EPOLL_CTL_ADD, ch->evfd, &ev) == -1) {
		*why = "cannot create the channel's event loop";
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	int rv = pthread_create(&ch->thread, NULL, channel_main, ch);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rv != 0) {
		*why = "cannot start the channel thread";
		goto fail;
	}
	ch->thread_started = 1;
	return ch;
fail:
	trpc_channel_free(ch);
	return NULL;
}

void trpc_channel_free(trpc_channel *ch)
{
	if (ch == NULL)
		return;
	if (ch->thread_started) {
		post(ch, CCMD_STOP, NULL);
		pthread_join(ch->thread, NULL);
	}
	struct ccmd *cmd = ch->cmd_head;
	while (cmd != NULL) {
		struct ccmd *next = cmd->next;
		if (cmd->call != NULL) {
			if (cmd->type == CCMD_START) {
				/* never started: tell the owner it is over */
				struct trpc_call_status st = {.code = TRPC_STATUS_CANCELLED,
				                              .message = (char *)"channel closed",
				                              .retry_pushback_ms = -1};
				if (cmd->call->ops.on_close != NULL)
					cmd->call->ops.on_close(cmd->call, &st, cmd->call->ud);
			}
			ccall_unref_internal(cmd->call);
		}
		free(cmd);
		cmd = next;
	}
	theap_free(&ch->timers);
	if (ch->ssl_ctx != NULL)
		SSL_CTX_free(ch->ssl_ctx);
	if (ch->epfd != -1)
		close(ch->epfd);
	if (ch->evfd != -1)
		close(ch->evfd);
	free(ch->rbuf);
	free(ch->eps);
	pthread_mutex_destroy(&ch->mu);
	free_cfg_strings(&ch->cfg);
	free(ch);
}

void trpc_call_status_clear(struct trpc_call_status *st)
{
	if (st == NULL)
		return;
	free(st->message);
	for (size_t i = 0; i < st->n_trailers; i++) {
		free((char *)st->trailers[i].key);
		free((void *)st->trailers[i].value);
	}
	free(st->trailers);
	memset(st, 0, sizeof *st);
}

static uint8_t *frame_message(const ProtobufCMessage *msg, int enc, size_t *outlen, int *err)
{
	size_t size = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = malloc(5 + size);
	if (buf == NULL) {
		*err = TRPC_ERR_NOMEM;
		return NULL;
	}
	protobuf_c_message_pack(msg, buf + 5);
	if (enc == CODEC_IDENTITY) {
		codec_put_prefix(buf, 0, (uint32_t)size);
		*outlen = 5 + size;
		return buf;
	}
	struct buf z = {0};
	if (buf_append(&z, "\0\0\0\0\0", 5) != 0 || codec_compress(enc, buf + 5, size, &z) != 0) {
		free(buf);
		buf_free(&z);
		*err = TRPC_ERR_ENCODING;
		return NULL;
	}
	free(buf);
	codec_put_prefix(z.data, 1, (uint32_t)(z.len - 5));
	*outlen = z.len;
	return z.data;
}

static int queue_message(struct trpc_ccall *call, const ProtobufCMessage *msg, int enc)
{
	size_t len;
	int err = 0;
	uint8_t *framed = frame_message(msg, enc, &len, &err);
	if (framed == NULL)
		return err;
	struct out_msg *m = malloc(sizeof *m + len);
	if (m == NULL) {
		free(framed);
		return TRPC_ERR_NOMEM;
	}
	m->next = NULL;
	m->len = len;
	memcpy(m->data, framed, len);
	free(framed);
	pthread_mutex_lock(&call->mu);
	if (call->half_closed || call->closed_pub) {
		pthread_mutex_unlock(&call->mu);
		free(m);
		return TRPC_ERR_CLOSED;
	}
	if (call->out_tail != NULL)
		call->out_tail->next = m;
	else
		call->out_head = m;
	call->out_tail = m;
	pthread_mutex_unlock(&call->mu);
	return 0;
}

static int has_md(const struct trpc_call_options *opts, const char *key)
{
	for (size_t i = 0; opts != NULL && i < opts->n_metadata; i++)
		if (opts->metadata[i].key != NULL && strcmp(opts->metadata[i].key, key) == 0)
			return 1;
	return 0;
}

/* A call started from a handler continues the handler's trace unless the
 * caller gave its own trace context (options or metadata). 0 or -1 (out of
 * memory). */
static int inherit_trace(struct trpc_ccall *call, const struct trpc_call_options *opts)
{
	const struct trpc_call *cur = trpc_call_current();
	char traceparent[TRACEPARENT_LEN + 1];
	const char *trace_id;

	if (cur == NULL || call->traceparent != NULL || has_md(opts, "traceparent"))
		return 0;
	call_trace_outgoing(cur, traceparent, &trace_id);
	if ((call->traceparent = strdup(traceparent)) == NULL)
		return -1;
	if (call->trace_id == NULL && !has_md(opts, "x-trace-id") &&
	    (call->trace_id = strdup(trace_id)) == NULL)
		return -1;
	return 0;
}

static int valid_key(const char *k)
{
	if (k == NULL || *k == '\0' || *k == ':')
		return 0;
	for (const char *p = k; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' ||
		      *p == '_' || *p == '.'))
			return 0;
	return 1;
}

trpc_ccall *trpc_ccall_start(trpc_channel *ch, const char *method,
                             const ProtobufCMessageDescriptor *resp_desc,
                             const ProtobufCMessage *first, unsigned flags,
                             const struct trpc_call_options *opts, const struct trpc_ccall_ops *ops,
                             void *ud, const char **why)
{
	static const char *bad = "bad call arguments";
	if (ch == NULL || method == NULL || method[0] != '/' || resp_desc == NULL || ops == NULL) {
		*why = bad;
		return NULL;
	}
	struct trpc_ccall *call = calloc(1, sizeof *call);
	if (call == NULL) {
		*why = "out of memory";
		return NULL;
	}
	atomic_init(&call->refs, 1); /* the caller's */
	call->ch = ch;
	call->path = strdup(method);
	call->resp_desc = resp_desc;
	call->ops = *ops;
	call->ud = ud;
	call->req_encoding = ch->req_encoding;
	call->deadline = INT64_MAX;
	call->started = now_ns();
	call->pushback_ms = -1;
	call->deadline_timer.fire = on_deadline_timer;
	call->retry_timer.fire = on_retry_timer;
	pthread_mutex_init(&call->mu, NULL);
	codec_framer_init(&call->framer, (size_t)ch->cfg.max_recv_message_size);
	if (opts != NULL) {
		if (opts->timeout_ms > 0)
			call->deadline = call->started + opts->timeout_ms * 1000000;
		if (opts->compression != NULL) {
			call->req_encoding =
			    codec_encoding_from_name(opts->compression, strlen(opts->compression));
			if (call->req_encoding == CODEC_UNSUPPORTED) {
				*why = "unsupported compression";
				goto fail;
			}
		}
		call->no_retry = opts->no_retry;
		call->traceparent = dup_opt(opts->traceparent);
		call->trace_id = dup_opt(opts->trace_id);
		if (opts->n_metadata > 0) {
			call->md = calloc(opts->n_metadata, sizeof *call->md);
			if (call->md == NULL)
				goto nomem;
			for (size_t i = 0; i < opts->n_metadata; i++) {
				const struct trpc_md *m = &opts->metadata[i];
				if (!valid_key(m->key)) {
					*why = "invalid metadata key";
					goto fail;
				}
				char *v = malloc(m->len + 1);
				call->md[i].key = strdup(m->key);
				if (v == NULL || call->md[i].key == NULL) {
					free(v);
					goto nomem;
				}
				if (m->len)
					memcpy(v, m->value, m->len);
				v[m->len] = '\0';
				call->md[i].value = v;
				call->md[i].len = m->len;
				call->n_md++;
			}
		}
	}
	if (inherit_trace(call, opts) != 0)
		goto nomem;
	if (first != NULL) {
		int err = 0;
		call->first = frame_message(first, call->req_encoding, &call->first_len, &err);
		if (call->first == NULL)
			goto nomem;
		if (requeue_first(call) != 0)
			goto nomem;
	}
	if (flags & TRPC_START_HALF_CLOSE) {
		call->half_closed = 1;
		call->retryable = first != NULL;
	}
	if (call->path == NULL)
		goto nomem;
	trpc_ccall_ref(call); /* the queued command's, dropped after start_call */
	atomic_fetch_add(&ch->m.calls_started, 1);
	post(ch, CCMD_START, call);
	ccall_unref_internal(call);
	return call;
nomem:
	*why = "out of memory";
fail:
	ccall_unref_internal(call);
	return NULL;
}

int trpc_ccall_send(trpc_ccall *call, const ProtobufCMessage *msg)
{
	return trpc_ccall_send_ex(call, msg, 0);
}

int trpc_ccall_send_ex(trpc_ccall *call, const ProtobufCMessage *msg, unsigned flags)
{
	if (call == NULL || msg == NULL)
		return TRPC_ERR_INVALID;
	int enc = (flags & TRPC_SEND_NO_COMPRESS) ? CODEC_IDENTITY : call->req_encoding;
	int rv = queue_message(call, msg, enc);
	if (rv == 0)
		post(call->ch, CCMD_KICK, call);
	return rv;
}

int trpc_ccall_close_send(trpc_ccall *call)
{
	if (call == NULL)
		return TRPC_ERR_INVALID;
	pthread_mutex_lock(&call->mu);
	int already = call->half_closed;
	call->half_closed = 1;
	pthread_mutex_unlock(&call->mu);
	if (!already)
		post(call->ch, CCMD_KICK, call);
	return 0;
}

void trpc_ccall_cancel(trpc_ccall *call)
{
	if (call != NULL)
		post(call->ch, CCMD_CANCEL, call);
}

const char *trpc_ccall_header(const trpc_ccall *call, const char *key, size_t *len)
{
	for (size_t i = 0; i < call->n_hdrs; i++)
		if (strcmp(call->hdrs[i].key, key) == 0) {
			if (len != NULL)
				*len = call->hdrs[i].len;
			return call->hdrs[i].value;
		}
	return NULL;
}

const char *trpc_ccall_endpoint(const trpc_ccall *call)
{
	return call->endpoint_name;
}

/* ------------------------------------------------------------------ blocking unary */

struct sync_state {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	struct trpc_call_status st;
	ProtobufCMessage *resp;
};

static void sync_on_message(trpc_ccall *call, const ProtobufCMessage *msg, void *ud)
{
	(void)msg;
	(void)ud;
	call->keep_message = 1; /* kept in call->kept; the last one wins */
}

static struct trpc_md *copy_md(const struct trpc_md *src, size_t n)
{
	if (n == 0)
		return NULL;
	struct trpc_md *d = calloc(n, sizeof *d);
	if (d == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		char *v = malloc(src[i].len + 1);
		d[i].key = strdup(src[i].key);
		if (v != NULL) {
			memcpy(v, src[i].value, src[i].len);
			v[src[i].len] = '\0';
		}
		d[i].value = v;
		d[i].len = src[i].len;
	}
	return d;
}

static void sync_on_close(trpc_ccall *call, const struct trpc_call_status *st, void *ud)
{
	struct sync_state *s = ud;
	pthread_mutex_lock(&s->mu);
	s->st.code = st->code;
	s->st.message = st->message ? strdup(st->message) : NULL;
	s->st.trailers = copy_md(st->trailers, st->n_trailers);
	s->st.n_trailers = s->st.trailers ? st->n_trailers : 0;
	s->st.retry_pushback_ms = st->retry_pushback_ms;
	if (st->code == TRPC_STATUS_OK) {
		s->resp = call->kept;
		call->kept = NULL;
		if (s->resp == NULL) {
			s->st.code = TRPC_STATUS_INTERNAL;
			free(s->st.message);
			s->st.message = strdup("no response message for a unary call");
		}
	}
	s->done = 1;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

int trpc_unary(trpc_channel *ch, const char *method, const ProtobufCMessage *req,
               const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp,
               const struct trpc_call_options *opts, struct trpc_call_status *st)
{
	if (resp == NULL || st == NULL || req == NULL)
		return TRPC_ERR_INVALID;
	*resp = NULL;
	memset(st, 0, sizeof *st);
	struct sync_state s = {0};
	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	static const struct trpc_ccall_ops ops = {.on_message = sync_on_message,
	                                          .on_close = sync_on_close};
	const char *why = NULL;
	trpc_ccall *call = trpc_ccall_start(ch, method, resp_desc, req, TRPC_START_HALF_CLOSE, opts,
	                                    &ops, &s, &why);
	if (call == NULL) {
		st->code = TRPC_STATUS_INTERNAL;
		st->message = strdup(why ? why : "cannot start the call");
		st->retry_pushback_ms = -1;
		pthread_mutex_destroy(&s.mu);
		pthread_cond_destroy(&s.cv);
		return TRPC_ERR_INVALID;
	}
	pthread_mutex_lock(&s.mu);
	while (!s.done)
		pthread_cond_wait(&s.cv, &s.mu);
	pthread_mutex_unlock(&s.mu);
	trpc_ccall_unref(call);
	*st = s.st;
	*resp = s.resp;
	pthread_mutex_destroy(&s.mu);
	pthread_cond_destroy(&s.cv);
	return st->code;
}

/* ------------------------------------------------------------------ diagnostics */

void trpc_channel_metrics(trpc_channel *ch, struct trpc_channel_metrics *m)
{
	m->calls_started = atomic_load(&ch->m.calls_started);
	m->calls_succeeded = atomic_load(&ch->m.calls_succeeded);
	m->calls_failed = atomic_load(&ch->m.calls_failed);
	m->latency_us_sum = atomic_load(&ch->m.latency_us_sum);
	m->latency_count = atomic_load(&ch->m.latency_count);
	m->retries = atomic_load(&ch->m.retries);
	m->circuit_opened = atomic_load(&ch->m.circuit_opened);
	m->circuit_half_opened = atomic_load(&ch->m.circuit_half_opened);
	m->circuit_closed = atomic_load(&ch->m.circuit_closed);
	m->connects = atomic_load(&ch->m.connects);
	m->connect_failures = atomic_load(&ch->m.connect_failures);
}

size_t trpc_channel_endpoint_count(trpc_channel *ch)
{
	return ch->neps;
}

const char *trpc_channel_endpoint_name(trpc_channel *ch, size_t i)
{
	return i < ch->neps ? ch->eps[i].name : NULL;
}

int trpc_channel_endpoint_circuit(trpc_channel *ch, size_t i)
{
	if (i >= ch->neps)
		return TRPC_ERR_INVALID;
	struct endpoint *ep = &ch->eps[i];
	int st = atomic_load(&ep->pub_circuit);
	/* The channel thread moves OPEN to HALF_OPEN lazily, at the next pick;
	 * report what that pick would see. */
	if (st == TRPC_CIRCUIT_OPEN && now_ns() - atomic_load(&ep->pub_opened_at) >=
	                                   (int64_t)ch->cfg.open_timeout_ms * 1000000)
		st = TRPC_CIRCUIT_HALF_OPEN;
	return st;
}

int trpc_channel_endpoint_connected(trpc_channel *ch, size_t i)
{
	return i < ch->neps ? atomic_load(&ch->eps[i].pub_connected) : 0;
}

uint64_t trpc_channel_endpoint_calls(trpc_channel *ch, size_t i)
{
	return i < ch->neps ? atomic_load(&ch->eps[i].pub_calls) : 0;
}
