/*
 * keepalive: the keepalive and backpressure thread. It keeps the clock for
 * everything time-based and decides; the loops execute:
 *  - keepalive PINGs on quiet connections and their ack timeout,
 *  - connection preface/SETTINGS (and TLS handshake) timeout,
 *  - max connection idle, max connection age and its grace,
 *  - per-call deadlines (a heap) -> DEADLINE_EXCEEDED and RST_STREAM,
 *  - work-queue watermarks -> loops stop/resume reading.
 */
#ifndef TRPC_KEEPALIVE_H
#define TRPC_KEEPALIVE_H

struct trpc_server;
struct trpc_call;
struct keepalive;

struct keepalive *keepalive_new(struct trpc_server *srv, const char **why);
int keepalive_start(struct keepalive *k);
/* Watches a call's deadline (takes a reference). */
void keepalive_add_deadline(struct keepalive *k, struct trpc_call *c);
/* Forgets a call's deadline if it is being watched (drops that reference). */
void keepalive_remove_deadline(struct keepalive *k, struct trpc_call *c);
/* From the pool: the work queue crossed a watermark. */
void keepalive_pressure(void *k, int overloaded);
void keepalive_stop(struct keepalive *k);
void keepalive_free(struct keepalive *k);

#endif
