/*
 * admin_pb: what the admin operations (templates, analytics, dlq, health,
 * config) share to build their response messages from engine results:
 * copies into the call's allocator, timestamps, Struct from JSON text and
 * the mapping between database enum strings and proto enum values.
 *
 * Every function allocates from b->a (the call's arena, svc_ctx.alloc).
 * An allocation that fails returns NULL and sets b->oom, so an operation
 * checks the pointers it dereferences at once and b->oom once at the end
 * (a message with a NULL string is never sent: the operation fails).
 */
#ifndef TK_SVC_ADMIN_PB_H
#define TK_SVC_ADMIN_PB_H

#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "engine/admin.h"
#include "google/protobuf/struct.pb-c.h"
#include "google/protobuf/timestamp.pb-c.h"
#include "services/svc.h"

struct apb {
	ProtobufCAllocator *a;
	int oom;
};

/* Zeroed memory. */
void *apb_alloc(struct apb *b, size_t size);
/* A copy of s; "" for NULL. */
char *apb_strdup(struct apb *b, const char *s);
/* An array of n pointers (n may be 0: a valid, empty array). */
void *apb_ptrs(struct apb *b, size_t n);

/* A Timestamp of t; NULL when t is not valid (absent) or out of memory:
 * check t->valid to tell them apart. */
Google__Protobuf__Timestamp *apb_time(struct apb *b, const struct adm_time *t);
/* The current time. */
Google__Protobuf__Timestamp *apb_now(struct apb *b);
/* The current time as RFC 3339 UTC with milliseconds, into buf (>= 32 bytes). */
void apb_now_iso(char *buf, size_t size);

/* A Struct from the text of a JSON object; NULL with err set for text
 * that is not one (b->oom set when out of memory). */
Google__Protobuf__Struct *apb_struct(struct apb *b, const char *json, struct tk_err *err);
/* The compact JSON text of s (malloc'd; free it), or NULL with err set. */
char *apb_struct_text(const Google__Protobuf__Struct *s, const char *what, struct tk_err *err);

/*
 * Database enum string <-> proto enum value, by name: "staleness_timeout"
 * is DLQ_REASON_STALENESS_TIMEOUT with prefix "DLQ_REASON_". from_db
 * returns 0 (the UNSPECIFIED value) for NULL or an unknown string; to_db
 * writes the lower-case name without the prefix into buf and returns 0,
 * or -1 for UNSPECIFIED or a value the enum does not have.
 */
int apb_enum_from_db(const ProtobufCEnumDescriptor *d, const char *prefix, const char *db);
int apb_enum_to_db(const ProtobufCEnumDescriptor *d, const char *prefix, int value, char *buf,
                   size_t size);

/* svc_fail(res, RESOURCE_EXHAUSTED, "out of memory"): returns -1. */
int apb_nomem(struct svc_result *res);

/*
 * How an operation that built its response through b ends: 0 when built is
 * 0 and no allocation failed. Otherwise -1 after svc_fail: with the error
 * in err when building stopped on one (err not NULL, err->code set and no
 * allocation failed), else out of memory.
 */
int apb_finish(const struct apb *b, int built, const struct tk_err *err, struct svc_result *res);

#endif
