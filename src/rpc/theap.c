#include "config.h"

#include <stdlib.h>

#include "tasker/rpc.h"
#include "theap.h"

static void place(struct theap *h, size_t i, struct timer *t)
{
	h->v[i] = t;
	t->idx = i + 1;
}

static void sift_up(struct theap *h, size_t i)
{
	struct timer *t = h->v[i];
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (h->v[parent]->when <= t->when)
			break;
		place(h, i, h->v[parent]);
		i = parent;
	}
	place(h, i, t);
}

static void sift_down(struct theap *h, size_t i)
{
	struct timer *t = h->v[i];
	for (;;) {
		size_t l = 2 * i + 1;
		if (l >= h->len)
			break;
		size_t m = l + 1 < h->len && h->v[l + 1]->when < h->v[l]->when ? l + 1 : l;
		if (h->v[m]->when >= t->when)
			break;
		place(h, i, h->v[m]);
		i = m;
	}
	place(h, i, t);
}

void theap_disarm(struct theap *h, struct timer *t)
{
	if (t->idx == 0)
		return;
	size_t i = t->idx - 1;
	t->idx = 0;
	h->len--;
	if (i == h->len)
		return;
	place(h, i, h->v[h->len]);
	sift_down(h, i);
	sift_up(h, h->v[i]->idx - 1);
}

int theap_arm(struct theap *h, struct timer *t, int64_t when)
{
	theap_disarm(h, t);
	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		struct timer **v = realloc(h->v, cap * sizeof *v);
		if (v == NULL)
			return TRPC_ERR_NOMEM;
		h->v = v;
		h->cap = cap;
	}
	t->when = when;
	h->v[h->len] = t;
	h->len++;
	sift_up(h, h->len - 1);
	return 0;
}

struct timer *theap_top(const struct theap *h)
{
	return h->len ? h->v[0] : NULL;
}

struct timer *theap_pop_due(struct theap *h, int64_t now)
{
	if (h->len == 0 || h->v[0]->when > now)
		return NULL;
	struct timer *t = h->v[0];
	theap_disarm(h, t);
	return t;
}

void theap_free(struct theap *h)
{
	free(h->v);
	h->v = NULL;
	h->len = h->cap = 0;
}
