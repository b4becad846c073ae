/*
 * pbjson: the proto3 JSON mapping for protobuf-c messages, both ways,
 * driven by the message descriptors (so every generated message works
 * without per-message code).
 *
 * Output (pbjson_encode):
 *   - keys are the proto field names (snake_case, as the REST API of
 *     tasker-api.md §2.1 writes them; python's json_format with
 *     preserving_proto_field_name=True), or lowerCamelCase json names with
 *     PBJSON_CAMEL_CASE;
 *   - int64/uint64 (and their fixed/sint forms) are strings, 32-bit
 *     integers numbers; doubles are numbers ("NaN", "Infinity",
 *     "-Infinity" as strings); enums are value names (a number the enum
 *     does not know stays a number); bytes are base64;
 *   - repeated fields are arrays, map fields objects;
 *   - a oneof member is written only when it is the set case: the `_x`
 *     one-member oneofs made from proto3 `optional` (build-aux/
 *     protoc-c-optional.awk) thus appear as plain `x` when present and not
 *     at all when absent; a message field is written when non-NULL;
 *   - other fields (no presence) are omitted when zero/empty, unless
 *     PBJSON_EMIT_DEFAULTS (json_format's including_default_value_fields);
 *   - google.protobuf.Struct / Value / ListValue are the plain JSON value
 *     (a Value's integral numbers below 2^53 written as integers),
 *     google.protobuf.Timestamp an RFC 3339 string in UTC ("Z") with 0, 3,
 *     6 or 9 fractional digits.
 *
 * Input (pbjson_decode, pbjson_merge): keys may be proto names or json
 * names; integers may be numbers or strings; enums names or numbers
 * (PBJSON_LENIENT_ENUMS also takes the name without the enum's prefix, in
 * any case: "pending" for TASK_STATE_PENDING); bytes standard or URL-safe
 * base64, padded or not; null means "not set" (except in a Value);
 * Timestamps accept any RFC 3339 offset. An unknown key, a wrong JSON
 * type, an out-of-range number or two members of one oneof are errors
 * that name the field ("field \"steps[2].name\": expected a string").
 *
 * Memory: decoded messages, strings and arrays come from the allocator
 * given (normally a per-request arena); nothing is kept between calls, so
 * the functions are safe from any number of threads.
 */
#ifndef TK_WEB_PBJSON_H
#define TK_WEB_PBJSON_H

#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "store/err.h"

#define PBJSON_EMIT_DEFAULTS 0x1u /* write fields without presence even when zero */
#define PBJSON_CAMEL_CASE    0x2u /* lowerCamelCase keys instead of proto names */
#define PBJSON_LENIENT_ENUMS 0x4u /* input: enum names without prefix, any case */

/*
 * Converts msg to a new JSON object (the caller owns the reference).
 * Returns NULL only when out of memory.
 */
json_t *pbjson_encode(const ProtobufCMessage *msg, unsigned flags);

/*
 * Writes a JSON value as compact text: like json_dumps(JSON_COMPACT), but
 * doubles get the shortest form that reads back to the same value (0.1,
 * not 0.10000000000000001). Returns a malloc'd NUL-terminated string
 * (length in *len when len != NULL), or NULL when out of memory.
 */
char *pbjson_dumps(const json_t *v, size_t *len);

/*
 * Decodes the JSON object `in` into a new message of type d allocated
 * from alloc (NULL: protobuf-c's default allocator). Returns 0 with *out
 * set, TRPC_ERR_INVALID (bad input; err names the field) or
 * TRPC_ERR_NOMEM. On error *out is untouched; what was allocated stays
 * with alloc (free an arena, or nothing leaks with a default allocator
 * except on error paths: use an arena).
 */
int pbjson_decode(const json_t *in, const ProtobufCMessageDescriptor *d, ProtobufCAllocator *alloc,
                  unsigned flags, ProtobufCMessage **out, struct tk_err *err);

/*
 * As pbjson_decode, into an existing initialised message: fields present
 * in `in` replace (scalars, messages) or extend (repeated, maps) what msg
 * holds. Returns 0, TRPC_ERR_INVALID or TRPC_ERR_NOMEM.
 */
int pbjson_merge(const json_t *in, ProtobufCMessage *msg, ProtobufCAllocator *alloc, unsigned flags,
                 struct tk_err *err);

/*
 * Sets the field called `name` (proto or json name) of msg from the text
 * of a URL path segment or query parameter: strings as they are, numbers
 * in decimal, bools "true"/"false" (also "1"/"0"), enums by name or
 * number, Timestamps in RFC 3339. A repeated field gets the value
 * appended. Message fields other than Timestamp cannot be set this way.
 * Returns 0, TRPC_ERR_NOT_FOUND (no such field; err says so),
 * TRPC_ERR_INVALID or TRPC_ERR_NOMEM.
 */
int pbjson_set_text(ProtobufCMessage *msg, const char *name, const char *text,
                    ProtobufCAllocator *alloc, unsigned flags, struct tk_err *err);

/* 1 when f is a map field (protoc's repeated XEntry {key = 1; value = 2;}). */
int pbjson_is_map(const ProtobufCFieldDescriptor *f);

/* The field of d called `name` (proto name or lowerCamelCase json name), or NULL. */
const ProtobufCFieldDescriptor *pbjson_find_field(const ProtobufCMessageDescriptor *d,
                                                  const char *name);

#endif
