/*
 * ratelimit_spec: the syntax of ratelimit.services, "Service=rate[/burst], ...".
 * Separate from the limiter so that the configuration loader (and its unit
 * test) can check a value without the rest of the runtime.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ratelimit.h"
#include "tasker/rpc.h"

/* Parses one "name=rate[/burst]" item of length len. 0 or -1 with why set. */
static int parse_item(const char *item, size_t len, struct rl_service *out, char *why, size_t size)
{
	const char *eq = memchr(item, '=', len);
	if (eq == NULL || eq == item) {
		snprintf(why, size, "\"%.*s\": expected Service=rate[/burst]", (int)len, item);
		return -1;
	}
	size_t nlen = (size_t)(eq - item);
	while (nlen > 0 && isspace((unsigned char)item[nlen - 1]))
		nlen--;
	char num[64];
	size_t vlen = len - (size_t)(eq + 1 - item);
	if (vlen >= sizeof num)
		vlen = sizeof num - 1;
	memcpy(num, eq + 1, vlen);
	num[vlen] = '\0';
	char *end;
	errno = 0;
	long rate = strtol(num, &end, 10), burst = -1;
	if (end != num && *end == '/') {
		char *b = end + 1;
		burst = strtol(b, &end, 10);
		if (end == b)
			burst = -2;
	}
	while (isspace((unsigned char)*end))
		end++;
	if (errno != 0 || end == num || *end != '\0' || rate < 0 || rate > INT_MAX || burst == -2 ||
	    (burst != -1 && (burst < 1 || burst > INT_MAX))) {
		snprintf(why, size, "\"%.*s\": expected Service=rate[/burst] with whole numbers",
		         (int)len, item);
		return -1;
	}
	if (out != NULL) {
		out->name = strndup(item, nlen);
		if (out->name == NULL) {
			snprintf(why, size, "out of memory");
			return -1;
		}
		out->rate = (double)rate;
		out->burst = burst > 0 ? (double)burst : (rate > 0 ? (double)rate : 1);
	}
	return 0;
}

/* Walks "a=1, b=2/4": calls parse_item on each trimmed item. Returns the
 * item count or -1. `out` may be NULL (syntax check only). */
long ratelimit_parse_services(const char *spec, struct rl_service *out, char *why, size_t size)
{
	long n = 0;
	const char *p = spec;
	while (p != NULL && *p != '\0') {
		while (isspace((unsigned char)*p) || *p == ',')
			p++;
		if (*p == '\0')
			break;
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		while (len > 0 && isspace((unsigned char)p[len - 1]))
			len--;
		if (parse_item(p, len, out != NULL ? &out[n] : NULL, why, size) != 0)
			return -1;
		n++;
		p = comma;
	}
	return n;
}

int ratelimit_check_services(const char *spec, char *why, size_t size)
{
	return ratelimit_parse_services(spec, NULL, why, size) < 0 ? TRPC_ERR_CONFIG : 0;
}
