/*
 * admin_channel: the channel_saturation check of the detailed health and
 * the level CreateTask backs off at (see struct adm_channel in admin.h).
 *
 * Pure functions over figures the caller read, apart from the rest of
 * admin.c so that they need no engine and no database (t/unit/test_channel
 * runs them alone).
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "engine/admin.h"

/* depth / high watermark in whole percent, rounded down; a watermark of 0
 * (not a valid setting) counts any depth as full. */
static uint64_t percent_of(const struct adm_channel *ch)
{
	if (ch->high_watermark == 0)
		return ch->depth > 0 ? 100 : 0;
	if (ch->depth > UINT64_MAX / 100) /* no real queue: keep it from wrapping */
		return ch->depth / ch->high_watermark * 100;
	return ch->depth * 100 / ch->high_watermark;
}

int adm_channel_level(const struct adm_channel *ch)
{
	if (ch == NULL || !ch->known)
		return ADM_CHANNEL_UNKNOWN;
	if (ch->paused)
		return ADM_CHANNEL_OVERLOADED;
	if (percent_of(ch) >= ADM_CHANNEL_SATURATED_PERCENT)
		return ADM_CHANNEL_SATURATED;
	return ADM_CHANNEL_NORMAL;
}

const char *adm_channel_level_name(int level)
{
	switch (level) {
	case ADM_CHANNEL_NORMAL:
		return "normal";
	case ADM_CHANNEL_SATURATED:
		return "saturated";
	case ADM_CHANNEL_OVERLOADED:
		return "overloaded";
	default:
		return "unknown";
	}
}

void adm_channel_describe(const struct adm_channel *ch, char *buf, size_t size)
{
	if (size == 0)
		return;
	if (ch == NULL || !ch->known) {
		snprintf(buf, size, "the RPC server does not run yet");
		return;
	}
	snprintf(buf, size,
	         "%" PRIu64 " of %" PRIu64 " requests waiting (%" PRIu64
	         " %% of the high watermark), %d of %d handler threads busy%s",
	         ch->depth, ch->high_watermark, percent_of(ch), ch->busy, ch->threads,
	         ch->paused ? ", reading paused" : "");
}

void adm_channel_check(const struct adm_channel *ch, struct adm_check *out)
{
	static const int status_of_level[] = {
	    [ADM_CHANNEL_UNKNOWN] = ADM_UNKNOWN,
	    [ADM_CHANNEL_NORMAL] = ADM_HEALTHY,
	    [ADM_CHANNEL_SATURATED] = ADM_DEGRADED,
	    [ADM_CHANNEL_OVERLOADED] = ADM_UNHEALTHY,
	};
	int level = adm_channel_level(ch);
	char figures[192];

	memset(out, 0, sizeof *out);
	out->status = status_of_level[level];
	adm_channel_describe(ch, figures, sizeof figures);
	if (level == ADM_CHANNEL_UNKNOWN)
		snprintf(out->message, sizeof out->message, "not evaluated: %s", figures);
	else
		snprintf(out->message, sizeof out->message,
		         "%s: RPC work queue: %s (saturated from %d %%)",
		         adm_channel_level_name(level), figures, ADM_CHANNEL_SATURATED_PERCENT);
}
