/*
 * cconn: client connections and their HTTP/2 streams, on the channel
 * thread. Connect (non-blocking) -> TLS handshake (ALPN h2, host check) ->
 * nghttp2 client session. Request headers and messages go out through a
 * data provider reading the call's outbound queue; responses are decoded
 * with the same codec as the server side.
 */
#include "config.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "client.h"
#include "server.h"
#include "sockio.h"

static nghttp2_session_callbacks *callbacks;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;
static void init_callbacks(void);

/* ------------------------------------------------------------------ connect */

static void on_connect_timeout(struct timer *t)
{
	struct cconn *c = (struct cconn *)((char *)t - offsetof(struct cconn, connect_timer));
	cconn_close(c, "connection timed out");
}

static void on_keepalive(struct timer *t)
{
	struct cconn *c = (struct cconn *)((char *)t - offsetof(struct cconn, ka_timer));
	struct trpc_channel *ch = c->ch;
	int64_t now = now_ns();
	if (c->ping_sent != 0) {
		if (now - c->ping_sent >= (int64_t)ch->cfg.keepalive_timeout_ms * 1000000) {
			cconn_close(c, "keepalive ping not acknowledged");
			return;
		}
	} else if (now - c->last_read >= (int64_t)ch->cfg.keepalive_time_ms * 1000000) {
		if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL) == 0) {
			c->ping_sent = now;
			cconn_want_flush(c);
		}
	}
	int64_t next = c->ping_sent ? c->ping_sent + (int64_t)ch->cfg.keepalive_timeout_ms * 1000000
	                            : c->last_read + (int64_t)ch->cfg.keepalive_time_ms * 1000000;
	theap_arm(&ch->timers, &c->ka_timer, next > now ? next : now + 1000000);
}

int cconn_open(struct endpoint *ep)
{
	struct trpc_channel *ch = ep->ch;
	struct cconn *c = calloc(1, sizeof *c);
	if (c == NULL)
		return TRPC_ERR_NOMEM;
	c->ch = ch;
	c->ep = ep;
	c->connect_timer.fire = on_connect_timeout;
	c->ka_timer.fire = on_keepalive;
	c->state = CC_CONNECTING;
	ep->conn = c;
	ep->state = EP_CONNECTING;
	atomic_fetch_add(&ch->m.connects, 1);
	/* From here on every failure goes through cconn_close, which tells the
	 * channel (backoff, circuit, waiting calls). */
	c->fd = socket(ep->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		cconn_close(c, strerror(errno));
		return TRPC_ERR_SYSTEM;
	}
	int one = 1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
	                         .data.ptr = c};
	if (epoll_ctl(ch->epfd, EPOLL_CTL_ADD, c->fd, &ev) == -1) {
		cconn_close(c, strerror(errno));
		return TRPC_ERR_SYSTEM;
	}
	if (connect(c->fd, (struct sockaddr *)&ep->sa, ep->salen) == -1 && errno != EINPROGRESS) {
		cconn_close(c, strerror(errno));
		return TRPC_ERR_SYSTEM;
	}
	theap_arm(&ch->timers, &c->connect_timer,
	          now_ns() + (int64_t)ch->cfg.connect_timeout_ms * 1000000);
	return 0;
}

static int start_session(struct cconn *c)
{
	pthread_once(&callbacks_once, init_callbacks);
	if (nghttp2_session_client_new(&c->h2, callbacks, c) != 0)
		return TRPC_ERR_NOMEM;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
	};
	if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 3) != 0 ||
	    nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0, 8 << 20) != 0)
		return TRPC_ERR_NOMEM;
	c->state = CC_READY;
	c->last_read = now_ns();
	theap_disarm(&c->ch->timers, &c->connect_timer);
	if (c->ch->cfg.keepalive_time_ms > 0)
		theap_arm(&c->ch->timers, &c->ka_timer,
		          c->last_read + (int64_t)c->ch->cfg.keepalive_time_ms * 1000000);
	cconn_want_flush(c);
	channel_on_connected(c->ep);
	return 0;
}

/* Describes why a TLS handshake failed, naming the certificate problem
 * when verification was the cause. */
static void tls_failure(struct cconn *c, char *out, size_t size)
{
	long vr = SSL_get_verify_result(c->ssl);
	unsigned long e = ERR_peek_last_error();
	char err[200] = "";
	if (e != 0)
		ERR_error_string_n(e, err, sizeof err);
	if (vr != X509_V_OK)
		snprintf(out, size, "TLS handshake with %s failed: certificate verification: %s",
		         c->ep->name, X509_verify_cert_error_string(vr));
	else
		snprintf(out, size, "TLS handshake with %s failed: %s", c->ep->name,
		         err[0] ? err : "connection closed by the server");
}

static int tls_start(struct cconn *c)
{
	struct trpc_channel *ch = c->ch;
	c->ssl = SSL_new(ch->ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	const char *name = ch->cfg.server_name ? ch->cfg.server_name : c->ep->host;
	int is_ip = strchr(name, ':') != NULL || strspn(name, "0123456789.") == strlen(name);
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, name);
	if (!ch->cfg.insecure_skip_verify) {
		X509_VERIFY_PARAM *param = SSL_get0_param(c->ssl);
		if (is_ip)
			X509_VERIFY_PARAM_set1_ip_asc(param, name);
		else
			SSL_set1_host(c->ssl, name);
	}
	SSL_set_connect_state(c->ssl);
	c->state = CC_TLS;
	return 0;
}

static void tls_step(struct cconn *c)
{
	ERR_clear_error();
	int rv = SSL_do_handshake(c->ssl);
	if (rv != 1) {
		int err = SSL_get_error(c->ssl, rv);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return;
		char why[400];
		tls_failure(c, why, sizeof why);
		cconn_close(c, why);
		return;
	}
	const unsigned char *alpn = NULL;
	unsigned alen = 0;
	SSL_get0_alpn_selected(c->ssl, &alpn, &alen);
	if (alen != 2 || memcmp(alpn, "h2", 2) != 0) {
		cconn_close(c, "TLS server did not negotiate HTTP/2 (ALPN h2)");
		return;
	}
	if (start_session(c) != 0)
		cconn_close(c, "out of memory");
}

static void on_connected_socket(struct cconn *c)
{
	int err = 0;
	socklen_t len = sizeof err;
	getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
	if (err != 0) {
		cconn_close(c, strerror(err));
		return;
	}
	if (c->ch->ssl_ctx != NULL) {
		if (tls_start(c) != 0) {
			cconn_close(c, "cannot start TLS");
			return;
		}
		tls_step(c);
		return;
	}
	if (start_session(c) != 0)
		cconn_close(c, "out of memory");
}

/* ------------------------------------------------------------------ I/O */

static void on_readable(struct cconn *c)
{
	struct trpc_channel *ch = c->ch;
	for (;;) {
		int eof;
		int want_write = 0;
		ssize_t n = sockio_read(c->fd, c->ssl, ch->rbuf, ch->rbuf_size, &eof, &want_write);
		if (want_write)
			c->want_write = 1;
		if (n == 0)
			break;
		if (n < 0) {
			char why[300];
			unsigned long e = ERR_peek_last_error();
			if (c->ssl != NULL && e != 0) {
				char err[200];
				ERR_error_string_n(e, err, sizeof err);
				snprintf(why, sizeof why, "TLS error: %s", err);
			} else {
				snprintf(why, sizeof why, "%s",
				         eof ? "connection closed by the server" : strerror(errno));
			}
			cconn_close(c, why);
			return;
		}
		c->last_read = now_ns();
		ssize_t rv = nghttp2_session_mem_recv(c->h2, ch->rbuf, (size_t)n);
		if (rv < 0) {
			cconn_close(c, nghttp2_strerror((int)rv));
			return;
		}
		if (c->state == CC_CLOSED)
			return;
	}
	cconn_want_flush(c);
}

void cconn_on_event(struct cconn *c, uint32_t events)
{
	if (c->state == CC_CLOSED)
		return;
	if (c->state == CC_CONNECTING) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			on_connected_socket(c);
		return;
	}
	if (c->state == CC_TLS) {
		tls_step(c);
		if (c->state != CC_READY)
			return;
	}
	if (events & EPOLLOUT)
		c->want_write = 0;
	if (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP))
		on_readable(c);
	if (c->state != CC_CLOSED)
		cconn_want_flush(c);
}

void cconn_want_flush(struct cconn *c)
{
	if (c->in_flush || c->state == CC_CLOSED)
		return;
	c->in_flush = 1;
	c->flush_next = c->ch->flush_head;
	c->ch->flush_head = c;
}

/* A failed write on TLS usually means the server sent an alert first
 * (e.g. "certificate required"): read it so the error says why. */
static void write_failure(struct cconn *c, char *out, size_t size)
{
	int saved = errno;
	if (c->ssl != NULL) {
		char tmp[256];
		ERR_clear_error();
		SSL_read(c->ssl, tmp, sizeof tmp);
		unsigned long e = ERR_peek_last_error();
		if (e != 0) {
			char err[200];
			ERR_error_string_n(e, err, sizeof err);
			snprintf(out, size, "TLS error: %s", err);
			return;
		}
	}
	snprintf(out, size, "%s", strerror(saved));
}

void cconn_flush(struct cconn *c)
{
	if (c->state != CC_READY)
		return;
	for (;;) {
		const char *reason;
		if (sockio_gather(c->h2, &c->out, 256 * 1024, &reason) != 0) {
			cconn_close(c, reason);
			return;
		}
		if (buf_avail(&c->out) == 0)
			break;
		int would_block = 0;
		int wrv = sockio_write(c->fd, c->ssl, &c->out, &would_block);
		if (would_block)
			c->want_write = 1;
		if (wrv != 0) {
			char why[300];
			write_failure(c, why, sizeof why);
			cconn_close(c, why);
			return;
		}
		if (c->want_write)
			break;
	}
	if (buf_avail(&c->out) == 0 && c->out.cap > 16 * 1024)
		buf_free(&c->out);
	if (c->draining && c->nstreams == 0)
		cconn_close(c, "server sent GOAWAY");
	else if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))
		cconn_close(c, "session ended");
}

void cconn_close(struct cconn *c, const char *why)
{
	if (c->state == CC_CLOSED)
		return;
	struct trpc_channel *ch = c->ch;
	int was_ready = c->state == CC_READY;
	c->state = CC_CLOSED;
	theap_disarm(&ch->timers, &c->connect_timer);
	theap_disarm(&ch->timers, &c->ka_timer);
	if (c->fd != -1)
		epoll_ctl(ch->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	char reason[400];
	snprintf(reason, sizeof reason, "%s", why);
	/* Streams still open end as transport failures (retried if allowed). */
	while (c->streams != NULL) {
		struct trpc_ccall *call = c->streams;
		c->streams = call->s_next;
		call->s_next = call->s_prev = NULL;
		call->conn = NULL;
		c->nstreams--;
		if (!call->have_status)
			ccall_local_error(call, "connection to %s lost: %s", c->ep->name, reason);
		channel_attempt_done(call);
	}
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	if (c->h2 != NULL) {
		nghttp2_session_del(c->h2);
		c->h2 = NULL;
	}
	buf_free(&c->out);
	/* Freed at the end of the loop iteration: callers up the stack may
	 * still look at it. */
	c->dead_next = ch->dead;
	ch->dead = c;
	if (c->ep->conn == c) {
		c->ep->conn = NULL;
		if (was_ready)
			channel_on_conn_closed(c->ep, c, reason);
		else
			channel_on_conn_failed(c->ep, reason);
	}
}

int cconn_available(const struct cconn *c)
{
	return c != NULL && c->state == CC_READY && !c->draining;
}

/* ------------------------------------------------------------------ streams */

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct trpc_ccall *call = source->ptr;
	(void)session;
	(void)stream_id;
	(void)user_data;
	size_t copied = 0;
	pthread_mutex_lock(&call->mu);
	while (copied < length && call->out_head != NULL) {
		struct out_msg *m = call->out_head;
		size_t take = m->len - call->out_off;
		if (take > length - copied)
			take = length - copied;
		memcpy(buf + copied, m->data + call->out_off, take);
		copied += take;
		call->out_off += take;
		if (call->out_off == m->len) {
			call->out_head = m->next;
			if (call->out_head == NULL)
				call->out_tail = NULL;
			call->out_off = 0;
			free(m);
		}
	}
	if (call->out_head == NULL && call->half_closed)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	else if (copied == 0) {
		call->data_deferred = 1;
		pthread_mutex_unlock(&call->mu);
		return NGHTTP2_ERR_DEFERRED;
	}
	pthread_mutex_unlock(&call->mu);
	return (ssize_t)copied;
}

#define NV(n, v, vl)                                                                               \
	(nghttp2_nv)                                                                               \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), strlen(n), (vl), NGHTTP2_NV_FLAG_NONE              \
	}

int cconn_submit(struct cconn *c, struct trpc_ccall *call)
{
	struct trpc_channel *ch = c->ch;
	nghttp2_nv nv[64];
	char *owned[32];
	size_t n = 0, nowned = 0;
	const char *authority = ch->cfg.server_name ? ch->cfg.server_name : c->ep->name;
	nv[n++] = NV(":method", "POST", 4);
	nv[n++] = NV(":scheme", ch->ssl_ctx ? "https" : "http", ch->ssl_ctx ? 5 : 4);
	nv[n++] = NV(":path", call->path, strlen(call->path));
	nv[n++] = NV(":authority", authority, strlen(authority));
	nv[n++] = NV("content-type", "application/grpc", 16);
	nv[n++] = NV("te", "trailers", 8);
	char timeout[16];
	if (call->deadline != INT64_MAX) {
		int64_t left = call->deadline - now_ns();
		size_t tl = codec_format_timeout(left > 0 ? left : 1, timeout);
		nv[n++] = NV("grpc-timeout", timeout, tl);
	}
	if (call->req_encoding != CODEC_IDENTITY) {
		const char *e = codec_encoding_name(call->req_encoding);
		nv[n++] = NV("grpc-encoding", e, strlen(e));
	}
	nv[n++] =
	    NV("grpc-accept-encoding", CODEC_ACCEPT_ENCODING, sizeof CODEC_ACCEPT_ENCODING - 1);
	const char *ua = ch->cfg.user_agent ? ch->cfg.user_agent : "tasker-rpc/" PACKAGE_VERSION;
	nv[n++] = NV("user-agent", ua, strlen(ua));
	char bearer[4096];
	if (ch->cfg.bearer_token != NULL) {
		int bl = snprintf(bearer, sizeof bearer, "Bearer %s", ch->cfg.bearer_token);
		nv[n++] = NV("authorization", bearer, (size_t)bl);
	}
	if (ch->cfg.api_key_header != NULL && ch->cfg.api_key != NULL)
		nv[n++] = NV(ch->cfg.api_key_header, ch->cfg.api_key, strlen(ch->cfg.api_key));
	if (call->traceparent != NULL)
		nv[n++] = NV("traceparent", call->traceparent, strlen(call->traceparent));
	if (call->trace_id != NULL)
		nv[n++] = NV("x-trace-id", call->trace_id, strlen(call->trace_id));
	for (size_t i = 0; i < call->n_md && n < 64; i++) {
		const struct trpc_md *m = &call->md[i];
		size_t kl = strlen(m->key);
		if (kl > 4 && strcmp(m->key + kl - 4, "-bin") == 0 && nowned < 32) {
			char *enc = malloc(4 * ((m->len + 2) / 3) + 1);
			if (enc == NULL)
				continue;
			size_t el = codec_b64_encode(m->value, m->len, enc);
			owned[nowned++] = enc;
			nv[n++] = NV(m->key, enc, el);
		} else {
			nv[n++] = NV(m->key, m->value, m->len);
		}
	}
	nghttp2_data_provider prd = {.source.ptr = call, .read_callback = data_read};
	int32_t id = nghttp2_submit_request(c->h2, NULL, nv, n, &prd, call);
	for (size_t i = 0; i < nowned; i++)
		free(owned[i]);
	if (id < 0)
		return TRPC_ERR_NOMEM;
	call->stream_id = id;
	call->conn = c;
	call->s_prev = NULL;
	call->s_next = c->streams;
	if (c->streams != NULL)
		c->streams->s_prev = call;
	c->streams = call;
	c->nstreams++;
	call->endpoint_name = c->ep->name;
	cconn_want_flush(c);
	return 0;
}

void cconn_resume(struct trpc_ccall *call)
{
	struct cconn *c = call->conn;
	if (c == NULL || c->state != CC_READY)
		return;
	pthread_mutex_lock(&call->mu);
	int deferred = call->data_deferred;
	call->data_deferred = 0;
	pthread_mutex_unlock(&call->mu);
	if (deferred)
		nghttp2_session_resume_data(c->h2, call->stream_id);
	cconn_want_flush(c);
}

void cconn_reset(struct trpc_ccall *call, uint32_t code)
{
	struct cconn *c = call->conn;
	if (c == NULL || c->state != CC_READY)
		return;
	nghttp2_submit_rst_stream(c->h2, NGHTTP2_FLAG_NONE, call->stream_id, code);
	cconn_want_flush(c);
}

static void unlink_stream(struct cconn *c, struct trpc_ccall *call)
{
	if (call->conn != c)
		return;
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

/* ------------------------------------------------------------------ callbacks */

static int add_md(struct trpc_md **arr, size_t *n, size_t *cap, const uint8_t *name, size_t namelen,
                  const uint8_t *value, size_t valuelen)
{
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 8;
		struct trpc_md *v = realloc(*arr, nc * sizeof *v);
		if (v == NULL)
			return -1;
		*arr = v;
		*cap = nc;
	}
	char *k = strndup((const char *)name, namelen);
	char *v = malloc(valuelen + 1);
	if (k == NULL || v == NULL) {
		free(k);
		free(v);
		return -1;
	}
	size_t len = valuelen;
	if (namelen > 4 && memcmp(name + namelen - 4, "-bin", 4) == 0) {
		uint8_t *d = malloc(3 * (valuelen / 4) + 4);
		if (d == NULL || codec_b64_decode((const char *)value, valuelen, d, &len) != 0) {
			free(d);
			memcpy(v, value, valuelen); /* keep it as sent */
			len = valuelen;
		} else {
			memcpy(v, d, len);
			free(d);
		}
	} else {
		memcpy(v, value, valuelen);
	}
	v[len] = '\0';
	(*arr)[*n] = (struct trpc_md){.key = k, .value = v, .len = len};
	(*n)++;
	return 0;
}

static int header_is(const uint8_t *name, size_t len, const char *lit)
{
	return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	(void)flags;
	(void)ud;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct trpc_ccall *call =
	    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call == NULL)
		return 0;
	if (header_is(name, namelen, ":status")) {
		call->http_status = atoi((const char *)value);
		return 0;
	}
	if (header_is(name, namelen, "grpc-status")) {
		char tmp[8];
		snprintf(tmp, sizeof tmp, "%.*s", (int)(valuelen < 7 ? valuelen : 7), value);
		call->status = atoi(tmp);
		if (call->status < 0 || call->status > 16)
			call->status = TRPC_STATUS_UNKNOWN;
		call->have_status = 1;
		return 0;
	}
	if (header_is(name, namelen, "grpc-message")) {
		free(call->message);
		call->message = malloc(valuelen + 1);
		if (call->message != NULL)
			codec_percent_decode((const char *)value, valuelen, call->message);
		return 0;
	}
	if (header_is(name, namelen, "grpc-encoding")) {
		call->resp_encoding = codec_encoding_from_name((const char *)value, valuelen);
		return 0;
	}
	if (header_is(name, namelen, "grpc-retry-pushback-ms")) {
		char tmp[16];
		snprintf(tmp, sizeof tmp, "%.*s", (int)(valuelen < 15 ? valuelen : 15), value);
		call->pushback_ms = tmp[0] == '-' ? -2 : atoi(tmp);
	} else if (header_is(name, namelen, "retry-after") && call->pushback_ms < 0) {
		/* HTTP's hint in seconds (servers under backpressure send it);
		 * grpc-retry-pushback-ms wins when both are present. */
		char tmp[16];
		snprintf(tmp, sizeof tmp, "%.*s", (int)(valuelen < 15 ? valuelen : 15), value);
		if (tmp[0] >= '0' && tmp[0] <= '9')
			call->pushback_ms = atoi(tmp) * 1000;
	}
	if (namelen > 0 && name[0] == ':')
		return 0;
	/* Trailers (or Trailers-Only) go to the status; the rest are headers. */
	int trailer = frame->headers.cat == NGHTTP2_HCAT_HEADERS ||
	              (frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
	if (trailer)
		add_md(&call->trls, &call->n_trls, &call->cap_trls, name, namelen, value, valuelen);
	else
		add_md(&call->hdrs, &call->n_hdrs, &call->cap_hdrs, name, namelen, value, valuelen);
	return 0;
}

static void local_fail(struct trpc_ccall *call, int status, const char *msg)
{
	if (call->have_status && call->status != TRPC_STATUS_OK)
		return;
	call->have_status = 1;
	call->status = status;
	free(call->message);
	call->message = strdup(msg);
}

static int on_msg(void *ud, int compressed, uint8_t *payload, size_t len)
{
	struct trpc_ccall *call = ud;
	if (compressed) {
		if (call->resp_encoding == CODEC_IDENTITY ||
		    call->resp_encoding == CODEC_UNSUPPORTED) {
			free(payload);
			local_fail(call, TRPC_STATUS_INTERNAL,
			           "compressed response message without a supported grpc-encoding");
			return TRPC_ERR_PROTOCOL;
		}
		uint8_t *plain = NULL;
		size_t plen = 0;
		int rv =
		    codec_decompress(call->resp_encoding, payload, len,
		                     (size_t)call->ch->cfg.max_recv_message_size, &plain, &plen);
		free(payload);
		if (rv != 0) {
			local_fail(call,
			           rv == TRPC_ERR_TOO_LARGE ? TRPC_STATUS_RESOURCE_EXHAUSTED
			                                    : TRPC_STATUS_INTERNAL,
			           rv == TRPC_ERR_TOO_LARGE
			               ? "response message larger than the limit"
			               : "cannot decompress a response message");
			return rv;
		}
		payload = plain;
		len = plen;
	}
	ProtobufCMessage *msg = protobuf_c_message_unpack(call->resp_desc, NULL, len, payload);
	free(payload);
	if (msg == NULL) {
		local_fail(call, TRPC_STATUS_INTERNAL, "cannot parse a response message");
		return TRPC_ERR_PROTOCOL;
	}
	call->msgs_received++;
	call->keep_message = 0;
	if (!call->done && call->ops.on_message != NULL)
		call->ops.on_message(call, msg, call->ud);
	if (call->keep_message) {
		if (call->kept != NULL)
			protobuf_c_message_free_unpacked(call->kept, NULL);
		call->kept = msg;
	} else {
		protobuf_c_message_free_unpacked(msg, NULL);
	}
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *ud)
{
	(void)flags;
	(void)ud;
	struct trpc_ccall *call = nghttp2_session_get_stream_user_data(session, stream_id);
	if (call == NULL || call->done)
		return 0;
	int rv = codec_framer_feed(&call->framer, data, len, on_msg, call);
	if (rv != 0) {
		if (rv == TRPC_ERR_TOO_LARGE)
			local_fail(call, TRPC_STATUS_RESOURCE_EXHAUSTED,
			           "response message larger than max_recv_message_size");
		else if (rv != TRPC_ERR_PROTOCOL && rv != TRPC_ERR_ENCODING)
			local_fail(call, TRPC_STATUS_INTERNAL, "malformed response message");
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, stream_id, NGHTTP2_CANCEL);
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct cconn *c = ud;
	switch (frame->hd.type) {
	case NGHTTP2_GOAWAY:
		/* No new streams here; those above last_stream_id are closed
		 * by nghttp2 as refused and retried elsewhere. */
		c->draining = 1;
		if (c->ep->conn == c) {
			c->ep->conn = NULL;
			channel_on_conn_closed(c->ep, c, "server sent GOAWAY");
		}
		return 0;
	case NGHTTP2_PING:
		if (frame->hd.flags & NGHTTP2_FLAG_ACK)
			c->ping_sent = 0;
		return 0;
	case NGHTTP2_HEADERS: {
		struct trpc_ccall *call =
		    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
		if (call == NULL || frame->headers.cat != NGHTTP2_HCAT_RESPONSE)
			return 0;
		/* Trailers-Only (END_STREAM) is a status, not response headers:
		 * such a call may still be retried. */
		if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
			call->headers_received = 1;
		if (call->http_status != 200 && !call->have_status) {
			/* Not a gRPC answer: map the HTTP status as gRPC does. */
			int st = call->http_status;
			int code = st == 400   ? TRPC_STATUS_INTERNAL
			           : st == 401 ? TRPC_STATUS_UNAUTHENTICATED
			           : st == 403 ? TRPC_STATUS_PERMISSION_DENIED
			           : st == 404 ? TRPC_STATUS_UNIMPLEMENTED
			           : (st == 429 || st == 502 || st == 503 || st == 504)
			               ? TRPC_STATUS_UNAVAILABLE
			               : TRPC_STATUS_UNKNOWN;
			char msg[64];
			snprintf(msg, sizeof msg, "HTTP status %d", st);
			local_fail(call, code, msg);
		}
		if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM) && !call->done &&
		    call->ops.on_headers != NULL)
			call->ops.on_headers(call, call->ud);
		return 0;
	}
	default:
		return 0;
	}
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *ud)
{
	struct cconn *c = ud;
	struct trpc_ccall *call = nghttp2_session_get_stream_user_data(session, stream_id);
	if (call == NULL)
		return 0;
	unlink_stream(c, call);
	if (!call->have_status) {
		if (error_code == NGHTTP2_REFUSED_STREAM) {
			/* Never processed by the server: safe to send again. */
			ccall_local_error(call, "%s refused the stream", c->ep->name);
		} else if (!codec_framer_idle(&call->framer)) {
			local_fail(call, TRPC_STATUS_INTERNAL, "stream ended inside a message");
		} else {
			char msg[128];
			snprintf(msg, sizeof msg, "stream reset by the server (HTTP/2 error %u)",
			         error_code);
			local_fail(call,
			           error_code == NGHTTP2_CANCEL ? TRPC_STATUS_CANCELLED
			           : error_code == NGHTTP2_ENHANCE_YOUR_CALM
			               ? TRPC_STATUS_RESOURCE_EXHAUSTED
			               : TRPC_STATUS_INTERNAL,
			           msg);
			if (error_code == NGHTTP2_NO_ERROR)
				local_fail(call, TRPC_STATUS_INTERNAL,
				           "stream ended without a grpc-status");
		}
	}
	channel_attempt_done(call);
	if (c->draining && c->nstreams == 0)
		cconn_want_flush(c);
	return 0;
}

static void init_callbacks(void)
{
	nghttp2_session_callbacks_new(&callbacks);
	nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
}
