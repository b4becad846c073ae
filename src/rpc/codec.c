/*
 * codec: the pure parts of the gRPC-over-HTTP/2 codec (see codec.h).
 *
 * Nothing here does I/O, takes a lock or logs: the unit test links this
 * file without the rest of the library.
 */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ZLIB_CONST
#include <zlib.h>

#include <tasker/rpc.h>

#include "codec.h"

#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---------------------------------------------------------- grpc-timeout */

/* The spec caps the value at 8 digits so that it fits any 32-bit parser. */
#define TIMEOUT_MAX_DIGITS 8
#define TIMEOUT_MAX_VALUE  99999999

struct timeout_unit {
	char unit;
	int64_t ns;
};

/* Finest first: codec_format_timeout() takes the first unit that fits. */
static const struct timeout_unit timeout_units[] = {
    {.unit = 'n', .ns = 1},
    {.unit = 'u', .ns = 1000},
    {.unit = 'm', .ns = 1000000},
    {.unit = 'S', .ns = 1000000000},
    {.unit = 'M', .ns = 60 * INT64_C(1000000000)},
    {.unit = 'H', .ns = 3600 * INT64_C(1000000000)},
};

#define N_TIMEOUT_UNITS (sizeof(timeout_units) / sizeof(timeout_units[0]))

static const struct timeout_unit *timeout_unit_find(char c)
{
	size_t i;

	for (i = 0; i < N_TIMEOUT_UNITS; i++)
		if (timeout_units[i].unit == c)
			return &timeout_units[i];
	return NULL;
}

int codec_parse_timeout(const char *s, size_t len, int64_t *ns)
{
	const struct timeout_unit *u;
	int64_t v = 0;
	size_t i;

	if (len < 2 || len > TIMEOUT_MAX_DIGITS + 1)
		return TRPC_ERR_INVALID;
	for (i = 0; i < len - 1; i++) {
		if (s[i] < '0' || s[i] > '9')
			return TRPC_ERR_INVALID;
		v = v * 10 + (s[i] - '0');
	}
	u = timeout_unit_find(s[len - 1]);
	if (!u)
		return TRPC_ERR_INVALID;

	/* 99999999H is about 3.6e20 ns, beyond int64: treat as "no deadline". */
	*ns = v > INT64_MAX / u->ns ? INT64_MAX : v * u->ns;
	return 0;
}

size_t codec_format_timeout(int64_t ns, char *out)
{
	const struct timeout_unit *u;
	int64_t v;
	size_t i;

	if (ns < 0)
		ns = 0;
	/* Rounding up never sends a deadline earlier than ours. The coarsest
	 * unit holds INT64_MAX in 7 digits, so the last unit always fits. */
	for (i = 0;; i++) {
		u = &timeout_units[i];
		v = ns / u->ns + (ns % u->ns != 0);
		if (v <= TIMEOUT_MAX_VALUE || i == N_TIMEOUT_UNITS - 1)
			break;
	}
	return (size_t)snprintf(out, TIMEOUT_MAX_DIGITS + 2, "%d%c", (int)v, u->unit);
}

/* ---------------------------------------------------------- grpc-message */

static const char hex_upper[] = "0123456789ABCDEF";

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

size_t codec_percent_encode(const char *in, size_t len, char *out)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];

		if (c >= 0x20 && c <= 0x7e && c != '%') {
			out[n++] = (char)c;
			continue;
		}
		out[n++] = '%';
		out[n++] = hex_upper[c >> 4];
		out[n++] = hex_upper[c & 0xf];
	}
	out[n] = '\0';
	return n;
}

size_t codec_percent_decode(const char *in, size_t len, char *out)
{
	size_t i = 0, n = 0;

	while (i < len) {
		int hi, lo;

		if (in[i] == '%' && len - i >= 3) {
			hi = hex_value(in[i + 1]);
			lo = hex_value(in[i + 2]);
			if (hi >= 0 && lo >= 0) {
				out[n++] = (char)(hi << 4 | lo);
				i += 3;
				continue;
			}
		}
		out[n++] = in[i++];
	}
	out[n] = '\0';
	return n;
}

/* ---------------------------------------------------------- -bin metadata */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Both alphabets: peers are told to send the standard one, but some send
 * the URL-safe one and nothing is ambiguous about accepting it. */
static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

size_t codec_b64_encode(const uint8_t *in, size_t len, char *out)
{
	size_t i, n = 0;
	uint32_t v;

	for (i = 0; i + 3 <= len; i += 3) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[n++] = b64_alphabet[v >> 18 & 0x3f];
		out[n++] = b64_alphabet[v >> 12 & 0x3f];
		out[n++] = b64_alphabet[v >> 6 & 0x3f];
		out[n++] = b64_alphabet[v & 0x3f];
	}
	if (len - i == 1) {
		v = (uint32_t)in[i] << 16;
		out[n++] = b64_alphabet[v >> 18 & 0x3f];
		out[n++] = b64_alphabet[v >> 12 & 0x3f];
	} else if (len - i == 2) {
		v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[n++] = b64_alphabet[v >> 18 & 0x3f];
		out[n++] = b64_alphabet[v >> 12 & 0x3f];
		out[n++] = b64_alphabet[v >> 6 & 0x3f];
	}
	out[n] = '\0';
	return n;
}

int codec_b64_decode(const char *in, size_t len, uint8_t *out, size_t *outlen)
{
	uint32_t acc = 0;
	size_t i, n = 0;
	int bits = 0;

	/* Padding is only meaningful on a whole number of quads; a stray '='
	 * anywhere else fails below as an invalid character. */
	if (len % 4 == 0 && len > 0 && in[len - 1] == '=') {
		len--;
		if (in[len - 1] == '=')
			len--;
	}
	/* One leftover character carries 6 bits: not even one byte. */
	if (len % 4 == 1)
		return TRPC_ERR_INVALID;

	for (i = 0; i < len; i++) {
		int v = b64_value(in[i]);

		if (v < 0)
			return TRPC_ERR_INVALID;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	*outlen = n;
	return 0;
}

/* ---------------------------------------------------------- message framing */

#define PREFIX_LEN 5

/* The payload grows as bytes arrive instead of being allocated at the
 * announced size: a prefix costs the peer 5 bytes, and many streams each
 * announcing max_len must not pin max_len of memory each. */
#define FRAMER_MIN_CHUNK 16384

/* Bytes allocated for f->payload when `have` bytes are stored; the
 * allocation is a pure function of (have, len) so no capacity field is
 * needed. */
static size_t framer_cap(const struct codec_framer *f, size_t have)
{
	size_t cap = FRAMER_MIN_CHUNK;

	while (cap < have) {
		if (cap > SIZE_MAX / 2)
			return f->len;
		cap *= 2;
	}
	return MIN(cap, f->len);
}

static int framer_store(struct codec_framer *f, const uint8_t *data, size_t n)
{
	size_t cur = f->payload ? framer_cap(f, f->have) : 0;
	uint8_t *p;

	if (f->have + n > cur) {
		p = realloc(f->payload, framer_cap(f, f->have + n));
		if (!p)
			return TRPC_ERR_NOMEM;
		f->payload = p;
	}
	memcpy(f->payload + f->have, data, n);
	f->have += n;
	return 0;
}

static void framer_reset(struct codec_framer *f)
{
	f->hdr_have = 0;
	f->compressed = 0;
	f->payload = NULL;
	f->len = 0;
	f->have = 0;
}

static int on_prefix(struct codec_framer *f)
{
	if (f->hdr[0] > 1)
		return TRPC_ERR_PROTOCOL;
	f->compressed = f->hdr[0];
	f->len =
	    (size_t)f->hdr[1] << 24 | (size_t)f->hdr[2] << 16 | (size_t)f->hdr[3] << 8 | f->hdr[4];
	f->have = 0;
	if (f->len > f->max_len)
		return TRPC_ERR_TOO_LARGE;
	return 0;
}

/* Hands the finished message over; the framer is idle again before the
 * callback runs, so the callback may look at it. */
static int on_message(struct codec_framer *f, codec_msg_cb cb, void *ud)
{
	uint8_t *payload = f->payload;
	size_t len = f->len;
	int compressed = f->compressed;
	int rc;

	framer_reset(f);
	rc = cb(ud, compressed, payload, len);
	return rc < 0 ? rc : 0;
}

void codec_framer_init(struct codec_framer *f, size_t max_len)
{
	memset(f, 0, sizeof(*f));
	f->max_len = max_len;
}

int codec_framer_feed(struct codec_framer *f, const uint8_t *data, size_t len, codec_msg_cb cb,
                      void *ud)
{
	size_t n;
	int rc;

	while (len > 0) {
		if (f->hdr_have < PREFIX_LEN) {
			n = MIN(PREFIX_LEN - f->hdr_have, len);
			memcpy(f->hdr + f->hdr_have, data, n);
			f->hdr_have += n;
			data += n;
			len -= n;
			if (f->hdr_have < PREFIX_LEN)
				break;
			rc = on_prefix(f);
			if (rc)
				return rc;
		} else {
			n = MIN(f->len - f->have, len);
			rc = framer_store(f, data, n);
			if (rc)
				return rc;
			data += n;
			len -= n;
		}
		/* Also reached straight from the prefix for an empty
		 * message, even when it ends the chunk. */
		if (f->have == f->len) {
			rc = on_message(f, cb, ud);
			if (rc)
				return rc;
		}
	}
	return 0;
}

int codec_framer_idle(const struct codec_framer *f)
{
	return f->hdr_have == 0;
}

void codec_framer_clear(struct codec_framer *f)
{
	free(f->payload);
	framer_reset(f);
}

void codec_put_prefix(uint8_t out[5], int compressed, uint32_t len)
{
	out[0] = compressed ? 1 : 0;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

/* ---------------------------------------------------------- compression */

struct encoding_name {
	const char *name;
	int enc;
};

static const struct encoding_name encodings[] = {
    {.name = "identity", .enc = CODEC_IDENTITY},
    {.name = "gzip", .enc = CODEC_GZIP},
    {.name = "deflate", .enc = CODEC_DEFLATE},
};

#define N_ENCODINGS (sizeof(encodings) / sizeof(encodings[0]))

int codec_encoding_from_name(const char *name, size_t len)
{
	size_t i;

	for (i = 0; i < N_ENCODINGS; i++)
		if (strlen(encodings[i].name) == len && memcmp(encodings[i].name, name, len) == 0)
			return encodings[i].enc;
	return CODEC_UNSUPPORTED;
}

/* NULL for CODEC_UNSUPPORTED or any other value. */
const char *codec_encoding_name(int enc)
{
	size_t i;

	for (i = 0; i < N_ENCODINGS; i++)
		if (encodings[i].enc == enc)
			return encodings[i].name;
	return NULL;
}

static int is_ows(char c)
{
	return c == ' ' || c == '\t';
}

int codec_accepts(const char *list, size_t len, int enc)
{
	size_t start = 0, end, i;

	if (enc == CODEC_IDENTITY)
		return 1;
	if (!codec_encoding_name(enc))
		return 0;
	/* Elements are separated by ',' with optional white space (RFC 9110
	 * list syntax): "gzip, deflate". */
	for (i = 0; i <= len; i++) {
		if (i < len && list[i] != ',')
			continue;
		end = i;
		while (start < end && is_ows(list[start]))
			start++;
		while (end > start && is_ows(list[end - 1]))
			end--;
		if (codec_encoding_from_name(list + start, end - start) == enc)
			return 1;
		start = i + 1;
	}
	return 0;
}

/* zlib's windowBits: 15 (32 KiB window), +16 for the gzip wrapper. */
static int zlib_window_bits(int enc)
{
	switch (enc) {
	case CODEC_GZIP:
		return 15 + 16;
	case CODEC_DEFLATE:
		return 15;
	default:
		return 0;
	}
}

/* zlib counts in uInt; feeds larger inputs piecewise. */
static void zlib_refill(z_stream *zs, size_t *left)
{
	uInt n;

	if (zs->avail_in > 0 || *left == 0)
		return;
	n = (uInt)MIN(*left, (size_t)UINT_MAX);
	zs->avail_in = n;
	*left -= n;
}

static int deflate_into(z_stream *zs, size_t left, struct buf *out)
{
	size_t room;
	uInt before;
	int rc, flush;

	/* One deflate() call is enough when deflateBound() is reserved up
	 * front; the loop only matters for inputs beyond 4 GiB. */
	rc = buf_reserve(out, deflateBound(zs, (uLong)MIN(left, (size_t)ULONG_MAX)));
	if (rc)
		return rc;
	do {
		zlib_refill(zs, &left);
		if (out->cap == out->len) {
			rc = buf_reserve(out, 65536);
			if (rc)
				return rc;
		}
		room = MIN(out->cap - out->len, (size_t)UINT_MAX);
		zs->next_out = out->data + out->len;
		zs->avail_out = (uInt)room;
		before = zs->avail_out;
		flush = left > 0 ? Z_NO_FLUSH : Z_FINISH;
		rc = deflate(zs, flush);
		out->len += before - zs->avail_out;
		if (rc == Z_STREAM_ERROR)
			return TRPC_ERR_ENCODING;
	} while (rc != Z_STREAM_END);
	return 0;
}

int codec_compress(int enc, const uint8_t *in, size_t len, struct buf *out)
{
	int bits = zlib_window_bits(enc);
	size_t orig_len = out->len;
	z_stream zs;
	int rc;

	if (!bits)
		return TRPC_ERR_ENCODING;
	memset(&zs, 0, sizeof(zs));
	rc = deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, bits, 8, Z_DEFAULT_STRATEGY);
	if (rc != Z_OK)
		return rc == Z_MEM_ERROR ? TRPC_ERR_NOMEM : TRPC_ERR_ENCODING;
	zs.next_in = in;
	rc = deflate_into(&zs, len, out);
	deflateEnd(&zs);
	/* Nothing half-written stays appended. */
	if (rc)
		out->len = orig_len;
	return rc;
}

/* Output state of one inflation. */
struct inflate_out {
	uint8_t *data;
	size_t len;
	size_t cap;
	size_t max;
};

/* Makes room for more output, never beyond `max`. 1 when the output is
 * already `max` bytes long. */
static int inflate_grow(struct inflate_out *o)
{
	size_t cap;
	uint8_t *p;

	if (o->len < o->cap)
		return 0;
	if (o->cap == o->max)
		return 1;
	cap = o->cap < 4096 ? 4096 : o->cap;
	cap = cap > o->max / 2 ? o->max : cap * 2;
	p = realloc(o->data, cap);
	if (!p)
		return TRPC_ERR_NOMEM;
	o->data = p;
	o->cap = cap;
	return 0;
}

static int zlib_error(int rc)
{
	return rc == Z_MEM_ERROR ? TRPC_ERR_NOMEM : TRPC_ERR_ENCODING;
}

/*
 * Inflates until the end of the stream, growing the output as it goes.
 * Once the output holds `max` bytes, inflate() is offered a single byte of
 * room: if it fills it, the message is too large and we stop there, having
 * expanded at most `max` + 1 bytes whatever the compression ratio.
 */
static int inflate_into(z_stream *zs, int enc, size_t left, struct inflate_out *o)
{
	uint8_t probe;
	int rc, full;

	for (;;) {
		zlib_refill(zs, &left);
		full = inflate_grow(o);
		if (full < 0)
			return full;
		if (full) {
			zs->next_out = &probe;
			zs->avail_out = 1;
		} else {
			zs->next_out = o->data + o->len;
			zs->avail_out = (uInt)MIN(o->cap - o->len, (size_t)UINT_MAX);
		}
		rc = inflate(zs, Z_NO_FLUSH);
		if (full && zs->avail_out == 0)
			return TRPC_ERR_TOO_LARGE;
		if (!full)
			o->len = (size_t)(zs->next_out - o->data);

		if (rc == Z_STREAM_END) {
			if (zs->avail_in == 0 && left == 0)
				return 0;
			/* Concatenated gzip members are one valid gzip
			 * stream (RFC 1952 2.2); anything after a zlib
			 * stream is garbage. */
			if (enc != CODEC_GZIP)
				return TRPC_ERR_ENCODING;
			rc = inflateReset(zs);
			if (rc != Z_OK)
				return zlib_error(rc);
			continue;
		}
		/* Z_BUF_ERROR with input left means "no room", which the
		 * next round fixes; with no input left the stream is
		 * truncated. */
		if (rc == Z_BUF_ERROR && (zs->avail_in > 0 || left > 0))
			continue;
		if (rc != Z_OK)
			return zlib_error(rc);
	}
}

int codec_decompress(int enc, const uint8_t *in, size_t len, size_t max, uint8_t **out,
                     size_t *outlen)
{
	int bits = zlib_window_bits(enc);
	struct inflate_out o = {.max = max};
	z_stream zs;
	int rc;

	*out = NULL;
	*outlen = 0;
	if (!bits)
		return TRPC_ERR_ENCODING;
	memset(&zs, 0, sizeof(zs));
	rc = inflateInit2(&zs, bits);
	if (rc != Z_OK)
		return zlib_error(rc);
	zs.next_in = in;
	rc = inflate_into(&zs, enc, len, &o);
	inflateEnd(&zs);
	if (rc)
		goto fail;
	/* Same convention as the framer: an empty result is NULL. */
	if (o.len == 0) {
		free(o.data);
		return 0;
	}
	*out = o.data;
	*outlen = o.len;
	return 0;

fail:
	free(o.data);
	return rc;
}
