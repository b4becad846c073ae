/*
 * conn: one HTTP/2 connection on its loop. nghttp2 does the framing; this
 * file maps streams to gRPC calls: request headers -> method, metadata,
 * deadline, encodings; DATA -> reassembled messages -> handler events;
 * handler output -> response HEADERS, DATA and trailers.
 *
 * Everything here runs on the owning I/O thread, except conn_ref/unref.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "call.h"
#include "codec.h"
#include "conn.h"
#include "keepalive.h"
#include "loop.h"
#include "pool.h"
#include "ratelimit.h"
#include "server.h"
#include "sockio.h"

#define MAX_READS_PER_WAKE 32

static nghttp2_session_callbacks *callbacks;
static nghttp2_option *h2_options;
static pthread_once_t callbacks_once = PTHREAD_ONCE_INIT;
static void init_callbacks(void);

void conn_ref(struct conn *c)
{
	atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
}

void conn_unref(struct conn *c)
{
	if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1) {
		free(c->tls_subject);
		free(c);
	}
}

static void registry_add(struct loop *l, struct conn *c)
{
	pthread_mutex_lock(&l->reg_mu);
	c->reg_prev = NULL;
	c->reg_next = l->conns;
	if (l->conns != NULL)
		l->conns->reg_prev = c;
	l->conns = c;
	l->nconns++;
	pthread_mutex_unlock(&l->reg_mu);
}

static void registry_remove(struct loop *l, struct conn *c)
{
	pthread_mutex_lock(&l->reg_mu);
	if (c->reg_prev != NULL)
		c->reg_prev->reg_next = c->reg_next;
	else
		l->conns = c->reg_next;
	if (c->reg_next != NULL)
		c->reg_next->reg_prev = c->reg_prev;
	l->nconns--;
	pthread_mutex_unlock(&l->reg_mu);
}

static void format_peer(const struct sockaddr_storage *sa, char *out, size_t size)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
		snprintf(out, size, "ipv4:%s:%u", host, ntohs(in->sin_port));
	} else if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
		snprintf(out, size, "ipv6:[%s]:%u", host, ntohs(in6->sin6_port));
	} else {
		snprintf(out, size, "unknown");
	}
}

/* ------------------------------------------------------------------ session */

static int start_session(struct conn *c)
{
	pthread_once(&callbacks_once, init_callbacks);
	struct trpc_server *srv = c->loop->srv;
	nghttp2_option *opt;
	if (nghttp2_option_new(&opt) != 0)
		return TRPC_ERR_NOMEM;
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_stream_reset_rate_limit(opt, (uint64_t)srv->cfg.stream_reset_burst,
	                                           (uint64_t)srv->cfg.stream_reset_rate);
	nghttp2_option_set_max_continuations(opt, (size_t)srv->cfg.max_continuations);
	/* Client PINGs are counted against the ping-strike policy before nghttp2
	 * answers them; nghttp2 still sends the ACKs itself. */
	int rv = nghttp2_session_server_new2(&c->h2, callbacks, c, opt);
	nghttp2_option_del(opt);
	if (rv != 0)
		return TRPC_ERR_NOMEM;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, (uint32_t)srv->cfg.max_concurrent_streams},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, (uint32_t)srv->cfg.initial_window_size},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)srv->cfg.max_header_list_size},
	};
	rv = nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]);
	if (rv == 0 && srv->cfg.initial_window_size > 65535)
		/* The connection window is not covered by SETTINGS; open it too so
		 * one stream does not starve the others. */
		rv = nghttp2_session_set_local_window_size(c->h2, NGHTTP2_FLAG_NONE, 0,
		                                           srv->cfg.initial_window_size * 4);
	return rv == 0 ? 0 : TRPC_ERR_NOMEM;
}

int conn_accept(struct loop *l, int fd, const struct sockaddr_storage *sa, int tls)
{
	struct trpc_server *srv = l->srv;
	struct conn *c = calloc(1, sizeof *c);
	if (c == NULL) {
		close(fd);
		return TRPC_ERR_NOMEM;
	}
	atomic_init(&c->refs, 1); /* the loop's */
	c->loop = l;
	c->fd = fd;
	c->created = now_ns();
	atomic_init(&c->last_read, c->created);
	atomic_init(&c->idle_since, c->created);
	format_peer(sa, c->peer, sizeof c->peer);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

	if (tls) {
		c->ssl = server_ssl_new(srv);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1)
			goto fail;
		SSL_set_accept_state(c->ssl);
		c->state = CONN_TLS_HANDSHAKE;
	} else {
		if (start_session(c) != 0)
			goto fail;
		c->state = CONN_PREFACE;
	}
	struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP,
	                         .data.ptr = c};
	if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
		goto fail;
	registry_add(l, c);
	trpc_log(TRPC_LOG_DEBUG, "accepted %s%s", c->peer, tls ? " (tls)" : "");
	if (!tls)
		loop_want_flush(l, c); /* our SETTINGS go out at once */
	return 0;
fail:
	trpc_log(TRPC_LOG_WARN, "cannot set up connection from %s", c->peer);
	if (c->ssl != NULL)
		SSL_free(c->ssl);
	if (c->h2 != NULL)
		nghttp2_session_del(c->h2);
	close(fd);
	free(c);
	return TRPC_ERR_NOMEM;
}

void conn_close(struct conn *c, const char *why)
{
	if (c->state == CONN_CLOSED)
		return;
	struct loop *l = c->loop;
	trpc_log(TRPC_LOG_DEBUG, "closing %s: %s", c->peer, why ? why : "done");
	if (c->state == CONN_TLS_HANDSHAKE) {
		/* Failed, timed out, or the peer gave up: all end here. */
		metric_inc(&l->slab->counters[MC_TLS_HANDSHAKES]);
		metric_inc(&l->slab->counters[MC_TLS_FAILURES]);
	}
	c->state = CONN_CLOSED;
	epoll_ctl(l->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl != NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	close(c->fd);
	c->fd = -1;
	/* nghttp2_session_del does not report stream closes: cancel every open
	 * call ourselves. */
	while (c->calls != NULL) {
		struct trpc_call *call = c->calls;
		c->calls = call->io_next;
		call->io_next = call->io_prev = NULL;
		call_stream_closed(call, 1, &l->batch);
	}
	if (c->h2 != NULL) {
		nghttp2_session_del(c->h2);
		c->h2 = NULL;
	}
	buf_free(&c->out);
	registry_remove(l, c);
	atomic_fetch_sub(&l->srv->nconns, 1);
	conn_unref(c); /* the loop's */
}

/* ------------------------------------------------------------------ I/O */

static int tls_handshake(struct conn *c)
{
	ERR_clear_error();
	int rv = SSL_do_handshake(c->ssl);
	if (rv != 1) {
		int err = SSL_get_error(c->ssl, rv);
		if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE)
			return 0;
		char buf[160];
		ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
		trpc_log(TRPC_LOG_INFO, "TLS handshake with %s failed: %s", c->peer, buf);
		return -1;
	}
	const unsigned char *alpn = NULL;
	unsigned alpn_len = 0;
	SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
	if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
		trpc_log(TRPC_LOG_INFO, "TLS client %s did not negotiate h2", c->peer);
		return -1;
	}
	X509 *cert = SSL_get1_peer_certificate(c->ssl);
	if (cert != NULL) {
		char *subj = X509_NAME_oneline(X509_get_subject_name(cert), NULL, 0);
		if (subj != NULL) {
			c->tls_subject = strdup(subj);
			OPENSSL_free(subj);
		}
		X509_free(cert);
	}
	if (start_session(c) != 0)
		return -1;
	c->state = CONN_PREFACE;
	metric_inc(&c->loop->slab->counters[MC_TLS_HANDSHAKES]);
	return 1;
}

void conn_on_readable(struct conn *c)
{
	struct loop *l = c->loop;
	if (c->state == CONN_CLOSED)
		return;
	if (l->paused) {
		/* Backpressure: leave the bytes in the kernel; the peer's TCP
		 * window fills and it slows down. We read again on resume. */
		c->read_blocked = 1;
		return;
	}
	if (c->state == CONN_TLS_HANDSHAKE) {
		int rv = tls_handshake(c);
		if (rv < 0) {
			conn_close(c, "TLS handshake failed");
			return;
		}
		loop_want_flush(l, c);
		if (rv == 0)
			return;
	}
	for (int i = 0; i < MAX_READS_PER_WAKE; i++) {
		int eof, want_write = 0;
		ssize_t n = sockio_read(c->fd, c->ssl, l->rbuf, l->rbuf_size, &eof, &want_write);
		if (want_write)
			c->want_write = 1;
		if (n == 0)
			break;
		if (n < 0) {
			/* EOF or reset: what nghttp2 still has to say cannot be
			 * delivered anyway. */
			conn_close(c, "peer closed the connection");
			return;
		}
		atomic_store(&c->last_read, now_ns());
		ssize_t rv = nghttp2_session_mem_recv(c->h2, l->rbuf, (size_t)n);
		if (rv < 0) {
			trpc_log(TRPC_LOG_INFO, "HTTP/2 error from %s: %s", c->peer,
			         nghttp2_strerror((int)rv));
			metric_inc(&l->slab->counters[MC_GOAWAY + GOAWAY_PROTOCOL_ERROR]);
			/* nghttp2 has queued a GOAWAY where the protocol asks for
			 * one: flush it, then close. */
			c->close_after_flush = 1;
			loop_want_flush(l, c);
			return;
		}
		if (c->state == CONN_CLOSED)
			return;
		if (l->paused) {
			c->read_blocked = 1;
			break;
		}
		if (i == MAX_READS_PER_WAKE - 1) {
			/* Fairness: give other connections a turn. Edge-triggered
			 * epoll will not tell us again, so ask the loop to. */
			c->read_blocked = 1;
			loop_post(l, LOOP_CMD_RESUME, NULL, 0, NULL);
		}
	}
	loop_want_flush(l, c);
}

void conn_on_writable(struct conn *c)
{
	if (c->state == CONN_CLOSED)
		return;
	if (c->state == CONN_TLS_HANDSHAKE) {
		conn_on_readable(c);
		return;
	}
	c->want_write = 0;
	loop_want_flush(c->loop, c);
}

void conn_flush(struct conn *c)
{
	if (c->state == CONN_CLOSED || c->state == CONN_TLS_HANDSHAKE)
		return;
	for (;;) {
		/* Coalesce everything nghttp2 has into one buffer and write it
		 * with as few syscalls as possible. */
		const char *why;
		if (sockio_gather(c->h2, &c->out, 256 * 1024, &why) != 0) {
			conn_close(c, why);
			return;
		}
		if (buf_avail(&c->out) == 0)
			break;
		int would_block = 0;
		int wrv = sockio_write(c->fd, c->ssl, &c->out, &would_block);
		if (would_block)
			c->want_write = 1;
		if (wrv != 0) {
			conn_close(c, "write failed");
			return;
		}
		if (c->want_write)
			break;
	}
	if (buf_avail(&c->out) == 0 && c->out.cap > 16 * 1024)
		buf_free(&c->out); /* idle connections keep no big buffers */
	if (buf_avail(&c->out) == 0 &&
	    (c->close_after_flush ||
	     (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2))))
		conn_close(c, c->close_after_flush ? "closed after error" : "session finished");
}

/* ------------------------------------------------------------------ keepalive */

void conn_send_ping(struct conn *c)
{
	if (c->state != CONN_OPEN)
		return;
	uint8_t data[8] = {'t', 'r', 'p', 'c', 'k', 'a', 0, 0};
	if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, data) == 0) {
		atomic_store(&c->ping_sent, now_ns());
		loop_want_flush(c->loop, c);
	}
}

void conn_goaway(struct conn *c, uint32_t error_code, const char *text, int graceful)
{
	if (c->state == CONN_CLOSED)
		return;
	if (c->h2 == NULL || c->state == CONN_TLS_HANDSHAKE) {
		conn_close(c, text);
		return;
	}
	size_t tlen = text ? strlen(text) : 0;
	int32_t last = nghttp2_session_get_last_proc_stream_id(c->h2);
	if (!c->goaway_sent || !graceful) {
		nghttp2_submit_goaway(c->h2, NGHTTP2_FLAG_NONE, last, error_code,
		                      (const uint8_t *)text, tlen);
		c->goaway_sent = 1;
		atomic_store(&c->goaway_at, now_ns());
	}
	if (!graceful)
		c->close_after_flush = 1;
	trpc_log(TRPC_LOG_DEBUG, "GOAWAY to %s: %s", c->peer, text ? text : "");
	loop_want_flush(c->loop, c);
}

/* ------------------------------------------------------------------ responses */

struct nvbuf {
	nghttp2_nv nv[64];
	size_t n;
	char *owned[64]; /* encoded values freed after submit */
	size_t nowned;
};

static void nv_add(struct nvbuf *b, const char *name, const char *value, size_t vlen)
{
	if (b->n == sizeof b->nv / sizeof b->nv[0])
		return;
	b->nv[b->n++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), vlen,
	                             NGHTTP2_NV_FLAG_NONE};
}

static void nv_add_owned(struct nvbuf *b, const char *name, char *value, size_t vlen)
{
	if (value == NULL || b->nowned == sizeof b->owned / sizeof b->owned[0]) {
		free(value);
		return;
	}
	b->owned[b->nowned++] = value;
	nv_add(b, name, value, vlen);
}

static void nv_add_md(struct nvbuf *b, const struct md *md, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		size_t klen = strlen(md[i].key);
		if (klen > 4 && strcmp(md[i].key + klen - 4, "-bin") == 0) {
			char *enc = malloc(4 * ((md[i].len + 2) / 3) + 1);
			if (enc == NULL)
				continue;
			size_t elen =
			    codec_b64_encode((const uint8_t *)md[i].value, md[i].len, enc);
			nv_add_owned(b, md[i].key, enc, elen);
		} else {
			nv_add(b, md[i].key, md[i].value, md[i].len);
		}
	}
}

static void nv_free(struct nvbuf *b)
{
	for (size_t i = 0; i < b->nowned; i++)
		free(b->owned[i]);
}

static const char *status_digits[17] = {"0", "1",  "2",  "3",  "4",  "5",  "6",  "7", "8",
                                        "9", "10", "11", "12", "13", "14", "15", "16"};

/* Adds grpc-status, grpc-message and trailing metadata (call->mu held). */
static void nv_add_status(struct nvbuf *b, struct trpc_call *call)
{
	int st = call->finish_status;
	nv_add(b, "grpc-status", status_digits[st], strlen(status_digits[st]));
	if (call->finish_msg != NULL) {
		size_t len = strlen(call->finish_msg);
		char *enc = malloc(3 * len + 1);
		if (enc != NULL) {
			size_t elen = codec_percent_encode(call->finish_msg, len, enc);
			nv_add_owned(b, "grpc-message", enc, elen);
		}
	}
	nv_add_md(b, call->trail_md, call->n_trail_md);
}

static void nv_add_response_headers(struct nvbuf *b, struct trpc_call *call, int http_status)
{
	static const char *codes[] = {"200", "400", "405", "415", "431"};
	const char *code = "200";
	for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
		if (atoi(codes[i]) == http_status)
			code = codes[i];
	nv_add(b, ":status", code, 3);
	nv_add(b, "content-type", "application/grpc", 16);
	if (call->resp_encoding != CODEC_IDENTITY) {
		const char *e = codec_encoding_name(call->resp_encoding);
		nv_add(b, "grpc-encoding", e, strlen(e));
	}
	nv_add(b, "grpc-accept-encoding", CODEC_ACCEPT_ENCODING, sizeof CODEC_ACCEPT_ENCODING - 1);
	nv_add_md(b, call->resp_md, call->n_resp_md);
}

static ssize_t data_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct trpc_call *call = source->ptr;
	size_t copied = 0;
	pthread_mutex_lock(&call->mu);
	size_t before = call->out_bytes;
	while (copied < length && call->out_head != NULL) {
		struct out_msg *m = call->out_head;
		size_t take = m->len - call->out_off;
		if (take > length - copied)
			take = length - copied;
		memcpy(buf + copied, m->data + call->out_off, take);
		copied += take;
		call->out_off += take;
		if (call->out_off == m->len) {
			metric_inc(&call->conn->loop->slab->methods[call->midx].msg_sent);
			call->out_head = m->next;
			if (call->out_head == NULL)
				call->out_tail = NULL;
			call->out_off = 0;
			free(m);
		}
	}
	call->out_bytes -= copied;
	size_t bound = (size_t)call->srv->cfg.max_outbound_bytes;
	if (before >= bound && call->out_bytes < bound)
		pthread_cond_broadcast(&call->cv);
	if (call->out_head == NULL && call->finished) {
		struct nvbuf b = {0};
		nv_add_status(&b, call);
		call->status_sent = 1;
		*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		int rv = nghttp2_submit_trailer(session, stream_id, b.nv, b.n);
		nv_free(&b);
		if (rv != 0) {
			pthread_mutex_unlock(&call->mu);
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		}
	} else if (copied == 0) {
		call->data_deferred = 1;
		pthread_mutex_unlock(&call->mu);
		return NGHTTP2_ERR_DEFERRED;
	}
	pthread_mutex_unlock(&call->mu);
	(void)user_data;
	return (ssize_t)copied;
}

/* Returns received bytes to the peer's window (stream and connection) when
 * no message waits for the handler, or always with `force` (nobody will
 * take them). Returns 1 if a WINDOW_UPDATE may be due. */
static int credit_window_ex(struct conn *c, struct trpc_call *call, int force)
{
	if (call->io_fed == call->io_credited)
		return 0;
	if (!force && atomic_load(&call->pending_msgs) > 0)
		return 0;
	nghttp2_session_consume(c->h2, call->stream_id, call->io_fed - call->io_credited);
	call->io_credited = call->io_fed;
	return 1;
}

static int credit_window(struct conn *c, struct trpc_call *call)
{
	return credit_window_ex(c, call, 0);
}

void conn_process_call(struct conn *c, struct trpc_call *call)
{
	if (c->state == CONN_CLOSED || c->h2 == NULL) {
		return;
	}
	if (credit_window(c, call))
		loop_want_flush(c->loop, c);
	pthread_mutex_lock(&call->mu);
	if (call->io_closed || call->status_sent) {
		pthread_mutex_unlock(&call->mu);
		return;
	}
	int rv = 0;
	if (!call->headers_sent) {
		if (call->finished && call->out_head == NULL) {
			/* Trailers-Only: one HEADERS frame with END_STREAM. */
			struct nvbuf b = {0};
			nv_add_response_headers(&b, call,
			                        call->reject_http ? call->reject_http : 200);
			nv_add_status(&b, call);
			call->headers_sent = 1;
			call->status_sent = 1;
			rv = nghttp2_submit_response(c->h2, call->stream_id, b.nv, b.n, NULL);
			nv_free(&b);
		} else if (call->out_head != NULL) {
			struct nvbuf b = {0};
			nv_add_response_headers(&b, call, 200);
			call->headers_sent = 1;
			nghttp2_data_provider prd = {.source.ptr = call,
			                             .read_callback = data_read};
			rv = nghttp2_submit_response(c->h2, call->stream_id, b.nv, b.n, &prd);
			nv_free(&b);
		}
	} else if (call->data_deferred && (call->out_head != NULL || call->finished)) {
		call->data_deferred = 0;
		rv = nghttp2_session_resume_data(c->h2, call->stream_id);
	}
	pthread_mutex_unlock(&call->mu);
	if (rv != 0)
		trpc_log(TRPC_LOG_WARN, "cannot submit response on stream %d of %s: %s",
		         call->stream_id, c->peer, nghttp2_strerror(rv));
	loop_want_flush(c->loop, c);
}

/* ------------------------------------------------------------------ requests */

static void reject(struct trpc_call *call, int http, int status, const char *msg)
{
	if (call->reject_status != 0 || call->reject_http != 0)
		return;
	call->reject_http = http;
	call->reject_status = status;
	call->reject_msg = msg;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct conn *c = ud;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct trpc_call *call = call_new(c->loop->srv, c, frame->hd.stream_id);
	if (call == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, call);
	call->io_next = c->calls;
	if (c->calls != NULL)
		c->calls->io_prev = call;
	c->calls = call;
	atomic_fetch_add(&c->nstreams, 1);
	atomic_store(&c->idle_since, 0);
	metric_inc(&c->loop->slab->counters[MC_STREAMS_OPENED]);
	return 0;
}

static int header_is(const uint8_t *name, size_t namelen, const char *lit)
{
	size_t l = strlen(lit);
	return namelen == l && memcmp(name, lit, l) == 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct conn *c = ud;
	struct trpc_server *srv = c->loop->srv;
	(void)flags;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0; /* client trailers carry nothing gRPC defines */
	struct trpc_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call == NULL)
		return 0;
	/* nghttp2 advertises SETTINGS_MAX_HEADER_LIST_SIZE but does not enforce
	 * it; the size counts as RFC 9113 defines it (32 bytes per field). */
	call->header_bytes += namelen + valuelen + 32;
	if (call->header_bytes > (size_t)srv->cfg.max_header_list_size) {
		reject(call, 431, TRPC_STATUS_RESOURCE_EXHAUSTED,
		       "request header list exceeds the server's limit");
		return 0;
	}
	if (call->reject_http != 0)
		return 0;
	const char *v = (const char *)value;
	if (namelen > 0 && name[0] == ':') {
		if (header_is(name, namelen, ":method")) {
			call->method_ok = valuelen == 4 && memcmp(v, "POST", 4) == 0;
		} else if (header_is(name, namelen, ":path")) {
			call->path = arena_strndup(&call->arena, v, valuelen);
			call->method = server_find_method(srv, v, valuelen);
		}
		return 0;
	}
	if (header_is(name, namelen, "content-type")) {
		call->ct_ok = valuelen >= 16 && memcmp(v, "application/grpc", 16) == 0 &&
		              (valuelen == 16 || v[16] == '+' || v[16] == ';');
		return 0;
	}
	if (header_is(name, namelen, "te")) {
		call->te_ok = valuelen == 8 && memcmp(v, "trailers", 8) == 0;
		return 0;
	}
	if (header_is(name, namelen, "grpc-timeout")) {
		if (codec_parse_timeout(v, valuelen, &call->timeout_ns) != 0)
			call->bad_timeout = 1;
		return 0;
	}
	if (header_is(name, namelen, "grpc-encoding")) {
		call->req_encoding = codec_encoding_from_name(v, valuelen);
		if (call->req_encoding == CODEC_UNSUPPORTED) {
			char *msg = arena_alloc(&call->arena, valuelen + 96);
			if (msg != NULL)
				snprintf(msg, valuelen + 96,
				         "grpc-encoding \"%.*s\" is not supported; accepted: %s",
				         (int)valuelen, v, CODEC_ACCEPT_ENCODING);
			reject(call, 200, TRPC_STATUS_UNIMPLEMENTED,
			       msg ? msg : "unsupported grpc-encoding");
		}
		return 0;
	}
	if (header_is(name, namelen, "grpc-accept-encoding")) {
		call->accept_encoding = arena_strndup(&call->arena, v, valuelen);
		call->accept_encoding_len = valuelen;
		return 0;
	}
	int rv = call_add_md(call, (const char *)name, namelen, v, valuelen);
	if (rv == TRPC_ERR_PROTOCOL)
		reject(call, 200, TRPC_STATUS_INTERNAL, "invalid base64 in a -bin metadata value");
	else if (rv != 0)
		reject(call, 200, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	return 0;
}

/* Ends a call from the I/O side before or after dispatch. */
static void io_fail(struct conn *c, struct trpc_call *call, int status, const char *msg)
{
	call_fail(call, status, msg, &c->loop->batch);
}

static void dispatch(struct conn *c, struct trpc_call *call, int type, uint8_t *payload, size_t len)
{
	/* call_fail (any thread) reads dispatched under the lock */
	pthread_mutex_lock(&call->mu);
	int first = !call->dispatched;
	call->dispatched = 1;
	pthread_mutex_unlock(&call->mu);
	if (first) {
		call_ref(call); /* the handler's hold, released by trpc_call_finish */
		if (call->deadline != INT64_MAX)
			keepalive_add_deadline(c->loop->srv->ka, call);
	}
	call_post(call, type, payload, len, &c->loop->batch);
}

/* The work queue as a new call would see it: the pool plus what this loop
 * has read in the current wake-up but not pushed yet. */
static int overloaded(struct loop *l)
{
	struct pool *p = l->srv->pool;
	return pool_overloaded(p) || pool_depth_hint(p) + l->batch.n >= pool_high_watermark(p);
}

/*
 * ratelimit.key = peer: one token of the (service, peer IP) bucket per call,
 * before the handler runs. Returns 1 after rejecting the call.
 */
static int rate_limited(struct conn *c, struct trpc_call *call)
{
	struct ratelimit *rl = c->loop->srv->ratelimit;
	if (!ratelimit_active(rl, RATELIMIT_KEY_PEER))
		return 0;
	char ip[64];
	ratelimit_peer_ip(c->peer, ip, sizeof ip);
	const char *svc = call->method->svc->name;
	int64_t retry_ms = 0;
	if (ratelimit_take(rl, svc, strlen(svc), ip, &retry_ms) == 0)
		return 0;
	ratelimit_add_hints(call, retry_ms);
	size_t sz = strlen(ip) + 96;
	char *msg = arena_alloc(&call->arena, sz);
	if (msg != NULL)
		snprintf(msg, sz, "rate limit exceeded for %s; retry in %lld ms", ip,
		         (long long)retry_ms);
	reject(call, 200, TRPC_STATUS_RESOURCE_EXHAUSTED, msg ? msg : "rate limit exceeded");
	return 1;
}

static void on_request_headers(struct conn *c, struct trpc_call *call)
{
	struct trpc_server *srv = c->loop->srv;
	char *msg;
	call->midx =
	    call->method != NULL ? call->method->midx : metrics_unknown_slot(&srv->metrics);
	metric_inc(&c->loop->slab->methods[call->midx].started);
	if (call->reject_http == 0) {
		if (!call->method_ok)
			reject(call, 405, TRPC_STATUS_INTERNAL, "gRPC requires the POST method");
		else if (!call->ct_ok)
			reject(call, 415, TRPC_STATUS_INTERNAL,
			       "content-type must be application/grpc");
		else if (!call->te_ok)
			reject(call, 400, TRPC_STATUS_INTERNAL,
			       "the te header must be \"trailers\"");
		else if (call->bad_timeout)
			reject(call, 200, TRPC_STATUS_INTERNAL, "malformed grpc-timeout");
		else if (call->method == NULL) {
			const char *p = call->path ? call->path : "";
			const char *slash = p[0] == '/' ? strchr(p + 1, '/') : NULL;
			int known = slash != NULL &&
			            server_has_service(srv, p + 1, (size_t)(slash - p - 1));
			size_t sz = strlen(p) + 64;
			msg = arena_alloc(&call->arena, sz);
			if (msg != NULL)
				snprintf(msg, sz,
				         known ? "unknown method %s" : "unknown service %s", p);
			reject(call, 200, TRPC_STATUS_UNIMPLEMENTED, msg ? msg : "unknown method");
		} else if (rate_limited(c, call)) {
			/* rate_limited() has set the trailers and the status */
		} else if (overloaded(c->loop) || atomic_load(&srv->shutting_down)) {
			char pushback[16];
			int n =
			    snprintf(pushback, sizeof pushback, "%d", srv->cfg.retry_pushback_ms);
			trpc_call_add_trailing_metadata(call, "grpc-retry-pushback-ms", pushback,
			                                (size_t)n);
			if (atomic_load(&srv->shutting_down))
				reject(call, 200, TRPC_STATUS_UNAVAILABLE,
				       "server is shutting down");
			else
				reject(call, 200, TRPC_STATUS_RESOURCE_EXHAUSTED,
				       "server overloaded; retry later");
		}
	}
	if (call->reject_http != 0) {
		io_fail(c, call, call->reject_status, call->reject_msg);
		return;
	}
	if (call->timeout_ns > 0) {
		int64_t now = now_ns();
		call->deadline =
		    call->timeout_ns > INT64_MAX - now ? INT64_MAX : now + call->timeout_ns;
	}
	const struct trpc_method *m = call->method->m;
	if (m->handler == NULL)
		dispatch(c, call, CALL_EV_START, NULL, 0);
	else if (call->deadline != INT64_MAX)
		/* Unary calls are dispatched at END_STREAM, but their deadline
		 * runs from now. */
		keepalive_add_deadline(srv->ka, call);
}

static int on_message(void *ud, int compressed, uint8_t *payload, size_t len)
{
	struct trpc_call *call = ud;
	struct conn *c = call->conn;
	if (compressed) {
		if (call->req_encoding == CODEC_IDENTITY) {
			free(payload);
			io_fail(c, call, TRPC_STATUS_INTERNAL,
			        "compressed message without a grpc-encoding");
			return TRPC_ERR_PROTOCOL;
		}
		uint8_t *plain = NULL;
		size_t plen = 0;
		int rv = codec_decompress(call->req_encoding, payload, len,
		                          (size_t)c->loop->srv->cfg.max_recv_message_size, &plain,
		                          &plen);
		free(payload);
		if (rv != 0) {
			io_fail(c, call,
			        rv == TRPC_ERR_TOO_LARGE ? TRPC_STATUS_RESOURCE_EXHAUSTED
			                                 : TRPC_STATUS_INTERNAL,
			        rv == TRPC_ERR_TOO_LARGE
			            ? "decompressed message larger than the server's limit"
			            : "cannot decompress a request message");
			return rv;
		}
		payload = plain;
		len = plen;
	}
	call->nmsgs++;
	metric_inc(&c->loop->slab->methods[call->midx].msg_recv);
	if (call->method->m->handler != NULL) {
		if (call->nmsgs > 1) {
			free(payload);
			io_fail(c, call, TRPC_STATUS_INTERNAL,
			        "more than one request message for a unary request");
			return TRPC_ERR_PROTOCOL;
		}
		call->unary_payload = payload;
		call->unary_len = len;
		atomic_fetch_add(&call->pending_msgs, 1);
		return 0;
	}
	atomic_fetch_add(&call->pending_msgs, 1);
	dispatch(c, call, CALL_EV_MESSAGE, payload, len);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *ud)
{
	struct conn *c = ud;
	(void)flags;
	struct trpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
	int finished = 0;
	if (call != NULL) {
		pthread_mutex_lock(&call->mu);
		finished = call->finished;
		pthread_mutex_unlock(&call->mu);
	}
	if (call == NULL || finished || call->method == NULL) {
		/* Nobody will take these bytes: credit them at once. */
		nghttp2_session_consume(session, stream_id, len);
		return 0;
	}
	call->io_fed += len;
	int rv = codec_framer_feed(&call->framer, data, len, on_message, call);
	if (rv == TRPC_ERR_TOO_LARGE) {
		char msg[96];
		snprintf(msg, sizeof msg, "received message larger than max (%zu vs. %d)",
		         call->framer.len, c->loop->srv->cfg.max_recv_message_size);
		io_fail(c, call, TRPC_STATUS_RESOURCE_EXHAUSTED, msg);
	} else if (rv == TRPC_ERR_PROTOCOL && !call->finished) {
		io_fail(c, call, TRPC_STATUS_INTERNAL, "invalid message flags");
	} else if (rv == TRPC_ERR_NOMEM) {
		io_fail(c, call, TRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
	}
	if (rv != 0) {
		/* The call is over: nobody will take what was received. */
		credit_window_ex(c, call, 1);
		codec_framer_clear(&call->framer);
		codec_framer_init(&call->framer, 0);
		return 0;
	}
	/* Partial messages are credited as they arrive (the framer bounds
	 * them by max_recv_message_size); complete ones wait for the handler. */
	credit_window(c, call);
	return 0;
}

static void on_remote_end(struct conn *c, struct trpc_call *call)
{
	call->remote_closed = 1;
	pthread_mutex_lock(&call->mu);
	int finished = call->finished;
	pthread_mutex_unlock(&call->mu);
	if (finished || call->method == NULL)
		return;
	if (!codec_framer_idle(&call->framer)) {
		io_fail(c, call, TRPC_STATUS_INTERNAL, "stream ended inside a message");
		return;
	}
	if (call->method->m->handler != NULL) {
		if (call->nmsgs == 0) {
			io_fail(c, call, TRPC_STATUS_INTERNAL,
			        "no request message for a unary request");
			return;
		}
		uint8_t *p = call->unary_payload;
		call->unary_payload = NULL;
		dispatch(c, call, CALL_EV_MESSAGE, p, call->unary_len);
		return;
	}
	dispatch(c, call, CALL_EV_HALF_CLOSE, NULL, 0);
}

static void on_ping(struct conn *c, const nghttp2_frame *frame)
{
	struct trpc_server *srv = c->loop->srv;
	if (frame->hd.flags & NGHTTP2_FLAG_ACK) {
		atomic_store(&c->ping_sent, 0);
		atomic_fetch_and(&c->ka_flags, ~KA_PING_POSTED);
		return;
	}
	/* Ping-strike policy: a PING sooner than min_ping_interval after the
	 * previous one, with no HEADERS or DATA sent in between (or with no
	 * open call when that is not permitted), is a strike. */
	int64_t now = now_ns();
	int64_t min = (int64_t)srv->cfg.min_ping_interval_ms * 1000000;
	int idle = atomic_load(&c->nstreams) == 0;
	int too_soon = c->last_ping_recv != 0 && now - c->last_ping_recv < min;
	if (too_soon || (idle && !srv->cfg.permit_keepalive_without_calls &&
	                 c->last_ping_recv != 0 && now - c->last_ping_recv < 2 * min))
		c->ping_strikes++;
	c->last_ping_recv = now;
	if (c->ping_strikes > srv->cfg.max_ping_strikes) {
		trpc_log(TRPC_LOG_INFO, "%s sent too many pings: GOAWAY", c->peer);
		if (!c->close_after_flush)
			metric_inc(&c->loop->slab->counters[MC_GOAWAY + GOAWAY_TOO_MANY_PINGS]);
		conn_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM, "too_many_pings", 0);
	}
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct conn *c = ud;
	switch (frame->hd.type) {
	case NGHTTP2_SETTINGS:
		if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && c->state == CONN_PREFACE) {
			c->state = CONN_OPEN;
			atomic_store(&c->handshaken, 1);
		}
		return 0;
	case NGHTTP2_PING:
		on_ping(c, frame);
		return 0;
	case NGHTTP2_HEADERS:
	case NGHTTP2_DATA:
		break;
	default:
		return 0;
	}
	struct trpc_call *call = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
	if (call == NULL)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		on_request_headers(c, call);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		on_remote_end(c, call);
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *ud)
{
	struct conn *c = ud;
	if (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) {
		/* Sending HEADERS or DATA resets the ping strikes, as in gRPC. */
		c->ping_strikes = 0;
		c->last_ping_recv = 0;
	}
	if (frame->hd.type == NGHTTP2_GOAWAY) {
		c->goaway_sent = 1;
		if (atomic_load(&c->goaway_at) == 0)
			atomic_store(&c->goaway_at, now_ns());
		return 0;
	}
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		struct trpc_call *call =
		    nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
		if (call != NULL && !call->remote_closed) {
			/* Our side is done but the client still sends: end the
			 * stream so it stops (CANCEL when the deadline passed). */
			uint32_t code = atomic_load(&call->cancelled) &&
			                        call->finish_status == TRPC_STATUS_DEADLINE_EXCEEDED
			                    ? NGHTTP2_CANCEL
			                    : NGHTTP2_NO_ERROR;
			nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
			                          code);
		}
	}
	return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *ud)
{
	struct conn *c = ud;
	struct trpc_call *call = nghttp2_session_get_stream_user_data(session, stream_id);
	if (call == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(session, stream_id, NULL);
	if (call->unary_payload != NULL) { /* never dispatched */
		free(call->unary_payload);
		call->unary_payload = NULL;
	}
	/* Whatever the handler has not taken no longer holds the connection
	 * window. */
	credit_window_ex(c, call, 1);
	if (call->io_prev != NULL)
		call->io_prev->io_next = call->io_next;
	else
		c->calls = call->io_next;
	if (call->io_next != NULL)
		call->io_next->io_prev = call->io_prev;
	call->io_next = call->io_prev = NULL;
	if (atomic_fetch_sub(&c->nstreams, 1) == 1)
		atomic_store(&c->idle_since, now_ns());
	/* Abnormal: the stream ended before our status went out, or by reset. */
	int abnormal =
	    !call->status_sent || (error_code != NGHTTP2_NO_ERROR && !call->remote_closed);
	call_stream_closed(call, abnormal, &c->loop->batch);
	return 0;
}

static void init_callbacks(void)
{
	nghttp2_session_callbacks_new(&callbacks);
	nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
	(void)h2_options;
}
