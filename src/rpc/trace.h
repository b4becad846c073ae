/*
 * trace: the trace context of a call. W3C Trace Context ("traceparent")
 * and the simpler "x-trace-id" header are read from request metadata;
 * without either a fresh 128-bit trace id is drawn from a per-thread
 * generator (seeded once per thread from getrandom, never blocking).
 */
#ifndef TRPC_TRACE_H
#define TRPC_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define TRACE_ID_HEX   32 /* W3C trace-id: 16 bytes as lower-case hex */
#define TRACE_SPAN_HEX 16 /* W3C parent-id / span id: 8 bytes */
#define TRACE_XID_MAX  64 /* longest x-trace-id taken as it is */
/* "00-" trace-id "-" parent-id "-" flags */
#define TRACEPARENT_LEN (2 + 1 + TRACE_ID_HEX + 1 + TRACE_SPAN_HEX + 1 + 2)

struct traceparent {
	char trace_id[TRACE_ID_HEX + 1];
	char parent_id[TRACE_SPAN_HEX + 1];
	char flags[3];
};

/*
 * Parses a traceparent header value of version 00:
 * "00-<32 hex trace-id>-<16 hex parent-id>-<2 hex flags>", lower-case hex,
 * exactly 55 characters, neither id all zeros. Returns 0 and fills *out,
 * or -1 when the value is not valid (the header is then ignored, as the
 * specification asks).
 */
int trace_parse_traceparent(const char *v, size_t len, struct traceparent *out);

/* 1 when v[0..len) is usable as an x-trace-id: 1..TRACE_XID_MAX characters
 * of letters, digits, '-', '_', '.' and ':' (it is logged and forwarded
 * as it is, so nothing that needs escaping). */
int trace_valid_x_trace_id(const char *v, size_t len);

/* 1 when v[0..len) has the shape of a W3C trace-id (32 lower-case hex
 * digits, not all zero). */
int trace_is_w3c_id(const char *v, size_t len);

/* Writes a fresh random id of `hex` lower-case hex digits (even, <= 32)
 * and a NUL; never all zeros. Per-thread generator: no lock, no syscall
 * after the thread's first id. */
void trace_random_hex(char *out, size_t hex);

#endif
