/*
 * status: read-only views of a running worker for its health checks and
 * metrics (src/services/worker/). The functions take the worker's lock
 * for a moment (never across a database call or a handler), so they are
 * safe from any thread while the worker lives.
 */
#ifndef TK_WORKER_STATUS_H
#define TK_WORKER_STATUS_H

#include <stddef.h>

struct wk_worker;

struct wk_worker_status {
	int concurrency;        /* handler threads configured */
	int handler_threads;    /* handler threads started */
	int busy;               /* messages in hand (read, claimed or running) */
	int queued;             /* of those, waiting for a handler thread */
	int dispatcher_running; /* the thread that reads the queues was started */
	int leaser_running;     /* the thread that extends visibility timeouts was started */
	int stopping;           /* no longer claiming (shutdown) */
	int abandoned;          /* running steps were given up (forced shutdown) */
	int visibility_timeout_s;
	int poll_interval_ms;
	size_t n_queues;
};

/* Copies a snapshot of w's state into *out. */
void wk_worker_status(struct wk_worker *w, struct wk_worker_status *out);

/* The dispatcher's and reporter's event counters since start. */
struct wk_worker_events {
	long notifications;     /* LISTEN notifications received */
	long reads;             /* queue read-and-claim rounds */
	long listener_connects; /* LISTEN connections made (1 + reconnections) */
	long listener_errors;   /* LISTEN connection failures and lost connections */
	long claimed;           /* steps claimed (first claim of their message) */
	long reclaimed;         /* steps claimed again after a visibility timeout */
	long reported;          /* results written */
	long report_fallbacks;  /* results whose batch write failed, then written one by one */
};
void wk_worker_events(struct wk_worker *w, struct wk_worker_events *out);

/* The name of the i-th queue the worker reads ("worker_<namespace>_queue"),
 * or NULL past the last. The string lives as long as the worker. */
const char *wk_worker_queue(const struct wk_worker *w, size_t i);

#endif
