/*
 * logging: the library-internal side of log.c.
 */
#ifndef TRPC_LOGGING_H
#define TRPC_LOGGING_H

#include <stdint.h>

struct trpc_call;

/* Writes the access record of a finished call (log.access_log): service,
 * method, code, duration_ms, peer, trace_id, and the status message when
 * there is one. Any level; io thread, once per call. */
void log_access(struct trpc_call *c, int status, const char *message, int64_t duration_ns);

#endif
