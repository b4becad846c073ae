/*
 * Unit tests for src/rpc/trace.c (traceparent, x-trace-id, random ids) and
 * src/rpc/escape.c (JSON and Prometheus escaping, UTF-8 checks).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "rpc/escape.h"
#include "rpc/trace.h"

#define TP_OK "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static int parse(const char *v, struct traceparent *tp)
{
	return trace_parse_traceparent(v, strlen(v), tp);
}

/* ------------------------------------------------------------------ traceparent */

static void test_traceparent_valid(void **state)
{
	struct traceparent tp;

	(void)state;
	assert_int_equal(parse(TP_OK, &tp), 0);
	assert_string_equal(tp.trace_id, "0af7651916cd43dd8448eb211c80319c");
	assert_string_equal(tp.parent_id, "b7ad6b7169203331");
	assert_string_equal(tp.flags, "01");
	assert_int_equal(parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", &tp), 0);
	assert_string_equal(tp.flags, "00");
}

static void test_traceparent_invalid(void **state)
{
	static const char *const bad[] = {
	    "",
	    "00",
	    /* other versions, and ff (forbidden) */
	    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    /* all-zero ids */
	    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
	    /* upper case, non-hex */
	    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333z-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
	    /* wrong lengths and separators */
	    "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
	    "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01",
	    " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0",
	};
	struct traceparent tp;

	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (parse(bad[i], &tp) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
	}
	assert_int_equal(trace_parse_traceparent(NULL, 55, &tp), -1);
	/* The length given wins over a NUL further on. */
	assert_int_equal(trace_parse_traceparent(TP_OK, strlen(TP_OK) - 1, &tp), -1);
}

static void test_x_trace_id(void **state)
{
	char longest[TRACE_XID_MAX + 2];

	(void)state;
	assert_true(trace_valid_x_trace_id("abc-123_X.y:z", 13));
	assert_false(trace_valid_x_trace_id("", 0));
	assert_false(trace_valid_x_trace_id("a b", 3));
	assert_false(trace_valid_x_trace_id("a\"b", 3));
	assert_false(trace_valid_x_trace_id("a\nb", 3));
	assert_false(trace_valid_x_trace_id("\xc3\xa9", 2));
	memset(longest, 'a', sizeof longest);
	assert_true(trace_valid_x_trace_id(longest, TRACE_XID_MAX));
	assert_false(trace_valid_x_trace_id(longest, TRACE_XID_MAX + 1));

	assert_true(trace_is_w3c_id("0af7651916cd43dd8448eb211c80319c", 32));
	assert_false(trace_is_w3c_id("00000000000000000000000000000000", 32));
	assert_false(trace_is_w3c_id("0AF7651916CD43DD8448EB211C80319C", 32));
	assert_false(trace_is_w3c_id("0af7651916cd43dd8448eb211c80319", 31));
}

static void test_random_ids(void **state)
{
	char a[TRACE_ID_HEX + 1], b[TRACE_ID_HEX + 1], s[TRACE_SPAN_HEX + 1];

	(void)state;
	trace_random_hex(a, TRACE_ID_HEX);
	trace_random_hex(b, TRACE_ID_HEX);
	trace_random_hex(s, TRACE_SPAN_HEX);
	assert_int_equal(strlen(a), TRACE_ID_HEX);
	assert_int_equal(strlen(s), TRACE_SPAN_HEX);
	assert_true(trace_is_w3c_id(a, TRACE_ID_HEX));
	assert_true(trace_is_w3c_id(b, TRACE_ID_HEX));
	assert_string_not_equal(a, b);
	/* A traceparent made of them parses. */
	char tp[TRACEPARENT_LEN + 1];
	struct traceparent out;
	memcpy(tp, "00-", 3);
	memcpy(tp + 3, a, TRACE_ID_HEX);
	tp[3 + TRACE_ID_HEX] = '-';
	memcpy(tp + 4 + TRACE_ID_HEX, s, TRACE_SPAN_HEX);
	memcpy(tp + 4 + TRACE_ID_HEX + TRACE_SPAN_HEX, "-01", 4);
	assert_int_equal(parse(tp, &out), 0);
	assert_string_equal(out.trace_id, a);
}

/* ------------------------------------------------------------------ escaping */

static const char *json(const char *s, size_t len, size_t cap, size_t *used)
{
	static char out[256];
	size_t n = escape_json(out, cap, s, len, used);

	out[n] = '\0';
	return out;
}

static void test_utf8(void **state)
{
	(void)state;
	assert_int_equal(utf8_seq_len((const unsigned char *)"a", 1), 1);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xc3\xa9", 2), 2);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xe2\x82\xac", 3), 3);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\x80", 1), 0);     /* continuation */
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xc0\xaf", 2), 0); /* overlong */
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xe0\x80\xaf", 3), 0);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xed\xa0\x80", 3), 0); /* surrogate */
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xf4\x90\x80\x80", 4), 0);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xf5\x80\x80\x80", 4), 0);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xc3", 1), 0); /* truncated */
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xe2\x82", 2), 0);
	assert_int_equal(utf8_seq_len((const unsigned char *)"\xe2\x28\xa1", 3), 0);
}

static void test_json_escape(void **state)
{
	size_t used;

	(void)state;
	assert_string_equal(json("plain", 5, 100, &used), "plain");
	assert_int_equal(used, 5);
	assert_string_equal(json("a\"b\\c", 5, 100, NULL), "a\\\"b\\\\c");
	assert_string_equal(json("\n\r\t\b\f", 5, 100, NULL), "\\n\\r\\t\\b\\f");
	assert_string_equal(json("\x01\x1f\x7f", 3, 100, NULL), "\\u0001\\u001f\\u007f");
	/* A NUL inside the given length is a control character too. */
	assert_string_equal(json("a\0b", 3, 100, NULL), "a\\u0000b");
	/* UTF-8 passes; bytes that are not UTF-8 become U+FFFD, one each. */
	assert_string_equal(json("caf\xc3\xa9", 5, 100, NULL), "caf\xc3\xa9");
	assert_string_equal(json("\xff\xfe", 2, 100, NULL), "\\ufffd\\ufffd");
	assert_string_equal(json("a\xc3", 2, 100, NULL), "a\\ufffd");
	assert_string_equal(json("\xed\xa0\x80", 3, 100, NULL), "\\ufffd\\ufffd\\ufffd");
	assert_string_equal(json("/\xe2\x82\xac/", 5, 100, NULL), "/\xe2\x82\xac/");
}

static void test_json_escape_never_cuts(void **state)
{
	size_t used;

	(void)state;
	/* "\n" needs two bytes: with one left, it is not started. */
	assert_string_equal(json("ab\ncd", 5, 3, &used), "ab");
	assert_int_equal(used, 2);
	assert_string_equal(json("ab\x01", 3, 7, &used), "ab");
	assert_int_equal(used, 2);
	assert_string_equal(json("ab\x01", 3, 8, &used), "ab\\u0001");
	assert_int_equal(used, 3);
	/* A multi-byte character is not split either. */
	assert_string_equal(json("a\xe2\x82\xac", 4, 3, &used), "a");
	assert_int_equal(used, 1);
	assert_string_equal(json("a\xff", 2, 6, &used), "a");
	assert_int_equal(used, 1);
	assert_string_equal(json("", 0, 0, &used), "");
	assert_int_equal(used, 0);
}

static const char *prom(const char *s, int help)
{
	static char out[256];
	size_t n = escape_prom(out, sizeof out - 1, s, strlen(s), help, NULL);

	out[n] = '\0';
	return out;
}

static void test_prom_escape(void **state)
{
	(void)state;
	assert_string_equal(prom("grpc.testing.TestService", 0), "grpc.testing.TestService");
	assert_string_equal(prom("a\"b\\c\nd", 0), "a\\\"b\\\\c\\nd");
	/* HELP text keeps quotes. */
	assert_string_equal(prom("a\"b\\c\nd", 1), "a\"b\\\\c\\nd");
	assert_string_equal(prom("x\xffy", 0), "x\xef\xbf\xbdy");
	assert_string_equal(prom("\xc3\xa9t\xc3\xa9", 0), "\xc3\xa9t\xc3\xa9");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_traceparent_valid),
	    cmocka_unit_test(test_traceparent_invalid),
	    cmocka_unit_test(test_x_trace_id),
	    cmocka_unit_test(test_random_ids),
	    cmocka_unit_test(test_utf8),
	    cmocka_unit_test(test_json_escape),
	    cmocka_unit_test(test_json_escape_never_cuts),
	    cmocka_unit_test(test_prom_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
