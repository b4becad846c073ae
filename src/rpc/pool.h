/*
 * pool: the fixed worker-thread pool that runs service handlers.
 *
 * Tasks are intrusive (struct pool_task lives inside the object that is
 * scheduled), so pushing never allocates. The loop pushes a whole batch of
 * tasks under one lock per wake-up. The pool reports crossings of its
 * high/low watermarks through a callback (the keepalive and backpressure
 * thread turns those into "stop reading"/"resume").
 */
#ifndef TRPC_POOL_H
#define TRPC_POOL_H

#include <stddef.h>

struct pool_task {
	struct pool_task *next;
	void (*run)(struct pool_task *t);
};

struct pool;

/* on_pressure(ud, 1) when the queue depth reaches `high`, (ud, 0) when it
 * drops below `low` again. Called with no pool lock held. */
struct pool *pool_new(int nthreads, size_t high, size_t low,
                      void (*on_pressure)(void *ud, int overloaded), void *ud, const char **why);

/* Appends a batch (head..tail linked through ->next, n tasks). */
void pool_push_batch(struct pool *p, struct pool_task *head, struct pool_task *tail, size_t n);
void pool_push(struct pool *p, struct pool_task *t);

/* Whether the high watermark is in force (reached, and the depth not yet
 * below the low watermark since). */
int pool_overloaded(struct pool *p);
/* The depth without taking the lock (may be slightly stale). */
size_t pool_depth_hint(struct pool *p);
size_t pool_high_watermark(struct pool *p);

/* One consistent reading of the pool, taken under its lock. */
struct pool_stats {
	size_t depth;     /* tasks waiting for a thread */
	size_t high, low; /* the watermarks */
	int threads;      /* 0 once pool_stop has run */
	int busy;         /* threads not waiting for work (running a task or about to) */
	int overloaded;   /* as pool_overloaded */
};
void pool_stats(struct pool *p, struct pool_stats *st);

/* 1 on one of this process's pool threads. */
int pool_on_worker(void);

/* Runs every queued task, then joins the threads. */
void pool_stop(struct pool *p);
void pool_free(struct pool *p);

#endif
