/*
 * escape: text escaping shared by the JSON log writer and the Prometheus
 * exposition, both of which must stay valid whatever bytes a message or a
 * label value holds (control characters, quotes, bytes that are not UTF-8).
 */
#ifndef TRPC_ESCAPE_H
#define TRPC_ESCAPE_H

#include <stddef.h>

/* Length (1..4) of the well-formed UTF-8 sequence at s[0..len), or 0 when
 * the bytes there do not start one (stray continuation byte, overlong
 * form, surrogate, above U+10FFFF, truncated). */
size_t utf8_seq_len(const unsigned char *s, size_t len);

/*
 * Writes src[0..len) as the inside of a JSON string (no quotes, no NUL)
 * into dst, at most cap bytes: '"' and '\' are escaped, control
 * characters become \n, \r, \t, \b, \f or \u00XX, DEL becomes \u007f and
 * bytes that are not well-formed UTF-8 become \ufffd. An escape or a
 * character is never cut: writing stops before the first one that does
 * not fit, and *used (when not NULL) is set to the source bytes taken.
 * Returns the bytes written.
 */
size_t escape_json(char *dst, size_t cap, const char *src, size_t len, size_t *used);

/*
 * Same contract for a Prometheus text-format label value (help_text 0) or
 * HELP text (help_text 1): '\' becomes "\\", a newline "\n", and in label
 * values '"' becomes "\""; bytes that are not well-formed UTF-8 become
 * U+FFFD, which the format requires.
 */
size_t escape_prom(char *dst, size_t cap, const char *src, size_t len, int help_text, size_t *used);

#endif
