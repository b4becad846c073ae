/*
 * svc: the operations behind the tasker.v1 services, shared by the gRPC
 * binding (src/services/grpc.c) and the REST twin (src/web/).
 *
 * Each unary RPC is one struct svc_op: its permission and a function that
 * takes the decoded request message and fills a response message. The
 * bindings are generic and thin: credentials → auth_check(op->permission)
 * → op->fn → encode (protobuf for gRPC; the proto3 JSON mapping of the
 * same message for REST, plus the few REST-only fields). So a route's JSON
 * and its RPC's message agree field by field by construction.
 */
#ifndef TK_SVC_H
#define TK_SVC_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/auth.h"
#include "store/err.h"

struct svc_env; /* the program's: engine, auth, config, health (svc_env.h) */

/* Per request: where the response's memory comes from and who asks. */
struct svc_ctx {
	ProtobufCAllocator *alloc; /* every pointer in the response comes from here */
	const char *subject;       /* authenticated subject ("anonymous" with auth off) */
	const char *peer;          /* "ipv4:127.0.0.1:5555" or similar; may be NULL */
	const char *transport;     /* "grpc" or "rest": the default initiator etc. */
	int64_t deadline_ns;       /* CLOCK_MONOTONIC; INT64_MAX when none */
};

/* An operation's failure, mapped once by each binding. */
struct svc_result {
	int status;            /* gRPC status (enum trpc_status); 0 = OK */
	char message[512];     /* sanitized: never SQL, never a secret */
	int retry_after_s;     /* > 0: gRPC trailer `retry-after`, HTTP `Retry-After` */
	const char *rest_code; /* NULL = derived from status; else "BACKPRESSURE", ... */
};

typedef int (*svc_fn)(struct svc_env *env, const ProtobufCMessage *req, ProtobufCMessage *resp,
                      const struct svc_ctx *ctx, struct svc_result *res);

struct svc_op {
	const char *service;    /* "tasker.v1.TaskService" */
	const char *method;     /* "GetTask" */
	const char *permission; /* NULL = public */
	const ProtobufCMessageDescriptor *request, *response;
	/* `resp` is initialised (descriptor's init) before the call; the
	 * function fills it from ctx->alloc and returns 0, or returns -1 with
	 * res set. */
	svc_fn fn;
};

/* The caller's authenticated subject, or NULL when nobody authenticated
 * (authentication off: the subject "anonymous"). For records of who acted. */
const char *svc_ctx_subject(const struct svc_ctx *ctx);

/* Maps an engine/store error (struct tk_err) onto res per tasker-api.md
 * §1.12; returns -1. */
int svc_fail_err(struct svc_result *res, const struct tk_err *err);
/* Sets status and a printf-style message; returns -1. */
int svc_fail(struct svc_result *res, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
