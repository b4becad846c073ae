/*
 * err: an error code with its message, for the store and engine layers.
 * The code is a negative enum trpc_error value; the message is for
 * people (it names the object and the problem) and is mapped to a gRPC
 * status message once, at the call boundary.
 */
#ifndef TK_ERR_H
#define TK_ERR_H

#include <stdarg.h>

#include "tasker/rpc.h"

struct tk_err {
	int code; /* 0 or a negative enum trpc_error value */
	char msg[512];
};

/* Records code and a printf-style message; returns code (for "return tk_err_set(...)"). */
int tk_err_set(struct tk_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static inline void tk_err_clear(struct tk_err *e)
{
	e->code = 0;
	e->msg[0] = '\0';
}

#endif
