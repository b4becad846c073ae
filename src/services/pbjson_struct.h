/*
 * pbjson_struct: google.protobuf.Struct / Value / ListValue to and from
 * jansson values, for the JSON columns of the database (task context, step
 * results) and the JSON fields of requests.
 *
 * Numbers: a Value carries a double. JSON integers become doubles (exact up
 * to 2^53); a double with no fraction and |x| < 2^53 becomes a JSON integer
 * on the way back, so {"n": 1} is stored as 1, not 1.0. NaN and infinities
 * have no JSON form and are refused.
 *
 * Objects and arrays nested more than PBJSON_MAX_DEPTH levels deep are
 * refused both ways (a request can nest Values without limit; a C
 * recursion cannot).
 */
#ifndef TK_SVC_PBJSON_STRUCT_H
#define TK_SVC_PBJSON_STRUCT_H

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "google/protobuf/struct.pb-c.h"
#include "store/err.h"

#define PBJSON_MAX_DEPTH 64

/*
 * A Struct built from a JSON object, or a Value / ListValue from any JSON
 * value / array, every part allocated from `a` (a call's arena; nothing is
 * freed piecewise on error: the arena owns the pieces). NULL with err set:
 * TRPC_ERR_INVALID (not an object / array, too deep), TRPC_ERR_NOMEM.
 */
Google__Protobuf__Struct *pbjson_struct_from_json(ProtobufCAllocator *a, const json_t *obj,
                                                  struct tk_err *err);
Google__Protobuf__Value *pbjson_value_from_json(ProtobufCAllocator *a, const json_t *v,
                                                struct tk_err *err);

/*
 * JSON from a Struct (an object; a NULL Struct gives {}) or a Value. A new
 * reference (json_decref it), or NULL with err set: TRPC_ERR_INVALID (a
 * Value with no kind, a NaN or infinite number, too deep), TRPC_ERR_NOMEM.
 * `what` names the field in messages ("context").
 */
json_t *pbjson_struct_to_json(const Google__Protobuf__Struct *s, const char *what,
                              struct tk_err *err);
json_t *pbjson_value_to_json(const Google__Protobuf__Value *v, const char *what,
                             struct tk_err *err);

#endif
