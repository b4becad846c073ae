/*
 * status: names for the library's error codes and for gRPC status codes.
 */
#include <stddef.h>

#include <tasker/rpc.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Indexed by -err; TRPC_ERR_FATAL sits far below the rest and is handled
 * on its own. */
static const char *const error_text[] = {
    [-TRPC_OK] = "success",
    [-TRPC_ERR_INVALID] = "invalid argument or state",
    [-TRPC_ERR_NOMEM] = "out of memory",
    [-TRPC_ERR_CLOSED] = "call closed",
    [-TRPC_ERR_SYSTEM] = "system call failed",
    [-TRPC_ERR_TLS] = "TLS error",
    [-TRPC_ERR_CONFIG] = "bad configuration",
    [-TRPC_ERR_PROTOCOL] = "protocol violation",
    [-TRPC_ERR_TOO_LARGE] = "size limit exceeded",
    [-TRPC_ERR_ENCODING] = "unsupported or corrupt compression",
    [-TRPC_ERR_EXISTS] = "already exists",
    [-TRPC_ERR_NOT_FOUND] = "not found",
    [-TRPC_ERR_STATE] = "not allowed in the current state",
    [-TRPC_ERR_DB] = "database error",
    [-TRPC_ERR_TIMEOUT] = "timed out",
    [-TRPC_ERR_UNAVAILABLE] = "unavailable",
};

const char *trpc_strerror(int err)
{
	if (err == TRPC_ERR_FATAL)
		return "fatal error";
	if (err > 0 || (size_t)-err >= ARRAY_SIZE(error_text) || !error_text[-err])
		return "unknown error";
	return error_text[-err];
}

static const char *const status_names[] = {
    [TRPC_STATUS_OK] = "OK",
    [TRPC_STATUS_CANCELLED] = "CANCELLED",
    [TRPC_STATUS_UNKNOWN] = "UNKNOWN",
    [TRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
    [TRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
    [TRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
    [TRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
    [TRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
    [TRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
    [TRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
    [TRPC_STATUS_ABORTED] = "ABORTED",
    [TRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
    [TRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
    [TRPC_STATUS_INTERNAL] = "INTERNAL",
    [TRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
    [TRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
    [TRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};

const char *trpc_status_name(int status)
{
	if (status < 0 || (size_t)status >= ARRAY_SIZE(status_names))
		return "UNKNOWN";
	return status_names[status];
}
