#include "config.h"

#include <stdio.h>

#include "err.h"

int tk_err_set(struct tk_err *e, int code, const char *fmt, ...)
{
	if (e == NULL)
		return code;
	e->code = code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->msg, sizeof e->msg, fmt, ap);
	va_end(ap);
	return code;
}
