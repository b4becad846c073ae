/*
 * interop_flags: the command line of the interop programs (interop_flags.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/interop_flags.h"

static const struct interop_flag *flag_find(const struct interop_flags *fl, const char *name,
                                            size_t len)
{
	size_t i;

	for (i = 0; i < fl->n_defs; i++) {
		if (strlen(fl->defs[i].name) == len && strncmp(fl->defs[i].name, name, len) == 0) {
			return &fl->defs[i];
		}
	}
	return NULL;
}

/* Go's strconv.ParseBool spellings, as grpc-go's flag package accepts. */
static int parse_bool(const char *v, long *out)
{
	static const char *const yes[] = {"1", "t", "T", "true", "TRUE", "True"};
	static const char *const no[] = {"0", "f", "F", "false", "FALSE", "False"};
	size_t i;

	for (i = 0; i < sizeof yes / sizeof yes[0]; i++) {
		if (strcmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

static int parse_port(const char *v, long min, long *out)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > 65535) {
		return -1;
	}
	*out = n;
	return 0;
}

static int flag_apply(void *opts, const struct interop_flag *d, const char *v)
{
	void *field = (char *)opts + d->offset;

	switch (d->kind) {
	case INTEROP_FLAG_STRING:
		*(const char **)field = v;
		return 0;
	case INTEROP_FLAG_BOOL:
		return parse_bool(v, field);
	case INTEROP_FLAG_PORT:
		return parse_port(v, 1, field);
	case INTEROP_FLAG_PORT0:
		return parse_port(v, 0, field);
	}
	return -1;
}

int interop_flags_parse(const struct interop_flags *fl, int argc, char **argv, void *opts)
{
	int i, n = 1;

	for (i = 1; i < argc; i++) {
		const char *arg = argv[i], *name, *eq, *v;
		const struct interop_flag *d;

		if (arg[0] != '-' || arg[1] == '\0') {
			fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], arg);
			return -1;
		}
		name = arg + (arg[1] == '-' ? 2 : 1);
		if (strcmp(name, "help") == 0 || strcmp(name, "h") == 0) {
			fl->usage(stdout, argv[0]);
			return 0;
		}
		eq = strchr(name, '=');
		d = flag_find(fl, name, eq != NULL ? (size_t)(eq - name) : strlen(name));
		if (d == NULL) {
			if (!fl->pass_unknown || arg[1] != '-') {
				fprintf(stderr, "%s: unknown option '%s'\n", argv[0], arg);
				return -1;
			}
			argv[n++] = argv[i];
			/* "--section.key value": keep the value with its key */
			if (eq == NULL && i + 1 < argc) {
				argv[n++] = argv[++i];
			}
			continue;
		}
		if (eq != NULL) {
			v = eq + 1;
		} else if (d->kind == INTEROP_FLAG_BOOL) {
			v = "true";
		} else if (i + 1 < argc) {
			v = argv[++i];
		} else {
			fprintf(stderr, "%s: option '%s' needs a value\n", argv[0], arg);
			return -1;
		}
		if (flag_apply(opts, d, v) < 0) {
			fprintf(stderr, "%s: bad value '%s' for --%s\n", argv[0], v, d->name);
			return -1;
		}
	}
	argv[n] = NULL;
	return n;
}
