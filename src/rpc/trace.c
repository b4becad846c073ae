/*
 * trace: traceparent / x-trace-id parsing and random trace and span ids.
 *
 * The generator is xoshiro256** with its state per thread, seeded with
 * getrandom(GRND_NONBLOCK) when a thread draws its first id. Ids need to be
 * unique, not secret; should the kernel's pool not be ready yet, the seed
 * falls back to the clock, the thread and an address (ASLR), mixed with
 * splitmix64.
 */
#define _GNU_SOURCE

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "trace.h"

static const char hexdigits[] = "0123456789abcdef";

/* ------------------------------------------------------------------ parsing */

static int is_lower_hex(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

static int all_zero(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != '0')
			return 0;
	return 1;
}

int trace_is_w3c_id(const char *v, size_t len)
{
	return len == TRACE_ID_HEX && is_lower_hex(v, len) && !all_zero(v, len);
}

int trace_parse_traceparent(const char *v, size_t len, struct traceparent *out)
{
	const char *tid, *pid, *flags;

	if (v == NULL || len != TRACEPARENT_LEN)
		return -1;
	tid = v + 3;
	pid = tid + TRACE_ID_HEX + 1;
	flags = pid + TRACE_SPAN_HEX + 1;
	if (v[0] != '0' || v[1] != '0' || v[2] != '-' || tid[TRACE_ID_HEX] != '-' ||
	    pid[TRACE_SPAN_HEX] != '-')
		return -1;
	if (!trace_is_w3c_id(tid, TRACE_ID_HEX) || !is_lower_hex(pid, TRACE_SPAN_HEX) ||
	    all_zero(pid, TRACE_SPAN_HEX) || !is_lower_hex(flags, 2))
		return -1;
	memcpy(out->trace_id, tid, TRACE_ID_HEX);
	out->trace_id[TRACE_ID_HEX] = '\0';
	memcpy(out->parent_id, pid, TRACE_SPAN_HEX);
	out->parent_id[TRACE_SPAN_HEX] = '\0';
	memcpy(out->flags, flags, 2);
	out->flags[2] = '\0';
	return 0;
}

int trace_valid_x_trace_id(const char *v, size_t len)
{
	if (v == NULL || len == 0 || len > TRACE_XID_MAX)
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = v[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.' || c == ':'))
			return 0;
	}
	return 1;
}

/* ------------------------------------------------------------------ generator */

static __thread uint64_t rng[4];
static __thread int rng_seeded;

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static void seed(void)
{
	uint64_t s[4];

	if (getrandom(s, sizeof s, GRND_NONBLOCK) != (ssize_t)sizeof s) {
		struct timespec ts;
		uint64_t x;

		clock_gettime(CLOCK_REALTIME, &ts);
		x = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
		x ^= (uint64_t)pthread_self() ^ ((uint64_t)(uintptr_t)&x << 17);
		for (int i = 0; i < 4; i++)
			s[i] = splitmix64(&x);
	}
	memcpy(rng, s, sizeof rng);
	if ((rng[0] | rng[1] | rng[2] | rng[3]) == 0)
		rng[0] = 1; /* the one state xoshiro cannot leave */
	rng_seeded = 1;
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t next64(void)
{
	uint64_t r, t;

	if (!rng_seeded)
		seed();
	r = rotl(rng[1] * 5, 7) * 9;
	t = rng[1] << 17;
	rng[2] ^= rng[0];
	rng[3] ^= rng[1];
	rng[1] ^= rng[2];
	rng[0] ^= rng[3];
	rng[2] ^= t;
	rng[3] = rotl(rng[3], 45);
	return r;
}

void trace_random_hex(char *out, size_t hex)
{
	do {
		for (size_t i = 0; i < hex;) {
			uint64_t r = next64();
			for (int k = 0; k < 16 && i < hex; k++, i++, r >>= 4)
				out[i] = hexdigits[r & 0xf];
		}
	} while (all_zero(out, hex));
	out[hex] = '\0';
}
