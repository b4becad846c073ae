/*
 * Unit tests for src/rpc/codec.c (and the small modules it links with:
 * buf.c, status.c). Prints TAP with CMOCKA_MESSAGE_OUTPUT=TAP.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <zlib.h>

#include <tasker/rpc.h>

#include "rpc/buf.h"
#include "rpc/codec.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* Test functions take cmocka's state whether they use it or not. */
#define UNUSED __attribute__((unused))

/* ---------------------------------------------------------- grpc-timeout */

struct timeout_case {
	const char *in;
	int64_t ns;
};

static void check_timeout(const char *in, int64_t want)
{
	int64_t ns = -1;

	assert_int_equal(codec_parse_timeout(in, strlen(in), &ns), 0);
	assert_true(ns == want);
}

static void check_timeout_invalid(const char *in, size_t len)
{
	int64_t ns = 0;

	assert_int_equal(codec_parse_timeout(in, len, &ns), TRPC_ERR_INVALID);
}

static void test_timeout_units(void **state UNUSED)
{
	static const struct timeout_case cases[] = {
	    {"1H", INT64_C(3600000000000)},
	    {"2M", INT64_C(120000000000)},
	    {"3S", INT64_C(3000000000)},
	    {"4m", INT64_C(4000000)},
	    {"5u", INT64_C(5000)},
	    {"6n", INT64_C(6)},
	    {"0S", 0},
	    {"0n", 0},
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(cases); i++)
		check_timeout(cases[i].in, cases[i].ns);
}

static void test_timeout_eight_digits(void **state UNUSED)
{
	check_timeout("99999999n", INT64_C(99999999));
	check_timeout("99999999S", INT64_C(99999999000000000));
	check_timeout("12345678u", INT64_C(12345678000));
	check_timeout("00000001m", INT64_C(1000000));
}

static void test_timeout_nine_digits(void **state UNUSED)
{
	check_timeout_invalid("100000000n", 10);
	check_timeout_invalid("000000001S", 10);
	check_timeout_invalid("999999999H", 10);
}

struct bad_case {
	const char *in;
	const char *why;
};

static void test_timeout_malformed(void **state UNUSED)
{
	static const struct bad_case bad[] = {
	    {"", "empty"},
	    {"1", "no unit"},
	    {"12345", "no unit"},
	    {"S", "no digits"},
	    {"1x", "unknown unit"},
	    {"1h", "units are case-sensitive"},
	    {"1s", "units are case-sensitive"},
	    {"1U", "units are case-sensitive"},
	    {"1N", "units are case-sensitive"},
	    {"-1S", "sign"},
	    {"+1S", "sign"},
	    {" 1S", "white space"},
	    {"1 S", "white space"},
	    {"1S ", "white space"},
	    {"1.5S", "fraction"},
	    {"1e3n", "exponent"},
	    {"0x1S", "hex"},
	    {"a1S", "letter"},
	    {"1SS", "two units"},
	};
	int64_t ns;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(bad); i++)
		if (codec_parse_timeout(bad[i].in, strlen(bad[i].in), &ns) != TRPC_ERR_INVALID)
			fail_msg("\"%s\" accepted (%s)", bad[i].in, bad[i].why);
	/* The length, not a NUL, ends the value. */
	check_timeout_invalid("1\0S", 3);
	check_timeout_invalid("10S", 2);
}

static void test_timeout_saturation(void **state UNUSED)
{
	check_timeout("99999999H", INT64_MAX);
	check_timeout("2562048H", INT64_MAX); /* just past INT64_MAX ns */
	check_timeout("2562047H", INT64_C(2562047) * INT64_C(3600000000000));
	/* 5.99e18 ns still fits. */
	check_timeout("99999999M", INT64_C(99999999) * INT64_C(60000000000));
}

static void check_format(int64_t ns, const char *want)
{
	char out[10];
	size_t n;

	memset(out, 'x', sizeof(out));
	n = codec_format_timeout(ns, out);
	assert_string_equal(out, want);
	assert_int_equal(n, strlen(want));
}

static void test_format_timeout(void **state UNUSED)
{
	check_format(0, "0n");
	check_format(-5, "0n");
	check_format(1, "1n");
	check_format(99999999, "99999999n");
	/* The finest unit that fits, rounding up. */
	check_format(100000000, "100000u");
	check_format(100000001, "100001u");
	check_format(INT64_C(1000000000), "1000000u");
	check_format(INT64_C(100000000000), "100000m");
	check_format(INT64_C(3600000000000000), "3600000S");
	check_format(INT64_MAX, "2562048H");
}

static void test_format_timeout_round_trip(void **state UNUSED)
{
	static const int64_t units[] = {
	    1, 1000, 1000000, INT64_C(1000000000), INT64_C(60000000000), INT64_C(3600000000000)};
	int64_t ns, back;
	char out[10];
	size_t n, u;
	int shift;

	for (shift = 0; shift < 63; shift++) {
		int64_t base = (int64_t)1 << shift;
		int64_t vals[] = {base - 1, base, base + 1, base + base / 3};
		size_t k;

		for (k = 0; k < ARRAY_SIZE(vals); k++) {
			ns = vals[k];
			n = codec_format_timeout(ns, out);
			assert_in_range(n, 2, 9);
			assert_int_equal(strlen(out), n);
			assert_int_equal(codec_parse_timeout(out, n, &back), 0);
			/* Never earlier, and late by less than one unit. */
			assert_true(back >= ns);
			for (u = 0; u < ARRAY_SIZE(units); u++)
				if (out[n - 1] == "numSMH"[u])
					break;
			assert_true(u < ARRAY_SIZE(units));
			assert_true(back == INT64_MAX || back - ns < units[u]);
		}
	}
}

/* ---------------------------------------------------------- grpc-message */

static void test_percent_ascii_passes(void **state UNUSED)
{
	char in[0x7f - 0x20], out[3 * sizeof(in) + 1];
	size_t i, n = 0;

	for (i = 0x20; i <= 0x7e; i++)
		if (i != '%')
			in[n++] = (char)i;
	assert_int_equal(codec_percent_encode(in, n, out), n);
	assert_memory_equal(in, out, n);
	assert_int_equal(out[n], '\0');
}

static void test_percent_encodes_percent(void **state UNUSED)
{
	char out[64], back[64];
	size_t n;

	n = codec_percent_encode("100%", 4, out);
	assert_string_equal(out, "100%25");
	assert_int_equal(n, 6);
	n = codec_percent_decode(out, n, back);
	assert_string_equal(back, "100%");
	assert_int_equal(n, 4);
}

static void test_percent_unicode_round_trip(void **state UNUSED)
{
	/* The message of the gRPC interop test special_status_message. */
	static const char msg[] = "\t\ntest with whitespace\r\nand Unicode BMP \xe2\x98\xba"
	                          " and non-BMP \xf0\x9f\x98\x88\t\n";
	static const char want[] = "%09%0Atest with whitespace%0D%0Aand Unicode BMP %E2%98%BA"
	                           " and non-BMP %F0%9F%98%88%09%0A";
	char out[3 * sizeof(msg) + 1], back[sizeof(out)];
	size_t n;

	n = codec_percent_encode(msg, sizeof(msg) - 1, out);
	assert_string_equal(out, want);
	assert_int_equal(n, sizeof(want) - 1);
	n = codec_percent_decode(out, n, back);
	assert_int_equal(n, sizeof(msg) - 1);
	assert_memory_equal(back, msg, n);
	assert_int_equal(back[n], '\0');
}

static void test_percent_all_bytes_round_trip(void **state UNUSED)
{
	char in[256], out[3 * 256 + 1], back[3 * 256 + 1];
	size_t i, n;

	for (i = 0; i < 256; i++)
		in[i] = (char)i;
	n = codec_percent_encode(in, sizeof(in), out);
	assert_int_equal(strlen(out), n);
	for (i = 0; i < n; i++)
		assert_true(out[i] >= 0x20 && out[i] <= 0x7e);
	n = codec_percent_decode(out, n, back);
	assert_int_equal(n, sizeof(in));
	assert_memory_equal(back, in, sizeof(in));
}

static void check_decode(const char *in, const char *want)
{
	char out[64];
	size_t n;

	n = codec_percent_decode(in, strlen(in), out);
	assert_int_equal(n, strlen(want));
	assert_string_equal(out, want);
}

static void test_percent_malformed_kept(void **state UNUSED)
{
	check_decode("%zz", "%zz");
	check_decode("a%zzb", "a%zzb");
	check_decode("%", "%");
	check_decode("abc%", "abc%");
	check_decode("%4", "%4");
	check_decode("%4g", "%4g");
	check_decode("%g4", "%g4");
	check_decode("%%41", "%A");
	check_decode("%e2%98%ba", "\xe2\x98\xba"); /* lower-case hex is accepted */
	check_decode("%41%", "A%");
	check_decode("", "");
}

/* ---------------------------------------------------------- -bin metadata */

struct b64_case {
	const char *raw;
	const char *unpadded;
	const char *padded;
};

static const struct b64_case b64_cases[] = {
    /* RFC 4648, section 10 */
    {"", "", ""},
    {"f", "Zg", "Zg=="},
    {"fo", "Zm8", "Zm8="},
    {"foo", "Zm9v", "Zm9v"},
    {"foob", "Zm9vYg", "Zm9vYg=="},
    {"fooba", "Zm9vYmE", "Zm9vYmE="},
    {"foobar", "Zm9vYmFy", "Zm9vYmFy"},
};

static void check_b64_decode(const char *in, const void *want, size_t want_len)
{
	uint8_t out[64];
	size_t n = 12345;

	assert_int_equal(codec_b64_decode(in, strlen(in), out, &n), 0);
	assert_int_equal(n, want_len);
	if (want_len)
		assert_memory_equal(out, want, want_len);
}

static void test_b64_encode_unpadded(void **state UNUSED)
{
	char out[64];
	size_t i, n;

	for (i = 0; i < ARRAY_SIZE(b64_cases); i++) {
		const struct b64_case *c = &b64_cases[i];

		n = codec_b64_encode((const uint8_t *)c->raw, strlen(c->raw), out);
		assert_string_equal(out, c->unpadded);
		assert_int_equal(n, strlen(c->unpadded));
	}
}

static void test_b64_decode_padded_and_unpadded(void **state UNUSED)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(b64_cases); i++) {
		const struct b64_case *c = &b64_cases[i];

		check_b64_decode(c->unpadded, c->raw, strlen(c->raw));
		check_b64_decode(c->padded, c->raw, strlen(c->raw));
	}
}

static void test_b64_url_safe(void **state UNUSED)
{
	static const uint8_t raw[] = {0xfb, 0xff, 0xbf};
	char out[8];

	codec_b64_encode(raw, sizeof(raw), out);
	assert_string_equal(out, "+/+/");
	check_b64_decode("+/+/", raw, sizeof(raw));
	check_b64_decode("-_-_", raw, sizeof(raw));
}

static void test_b64_binary_round_trip(void **state UNUSED)
{
	uint8_t in[256], back[3 * (344 / 4) + 3];
	char out[4 * ((256 + 2) / 3) + 1];
	size_t len, i, n, m;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(255 - i);
	for (len = 0; len <= sizeof(in); len++) {
		n = codec_b64_encode(in, len, out);
		assert_int_equal(n, (len * 4 + 2) / 3);
		assert_int_equal(codec_b64_decode(out, n, back, &m), 0);
		assert_int_equal(m, len);
		if (len)
			assert_memory_equal(back, in, len);
	}
}

static void test_b64_invalid(void **state UNUSED)
{
	static const struct bad_case bad[] = {
	    {"Z", "6 bits are not a byte"},
	    {"Zm9vY", "6 bits are not a byte"},
	    {"Zg=", "padding without a whole quad"},
	    {"Zg=a", "'=' inside"},
	    {"Z===", "too much padding"},
	    {"====", "padding only"},
	    {"Zg==Zg==", "padding in the middle"},
	    {"Zm 9", "white space"},
	    {"Zm9\n", "white space"},
	    {"Zm9!", "outside both alphabets"},
	    {"Zm.9", "outside both alphabets"},
	    {"Zm9\x80", "not ASCII"},
	};
	uint8_t out[64];
	size_t i, n;

	for (i = 0; i < ARRAY_SIZE(bad); i++)
		if (codec_b64_decode(bad[i].in, strlen(bad[i].in), out, &n) != TRPC_ERR_INVALID)
			fail_msg("\"%s\" accepted (%s)", bad[i].in, bad[i].why);
	/* The length, not a NUL, ends the input. */
	assert_int_equal(codec_b64_decode("Zm9vYm\0y", 8, out, &n), TRPC_ERR_INVALID);
}

/* ---------------------------------------------------------- message framing */

#define MAX_MSGS 16

struct msg {
	int compressed;
	size_t len;
	int was_null;
	uint8_t *data;
};

struct sink {
	struct msg msgs[MAX_MSGS];
	size_t n;
	size_t fail_at; /* return `fail_rc` on this message (1-based); 0 = never */
	int fail_rc;
	const struct codec_framer *f;
	int idle_in_cb;
};

static int on_msg(void *ud, int compressed, uint8_t *payload, size_t len)
{
	struct sink *s = ud;
	struct msg *m;

	assert_true(s->n < MAX_MSGS);
	m = &s->msgs[s->n++];
	m->compressed = compressed;
	m->len = len;
	m->was_null = payload == NULL;
	m->data = payload; /* ownership moves to the sink */
	if (s->f)
		s->idle_in_cb = codec_framer_idle(s->f);
	if (s->fail_at == s->n)
		return s->fail_rc;
	return 0;
}

static void sink_free(struct sink *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		free(s->msgs[i].data);
	memset(s, 0, sizeof(*s));
}

/* Appends one framed message to `b`. */
static void frame(struct buf *b, int compressed, const void *payload, size_t len)
{
	uint8_t prefix[5];

	codec_put_prefix(prefix, compressed, (uint32_t)len);
	assert_int_equal(buf_append(b, prefix, sizeof(prefix)), 0);
	assert_int_equal(buf_append(b, payload, len), 0);
}

static void check_msg(const struct msg *m, int compressed, const void *payload, size_t len)
{
	assert_int_equal(m->compressed, compressed);
	assert_int_equal(m->len, len);
	if (len == 0) {
		assert_true(m->was_null);
		return;
	}
	assert_memory_equal(m->data, payload, len);
}

static void test_put_prefix(void **state UNUSED)
{
	uint8_t p[5];

	codec_put_prefix(p, 0, 0x01020304);
	assert_memory_equal(p, "\x00\x01\x02\x03\x04", 5);
	codec_put_prefix(p, 1, 0xffffffffu);
	assert_memory_equal(p, "\x01\xff\xff\xff\xff", 5);
	codec_put_prefix(p, 7, 5);
	assert_int_equal(p[0], 1);
}

static void test_framer_split_every_byte(void **state UNUSED)
{
	static const char payload[] = "a message that crosses every possible split";
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};
	size_t split;

	frame(&b, 1, payload, sizeof(payload));
	for (split = 0; split <= b.len; split++) {
		codec_framer_init(&f, 1024);
		assert_int_equal(codec_framer_feed(&f, b.data, split, on_msg, &s), 0);
		assert_int_equal(s.n, split == b.len ? 1 : 0);
		assert_int_equal(codec_framer_idle(&f), split == 0 || split == b.len);
		assert_int_equal(codec_framer_feed(&f, b.data + split, b.len - split, on_msg, &s),
		                 0);
		assert_int_equal(s.n, 1);
		check_msg(&s.msgs[0], 1, payload, sizeof(payload));
		assert_true(codec_framer_idle(&f));
		codec_framer_clear(&f);
		sink_free(&s);
	}
	buf_free(&b);
}

/* Several messages, one of them empty, fed in one chunk and then one byte
 * at a time: every boundary of every message is crossed. */
static void test_framer_several_messages(void **state UNUSED)
{
	uint8_t big[300];
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};
	size_t i, step;

	memset(big, 0xa5, sizeof(big));
	frame(&b, 0, "one", 3);
	frame(&b, 1, big, sizeof(big));
	frame(&b, 0, NULL, 0);
	frame(&b, 0, "four", 4);

	for (step = 0; step < 2; step++) {
		codec_framer_init(&f, 1024);
		if (step == 0) {
			assert_int_equal(codec_framer_feed(&f, b.data, b.len, on_msg, &s), 0);
		} else {
			for (i = 0; i < b.len; i++)
				assert_int_equal(codec_framer_feed(&f, b.data + i, 1, on_msg, &s),
				                 0);
		}
		assert_int_equal(s.n, 4);
		check_msg(&s.msgs[0], 0, "one", 3);
		check_msg(&s.msgs[1], 1, big, sizeof(big));
		check_msg(&s.msgs[2], 0, NULL, 0);
		check_msg(&s.msgs[3], 0, "four", 4);
		assert_true(codec_framer_idle(&f));
		codec_framer_clear(&f);
		sink_free(&s);
	}
	buf_free(&b);
}

static void test_framer_zero_length(void **state UNUSED)
{
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};

	/* Alone, ending the chunk: delivered without waiting for more. */
	frame(&b, 0, NULL, 0);
	codec_framer_init(&f, 0);
	assert_int_equal(codec_framer_feed(&f, b.data, b.len, on_msg, &s), 0);
	assert_int_equal(s.n, 1);
	check_msg(&s.msgs[0], 0, NULL, 0);
	assert_true(codec_framer_idle(&f));

	/* Compressed and empty, split inside the prefix. */
	buf_reset(&b);
	frame(&b, 1, NULL, 0);
	assert_int_equal(codec_framer_feed(&f, b.data, 2, on_msg, &s), 0);
	assert_int_equal(s.n, 1);
	assert_false(codec_framer_idle(&f));
	assert_int_equal(codec_framer_feed(&f, b.data + 2, 3, on_msg, &s), 0);
	assert_int_equal(s.n, 2);
	check_msg(&s.msgs[1], 1, NULL, 0);

	/* An empty feed changes nothing. */
	assert_int_equal(codec_framer_feed(&f, NULL, 0, on_msg, &s), 0);
	assert_int_equal(s.n, 2);
	assert_true(codec_framer_idle(&f));

	codec_framer_clear(&f);
	sink_free(&s);
	buf_free(&b);
}

static void test_framer_max_len_boundary(void **state UNUSED)
{
	uint8_t payload[64];
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};

	memset(payload, 'x', sizeof(payload));
	frame(&b, 0, payload, sizeof(payload));
	codec_framer_init(&f, sizeof(payload));
	assert_int_equal(codec_framer_feed(&f, b.data, b.len, on_msg, &s), 0);
	assert_int_equal(s.n, 1);
	codec_framer_clear(&f);
	sink_free(&s);
	buf_free(&b);
}

static void check_oversize(uint32_t announced, size_t max)
{
	uint8_t prefix[5];
	struct codec_framer f;
	struct sink s = {0};

	codec_put_prefix(prefix, 0, announced);
	codec_framer_init(&f, max);
	/* Only the prefix arrives: the limit is enforced before any payload
	 * byte is stored, and nothing is allocated for it. */
	assert_int_equal(codec_framer_feed(&f, prefix, sizeof(prefix), on_msg, &s),
	                 TRPC_ERR_TOO_LARGE);
	assert_null(f.payload);
	assert_int_equal(f.len, announced);
	assert_int_equal(s.n, 0);
	codec_framer_clear(&f);
	assert_true(codec_framer_idle(&f));
}

static void test_framer_oversize(void **state UNUSED)
{
	check_oversize(65, 64);
	check_oversize(1, 0);
	check_oversize(0xffffffffu, 4 * 1024 * 1024);
}

static void test_framer_bad_flag(void **state UNUSED)
{
	static const uint8_t flags[] = {2, 0x80, 0xff};
	struct codec_framer f;
	struct sink s = {0};
	uint8_t prefix[5];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(flags); i++) {
		codec_put_prefix(prefix, 0, 3);
		prefix[0] = flags[i];
		codec_framer_init(&f, 1024);
		assert_int_equal(codec_framer_feed(&f, prefix, sizeof(prefix), on_msg, &s),
		                 TRPC_ERR_PROTOCOL);
		assert_int_equal(s.n, 0);
		codec_framer_clear(&f);
	}
}

static void test_framer_idle(void **state UNUSED)
{
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};

	frame(&b, 0, "abc", 3);
	codec_framer_init(&f, 1024);
	s.f = &f;
	assert_true(codec_framer_idle(&f));
	assert_int_equal(codec_framer_feed(&f, b.data, 3, on_msg, &s), 0);
	assert_false(codec_framer_idle(&f)); /* inside the prefix */
	assert_int_equal(codec_framer_feed(&f, b.data + 3, 2, on_msg, &s), 0);
	assert_false(codec_framer_idle(&f)); /* prefix done, payload pending */
	assert_int_equal(codec_framer_feed(&f, b.data + 5, 2, on_msg, &s), 0);
	assert_false(codec_framer_idle(&f)); /* inside the payload */
	assert_int_equal(codec_framer_feed(&f, b.data + 7, 1, on_msg, &s), 0);
	assert_true(codec_framer_idle(&f));
	/* Already idle while the callback runs. */
	assert_true(s.idle_in_cb);
	codec_framer_clear(&f);
	sink_free(&s);
	buf_free(&b);
}

static void test_framer_callback_error(void **state UNUSED)
{
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};

	frame(&b, 0, "one", 3);
	frame(&b, 0, "two", 3);
	frame(&b, 0, "three", 5);

	/* A negative return stops feeding at once. */
	s.fail_at = 2;
	s.fail_rc = TRPC_ERR_CLOSED;
	codec_framer_init(&f, 1024);
	assert_int_equal(codec_framer_feed(&f, b.data, b.len, on_msg, &s), TRPC_ERR_CLOSED);
	assert_int_equal(s.n, 2);
	check_msg(&s.msgs[1], 0, "two", 3);
	codec_framer_clear(&f);
	sink_free(&s);

	/* A positive return is not an error. */
	s.fail_at = 1;
	s.fail_rc = 1;
	codec_framer_init(&f, 1024);
	assert_int_equal(codec_framer_feed(&f, b.data, b.len, on_msg, &s), 0);
	assert_int_equal(s.n, 3);
	codec_framer_clear(&f);
	sink_free(&s);
	buf_free(&b);
}

static void test_framer_large_message(void **state UNUSED)
{
	const size_t len = 200000, chunk = 7777;
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};
	uint8_t *payload;
	size_t i;

	payload = malloc(len);
	assert_non_null(payload);
	for (i = 0; i < len; i++)
		payload[i] = (uint8_t)(i * 31 + (i >> 8));
	frame(&b, 0, payload, len);
	codec_framer_init(&f, len);
	for (i = 0; i < b.len; i += chunk)
		assert_int_equal(codec_framer_feed(&f, b.data + i,
		                                   b.len - i < chunk ? b.len - i : chunk, on_msg,
		                                   &s),
		                 0);
	assert_int_equal(s.n, 1);
	check_msg(&s.msgs[0], 0, payload, len);
	codec_framer_clear(&f);
	sink_free(&s);
	buf_free(&b);
	free(payload);
}

static void test_framer_clear_partial(void **state UNUSED)
{
	uint8_t payload[100] = {0};
	struct codec_framer f;
	struct buf b = {0};
	struct sink s = {0};

	frame(&b, 0, payload, sizeof(payload));
	codec_framer_init(&f, 1024);
	assert_int_equal(codec_framer_feed(&f, b.data, 50, on_msg, &s), 0);
	assert_false(codec_framer_idle(&f));
	/* Frees the partial payload (ASan reports a leak otherwise). */
	codec_framer_clear(&f);
	assert_true(codec_framer_idle(&f));
	assert_int_equal(f.max_len, 1024);
	assert_int_equal(s.n, 0);
	buf_free(&b);
}

/* ---------------------------------------------------------- compression */

static uint8_t *make_text(size_t len)
{
	static const char words[] = "the quick brown fox jumps over the lazy dog ";
	uint8_t *p = malloc(len ? len : 1);
	size_t i;

	assert_non_null(p);
	for (i = 0; i < len; i++)
		p[i] = (uint8_t)words[(i * 7 + i / 13) % (sizeof(words) - 1)];
	return p;
}

static void check_round_trip(int enc, size_t len)
{
	uint8_t *in = make_text(len), *out = NULL;
	struct buf z = {0};
	size_t outlen = 0;

	assert_int_equal(codec_compress(enc, in, len, &z), 0);
	if (enc == CODEC_GZIP) {
		assert_true(z.len >= 18);
		assert_int_equal(z.data[0], 0x1f);
		assert_int_equal(z.data[1], 0x8b);
	} else {
		/* zlib header (RFC 1950): CM 8, FCHECK */
		assert_int_equal(z.data[0] & 0x0f, 8);
		assert_int_equal((z.data[0] << 8 | z.data[1]) % 31, 0);
	}
	assert_int_equal(codec_decompress(enc, z.data, z.len, len, &out, &outlen), 0);
	assert_int_equal(outlen, len);
	if (len)
		assert_memory_equal(out, in, len);
	else
		assert_null(out);
	free(out);
	buf_free(&z);
	free(in);
}

static void test_compress_round_trip(void **state UNUSED)
{
	static const size_t lens[] = {0, 1, 100, 4096, 4097, 300000};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(lens); i++) {
		check_round_trip(CODEC_GZIP, lens[i]);
		check_round_trip(CODEC_DEFLATE, lens[i]);
	}
}

static void test_compress_appends(void **state UNUSED)
{
	uint8_t *out = NULL;
	struct buf z = {0};
	size_t outlen;

	assert_int_equal(buf_append(&z, "keep", 4), 0);
	assert_int_equal(codec_compress(CODEC_GZIP, (const uint8_t *)"hello", 5, &z), 0);
	assert_memory_equal(z.data, "keep", 4);
	assert_int_equal(codec_decompress(CODEC_GZIP, z.data + 4, z.len - 4, 5, &out, &outlen), 0);
	assert_int_equal(outlen, 5);
	assert_memory_equal(out, "hello", 5);
	free(out);
	buf_free(&z);
}

/* "deflate" in gRPC is the zlib format: check against zlib's own. */
static void test_deflate_is_zlib_format(void **state UNUSED)
{
	const size_t len = 10000;
	uint8_t *in = make_text(len), *out = NULL, back[10000], z[20000];
	uLongf zlen = sizeof(z), blen = sizeof(back);
	struct buf ours = {0};
	size_t outlen;

	assert_int_equal(compress2(z, &zlen, in, len, 6), Z_OK);
	assert_int_equal(codec_decompress(CODEC_DEFLATE, z, zlen, len, &out, &outlen), 0);
	assert_int_equal(outlen, len);
	assert_memory_equal(out, in, len);

	assert_int_equal(codec_compress(CODEC_DEFLATE, in, len, &ours), 0);
	assert_int_equal(uncompress(back, &blen, ours.data, ours.len), Z_OK);
	assert_int_equal(blen, len);
	assert_memory_equal(back, in, len);

	buf_free(&ours);
	free(out);
	free(in);
}

static void check_too_large(int enc, const uint8_t *in, size_t len, size_t max)
{
	uint8_t *out = (uint8_t *)"sentinel";
	size_t outlen = 99;

	assert_int_equal(codec_decompress(enc, in, len, max, &out, &outlen), TRPC_ERR_TOO_LARGE);
	assert_null(out);
	assert_int_equal(outlen, 0);
}

static void test_decompress_over_max(void **state UNUSED)
{
	static const int encs[] = {CODEC_GZIP, CODEC_DEFLATE};
	const size_t len = 5000;
	uint8_t *in = make_text(len), *out;
	struct buf z = {0};
	size_t outlen, i;

	for (i = 0; i < ARRAY_SIZE(encs); i++) {
		buf_reset(&z);
		assert_int_equal(codec_compress(encs[i], in, len, &z), 0);
		check_too_large(encs[i], z.data, z.len, len - 1);
		check_too_large(encs[i], z.data, z.len, 0);
		check_too_large(encs[i], z.data, z.len, 4096);
		/* Exactly max is allowed. */
		assert_int_equal(codec_decompress(encs[i], z.data, z.len, len, &out, &outlen), 0);
		assert_int_equal(outlen, len);
		free(out);
	}
	buf_free(&z);
	free(in);
}

/* 64 MiB of zeros squeeze into about 64 KiB; a 1 MiB limit must stop the
 * expansion early. */
static void test_decompress_zip_bomb(void **state UNUSED)
{
	const size_t len = 64u << 20;
	uint8_t *zeros = calloc(1, len);
	struct buf z = {0};

	assert_non_null(zeros);
	assert_int_equal(codec_compress(CODEC_GZIP, zeros, len, &z), 0);
	free(zeros);
	assert_true(z.len < len / 100);
	check_too_large(CODEC_GZIP, z.data, z.len, 1u << 20);
	buf_free(&z);
}

static void check_corrupt(int enc, const uint8_t *in, size_t len)
{
	uint8_t *out = (uint8_t *)"sentinel";
	size_t outlen = 99;

	assert_int_equal(codec_decompress(enc, in, len, 1 << 20, &out, &outlen), TRPC_ERR_ENCODING);
	assert_null(out);
	assert_int_equal(outlen, 0);
}

static void test_decompress_corrupt(void **state UNUSED)
{
	static const uint8_t garbage[] = "this is not a compressed stream at all";
	static const int encs[] = {CODEC_GZIP, CODEC_DEFLATE};
	const size_t len = 2000;
	uint8_t *in = make_text(len);
	struct buf z = {0};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(encs); i++) {
		int enc = encs[i];

		check_corrupt(enc, garbage, sizeof(garbage));
		check_corrupt(enc, garbage, 0); /* empty is not a valid stream */

		buf_reset(&z);
		assert_int_equal(codec_compress(enc, in, len, &z), 0);
		/* Truncated, at the end and in the middle. */
		check_corrupt(enc, z.data, z.len - 1);
		check_corrupt(enc, z.data, z.len / 2);
		/* Trailing garbage after the stream. */
		assert_int_equal(buf_append(&z, "xx", 2), 0);
		check_corrupt(enc, z.data, z.len);
		z.len -= 2;
		/* A bad checksum (gzip CRC-32 + size, zlib Adler-32 are last). */
		z.data[z.len - 5] ^= 0x01;
		check_corrupt(enc, z.data, z.len);
	}

	/* The wrappers are not interchangeable. */
	buf_reset(&z);
	assert_int_equal(codec_compress(CODEC_GZIP, in, len, &z), 0);
	check_corrupt(CODEC_DEFLATE, z.data, z.len);
	buf_reset(&z);
	assert_int_equal(codec_compress(CODEC_DEFLATE, in, len, &z), 0);
	check_corrupt(CODEC_GZIP, z.data, z.len);

	buf_free(&z);
	free(in);
}

static void test_gzip_concatenated_members(void **state UNUSED)
{
	uint8_t *out = NULL;
	struct buf z = {0};
	size_t outlen;

	assert_int_equal(codec_compress(CODEC_GZIP, (const uint8_t *)"hello, ", 7, &z), 0);
	assert_int_equal(codec_compress(CODEC_GZIP, (const uint8_t *)"world", 5, &z), 0);
	assert_int_equal(codec_decompress(CODEC_GZIP, z.data, z.len, 64, &out, &outlen), 0);
	assert_int_equal(outlen, 12);
	assert_memory_equal(out, "hello, world", 12);
	free(out);
	buf_free(&z);
}

static void test_compress_unsupported(void **state UNUSED)
{
	uint8_t *out = (uint8_t *)"sentinel";
	struct buf z = {0};
	size_t outlen = 99;

	assert_int_equal(codec_compress(CODEC_IDENTITY, (const uint8_t *)"x", 1, &z),
	                 TRPC_ERR_ENCODING);
	assert_int_equal(codec_compress(CODEC_UNSUPPORTED, (const uint8_t *)"x", 1, &z),
	                 TRPC_ERR_ENCODING);
	assert_int_equal(z.len, 0);
	assert_int_equal(
	    codec_decompress(CODEC_IDENTITY, (const uint8_t *)"x", 1, 10, &out, &outlen),
	    TRPC_ERR_ENCODING);
	assert_null(out);
	assert_int_equal(
	    codec_decompress(CODEC_UNSUPPORTED, (const uint8_t *)"x", 1, 10, &out, &outlen),
	    TRPC_ERR_ENCODING);
	buf_free(&z);
}

/* ---------------------------------------------------------- encoding names */

static int from_name(const char *s)
{
	return codec_encoding_from_name(s, strlen(s));
}

static void test_encoding_names(void **state UNUSED)
{
	static const int encs[] = {CODEC_IDENTITY, CODEC_GZIP, CODEC_DEFLATE};
	size_t i;

	assert_int_equal(from_name("identity"), CODEC_IDENTITY);
	assert_int_equal(from_name("gzip"), CODEC_GZIP);
	assert_int_equal(from_name("deflate"), CODEC_DEFLATE);
	assert_int_equal(from_name("GZIP"), CODEC_UNSUPPORTED);
	assert_int_equal(from_name("gzip "), CODEC_UNSUPPORTED);
	assert_int_equal(from_name("gzi"), CODEC_UNSUPPORTED);
	assert_int_equal(from_name("snappy"), CODEC_UNSUPPORTED);
	assert_int_equal(from_name(""), CODEC_UNSUPPORTED);
	assert_int_equal(codec_encoding_from_name("gzipped", 4), CODEC_GZIP);

	for (i = 0; i < ARRAY_SIZE(encs); i++)
		assert_int_equal(from_name(codec_encoding_name(encs[i])), encs[i]);
	assert_null(codec_encoding_name(CODEC_UNSUPPORTED));
	assert_null(codec_encoding_name(3));
}

static int accepts(const char *list, int enc)
{
	return codec_accepts(list, strlen(list), enc);
}

static void test_accepts(void **state UNUSED)
{
	assert_true(accepts("gzip, deflate", CODEC_GZIP));
	assert_true(accepts("gzip, deflate", CODEC_DEFLATE));
	assert_true(accepts(" gzip ,\tdeflate\t", CODEC_DEFLATE));
	assert_true(accepts(" gzip ,\tdeflate\t", CODEC_GZIP));
	assert_true(accepts(CODEC_ACCEPT_ENCODING, CODEC_GZIP));
	assert_true(accepts(CODEC_ACCEPT_ENCODING, CODEC_DEFLATE));
	assert_true(accepts(",,gzip,", CODEC_GZIP));
	assert_false(accepts("gzip", CODEC_DEFLATE));
	assert_false(accepts("gzipx, deflat", CODEC_GZIP));
	assert_false(accepts("gzipx, deflat", CODEC_DEFLATE));
	assert_false(accepts("gz ip", CODEC_GZIP));
	assert_false(accepts("", CODEC_GZIP));
	/* identity always, whatever the list says */
	assert_true(accepts("", CODEC_IDENTITY));
	assert_true(accepts("gzip", CODEC_IDENTITY));
	assert_false(accepts("gzip", CODEC_UNSUPPORTED));
	/* The length bounds the list. */
	assert_false(codec_accepts("gzip,deflate", 4, CODEC_DEFLATE));
	assert_true(codec_accepts("gzip,deflate", 4, CODEC_GZIP));
}

/* ---------------------------------------------------------- buf, status */

static void test_buf_queue(void **state UNUSED)
{
	struct buf b = {0};
	size_t i;

	assert_int_equal(buf_avail(&b), 0);
	assert_int_equal(buf_append(&b, NULL, 0), 0);
	assert_int_equal(buf_append(&b, "abcdef", 6), 0);
	buf_consume(&b, 2);
	assert_int_equal(buf_avail(&b), 4);
	assert_memory_equal(buf_head(&b), "cdef", 4);
	/* Consuming more than half slides the rest to the front. */
	buf_consume(&b, 2);
	assert_int_equal(buf_avail(&b), 2);
	assert_memory_equal(buf_head(&b), "ef", 2);
	buf_consume(&b, 2);
	assert_int_equal(buf_avail(&b), 0);
	assert_int_equal(b.off, 0);

	/* A queue that never drains stays bounded. */
	for (i = 0; i < 100000; i++) {
		assert_int_equal(buf_append(&b, "0123456789", 10), 0);
		buf_consume(&b, 10);
		assert_int_equal(buf_append(&b, "x", 1), 0);
		buf_consume(&b, 1);
		if (i == 0)
			assert_int_equal(buf_append(&b, "z", 1), 0);
	}
	assert_int_equal(buf_avail(&b), 1);
	assert_true(b.cap <= 256);
	buf_reset(&b);
	assert_int_equal(buf_avail(&b), 0);
	assert_int_equal(buf_reserve(&b, 1000), 0);
	assert_true(b.cap - b.len >= 1000);
	buf_free(&b);
	assert_null(b.data);
}

static void test_status_names(void **state UNUSED)
{
	assert_string_equal(trpc_status_name(TRPC_STATUS_OK), "OK");
	assert_string_equal(trpc_status_name(TRPC_STATUS_NOT_FOUND), "NOT_FOUND");
	assert_string_equal(trpc_status_name(TRPC_STATUS_UNAUTHENTICATED), "UNAUTHENTICATED");
	assert_string_equal(trpc_status_name(17), "UNKNOWN");
	assert_string_equal(trpc_status_name(-1), "UNKNOWN");
	assert_string_equal(trpc_strerror(TRPC_ERR_TOO_LARGE), "size limit exceeded");
	assert_string_equal(trpc_strerror(TRPC_ERR_FATAL), "fatal error");
	assert_string_equal(trpc_strerror(-50), "unknown error");
	assert_string_equal(trpc_strerror(3), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_timeout_units),
	    cmocka_unit_test(test_timeout_eight_digits),
	    cmocka_unit_test(test_timeout_nine_digits),
	    cmocka_unit_test(test_timeout_malformed),
	    cmocka_unit_test(test_timeout_saturation),
	    cmocka_unit_test(test_format_timeout),
	    cmocka_unit_test(test_format_timeout_round_trip),
	    cmocka_unit_test(test_percent_ascii_passes),
	    cmocka_unit_test(test_percent_encodes_percent),
	    cmocka_unit_test(test_percent_unicode_round_trip),
	    cmocka_unit_test(test_percent_all_bytes_round_trip),
	    cmocka_unit_test(test_percent_malformed_kept),
	    cmocka_unit_test(test_b64_encode_unpadded),
	    cmocka_unit_test(test_b64_decode_padded_and_unpadded),
	    cmocka_unit_test(test_b64_url_safe),
	    cmocka_unit_test(test_b64_binary_round_trip),
	    cmocka_unit_test(test_b64_invalid),
	    cmocka_unit_test(test_put_prefix),
	    cmocka_unit_test(test_framer_split_every_byte),
	    cmocka_unit_test(test_framer_several_messages),
	    cmocka_unit_test(test_framer_zero_length),
	    cmocka_unit_test(test_framer_max_len_boundary),
	    cmocka_unit_test(test_framer_oversize),
	    cmocka_unit_test(test_framer_bad_flag),
	    cmocka_unit_test(test_framer_idle),
	    cmocka_unit_test(test_framer_callback_error),
	    cmocka_unit_test(test_framer_large_message),
	    cmocka_unit_test(test_framer_clear_partial),
	    cmocka_unit_test(test_compress_round_trip),
	    cmocka_unit_test(test_compress_appends),
	    cmocka_unit_test(test_deflate_is_zlib_format),
	    cmocka_unit_test(test_decompress_over_max),
	    cmocka_unit_test(test_decompress_zip_bomb),
	    cmocka_unit_test(test_decompress_corrupt),
	    cmocka_unit_test(test_gzip_concatenated_members),
	    cmocka_unit_test(test_compress_unsupported),
	    cmocka_unit_test(test_encoding_names),
	    cmocka_unit_test(test_accepts),
	    cmocka_unit_test(test_buf_queue),
	    cmocka_unit_test(test_status_names),
	};

	return cmocka_run_group_tests_name("codec", tests, NULL, NULL);
}
