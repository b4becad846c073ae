/*
 * grpc: the gRPC binding of the operation tables (services/ops.h).
 *
 * Each table becomes one trpc_service whose unary methods all run the same
 * handler: credentials from the request metadata (`authorization`, then
 * the API-key header of env->auth) → auth_check(op->permission) → op->fn
 * with the call's arena as allocator → the response, or the status the
 * operation set (with a `retry-after` trailer when it asked for one).
 * Authentication failures end the call with UNAUTHENTICATED or
 * PERMISSION_DENIED and the checker's message, plus the trailers
 * `x-auth-failure-reason` and `x-auth-failure-severity`.
 *
 * Methods that are not unary operations (TaskService.StreamTaskStatus) are
 * added to a table's service as extras: the binding checks their
 * permission the same way, then hands the call to their own handler with
 * their own user data.
 */
#ifndef TK_SVC_GRPC_H
#define TK_SVC_GRPC_H

#include <stddef.h>

#include "services/ops.h"
#include "services/svc_env.h"
#include "tasker/rpc.h"

struct svc_grpc_extra {
	const char *service;    /* the table's service it joins ("tasker.v1.TaskService") */
	const char *permission; /* checked before the handler runs; NULL = public */
	/* name, kind, descriptors, handler (unary or server streaming) and,
	 * optionally, stream.on_cancel. The handler and on_cancel get `ud`. */
	struct trpc_method method;
	void *ud;
};

/*
 * Registers one service per table on srv (before trpc_server_start),
 * with the extras added to their services. The method arrays are allocated
 * here and freed with the server. env must outlive the server. Returns 0,
 * or TRPC_ERR_INVALID (an extra names a service with no table, a NULL
 * table), TRPC_ERR_NOMEM, TRPC_ERR_EXISTS (a service registered twice),
 * with *why set to a static message.
 */
int svc_grpc_register(trpc_server *srv, struct svc_env *env, const struct svc_table *const *tables,
                      size_t n, const struct svc_grpc_extra *extras, size_t n_extras,
                      const char **why);

/*
 * The credential check of the binding for one call: 0 with *subject set
 * (a copy in the call's arena; "anonymous" with auth disabled), or -1
 * after finishing the call with UNAUTHENTICATED / PERMISSION_DENIED.
 */
int svc_grpc_authorize(struct svc_env *env, trpc_call *call, const char *permission,
                       const char **subject);

#endif
