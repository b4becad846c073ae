/*
 * codec: the pure parts of the gRPC-over-HTTP/2 codec. No I/O, no threads;
 * every function here is unit-tested in t/unit/test_codec.c.
 */
#ifndef TRPC_CODEC_H
#define TRPC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* ---------------------------------------------------------- grpc-timeout */

/*
 * Parses a grpc-timeout value: 1 to 8 ASCII digits followed by one unit
 * (H hours, M minutes, S seconds, m millis, u micros, n nanos).
 * On success stores nanoseconds in *ns (saturating at INT64_MAX) and
 * returns 0; anything else is TRPC_ERR_INVALID.
 */
int codec_parse_timeout(const char *s, size_t len, int64_t *ns);

/* Formats a timeout for sending (at most 8 digits, the finest unit that
 * fits; rounds up). `out` holds at least 10 bytes; returns the length. */
size_t codec_format_timeout(int64_t ns, char *out);

/* ---------------------------------------------------------- grpc-message */

/*
 * Percent-encodes a status message as the gRPC spec asks: bytes outside
 * 0x20..0x7E and '%' become %XX (upper-case hex). `out` holds 3*len+1
 * bytes; the result is NUL terminated; returns its length.
 */
size_t codec_percent_encode(const char *in, size_t len, char *out);

/* Decodes %XX sequences; a malformed sequence is kept literally (as the
 * spec asks of receivers). `out` holds len+1 bytes; returns the length. */
size_t codec_percent_decode(const char *in, size_t len, char *out);

/* ---------------------------------------------------------- -bin metadata */

/* Standard base64 without padding (what gRPC senders should emit).
 * `out` holds 4*((len+2)/3)+1 bytes; NUL terminated; returns the length. */
size_t codec_b64_encode(const uint8_t *in, size_t len, char *out);

/* Decodes standard base64, padded or not (also accepts the URL-safe
 * alphabet). `out` holds 3*(len/4)+3 bytes. 0 or TRPC_ERR_INVALID. */
int codec_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen);

/* ---------------------------------------------------------- message framing */

/*
 * Reassembles length-prefixed gRPC messages (1 flag byte, 4-byte
 * big-endian length, payload) from DATA chunks of any size. Each complete
 * message is handed to the callback, which takes ownership of the malloc'd
 * payload (free() it; NULL when the length is 0).
 */
typedef int (*codec_msg_cb)(void *ud, int compressed, uint8_t *payload, size_t len);

struct codec_framer {
	size_t max_len; /* largest accepted payload (as announced by the prefix) */
	uint8_t hdr[5];
	size_t hdr_have; /* prefix bytes collected so far */
	int compressed;
	uint8_t *payload;
	size_t len;  /* announced payload length */
	size_t have; /* payload bytes collected so far */
};

void codec_framer_init(struct codec_framer *f, size_t max_len);
/*
 * Feeds bytes. Returns 0, or
 *  - TRPC_ERR_TOO_LARGE when a prefix announces more than max_len (the
 *    announced length is left in f->len for the error message),
 *  - TRPC_ERR_PROTOCOL for a flag byte other than 0 or 1,
 *  - TRPC_ERR_NOMEM,
 *  - any negative value returned by the callback (feeding stops there).
 * After an error the framer must only be cleared.
 */
int codec_framer_feed(struct codec_framer *f, const uint8_t *data, size_t len, codec_msg_cb cb,
                      void *ud);
/* 1 when no partial message is pending (a clean end of stream). */
int codec_framer_idle(const struct codec_framer *f);
void codec_framer_clear(struct codec_framer *f);

/* Appends the 5-byte prefix for a payload. */
void codec_put_prefix(uint8_t out[5], int compressed, uint32_t len);

/* ---------------------------------------------------------- compression */

enum codec_encoding {
	CODEC_IDENTITY = 0,
	CODEC_GZIP = 1,
	CODEC_DEFLATE = 2,
	CODEC_UNSUPPORTED = -1
};

/* The value we send in grpc-accept-encoding. */
#define CODEC_ACCEPT_ENCODING "identity,deflate,gzip"

/* Maps an encoding name (exact, lower case) to enum codec_encoding. */
int codec_encoding_from_name(const char *name, size_t len);
const char *codec_encoding_name(int enc);
/* 1 when the comma-separated list (grpc-accept-encoding) names `enc`;
 * identity is always accepted. */
int codec_accepts(const char *list, size_t len, int enc);

/* Compresses `in` with gzip or deflate (zlib format, as gRPC means by
 * "deflate"), appending to `out`. 0, TRPC_ERR_NOMEM or TRPC_ERR_ENCODING. */
int codec_compress(int enc, const uint8_t *in, size_t len, struct buf *out);

/* Decompresses into a new malloc'd buffer (*out, *outlen; caller frees).
 * TRPC_ERR_TOO_LARGE when the result would exceed `max`,
 * TRPC_ERR_ENCODING on corrupt input, TRPC_ERR_NOMEM. */
int codec_decompress(int enc, const uint8_t *in, size_t len, size_t max, uint8_t **out,
                     size_t *outlen);

#endif
