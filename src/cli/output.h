/*
 * output: what the commands print. `--format json` prints the answer as
 * one line of JSON; the table format prints single objects as aligned
 * "key: value" lines and lists as aligned columns.
 *
 * Answers of both transports go through the same functions: a gRPC answer
 * is the proto3 JSON of the response message, a REST answer the body; the
 * two name their fields the same way, and the column paths below accept
 * alternatives ("state|status") where the REST twin adds its own names.
 * Enum values are shown in the short lower-case form of the database
 * ("TASK_STATE_COMPLETE" -> "complete").
 */
#ifndef TK_CLI_OUTPUT_H
#define TK_CLI_OUTPUT_H

#include <stddef.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/transport.h"

/* A column of a table: its header and the value's path in a row object
 * ("pagination.total"; "a|b" takes the first present). */
struct cli_col {
	const char *header;
	const char *path;
};

/* The value at `path` (see struct cli_col) under v, or NULL. Borrowed. */
json_t *cli_json_get(json_t *v, const char *path);
/* The value at `path` when it is an object, else v itself: answers that
 * wrap their object ({"task": {...}}) and those that do not. */
json_t *cli_json_unwrap(json_t *v, const char *path);
/* The array at `path`, or v when v is itself an array, else NULL. */
json_t *cli_json_rows(json_t *v, const char *path);

/* Display text of a scalar (enums shortened; null and "" "-"; arrays joined with
 * ", "; objects as compact JSON), written into buf. */
const char *cli_text(json_t *v, char *buf, size_t size);
/* The short form of an enum value name: "TASK_STATE_COMPLETE" -> "complete";
 * any other text is returned as it is. Written into buf. */
const char *cli_enum_text(const char *s, char *buf, size_t size);

/* One line of compact JSON on stdout. */
void cli_print_json(json_t *v);
/*
 * "key: value" lines for an object, keys aligned. Nested objects are
 * flattened ("checks.database.status"), except free-form JSON fields
 * (context, results, metadata, ...), which are shown as compact JSON.
 * Top-level keys listed in `skip` (NULL-terminated, may be NULL) are left
 * out: the caller shows them as tables.
 */
void cli_print_object(json_t *obj, const char *const *skip);
/* Aligned columns with a header line; `cols` ends with a NULL header. */
void cli_print_table(json_t *rows, const struct cli_col *cols);
/* A heading line before a second part of the output ("\nSteps:"). */
void cli_print_heading(const char *title);

/* Prints an answer: as JSON with --format json, else with show(). */
typedef void (*cli_show_fn)(json_t *resp);
void cli_show(const struct cli *c, json_t *resp, cli_show_fn show);

/*
 * Runs the request and prints the answer (cli_show). Returns the exit
 * code. An answer returned with an error (body_on_error) is printed too,
 * and the error code returned.
 */
int cli_call_and_show(struct cli *c, const struct cli_request *r, cli_show_fn show);

#endif
