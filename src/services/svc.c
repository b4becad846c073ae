/*
 * svc: the error mapping shared by every operation (tasker-api.md §1.12)
 * and the operation lookup of the bindings.
 *
 * Mapping of struct tk_err codes (enum trpc_error) to gRPC statuses:
 *
 *   TRPC_ERR_NOT_FOUND     NOT_FOUND
 *   TRPC_ERR_EXISTS        ALREADY_EXISTS (duplicate identity)
 *   TRPC_ERR_INVALID       INVALID_ARGUMENT (validation, unknown template...)
 *   TRPC_ERR_STATE         INVALID_ARGUMENT (cannot cancel, step transition
 *                          not allowed: §1.12 files these under validation)
 *   TRPC_ERR_TOO_LARGE     INVALID_ARGUMENT
 *   TRPC_ERR_UNAVAILABLE   UNAVAILABLE
 *   TRPC_ERR_TIMEOUT       UNAVAILABLE: the database did not answer in
 *                          time (pool acquire, statement or lock timeout).
 *                          That is the server's overload, not the client's
 *                          deadline running out, and UNAVAILABLE is what
 *                          gRPC clients retry by default.
 *   TRPC_ERR_NOMEM         RESOURCE_EXHAUSTED
 *   TRPC_ERR_DB and others INTERNAL
 *
 * Messages go to the client as the engine wrote them for the first group
 * (they name the object and the problem). Database-side failures get a
 * fixed message ("database error", ...) and the detail goes to the log:
 * a server error text can quote SQL, values or connection targets.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "services/ops.h"
#include "services/svc.h"

const char *svc_ctx_subject(const struct svc_ctx *ctx)
{
	const char *s = ctx->subject;
	return s != NULL && s[0] != '\0' && strcmp(s, "anonymous") != 0 ? s : NULL;
}

int svc_fail(struct svc_result *res, int status, const char *fmt, ...)
{
	va_list ap;

	res->status = status;
	va_start(ap, fmt);
	vsnprintf(res->message, sizeof res->message, fmt, ap);
	va_end(ap);
	return -1;
}

/* A message from the engine may go to the client unless it carries a
 * server error (those end with "[SQLSTATE xxxxx]", see db.h). */
static int client_safe(const char *msg)
{
	return msg[0] != '\0' && strstr(msg, "SQLSTATE") == NULL;
}

int svc_fail_err(struct svc_result *res, const struct tk_err *err)
{
	int code = err != NULL ? err->code : TRPC_ERR_DB;
	const char *msg = err != NULL ? err->msg : "";
	int status;
	const char *fixed = NULL; /* the client's message when msg must not leave */

	switch (code) {
	case TRPC_ERR_NOT_FOUND:
		status = TRPC_STATUS_NOT_FOUND;
		fixed = "not found";
		break;
	case TRPC_ERR_EXISTS:
		status = TRPC_STATUS_ALREADY_EXISTS;
		fixed = "already exists";
		break;
	case TRPC_ERR_INVALID:
	case TRPC_ERR_STATE:
	case TRPC_ERR_TOO_LARGE:
		status = TRPC_STATUS_INVALID_ARGUMENT;
		fixed = "invalid request";
		break;
	case TRPC_ERR_UNAVAILABLE:
		status = TRPC_STATUS_UNAVAILABLE;
		msg = "";
		fixed = "database unavailable; retry later";
		break;
	case TRPC_ERR_TIMEOUT:
		status = TRPC_STATUS_UNAVAILABLE;
		msg = "";
		fixed = "database busy (timed out); retry later";
		break;
	case TRPC_ERR_NOMEM:
		status = TRPC_STATUS_RESOURCE_EXHAUSTED;
		msg = "";
		fixed = "out of memory";
		break;
	case TRPC_ERR_DB:
		status = TRPC_STATUS_INTERNAL;
		msg = "";
		fixed = "database error";
		break;
	default:
		status = TRPC_STATUS_INTERNAL;
		msg = "";
		fixed = "internal error";
		break;
	}
	if (client_safe(msg)) {
		svc_fail(res, status, "%s", msg);
	} else {
		svc_fail(res, status, "%s", fixed);
		trpc_log(status == TRPC_STATUS_INTERNAL ? TRPC_LOG_ERROR : TRPC_LOG_WARN,
		         "%s (%s): %s", fixed, trpc_strerror(code),
		         err != NULL && err->msg[0] ? err->msg : "no detail");
	}
	return -1;
}

const struct svc_op *svc_find_op(const struct svc_table *const *tables, size_t n,
                                 const char *service, const char *method)
{
	if (service == NULL || method == NULL)
		return NULL;
	for (size_t t = 0; t < n; t++) {
		if (tables[t] == NULL || strcmp(tables[t]->service, service) != 0)
			continue;
		for (size_t i = 0; i < tables[t]->n_ops; i++) {
			if (strcmp(tables[t]->ops[i].method, method) == 0)
				return &tables[t]->ops[i];
		}
	}
	return NULL;
}
