/*
 * conn: one HTTP/2 connection, owned by one loop. Socket, optional TLS,
 * the nghttp2 server session and the gRPC request/response mapping.
 */
#ifndef TRPC_CONN_H
#define TRPC_CONN_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "buf.h"

struct loop;
struct trpc_call;

enum conn_state {
	CONN_TLS_HANDSHAKE = 1,
	CONN_PREFACE = 2, /* waiting for the client preface and SETTINGS */
	CONN_OPEN = 3,
	CONN_CLOSED = 4
};

/* Flags the keepalive thread sets so it posts each action once. */
enum conn_ka_flag { KA_PING_POSTED = 0x1, KA_GOAWAY_POSTED = 0x2, KA_CLOSE_POSTED = 0x4 };

struct conn {
	atomic_int refs;
	struct loop *loop;
	struct conn *reg_prev, *reg_next; /* loop registry (reg_mu) */
	struct conn *flush_next;
	int in_flush;

	int fd;
	SSL *ssl;
	nghttp2_session *h2;
	struct buf out;
	int state; /* enum conn_state */
	char peer[64];
	char *tls_subject;
	struct trpc_call *calls; /* open calls (io list) */

	unsigned want_write : 1;   /* the socket said EAGAIN on write */
	unsigned read_blocked : 1; /* readable but paused by backpressure */
	unsigned tls_want_read_on_write : 1;
	unsigned goaway_sent : 1;
	unsigned close_after_flush : 1;

	/* ping-strike state (io) */
	int64_t last_ping_recv;
	int ping_strikes;

	/* read by the keepalive thread */
	int64_t created;
	atomic_llong last_read;  /* last time bytes arrived */
	atomic_llong idle_since; /* when the last stream closed; 0 while streams are open */
	atomic_llong ping_sent;  /* keepalive PING in flight since; 0 = none */
	atomic_llong goaway_at;  /* graceful GOAWAY sent at; 0 = not yet */
	atomic_int nstreams;
	atomic_int handshaken; /* preface + SETTINGS received */
	atomic_int ka_flags;
};

/* Takes over an accepted socket. 0, or a negative error (the fd is closed). */
int conn_accept(struct loop *l, int fd, const struct sockaddr_storage *sa, int tls);
/* epoll said readable / writable. */
void conn_on_readable(struct conn *c);
void conn_on_writable(struct conn *c);
/* Writes what nghttp2 and TLS have pending; closes the connection when
 * it is finished. Called once per wake-up for every touched connection. */
void conn_flush(struct conn *c);
/* Commands from other threads, run on the loop. */
void conn_send_ping(struct conn *c);
void conn_goaway(struct conn *c, uint32_t error_code, const char *text, int graceful);
void conn_close(struct conn *c, const char *why);
/* The I/O side of a dirty call: credit consumed bytes, submit headers,
 * resume data, send status. */
void conn_process_call(struct conn *c, struct trpc_call *call);

void conn_ref(struct conn *c);
void conn_unref(struct conn *c);

#endif
