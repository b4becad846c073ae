/*
 * interop_flags: the command-line flags of interop-server and
 * interop-client, in the forms grpc-go's interop programs accept:
 * "-flag=v", "--flag=v", "-flag v" and "--flag v"; a boolean flag alone
 * means true. Each program describes its flags with a table of
 * struct interop_flag rows pointing into its own options struct.
 */
#ifndef TK_CMD_INTEROP_FLAGS_H
#define TK_CMD_INTEROP_FLAGS_H

#include <stddef.h>
#include <stdio.h>

enum interop_flag_kind {
	INTEROP_FLAG_STRING = 1, /* const char *: the argument itself */
	INTEROP_FLAG_PORT = 2,   /* long, 1 to 65535 */
	INTEROP_FLAG_PORT0 = 3,  /* long, 0 to 65535 (0: a free port) */
	INTEROP_FLAG_BOOL = 4    /* long, 0 or 1, in Go's strconv.ParseBool spellings */
};

struct interop_flag {
	const char *name;
	enum interop_flag_kind kind;
	size_t offset;             /* of the field in the options struct */
	const char *section, *key; /* the configuration key it sets, if any */
};

struct interop_flags {
	const struct interop_flag *defs;
	size_t n_defs;
	void (*usage)(FILE *f, const char *prog); /* for --help, to stdout */
	int pass_unknown; /* keep unknown "--name" arguments for the caller */
};

/*
 * Parses argv[1..argc) into opts. Unknown "--name[=v]" arguments (with a
 * following value when there is no '=') are moved, in order, to the front
 * of argv after argv[0] when fl->pass_unknown is set, and are an error
 * otherwise; argv is NULL-terminated after the kept ones. Returns the new
 * argc (1 when nothing was kept), 0 after --help, -1 on a bad argument
 * (reported on stderr).
 */
int interop_flags_parse(const struct interop_flags *fl, int argc, char **argv, void *opts);

#endif
