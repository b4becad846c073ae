/*
 * buf: a growable byte buffer, used both as an output accumulator and as a
 * FIFO queue (append at the tail, consume from the head).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <tasker/rpc.h>

#include "buf.h"

/* First allocation; small enough not to matter, large enough that a few
 * frame headers do not each cost a realloc. */
#define BUF_MIN_CAP 256

int buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	uint8_t *p;

	if (extra <= b->cap - b->len)
		return 0;
	if (extra > SIZE_MAX - b->len)
		return TRPC_ERR_NOMEM;
	need = b->len + extra;

	/* Doubling keeps appends amortised O(1); past SIZE_MAX / 2 take just
	 * what is asked for. */
	cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;

	p = realloc(b->data, cap);
	if (!p)
		return TRPC_ERR_NOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int rc;

	/* memcpy() with a NULL source is undefined even for 0 bytes. */
	if (len == 0)
		return 0;
	rc = buf_reserve(b, len);
	if (rc)
		return rc;
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return 0;
}

void buf_consume(struct buf *b, size_t n)
{
	size_t avail = buf_avail(b);

	if (n >= avail) {
		b->off = 0;
		b->len = 0;
		return;
	}
	b->off += n;
	/*
	 * Slide the unread tail to the front once it is no longer than what
	 * has been consumed: the bytes moved are paid for by the bytes
	 * consumed, so a queue that never drains completely still costs
	 * amortised O(1) per byte and does not grow without bound.
	 * Pointers from buf_head() are stale after this call.
	 */
	if (b->off >= avail - n) {
		memmove(b->data, b->data + b->off, avail - n);
		b->len = avail - n;
		b->off = 0;
	}
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	b->off = 0;
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->off = 0;
}
