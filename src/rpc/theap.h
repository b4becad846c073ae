/*
 * theap: a min-heap of timers embedded in their owners. Arming an armed
 * timer moves it; disarming is O(log n). Single-threaded: the owning
 * thread's loop pops what is due and calls each timer's fire function.
 */
#ifndef TRPC_THEAP_H
#define TRPC_THEAP_H

#include <stddef.h>
#include <stdint.h>

struct timer {
	int64_t when; /* CLOCK_MONOTONIC ns */
	size_t idx;   /* heap slot + 1; 0 when not armed */
	void (*fire)(struct timer *t);
};

struct theap {
	struct timer **v;
	size_t len, cap;
};

/* Arms (or re-arms) `t` for `when`. 0 or TRPC_ERR_NOMEM. */
int theap_arm(struct theap *h, struct timer *t, int64_t when);
void theap_disarm(struct theap *h, struct timer *t);
/* The earliest timer, or NULL. */
struct timer *theap_top(const struct theap *h);
/* Removes and returns the earliest timer due at `now`, or NULL. */
struct timer *theap_pop_due(struct theap *h, int64_t now);
void theap_free(struct theap *h);

#endif
