/*
 * loop: one I/O thread. epoll (edge-triggered) over its listeners and
 * connections, plus an eventfd through which other threads reach it: a
 * queue of commands (from the keepalive thread and shutdown) and a list of
 * "dirty" calls whose handlers produced output. Both are drained in one
 * batch per wake-up, and every touched connection is flushed once.
 */
#ifndef TRPC_LOOP_H
#define TRPC_LOOP_H

#include <pthread.h>
#include <stdatomic.h>

#include "call.h"

struct conn;
struct metrics_slab;
struct trpc_server;

enum loop_cmd_type {
	LOOP_CMD_PING = 1,      /* send a keepalive PING on conn */
	LOOP_CMD_GOAWAY = 2,    /* graceful GOAWAY on conn (reason in text) */
	LOOP_CMD_CLOSE = 3,     /* GOAWAY with error and close conn */
	LOOP_CMD_PAUSE = 4,     /* stop reading from sockets */
	LOOP_CMD_RESUME = 5,    /* read again */
	LOOP_CMD_DRAIN = 6,     /* shutdown: stop accepting, GOAWAY everything */
	LOOP_CMD_CLOSE_ALL = 7, /* shutdown: close everything now */
	LOOP_CMD_STOP = 8       /* leave the thread */
};

struct loop_cmd {
	struct loop_cmd *next;
	int type;
	struct conn *conn; /* referenced; NULL for loop-wide commands */
	uint32_t error_code;
	const char *text; /* static */
};

struct loop {
	struct trpc_server *srv;
	int index;
	int epfd;
	int evfd;
	pthread_t thread;

	pthread_mutex_t mu; /* guards cmds, dirty list and wake flag */
	struct loop_cmd *cmd_head, *cmd_tail;
	struct trpc_call *dirty_head, *dirty_tail;
	int wake_pending;

	/* Connection registry: written by this loop, scanned by the keepalive
	 * thread under reg_mu. */
	pthread_mutex_t reg_mu;
	struct conn *conns;
	size_t nconns;

	/* io-thread only */
	struct metrics_slab *slab; /* this thread's counters (metrics.h) */
	int64_t now;               /* loop_now()'s cache; 0: not read in this part of the wake-up */
	int paused;
	int draining;
	struct conn *flush_head; /* connections to flush at the end of this wake-up */
	struct call_batch batch; /* handler events to push to the pool */
	unsigned char *rbuf;     /* read buffer shared by this loop's connections */
	size_t rbuf_size;
	int *lfds;    /* listening sockets, shared by all loops (EPOLLEXCLUSIVE) */
	void **ltags; /* their epoll tags */
	int nlfds;
	int started;
};

struct loop *loop_new(struct trpc_server *srv, int index, const char **why);
int loop_add_listener(struct loop *l, int fd, int tls);
int loop_start(struct loop *l);
/* Queues a command (any thread). cmd is malloc'd; the loop frees it. */
void loop_post(struct loop *l, int type, struct conn *conn, uint32_t error_code, const char *text);
/* Adds a call to the dirty list (any thread); the caller has set c->dirty. */
void loop_push_dirty(struct loop *l, struct trpc_call *c);
/* Marks a connection for flushing at the end of the current wake-up. */
void loop_want_flush(struct loop *l, struct conn *conn);
/* CLOCK_MONOTONIC ns, read at most once per part of a wake-up (events,
 * flush) however many calls end in it (io thread). */
int64_t loop_now(struct loop *l);
/* 1 on an I/O thread (where waiting is never allowed). */
int loop_on_io_thread(void);
void loop_join(struct loop *l);
void loop_free(struct loop *l);

#endif
