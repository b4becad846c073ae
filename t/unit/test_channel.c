/*
 * Unit tests for src/engine/admin_channel.c: the RPC work queue figures
 * (depth, high watermark, threads, reading paused) to the level CreateTask
 * backs off at and to the channel_saturation check of the detailed health,
 * status and message.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "engine/admin.h"

static struct adm_channel figures(uint64_t depth, uint64_t high, int threads, int busy, int paused)
{
	struct adm_channel ch = {.known = 1,
	                         .depth = depth,
	                         .high_watermark = high,
	                         .threads = threads,
	                         .busy = busy,
	                         .paused = paused};
	return ch;
}

static void test_levels(void **state)
{
	struct adm_channel ch;

	(void)state;
	ch = figures(0, 4096, 8, 1, 0);
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_NORMAL);
	ch = figures(3276, 4096, 8, 8, 0); /* 79.98 % */
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_NORMAL);
	ch = figures(3277, 4096, 8, 8, 0); /* 80.0 % */
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_SATURATED);
	ch = figures(3, 5, 1, 1, 0);
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_NORMAL);
	ch = figures(4, 5, 1, 1, 0);
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_SATURATED);
	/* at the watermark the pool pauses reading: the flag decides */
	ch = figures(5, 5, 1, 1, 1);
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_OVERLOADED);
	/* paused until below the low watermark, however shallow meanwhile */
	ch = figures(1, 5, 1, 1, 1);
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_OVERLOADED);
	/* a watermark of 0 counts any depth as full */
	ch = figures(1, 0, 1, 1, 0);
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_SATURATED);
	ch = figures(0, 0, 1, 0, 0);
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_NORMAL);
}

static void test_unknown(void **state)
{
	struct adm_channel ch = figures(9, 10, 1, 1, 1);
	struct adm_check c;

	(void)state;
	ch.known = 0; /* the other figures are ignored */
	assert_int_equal(adm_channel_level(&ch), ADM_CHANNEL_UNKNOWN);
	assert_int_equal(adm_channel_level(NULL), ADM_CHANNEL_UNKNOWN);
	adm_channel_check(&ch, &c);
	assert_int_equal(c.status, ADM_UNKNOWN);
	assert_string_equal(c.message, "not evaluated: the RPC server does not run yet");
	adm_channel_check(NULL, &c);
	assert_int_equal(c.status, ADM_UNKNOWN);
	assert_int_equal((int)c.duration_ms, 0);
}

static void test_check_healthy(void **state)
{
	struct adm_channel ch = figures(0, 4096, 2, 1, 0);
	struct adm_check c;

	(void)state;
	adm_channel_check(&ch, &c);
	assert_int_equal(c.status, ADM_HEALTHY);
	assert_string_equal(c.message, "normal: RPC work queue: 0 of 4096 requests waiting (0 % of "
	                               "the high watermark), 1 of 2 handler threads busy "
	                               "(saturated from 80 %)");
}

static void test_check_saturated(void **state)
{
	struct adm_channel ch = figures(9, 10, 1, 1, 0);
	struct adm_check c;

	(void)state;
	adm_channel_check(&ch, &c);
	assert_int_equal(c.status, ADM_DEGRADED);
	assert_string_equal(c.message, "saturated: RPC work queue: 9 of 10 requests waiting (90 % "
	                               "of the high watermark), 1 of 1 handler threads busy "
	                               "(saturated from 80 %)");
}

static void test_check_overloaded(void **state)
{
	struct adm_channel ch = figures(10, 10, 1, 1, 1);
	struct adm_check c;

	(void)state;
	adm_channel_check(&ch, &c);
	assert_int_equal(c.status, ADM_UNHEALTHY);
	assert_string_equal(c.message,
	                    "overloaded: RPC work queue: 10 of 10 requests waiting (100 % "
	                    "of the high watermark), 1 of 1 handler threads busy, "
	                    "reading paused (saturated from 80 %)");
}

static void test_describe(void **state)
{
	struct adm_channel ch = figures(4, 5, 3, 2, 0);
	char buf[192], tiny[8];

	(void)state;
	adm_channel_describe(&ch, buf, sizeof buf);
	assert_string_equal(
	    buf,
	    "4 of 5 requests waiting (80 % of the high watermark), 2 of 3 handler threads busy");
	/* cut, never overrun */
	adm_channel_describe(&ch, tiny, sizeof tiny);
	assert_string_equal(tiny, "4 of 5 ");
	assert_string_equal(adm_channel_level_name(ADM_CHANNEL_NORMAL), "normal");
	assert_string_equal(adm_channel_level_name(ADM_CHANNEL_SATURATED), "saturated");
	assert_string_equal(adm_channel_level_name(ADM_CHANNEL_OVERLOADED), "overloaded");
	assert_string_equal(adm_channel_level_name(ADM_CHANNEL_UNKNOWN), "unknown");
	assert_string_equal(adm_channel_level_name(42), "unknown");
}

static void test_huge_figures(void **state)
{
	/* the message fits its buffer even with the largest figures */
	struct adm_channel ch = figures(UINT64_MAX / 200, UINT64_MAX / 100, 1000000, 1000000, 1);
	struct adm_check c;

	(void)state;
	adm_channel_check(&ch, &c);
	assert_int_equal(c.status, ADM_UNHEALTHY);
	assert_non_null(strstr(c.message, "reading paused (saturated from 80 %)"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_levels),           cmocka_unit_test(test_unknown),
	    cmocka_unit_test(test_check_healthy),    cmocka_unit_test(test_check_saturated),
	    cmocka_unit_test(test_check_overloaded), cmocka_unit_test(test_describe),
	    cmocka_unit_test(test_huge_figures),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
