/*
 * buf: a growable byte buffer. The owner frees it with buf_free().
 */
#ifndef TRPC_BUF_H
#define TRPC_BUF_H

#include <stddef.h>
#include <stdint.h>

struct buf {
	uint8_t *data;
	size_t len; /* bytes in use */
	size_t cap; /* bytes allocated */
	size_t off; /* bytes already consumed from the front (for queues) */
};

/* Makes room for `extra` more bytes. 0 or TRPC_ERR_NOMEM. */
int buf_reserve(struct buf *b, size_t extra);
/* Appends `len` bytes. 0 or TRPC_ERR_NOMEM. */
int buf_append(struct buf *b, const void *data, size_t len);
/* Drops `n` bytes from the front (cheaply; compacts when it pays). */
void buf_consume(struct buf *b, size_t n);
/* Bytes not yet consumed. */
static inline size_t buf_avail(const struct buf *b)
{
	return b->len - b->off;
}
static inline uint8_t *buf_head(const struct buf *b)
{
	return b->data + b->off;
}
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
