/*
 * metrics: the server's counters and their Prometheus exposition.
 *
 * Every counting thread owns a slab: each I/O thread (calls, streams,
 * messages, TLS handshakes, GOAWAYs it decides) and the keepalive thread
 * (the GOAWAYs it decides). A slab has one writer, so an increment is a
 * relaxed load and store (plain instructions, no lock prefix, no shared
 * cache line); a scrape reads every slab with relaxed loads and sums.
 * Gauges that already exist elsewhere (connections, pool depth) are read
 * at scrape time instead of being counted twice.
 */
#ifndef TRPC_METRICS_H
#define TRPC_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tasker/rpc.h"

#define METRICS_N_BUCKETS 11 /* go-grpc-prometheus defaults, .005 s to 10 s */
#define METRICS_N_CODES   17 /* gRPC status codes 0..16 */

/* Why a connection got a GOAWAY (or was closed) from our side. */
enum metrics_goaway {
	GOAWAY_TOO_MANY_PINGS = 0,
	GOAWAY_IDLE = 1,
	GOAWAY_MAX_AGE = 2,
	GOAWAY_MAX_AGE_GRACE = 3,
	GOAWAY_PING_TIMEOUT = 4,
	GOAWAY_HANDSHAKE_TIMEOUT = 5,
	GOAWAY_PROTOCOL_ERROR = 6,
	GOAWAY_SHUTDOWN = 7,
	N_GOAWAY = 8
};

enum metrics_counter {
	MC_GOAWAY = 0, /* MC_GOAWAY + enum metrics_goaway */
	MC_TLS_HANDSHAKES = N_GOAWAY,
	MC_TLS_FAILURES = N_GOAWAY + 1,
	MC_STREAMS_OPENED = N_GOAWAY + 2,
	MC_STREAMS_CLOSED = N_GOAWAY + 3,
	MC_COUNT = N_GOAWAY + 4
};

typedef _Atomic uint64_t metric_t;

struct method_stats {
	metric_t started, msg_recv, msg_sent;
	metric_t handled[METRICS_N_CODES];
	metric_t buckets[METRICS_N_BUCKETS + 1]; /* per bucket, not cumulative; last: above 10 s */
	metric_t sum_ns;
};

struct metrics_slab {
	metric_t counters[MC_COUNT];
	struct method_stats methods[]; /* struct metrics_reg.n_methods + 1 ("unknown" last) */
};

/* A registered method as the labels show it. */
struct metrics_method {
	const char *service, *method; /* owned by the service table */
	int kind;                     /* enum trpc_method_kind */
};

struct metrics_collector {
	struct metrics_collector *next;
	trpc_metrics_collect_fn fn;
	void *ud;
};

struct metrics_reg {
	struct metrics_method *methods;
	size_t n_methods, cap_methods;
	struct metrics_slab **slabs; /* allocated by metrics_start */
	size_t n_slabs;
	pthread_mutex_t mu; /* guards collectors */
	struct metrics_collector *collectors, **collectors_tail;
};

/* Increments a counter of a slab this thread owns (single writer). */
static inline void metric_add(metric_t *m, uint64_t n)
{
	atomic_store_explicit(m, atomic_load_explicit(m, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}

static inline void metric_inc(metric_t *m)
{
	metric_add(m, 1);
}

void metrics_init(struct metrics_reg *m);
void metrics_clear(struct metrics_reg *m);

/* Registers a method (before start); returns its slot or TRPC_ERR_NOMEM. */
int metrics_add_method(struct metrics_reg *m, const char *service, const char *method, int kind);

/* The slot of calls to methods the server does not have. */
static inline int metrics_unknown_slot(const struct metrics_reg *m)
{
	return (int)m->n_methods;
}

/* Allocates n zeroed slabs sized for the registered methods. 0 or TRPC_ERR_NOMEM. */
int metrics_start(struct metrics_reg *m, size_t n);

/* A status as grpc-go's codes.Code.String() names it ("NotFound"). */
const char *metrics_code_name(int status);

/* Records a finished call in the caller's own slab. */
void metrics_call_done(struct metrics_slab *s, int slot, int status, int64_t duration_ns);

#endif
